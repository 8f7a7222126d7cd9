//! The host as the overview page sees it (`GET /v1/host`).

use vireo_api::{Accel, HostInfo};

use super::VmManager;

impl VmManager {
    /// This host's facts and load for `GET /v1/host`; a figure /proc cannot give is 0.
    pub async fn host_info(&self) -> HostInfo {
        let accel = match self.accel_facts.choose(Accel::Auto) {
            Ok(choice) => choice.accel,
            Err(_) => Accel::Tcg,
        };
        HostInfo {
            hostname: nix::unistd::gethostname().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            qemu_version: self.qemu_version().await,
            accel: accel.as_str().to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            load_average: vireo_qemu::load_average().unwrap_or_default(),
            memory_total_bytes: vireo_qemu::memory_total_bytes().unwrap_or_default(),
            memory_available_bytes: vireo_qemu::memory_available_bytes().unwrap_or_default(),
            uptime_secs: vireo_qemu::uptime_secs().unwrap_or_default(),
        }
    }
}
