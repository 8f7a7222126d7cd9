//! The `Store` trait: where VM records (and the rest of the daemon's state) live.
//!
//! SQLite implements it for one host (`vireo-store`); a distributed backend
//! (etcd) can implement it for clusters without touching the callers. Every
//! write is atomic, and updates are compare-and-swap on `revision` so two
//! writers can never silently overwrite each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vireo_api::{Accel, BootStatus, DiskFormat, NetworkMode, PoolType, SnapshotKind, VmSpec};

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
    /// Hot-plug ports of the disks that were plugged into the running QEMU,
    /// by disk source; a saved state can only be loaded with the same layout.
    pub disk_ports: DiskPorts,
    /// Bumped by every successful write; an update must carry the revision it read.
    pub revision: u64,
}

/// Hot-plug port of each hot-plugged disk, keyed by `vireo_core::spec::disk_source`.
pub type DiskPorts = BTreeMap<String, u32>;

/// Enough to re-find and re-attach to a running QEMU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (/proc/PID/stat field 22):
    /// together with the pid it identifies the process even if the pid is reused.
    pub pid_start_ticks: u64,
    pub accel: Accel,
    pub runtime_dir: PathBuf,
    /// How QEMU boots the guest (absent in records of daemons before it was recorded).
    #[serde(default)]
    pub boot: Option<BootStatus>,
}

/// A storage pool as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    pub name: String,
    pub pool_type: PoolType,
    pub path: PathBuf,
    pub created_at_ms: i64,
}

/// A volume as stored; sizes on disk are read from the pool when asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRecord {
    pub pool: String,
    pub name: String,
    pub format: DiskFormat,
    /// Virtual size, kept up to date by create and resize.
    pub capacity_bytes: u64,
    /// `(pool, name)` of the volume this one is a linked clone of.
    pub backing: Option<(String, String)>,
    pub created_at_ms: i64,
}

/// A VM snapshot; the spec is the VM's as it was, so a revert restores the disk set too.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRecord {
    pub vm: String,
    pub name: String,
    pub kind: SnapshotKind,
    pub vm_state: VmState,
    pub spec: VmSpec,
    /// The disk layout the memory state of a full snapshot expects.
    pub disk_ports: DiskPorts,
    pub created_at_ms: i64,
}

/// A managed network as stored; host-side parts (bridge, dnsmasq, nftables) are re-created from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRecord {
    pub name: String,
    pub mode: NetworkMode,
    /// The Linux bridge: ours for nat/isolated, the host's for bridge mode.
    pub bridge: String,
    /// `a.b.c.d/len` for nat and isolated networks.
    pub subnet: Option<String>,
    pub vlan: Option<u16>,
    pub created_at_ms: i64,
}

/// An entry of the event log. `kind` and `details` are the event's wire name and
/// facts (`vireo_api::EventKind`); the store keeps them as they are.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// Given by the store on append, larger than every id before it; ignored by `append_event`.
    pub id: u64,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub vm: Option<String>,
    pub kind: String,
    pub details: serde_json::Value,
}

/// What kind of object a store error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Vm,
    Pool,
    Volume,
    Snapshot,
    Network,
    Nic,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Vm => "VM",
            ObjectKind::Pool => "pool",
            ObjectKind::Volume => "volume",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Network => "network",
            ObjectKind::Nic => "NIC",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("VM '{0}' already exists")]
    Exists(String),
    #[error("VM '{0}' does not exist")]
    NotFound(String),
    #[error("{kind} '{name}' already exists")]
    ObjectExists { kind: ObjectKind, name: String },
    #[error("{kind} '{name}' does not exist")]
    ObjectNotFound { kind: ObjectKind, name: String },
    #[error("VM '{name}' was changed concurrently (expected revision {expected})")]
    Conflict { name: String, expected: u64 },
    #[error("state store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A VM written together with the events that report it (see [`Store::write_vm`]).
