//! The vireo daemon (`vireo serve`).
//!
//! It owns the REST API (`api`: one router table, one module per resource),
//! the VM manager (`manager`: the orchestrator that serialises operations per
//! VM, drives QEMU through `vireo-qemu` and records every state change in the
//! `Store`), and the console hub that keeps each VM's serial output. It must
//! not build QEMU command lines or SQL itself: those belong to `vireo-qemu`
//! and `vireo-store`.

pub mod api;
mod console;
mod error;
mod manager;
mod serve;
mod token;

pub use error::ServerError;
pub use manager::VmManager;
pub use serve::{ServeOptions, serve};
