//! A VM's attached QEMU: its QMP client, console hub, and the task that turns
//! QEMU's events into state changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use vireo_api::VmState;
use vireo_qemu::{QemuEvent, QmpClient, RuntimePaths, VmProcess};

use super::VmManager;
use crate::console::{ConsoleHub, ConsoleLog, tail_of_file};

pub struct Live {
    pub pid: u32,
    pub pid_start_ticks: u64,
    pub qmp: QmpClient,
    pub console: Arc<ConsoleHub>,
    exited: watch::Receiver<bool>,
    /// Set when the daemon kills QEMU itself: that exit is a stop, not a crash.
    killed: Arc<AtomicBool>,
}

impl Live {
    /// Waits until QEMU has exited, at most `limit`; true if it has.
    pub async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exited = self.exited.clone();
        tokio::time::timeout(limit, exited.wait_for(|gone| *gone)).await.is_ok()
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Err(err) = vireo_qemu::kill(self.pid, self.pid_start_ticks) {
            tracing::warn!(pid = self.pid, error = %err, "cannot kill QEMU");
        }
    }
}

impl VmManager {
    /// Wires a freshly spawned or re-attached QEMU into the daemon.
    pub(super) fn attach(
        self: &Arc<Self>,
        name: &str,
        process: VmProcess,
        paths: &RuntimePaths,
        log_size: u64,
    ) -> Result<Arc<Live>, std::io::Error> {
        let log = ConsoleLog::open(paths.dir(), log_size)?;
        let console = ConsoleHub::start(process.console, log);
        let (exited_tx, exited) = watch::channel(false);
        let killed = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live {
            pid: process.pid,
            pid_start_ticks: process.pid_start_ticks,
            qmp: process.qmp,
            console,
            exited,
            killed: killed.clone(),
        });
        self.slot(name).set_live(Some(live.clone()));
        let manager = self.clone();
        let name = name.to_string();
        let pid = process.pid;
        let qemu_log = paths.qemu_log();
        let mut events = process.events;
        tokio::spawn(async move {
            let powered_off = AtomicBool::new(false);
            while let Some(event) = events.recv().await {
                match event {
                    QemuEvent::Shutdown { guest_initiated: true } => powered_off.store(true, Ordering::SeqCst),
                    // Never wait here for the job lock: the operation holding it (a save, a
                    // snapshot) may itself be waiting for events behind this one, such as Exited.
                    QemuEvent::Paused | QemuEvent::Resumed => {
                        let (manager, name) = (manager.clone(), name.clone());
                        tokio::spawn(async move { manager.sync_run_state(&name, pid).await });
                    }
                    QemuEvent::Exited => break,
                    QemuEvent::Shutdown { .. } | QemuEvent::Reset | QemuEvent::DeviceDeleted { .. } => {}
                }
            }
            let _ = exited_tx.send(true);
            let cause = if powered_off.load(Ordering::SeqCst) || killed.load(Ordering::SeqCst) {
                None
            } else {
                let detail = tail_of_file(&qemu_log, 2000).map(|t| format!(": {t}")).unwrap_or_default();
                Some(format!("QEMU exited unexpectedly{detail}"))
            };
            manager.on_qemu_exit(&name, pid, cause).await;
        });
        Ok(live)
    }

    /// QEMU stopped or resumed its vCPUs. Most of the time an operation did it
    /// and has recorded the result; otherwise (a guest error pausing the VM) the
    /// record must follow. Events may be handled late and out of order, so the
    /// state is taken from QEMU itself, once the job lock is free.
    async fn sync_run_state(&self, name: &str, pid: u32) {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let Ok(Some(mut record)) = self.store.get_vm(name).await else { return };
        let ours = record.runtime.as_ref().is_some_and(|r| r.pid == pid);
        let Some(live) = slot.live().filter(|live| live.pid == pid) else { return };
        if !ours || !matches!(record.state, VmState::Running | VmState::Paused) {
            return;
        }
        let Ok(status) = live.qmp.query_status().await else { return };
        let state = if status.running { VmState::Running } else { VmState::Paused };
        if record.state != state
            && let Err(err) = self.save_state(&mut record, state).await
        {
            tracing::error!(vm = name, error = %err, "cannot record state change");
        }
    }

    /// QEMU is gone. An operation that expected it (stop) has already cleared
    /// the runtime; otherwise the guest powered itself off, or QEMU crashed.
    async fn on_qemu_exit(&self, name: &str, pid: u32, crash: Option<String>) {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let Ok(Some(mut record)) = self.store.get_vm(name).await else { return };
        if record.runtime.as_ref().is_none_or(|r| r.pid != pid) {
            return;
        }
        if record.state == VmState::Incoming {
            // The migration stream broke or the source gave up: nothing of it may stay.
            return self.discard_incoming(&slot, &record).await;
        }
        slot.set_live(None);
        record.runtime = None;
        let state = match crash {
            Some(reason) if record.state != VmState::Stopping => {
                tracing::warn!(vm = name, %reason, "VM crashed");
                record.last_error = Some(reason);
                VmState::Crashed
            }
            _ => VmState::Stopped,
        };
        if let Err(err) = self.save_state(&mut record, state).await {
            tracing::error!(vm = name, error = %err, "cannot record that QEMU exited");
        }
    }
}
