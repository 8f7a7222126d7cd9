//! State stores behind `vireo_core::Store`.
//!
//! `SqliteStore` keeps a single host's state in one SQLite file in the data
//! directory. The schema is versioned with `PRAGMA user_version` and migrated
//! forward on open. A conformance suite (`conformance`) states what every
//! backend must do; each backend runs it in its tests.

mod sqlite;

#[cfg(test)]
mod conformance;

pub use sqlite::{SqliteStore, SqliteStoreError};
