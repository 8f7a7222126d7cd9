//! How a VM boots: the QEMU binary's capabilities (probed once per build of the
//! binary) and the kernel entry (PVH through the kernel cache, or as given).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vireo_api::{BootStatus, VmSpec};
use vireo_kernel::KernelCache;
use vireo_qemu::probe::BinaryStamp;
use vireo_qemu::{MachinePlan, QemuCaps, QemuError};

use super::VmManager;

/// The capabilities of the daemon's QEMU binary, asked again only when the binary changes.
pub(super) struct QemuProbe {
    binary: PathBuf,
    /// `data_dir/qemu-probe.json`: survives daemon restarts.
    cache_file: PathBuf,
    latest: tokio::sync::Mutex<Option<(BinaryStamp, Arc<QemuCaps>)>>,
}

impl QemuProbe {
    pub(super) fn new(binary: PathBuf, data_dir: &Path) -> Self {
        QemuProbe { binary, cache_file: data_dir.join("qemu-probe.json"), latest: tokio::sync::Mutex::new(None) }
    }

    /// A stat of the binary per call; QEMU itself runs only when the binary is new to us.
    pub(super) async fn caps(&self) -> Result<Arc<QemuCaps>, QemuError> {
        // Held across the probe on purpose: VMs starting together with a new binary
        // wait for one probe instead of each running QEMU three times.
        let mut latest = self.latest.lock().await;
        let stamp = BinaryStamp::of(&self.binary).ok();
        if let Some((known, caps)) = latest.as_ref()
            && Some(*known) == stamp
        {
            return Ok(caps.clone());
        }
        let caps = Arc::new(vireo_qemu::probe_cached(&self.binary, &self.cache_file).await?);
        if let Some(stamp) = stamp {
            *latest = Some((stamp, caps.clone()));
        }
        Ok(caps)
    }
}

/// What `vm show` reports about a plan.
pub(super) fn boot_status(plan: &MachinePlan) -> BootStatus {
    BootStatus {
        entry: plan.entry,
        firmware: plan.firmware,
        kernel: plan.kernel.as_ref().map(|path| path.display().to_string()),
    }
}

impl VmManager {
    /// The machine and boot entry for `spec` on this host. A kernel that can be booted
    /// through PVH is unpacked into the kernel cache on its first start (tens of ms for
    /// a distribution kernel) and taken from there afterwards.
    pub(super) async fn plan_machine(&self, spec: &VmSpec) -> Result<MachinePlan, QemuError> {
        let caps = self.probe.caps().await?;
        let plan = MachinePlan::new(spec, &caps);
        // With a display, the kernel is entered as given: through PVH it learns nothing of
        // the screen and could not show its console there.
        let Some(kernel) = spec.boot.kernel.clone().filter(|_| spec.boot.pvh && spec.display.is_none()) else {
            return Ok(plan);
        };
        let cache = self.kernels.clone();
        let prepared = tokio::task::spawn_blocking(move || cache.prepare(&kernel)).await;
        match prepared {
            Ok(Ok(prepared)) if prepared.entry == vireo_kernel::BootEntry::Pvh => {
                Ok(plan.with_pvh_kernel(prepared.path))
            }
            Ok(Ok(_)) => Ok(plan),
            // The kernel as given still boots; QEMU reports a kernel it cannot read.
            Ok(Err(err)) => {
                tracing::warn!(vm = %spec.name, error = %err, "cannot use the kernel's PVH entry; booting it as given");
                Ok(plan)
            }
            Err(join) => {
                tracing::warn!(vm = %spec.name, error = %join, "kernel preparation did not finish; booting it as given");
                Ok(plan)
            }
        }
    }

    /// The QEMU binary's first `--version` line (empty if it cannot be asked).
    pub(super) async fn qemu_version(&self) -> String {
        match self.probe.caps().await {
            Ok(caps) => caps.version.clone(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot ask QEMU for its version");
                String::new()
            }
        }
    }
}

/// The kernel cache of a data directory.
pub(super) fn kernel_cache(data_dir: &Path) -> Arc<KernelCache> {
    Arc::new(KernelCache::new(data_dir.join("kernels")))
}
