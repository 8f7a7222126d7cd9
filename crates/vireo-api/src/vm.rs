//! A VM as the API reports it, and the bodies of lifecycle requests.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::spec::VmSpec;

/// Lifecycle state of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Paused,
    Stopping,
    Crashed,
    /// Stopped with its memory saved to disk; `start` (or `restore`) resumes it where it was.
    Saved,
    /// Live-migrating to another host; still running here.
    Migrating,
    /// Being received from another host by a live migration; not running here yet.
    Incoming,
}

impl VmState {
    /// Every state, e.g. for one metric series per state.
    pub const ALL: [VmState; 9] = [
        VmState::Stopped,
        VmState::Starting,
        VmState::Running,
        VmState::Paused,
        VmState::Stopping,
        VmState::Crashed,
        VmState::Saved,
        VmState::Migrating,
        VmState::Incoming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopping => "stopping",
            VmState::Crashed => "crashed",
            VmState::Saved => "saved",
            VmState::Migrating => "migrating",
            VmState::Incoming => "incoming",
        }
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A defined VM with its spec and current state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Vm {
    pub name: String,
    pub state: VmState,
    pub spec: VmSpec,
    /// The accelerator the running QEMU uses (`kvm` or `tcg`); absent while stopped.
    pub accel: Option<String>,
    /// Process id of the VM's QEMU; absent while stopped.
    pub pid: Option<u32>,
    /// When the VM was defined (RFC 3339).
    pub created_at: String,
    /// When the state last changed (RFC 3339).
    pub state_changed_at: String,
    /// Why the VM last crashed or failed to start, if it did.
    pub last_error: Option<String>,
    /// Each NIC with its MAC and, from the network's DHCP lease, its IPv4 address.
    #[serde(default)]
    pub nics: Vec<crate::network::NicStatus>,
    /// The migration under way, while one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::migration::MigrationStatus>,
    /// How the running guest was booted; absent while stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootStatus>,
}

/// How QEMU was told to boot a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BootStatus {
    pub entry: BootEntry,
    /// The firmware that ran (`seabios` or `qboot`).
    pub firmware: crate::spec::Firmware,
    /// The file QEMU loaded as the kernel: the spec's kernel, or the vmlinux unpacked from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// Where the guest's own code was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootEntry {
    /// The kernel's PVH entry: QEMU loaded an uncompressed ELF kernel.
    Pvh,
    /// The Linux boot protocol: the kernel as given (a bzImage decompresses itself).
    Linux,
    /// The firmware booted a disk.
    Firmware,
}

impl BootEntry {
    pub fn as_str(self) -> &'static str {
        match self {
            BootEntry::Pvh => "pvh",
            BootEntry::Linux => "linux",
            BootEntry::Firmware => "firmware",
        }
    }
}

/// Options of `POST /v1/vms/{name}/stop`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Stop at once (like pulling the plug) instead of asking the guest to power off.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for a graceful power-off before stopping hard (default 60).
    pub timeout_secs: Option<u64>,
}

/// Query of `GET /v1/vms/{name}/logs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Return at most this many bytes from the end of the log.
    pub tail_bytes: Option<u64>,
}

/// `GET /v1/vms/{name}/history`: the daemon's recent samples of a VM, oldest first,
/// for charts. Kept in memory for the last hour (lost when the daemon restarts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmHistory {
    pub vm: String,
    /// Seconds between samples.
    pub interval_secs: u64,
    pub points: Vec<VmHistoryPoint>,
}

/// One sample. Rates are over the time since the previous sample; they are absent for
/// the first sample of a QEMU process (nothing to compare with) and while it is stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmHistoryPoint {
    /// When the sample was taken (RFC 3339).
    pub at: String,
    pub state: VmState,
    /// CPU used by the VM's QEMU, in percent of one host CPU.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the VM's QEMU.
    pub memory_rss_bytes: Option<u64>,
    pub disk_read_bytes_per_sec: Option<f64>,
    pub disk_write_bytes_per_sec: Option<f64>,
    /// Bytes per second the guest received over all its NICs.
    pub net_rx_bytes_per_sec: Option<f64>,
    /// Bytes per second the guest sent over all its NICs.
    pub net_tx_bytes_per_sec: Option<f64>,
}
