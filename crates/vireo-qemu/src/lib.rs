//! Vireo's QEMU driver: turns a validated `VmSpec` into a QEMU command line,
//! starts QEMU (or re-attaches to one started by an earlier daemon), talks
//! typed QMP to it (including disk hot-plug, internal snapshots and saving the
//! VM's state to a file), reports its events, and answers `vireo host check`.
//!
//! It owns the per-VM runtime directory (sockets, pid file, QMP and QEMU
//! logs) and nothing else: it must not touch the state store or serve HTTP.
//! The daemon decides *when* to start, stop or kill a VM; this crate only
//! knows *how*.

pub mod argv;
pub mod error;
pub mod host;
mod hotplug;
mod migration;
pub mod paths;
pub mod probe;
pub mod process;
pub mod qmp;
mod save;
mod snapshot;
mod stats;

pub use argv::{
    DiskAttachment, Incoming, Launch, LaunchConfig, MachinePlan, NicAttachment, NicBackend, NicFds, build_argv,
};
pub use error::QemuError;
pub use host::{
    find_qemu_binary, gather_accel_facts, host_check, load_average, memory_available_bytes, memory_total_bytes,
    tool_version, uptime_secs,
};
pub use hotplug::AttachedDisk;
pub use migration::{BlockJob, MigrationEvents, MigrationInfo, MigrationSettings, RamStats};
pub use paths::RuntimePaths;
pub use probe::{QemuCaps, probe, probe_cached};
pub use process::{
    ProcessUsage, VmProcess, is_vm_qemu, kill, process_alive, process_start_ticks, process_usage, reattach, spawn,
    thread_cpu_seconds,
};
pub use qmp::{QemuEvent, QmpClient, QmpCommand, RoundTripObserver, RunStatus, observe_round_trips};
pub use stats::{DiskStats, VcpuThread};
