//! Live migration: the request a user sends to the source daemon, the status
//! it reports, and the calls the source daemon makes on the destination daemon.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::{DiskFormat, VmSpec};

/// Body of `POST /v1/vms/{name}/migrate`.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The destination daemon's API address, `http://HOST:PORT`.
    pub to: String,
    /// The destination daemon's API token; used for the daemon-to-daemon calls only, never stored or logged.
    pub to_token: String,
    /// Copy the VM's volumes to the destination (NBD + block mirror) instead of expecting shared storage.
    #[serde(default)]
    pub copy_storage: bool,
    /// Longest pause of the guest at switch-over, in milliseconds (QEMU's `downtime-limit`; default 30).
    pub max_downtime_ms: Option<u64>,
    /// Bandwidth limit of the memory stream in MiB/s (default: no limit).
    pub bandwidth_mib: Option<u64>,
    /// Switch to post-copy after the first pass over memory, so that any guest converges.
    #[serde(default)]
    pub postcopy: bool,
}

impl std::fmt::Debug for MigrateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateRequest")
            .field("to", &self.to)
            .field("to_token", &"<redacted>")
            .field("copy_storage", &self.copy_storage)
            .field("max_downtime_ms", &self.max_downtime_ms)
            .field("bandwidth_mib", &self.bandwidth_mib)
            .field("postcopy", &self.postcopy)
            .finish()
    }
}

/// Where a migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// The destination is being asked to get ready.
    Preparing,
    /// Disks are being copied to the destination (`copy_storage`).
    CopyingDisks,
    /// Memory is being copied while the guest runs on the source.
    Migrating,
    /// The guest runs on the destination, which pulls the remaining memory from the source.
    Postcopy,
    /// The guest is paused for the last pass and the hand-over to the destination.
    SwitchingOver,
    /// The VM runs on the destination and is gone from the source.
    Completed,
    /// The migration failed; the VM still runs on the source.
    Failed,
    /// The migration was cancelled; the VM still runs on the source.
    Cancelled,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Preparing => "preparing",
            MigrationPhase::CopyingDisks => "copying_disks",
            MigrationPhase::Migrating => "migrating",
            MigrationPhase::Postcopy => "postcopy",
            MigrationPhase::SwitchingOver => "switching_over",
            MigrationPhase::Completed => "completed",
            MigrationPhase::Failed => "failed",
            MigrationPhase::Cancelled => "cancelled",
        }
    }

    /// Whether the migration has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, MigrationPhase::Completed | MigrationPhase::Failed | MigrationPhase::Cancelled)
    }
}

impl std::fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a VM's latest migration, as the source daemon sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MigrationStatus {
    pub vm: String,
    /// The destination daemon's address.
    pub destination: String,
    pub phase: Option<MigrationPhase>,
    pub copy_storage: bool,
    pub postcopy: bool,
    /// When the migration began (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339), once it has.
    pub finished_at: Option<String>,
    /// Guest memory to copy, in bytes.
    pub memory_total_bytes: u64,
    /// Memory sent so far (QEMU's `ram.transferred`).
    pub memory_transferred_bytes: u64,
    /// Memory still to send in this pass (QEMU's `ram.remaining`).
    pub memory_remaining_bytes: u64,
    /// How fast the guest dirties memory, in bytes per second.
    pub dirty_rate_bytes_per_sec: u64,
    /// Passes over memory so far.
    pub memory_passes: u64,
    /// How far the guest's vCPUs are throttled (auto-converge), in percent.
    pub cpu_throttle_percent: u64,
    /// Disk data to copy (`copy_storage`), in bytes.
    pub disk_total_bytes: u64,
    /// Disk data copied so far.
    pub disk_copied_bytes: u64,
    /// QEMU's estimate of the pause at switch-over, in milliseconds.
    pub expected_downtime_ms: Option<u64>,
    /// The guest's pause at switch-over as QEMU measured it, once completed.
    pub downtime_ms: Option<u64>,
    /// From the destination's go-ahead to the guest running there (the hand-over on top of `downtime_ms`).
    pub handover_ms: Option<u64>,
    /// QEMU's total migration time, once completed.
    pub total_time_ms: Option<u64>,
    /// Why the migration failed or was cancelled.
    pub error: Option<String>,
}

/// Body of `POST /v1/migrations/incoming`: the source daemon asks the
/// destination daemon to get ready to receive a VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingMigration {
    pub spec: VmSpec,
    /// Hot-plug ports of hot-plugged disks (as the source recorded them): the
    /// destination's QEMU must have the same devices in the same places.
    #[serde(default)]
    pub disk_ports: BTreeMap<String, u32>,
    /// First line of the source's `qemu-system-x86_64 --version`.
    pub qemu_version: String,
    /// The source copies volumes over NBD: the destination creates them empty.
    #[serde(default)]
    pub copy_storage: bool,
    #[serde(default)]
    pub postcopy: bool,
    /// The VM's volumes, one per volume disk of the spec.
    #[serde(default)]
    pub volumes: Vec<IncomingVolume>,
    /// Proof of shared storage: files the source has just written into its pools.
    #[serde(default)]
    pub probes: Vec<StorageProbe>,
}

/// A volume of the migrating VM as the source has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncomingVolume {
    pub pool: String,
    pub name: String,
    pub format: DiskFormat,
    pub capacity_bytes: u64,
}

/// A file the source wrote into a pool; the destination sees shared storage
/// if its pool of the same name has the same path and the same file in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StorageProbe {
    pub pool: String,
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub file: String,
    pub content: String,
}

/// Reply to `POST /v1/migrations/incoming`: where the source sends the VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncomingReady {
    /// QEMU migration URI the destination's QEMU listens on, e.g. `tcp:10.0.0.2:40123`.
    pub migration_uri: String,
    /// With `copy_storage`: the NBD server exporting the new volumes, one export
    /// per disk named by its index in the spec (`disk0`, `disk1`, ...).
    pub nbd: Option<NbdServer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NbdServer {
    pub host: String,
    pub port: u16,
}
