//! The vireo daemon (`vireo serve`).
//!
//! It owns the REST API (`api`: one router table, one module per resource),
//! the VM manager (`manager`: the orchestrator that serialises operations per
//! VM, drives QEMU through `vireo-qemu` and records every state change in the
//! `Store`), the event log (`events`: every state change and operation,
//! stored and streamed to followers), and the console hub that keeps each
//! VM's serial output. It must not build QEMU command lines or SQL itself:
//! those belong to `vireo-qemu` and `vireo-store`.

pub mod api;
mod audit;
mod console;
mod error;
mod events;
mod logging;
mod manager;
mod metrics;
mod serve;
mod token;

pub use error::ServerError;
pub use logging::LogFormat;
pub use manager::VmManager;
pub use serve::{ServeOptions, serve};