#[derive(Clone, Copy, Debug)]
pub enum VmWrite<'a> {
    /// A new VM; fails with `Exists` if the name is taken.
    Insert(&'a VmRecord),
    /// Replaces the VM if its stored revision still equals the record's `revision`.
    Update(&'a VmRecord),
}

/// Any other change, applied together with the events that report it (see [`Store::apply`]).
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// The VM and its snapshot records.
    DeleteVm(&'a str),
    InsertPool(&'a PoolRecord),
    /// A pool that holds no volumes.
    DeletePool(&'a str),
    InsertVolume(&'a VolumeRecord),
    DeleteVolume {
        pool: &'a str,
        name: &'a str,
    },
    InsertSnapshot(&'a SnapshotRecord),
    DeleteSnapshot {
        vm: &'a str,
        name: &'a str,
    },
    InsertNetwork(&'a NetworkRecord),
    DeleteNetwork(&'a str),
}

/// Writes go through two methods, [`Store::write_vm`] and [`Store::apply`],
/// each of which stores a change with the events that report it in one
/// transaction: after a crash, no event tells of a change that was not made,
/// and no change lacks its event. The rest of the writes are shorthands for
/// them without events.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts or updates a VM and appends each of `events`, in one transaction:
    /// both or neither. Returns the VM's new revision and the events' ids, in
    /// order. In the same transaction the oldest events go so that at most
    /// `retain` remain.
    async fn write_vm(
        &self,
        write: VmWrite<'_>,
        events: &[EventRecord],
        retain: u64,
    ) -> Result<(u64, Vec<u64>), StoreError>;
    /// Applies `change` and appends each of `events`, in one transaction: both
    /// or neither. Returns the events' ids, in order.
    async fn apply(&self, change: Change<'_>, events: &[EventRecord], retain: u64) -> Result<Vec<u64>, StoreError>;

    /// Stores a new VM; fails with `Exists` if the name is taken. Returns the record's revision.
    async fn insert_vm(&self, record: &VmRecord) -> Result<u64, StoreError> {
        Ok(self.write_vm(VmWrite::Insert(record), &[], 0).await?.0)
    }
    /// Replaces a VM if its stored revision still equals `record.revision`; returns the new revision.
    async fn update_vm(&self, record: &VmRecord) -> Result<u64, StoreError> {
        Ok(self.write_vm(VmWrite::Update(record), &[], 0).await?.0)
    }
    /// Deletes the VM and its snapshot records.
    async fn delete_vm(&self, name: &str) -> Result<(), StoreError> {
        self.apply(Change::DeleteVm(name), &[], 0).await.map(drop)
    }
    async fn insert_pool(&self, pool: &PoolRecord) -> Result<(), StoreError> {
        self.apply(Change::InsertPool(pool), &[], 0).await.map(drop)
    }
    /// Deletes a pool that holds no volumes.
    async fn delete_pool(&self, name: &str) -> Result<(), StoreError> {
        self.apply(Change::DeletePool(name), &[], 0).await.map(drop)
    }
    async fn insert_volume(&self, volume: &VolumeRecord) -> Result<(), StoreError> {
        self.apply(Change::InsertVolume(volume), &[], 0).await.map(drop)
    }
    async fn delete_volume(&self, pool: &str, name: &str) -> Result<(), StoreError> {
        self.apply(Change::DeleteVolume { pool, name }, &[], 0).await.map(drop)
    }
    async fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        self.apply(Change::InsertSnapshot(snapshot), &[], 0).await.map(drop)
    }
    async fn delete_snapshot(&self, vm: &str, name: &str) -> Result<(), StoreError> {
        self.apply(Change::DeleteSnapshot { vm, name }, &[], 0).await.map(drop)
    }
    async fn insert_network(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        self.apply(Change::InsertNetwork(network), &[], 0).await.map(drop)
    }
    async fn delete_network(&self, name: &str) -> Result<(), StoreError> {
        self.apply(Change::DeleteNetwork(name), &[], 0).await.map(drop)
    }
    /// Appends an event and returns its id; in the same transaction, the oldest
    /// events go so that at most `retain` remain.
    async fn append_event(&self, event: &EventRecord, retain: u64) -> Result<u64, StoreError>;

    async fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError>;
    /// All VMs, ordered by name.
    async fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError>;

    async fn get_pool(&self, name: &str) -> Result<Option<PoolRecord>, StoreError>;
    async fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError>;

    async fn get_volume(&self, pool: &str, name: &str) -> Result<Option<VolumeRecord>, StoreError>;
    /// Volumes of one pool, or of all pools; ordered by pool, then name.
    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeRecord>, StoreError>;
    /// Replaces the stored capacity (after a resize).
    async fn set_volume_capacity(&self, pool: &str, name: &str, capacity_bytes: u64) -> Result<(), StoreError>;

    /// Snapshots of a VM, oldest first.
    async fn list_snapshots(&self, vm: &str) -> Result<Vec<SnapshotRecord>, StoreError>;

    async fn get_network(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError>;
    /// All networks, ordered by name.
    async fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError>;

    /// Up to `limit` events in id order: those after `after`, or without it the
    /// latest ones; only `vm`'s if given.
    async fn list_events(
        &self,
        after: Option<u64>,
        vm: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
}
