//! Vireo's domain: what a valid VM spec is, which lifecycle transitions are
//! allowed (and which events they stand for), which accelerator a host can
//! use, and the `Store` trait that holds VM records and the event log.
//!
//! Everything here is pure logic: no processes, no sockets, no database.
//! Facts about the outside world (does this file exist, which kernel modules
//! are loaded) come in as arguments so that every rule unit-tests in
//! milliseconds.

pub mod accel;
pub mod events;
pub mod mac;
pub mod spec;
pub mod state;
pub mod store;

pub use accel::{AccelChoice, AccelError, HostAccelFacts};
pub use spec::{SpecContext, SpecError, parse_spec_json, parse_spec_toml, validate_spec};
pub use state::{Action, InvalidTransition, VmState};
pub use store::{
    Change, DiskPorts, EventRecord, NetworkRecord, ObjectKind, PoolRecord, RuntimeRecord, SnapshotRecord, Store,
    StoreError, VmRecord, VmWrite, VolumeRecord,
};
