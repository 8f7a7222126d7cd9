//! VM snapshots and save/restore.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vm::VmState;

/// Body of `POST /v1/vms/{name}/snapshots`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    pub name: String,
    /// Only the disks, not the memory, of a running VM.
    #[serde(default)]
    pub disk_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Memory and disks of a running or paused VM: revert returns to that very moment.
    Full,
    /// Disks only: revert gives the disks back as they were; the VM boots from them.
    Disk,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub vm: String,
    pub name: String,
    pub kind: SnapshotKind,
    /// The VM's state when the snapshot was taken.
    pub vm_state: VmState,
    /// RFC 3339.
    pub created_at: String,
}
