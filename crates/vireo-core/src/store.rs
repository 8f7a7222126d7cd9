//! The `Store` trait: where VM records live.
//!
//! SQLite implements it for one host (`vireo-store`); a distributed backend
//! (etcd) can implement it for clusters without touching the callers. Every
//! write is atomic, and updates are compare-and-swap on `revision` so two
//! writers can never silently overwrite each other.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vireo_api::{Accel, VmSpec};

use crate::state::VmState;

/// A VM as stored: its validated spec, lifecycle state and, while a QEMU
/// process exists, how to find it again after a daemon restart.
#[derive(Clone, Debug, PartialEq)]
pub struct VmRecord {
    pub name: String,
    pub spec: VmSpec,
    pub state: VmState,
    pub runtime: Option<RuntimeRecord>,
    /// Unix time in milliseconds.
    pub created_at_ms: i64,
    pub state_changed_at_ms: i64,
    pub last_error: Option<String>,
    /// Bumped by every successful write; an update must carry the revision it read.
    pub revision: u64,
}

/// Enough to re-find and re-attach to a running QEMU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (/proc/PID/stat field 22):
    /// together with the pid it identifies the process even if the pid is reused.
    pub pid_start_ticks: u64,
    pub accel: Accel,
    pub runtime_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("VM '{0}' already exists")]
    Exists(String),
    #[error("VM '{0}' does not exist")]
    NotFound(String),
    #[error("VM '{name}' was changed concurrently (expected revision {expected})")]
    Conflict { name: String, expected: u64 },
    #[error("state store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new VM; fails with `Exists` if the name is taken. Returns the record's revision.
    async fn insert_vm(&self, record: &VmRecord) -> Result<u64, StoreError>;
    async fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError>;
    /// All VMs, ordered by name.
    async fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError>;
    /// Replaces a VM if its stored revision still equals `record.revision`; returns the new revision.
    async fn update_vm(&self, record: &VmRecord) -> Result<u64, StoreError>;
    async fn delete_vm(&self, name: &str) -> Result<(), StoreError>;
}
