//! The report of `GET /v1/host/check`: can this host run VMs, and how.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// One thing the host was checked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostCheckItem {
    /// What was checked, e.g. `qemu`, `accelerator`, `cgroups`.
    pub name: String,
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// How to fix it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The whole host report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostCheck {
    /// The accelerator `auto` resolves to on this host: `kvm` or `tcg`.
    pub accel: String,
    /// Why `auto` resolves that way.
    pub accel_reason: String,
    pub items: Vec<HostCheckItem>,
}

/// `GET /v1/host`: what this host is and how busy it is, for an overview page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    pub hostname: String,
    /// The daemon's version.
    pub version: String,
    /// The QEMU binary's version line (empty if QEMU could not be asked).
    pub qemu_version: String,
    /// What `accel = "auto"` resolves to here: `kvm` or `tcg`.
    pub accel: String,
    /// Logical CPUs the daemon may run on.
    pub cpus: u32,
    /// Run-queue load averages over 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
    pub memory_total_bytes: u64,
    /// What the host can give new guests without swapping (`MemAvailable`).
    pub memory_available_bytes: u64,
    /// Seconds since the host booted.
    pub uptime_secs: u64,
}
