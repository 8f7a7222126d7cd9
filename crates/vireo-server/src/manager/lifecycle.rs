//! Lifecycle operations: start, stop, pause, resume, restart.

use std::sync::Arc;
use std::time::Duration;

use vireo_api::{StopRequest, VmState};
use vireo_core::{Action, RuntimeRecord, VmRecord};
use vireo_qemu::{Launch, RuntimePaths};

use super::{Slot, VmManager, ensure};
use crate::error::ServerError;

/// How long a graceful stop waits for the guest unless the request says otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU gets to disappear after SIGKILL before we report failure.
const KILL_GRACE: Duration = Duration::from_secs(10);

fn qemu_error(name: &str, action: &'static str) -> impl FnOnce(vireo_qemu::QemuError) -> ServerError {
    let name = name.to_string();
    move |source| ServerError::Qemu { name, action, source }
}

impl VmManager {
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::Start)?;
        self.start_locked(&slot, &mut record).await?;
        Ok(record)
    }

    async fn start_locked(self: &Arc<Self>, slot: &Slot, record: &mut VmRecord) -> Result<(), ServerError> {
        let name = record.name.clone();
        let choice = self
            .accel_facts
            .choose(record.spec.accel)
            .map_err(|source| ServerError::Accel { name: name.clone(), source })?;
        self.save_state(record, VmState::Starting).await?;
        let paths = RuntimePaths::new(self.vm_dir(&name));
        let disks = match self.resolve_disks(&record.spec.disks).await {
            Ok(disks) => disks,
            Err(err) => return Err(self.fail_start(record, err).await),
        };
        let launch = Launch { spec: &record.spec, accel: choice.accel, disks };
        let process = match vireo_qemu::spawn(&self.qemu_binary, &launch, &paths).await {
            Ok(process) => process,
            Err(source) => return Err(self.fail_start(record, qemu_error(&name, "start")(source)).await),
        };
        let (pid, pid_start_ticks) = (process.pid, process.pid_start_ticks);
        record.runtime =
            Some(RuntimeRecord { pid, pid_start_ticks, accel: choice.accel, runtime_dir: paths.dir().to_path_buf() });
        record.last_error = None;
        self.save_state(record, VmState::Starting).await?;
        let live = match self.attach(&name, process, &paths, record.spec.console.log_size.bytes()) {
            Ok(live) => live,
            Err(source) => {
                vireo_qemu::kill(pid, pid_start_ticks).ok();
                let path = paths.dir().display().to_string();
                return Err(self.fail_start(record, ServerError::Io { path, source }).await);
            }
        };
        if let Err(source) = live.qmp.cont().await {
            live.kill();
            live.wait_exit(KILL_GRACE).await;
            slot.set_live(None);
            return Err(self.fail_start(record, qemu_error(&name, "run")(source)).await);
        }
        self.save_state(record, VmState::Running).await
    }

    /// Records a failed start (stopped, with the reason) and passes the error on.
    async fn fail_start(&self, record: &mut VmRecord, error: ServerError) -> ServerError {
        record.runtime = None;
        record.last_error = Some(error.message());
        if let Err(err) = self.save_state(record, VmState::Stopped).await {
            tracing::error!(vm = %record.name, error = %err, "cannot record failed start");
        }
        error
    }

    pub async fn stop(self: &Arc<Self>, name: &str, request: &StopRequest) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        // Killing first, outside the job lock, is what lets a forced stop
        // rescue a VM whose start or graceful stop is hanging.
        let killed = request.force && slot.live().inspect(|live| live.kill()).is_some();
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        if killed && record.state == VmState::Stopped {
            // The operation we interrupted has already recorded the stop.
            return Ok(record);
        }
        ensure(&record, if request.force { Action::ForceStop } else { Action::Stop })?;
        let timeout = request.timeout_secs.map(Duration::from_secs).unwrap_or(DEFAULT_STOP_TIMEOUT);
        self.stop_locked(&slot, &mut record, request.force, timeout).await?;
        Ok(record)
    }

    async fn stop_locked(
        &self,
        slot: &Slot,
        record: &mut VmRecord,
        force: bool,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        if let Some(live) = slot.live() {
            self.save_state(record, VmState::Stopping).await?;
            let powered_off = !force && self.power_off_gracefully(record, &live, timeout).await;
            if !powered_off {
                live.kill();
                if !live.wait_exit(KILL_GRACE).await {
                    return Err(ServerError::StopTimeout { name: record.name.clone(), seconds: timeout.as_secs() });
                }
            }
        }
        slot.set_live(None);
        record.runtime = None;
        self.save_state(record, VmState::Stopped).await
    }

    /// Presses the ACPI power button and waits for QEMU to exit; false if it did not in time.
    async fn power_off_gracefully(&self, record: &VmRecord, live: &super::Live, timeout: Duration) -> bool {
        // A paused guest cannot react to the power button.
        if let Err(err) = live.qmp.cont().await {
            tracing::warn!(vm = %record.name, error = %err, "cannot resume before power-off");
        }
        if let Err(err) = live.qmp.system_powerdown().await {
            tracing::warn!(vm = %record.name, error = %err, "cannot press the power button; stopping hard");
            return false;
        }
        let exited = live.wait_exit(timeout).await;
        if !exited {
            tracing::warn!(vm = %record.name, seconds = timeout.as_secs(), "guest ignored the power button; stopping hard");
        }
        exited
    }

    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::Restart)?;
        self.stop_locked(&slot, &mut record, false, DEFAULT_STOP_TIMEOUT).await?;
        self.start_locked(&slot, &mut record).await?;
        Ok(record)
    }

    pub async fn pause(&self, name: &str) -> Result<VmRecord, ServerError> {
        self.switch_run_state(name, Action::Pause, VmState::Paused).await
    }

    pub async fn resume(&self, name: &str) -> Result<VmRecord, ServerError> {
        self.switch_run_state(name, Action::Resume, VmState::Running).await
    }

    async fn switch_run_state(&self, name: &str, action: Action, to: VmState) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, action)?;
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        let (result, verb) = match to {
            VmState::Paused => (live.qmp.stop().await, "pause"),
            _ => (live.qmp.cont().await, "resume"),
        };
        result.map_err(qemu_error(name, verb))?;
        self.save_state(&mut record, to).await?;
        Ok(record)
    }
}
