//! Lifecycle operations: start, stop, pause, resume, restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vireo_api::{EventKind, StopRequest, VmState};
use vireo_core::{Action, RuntimeRecord, VmRecord};
use vireo_qemu::{Incoming, Launch, RuntimePaths};

use super::boot::boot_status;
use super::{Slot, VmManager, ensure};
use crate::error::ServerError;

/// How long a graceful stop waits for the guest unless the request says otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU gets to disappear after SIGKILL before we report failure.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(10);
/// Loading a saved state reads the whole guest memory from disk.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

/// How a start begins the guest.
pub(super) enum StartMode {
    /// A fresh boot.
    Boot,
    /// Resume from a state saved with `vm save`.
    Restore(PathBuf),
    /// Start at the moment of a full snapshot.
    LoadSnapshot(String),
    /// Receive the VM from another host (live migration); it stays `incoming`
    /// until the migration's `finish` runs it.
    Incoming,
}

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
        let mode = if record.state == VmState::Saved { self.restore_mode(&record) } else { StartMode::Boot };
        self.start_locked(&slot, &mut record, mode).await?;
        Ok(record)
    }

    pub(super) async fn start_locked(
        self: &Arc<Self>,
        slot: &Slot,
        record: &mut VmRecord,
        mode: StartMode,
    ) -> Result<(), ServerError> {
        let name = record.name.clone();
        let choice = self
            .accel_facts
            .choose(record.spec.accel)
            .map_err(|source| ServerError::Accel { name: name.clone(), source })?;
        let state_if_failed = if matches!(mode, StartMode::Restore(_)) { VmState::Saved } else { VmState::Stopped };
        if matches!(mode, StartMode::Boot) {
            // A fresh boot plugs every disk of the spec in from the start.
            record.disk_ports.clear();
        }
        let transitional = if matches!(mode, StartMode::Incoming) { VmState::Incoming } else { VmState::Starting };
        self.save_state(record, transitional).await?;
        let paths = RuntimePaths::new(self.vm_dir(&name));
        let disks = match self.resolve_disks(&record.spec.disks, &record.disk_ports).await {
            Ok(disks) => disks,
            Err(err) => return Err(self.fail_start(record, err, state_if_failed).await),
        };
        let (incoming, loadvm) = match &mode {
            StartMode::Boot => (None, None),
            StartMode::Restore(file) => (Some(Incoming::StateFile(file.clone())), None),
            StartMode::LoadSnapshot(tag) => (None, Some(tag.clone())),
            StartMode::Incoming => (Some(Incoming::Migration), None),
        };
        let nics = match self.open_nics(&name, &record.spec.nics, &record.disk_ports).await {
            Ok(nics) => nics,
            Err(err) => return Err(self.fail_start(record, err, state_if_failed).await),
        };
        let machine = match self.plan_machine(&record.spec).await {
            Ok(machine) => machine,
            Err(source) => {
                return Err(self.fail_start(record, qemu_error(&name, "start")(source), state_if_failed).await);
            }
        };
        let boot = boot_status(&machine);
        let launch = Launch { spec: &record.spec, accel: choice.accel, disks, incoming, loadvm, nics, machine };
        let process = match vireo_qemu::spawn(&self.qemu_binary, &launch, &paths).await {
            Ok(process) => process,
            Err(source) => {
                return Err(self.fail_start(record, qemu_error(&name, "start")(source), state_if_failed).await);
            }
        };
        let (pid, pid_start_ticks) = (process.pid, process.pid_start_ticks);
        tracing::info!(vm = %name, entry = boot.entry.as_str(), firmware = boot.firmware.as_str(), "QEMU started");
        let runtime_dir = paths.dir().to_path_buf();
        record.runtime =
            Some(RuntimeRecord { pid, pid_start_ticks, accel: choice.accel, runtime_dir, boot: Some(boot) });
        record.last_error = None;
        self.save_state(record, transitional).await?;
        let live = match self.attach(&name, process, &paths, record.spec.console.log_size.bytes()) {
            Ok(live) => live,
            Err(source) => {
                vireo_qemu::kill(pid, pid_start_ticks).ok();
                let path = paths.dir().display().to_string();
                return Err(self.fail_start(record, ServerError::Io { path, source }, state_if_failed).await);
            }
        };
        let resumed = match &mode {
            StartMode::Incoming => return Ok(()),
            StartMode::Restore(_) => {
                let loaded = live.qmp.wait_incoming(RESTORE_TIMEOUT).await.map_err(qemu_error(&name, "restore"));
                match loaded {
                    Ok(()) => live.qmp.cont().await.map_err(qemu_error(&name, "run")),
                    Err(err) => Err(err),
                }
            }
            _ => live.qmp.cont().await.map_err(qemu_error(&name, "run")),
        };
        if let Err(err) = resumed {
            live.kill();
            live.wait_exit(KILL_GRACE).await;
            slot.set_live(None);
            return Err(self.fail_start(record, err, state_if_failed).await);
        }
        if let StartMode::Restore(file) = &mode {
            // The saved state is used up: the guest has moved on from it.
            if let Err(err) = std::fs::remove_file(file) {
                tracing::warn!(vm = %name, error = %err, "cannot remove the used saved state");
            }
        }
        let restored = matches!(mode, StartMode::Restore(_)).then_some(EventKind::VmRestored {});
        self.save_state_reporting(record, VmState::Running, restored).await?;
        Ok(())
    }

    /// Records a failed start (with the reason) and passes the error on. A
    /// failed restore leaves the VM saved, so the user can retry or delete it.
    async fn fail_start(&self, record: &mut VmRecord, error: ServerError, state: VmState) -> ServerError {
        record.runtime = None;
        record.last_error = Some(error.message());
        if let Err(err) = self.save_state(record, state).await {
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

    pub(super) async fn stop_locked(
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
        self.start_locked(&slot, &mut record, StartMode::Boot).await?;
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

/// Writing the guest's memory to disk; generous for big guests on slow disks.
const SAVE_TIMEOUT: Duration = Duration::from_secs(600);
const SAVED_STATE_FILE: &str = "saved.state";

impl VmManager {
    fn saved_state_file(&self, name: &str) -> PathBuf {
        self.vm_dir(name).join(SAVED_STATE_FILE)
    }

    fn restore_mode(&self, record: &VmRecord) -> StartMode {
        StartMode::Restore(self.saved_state_file(&record.name))
    }

    /// Suspends the VM to disk: its memory goes to a file in its directory and QEMU exits.
    pub async fn save(&self, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::Save)?;
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        let paths = RuntimePaths::new(self.vm_dir(name));
        let file = self.saved_state_file(name);
        live.qmp.save_to_file(&paths, &file, SAVE_TIMEOUT).await.map_err(qemu_error(name, "save"))?;
        // The state is on disk; QEMU (now paused after the migration) has done its part.
        if live.qmp.quit().await.is_err() || !live.wait_exit(KILL_GRACE).await {
            live.kill();
            live.wait_exit(KILL_GRACE).await;
        }
        slot.set_live(None);
        record.runtime = None;
        self.save_state(&mut record, VmState::Saved).await?;
        Ok(record)
    }

    /// Resumes a saved VM where it was.
    pub async fn restore(self: &Arc<Self>, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::Restore)?;
        let mode = self.restore_mode(&record);
        self.start_locked(&slot, &mut record, mode).await?;
        Ok(record)
    }
}
