//! Recovery on daemon start: find every QEMU the previous daemon left
//! running and take it over again; record the ones that died meanwhile.

use std::sync::Arc;

use futures_util::future::join_all;
use vireo_api::VmState;
use vireo_core::VmRecord;
use vireo_core::state::has_process;
use vireo_qemu::RuntimePaths;

use super::VmManager;
use crate::error::ServerError;

impl VmManager {
    /// Re-attaches to the VMs whose QEMU still runs; all VMs concurrently.
    pub async fn recover(self: &Arc<Self>) -> Result<(), ServerError> {
        let records = self.store.list_vms().await?;
        let work = records.into_iter().filter(|r| has_process(r.state)).map(|record| {
            let manager = self.clone();
            async move {
                let name = record.name.clone();
                if let Err(err) = manager.recover_one(record).await {
                    tracing::error!(vm = %name, error = %err.message(), "cannot recover VM");
                }
            }
        });
        join_all(work).await;
        Ok(())
    }

    async fn recover_one(self: &Arc<Self>, mut record: VmRecord) -> Result<(), ServerError> {
        let slot = self.slot(&record.name);
        let _job = slot.job.lock().await;
        let paths = RuntimePaths::new(self.vm_dir(&record.name));
        if record.state == VmState::Incoming {
            // Whatever the source did meanwhile, it no longer counts on this half-received VM.
            kill_unrecorded_qemu(&paths);
            self.discard_incoming(&slot, &record).await;
            return Ok(());
        }
        let Some(runtime) = record.runtime.clone() else {
            // The daemon died between marking the VM starting and recording
            // its QEMU: a paused QEMU may exist that nobody knows of.
            kill_unrecorded_qemu(&paths);
            record.last_error = Some("the daemon stopped while the VM was starting".into());
            return self.save_state(&mut record, VmState::Stopped).await;
        };
        let reattached = match vireo_qemu::reattach(runtime.pid, runtime.pid_start_ticks, &paths).await {
            Ok(process) => self.attach(&record.name, process, &paths, record.spec.console.log_size.bytes()).ok(),
            Err(err) => {
                tracing::warn!(vm = %record.name, error = %err, "QEMU is gone");
                None
            }
        };
        let Some(live) = reattached else {
            vireo_qemu::kill(runtime.pid, runtime.pid_start_ticks).ok();
            record.runtime = None;
            let state = if record.state == VmState::Stopping {
                VmState::Stopped
            } else if record.state == VmState::Migrating {
                record.last_error = Some("QEMU exited during a migration; the VM may run on the destination".into());
                VmState::Crashed
            } else {
                record.last_error = Some("QEMU exited while the daemon was not running".into());
                VmState::Crashed
            };
            return self.save_state(&mut record, state).await;
        };
        if record.state == VmState::Migrating {
            self.abandon_migration(&record, &live).await;
        }
        let state = match live.qmp.query_status().await {
            Ok(status) if status.running => VmState::Running,
            // The previous daemon died between spawning QEMU and letting it run.
            Ok(status) if status.status == "prelaunch" => match live.qmp.cont().await {
                Ok(()) => VmState::Running,
                Err(_) => VmState::Paused,
            },
            Ok(status) => {
                if status.status == "postmigrate" {
                    record.last_error = Some(
                        "the daemon restarted during a migration that had completed: the VM may run on the \
                         destination; check there before resuming it here"
                            .into(),
                    );
                }
                VmState::Paused
            }
            Err(err) => {
                tracing::warn!(vm = %record.name, error = %err, "cannot query re-attached QEMU");
                record.state
            }
        };
        tracing::info!(vm = %record.name, pid = live.pid, "re-attached");
        self.save_state(&mut record, state).await
    }
}

/// Kills the QEMU named by the VM's pid file if it really is this VM's QEMU
/// (its command line names this VM's QMP socket).
fn kill_unrecorded_qemu(paths: &RuntimePaths) {
    let Some(pid) = std::fs::read_to_string(paths.pid_file()).ok().and_then(|t| t.trim().parse::<u32>().ok()) else {
        return;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return };
    let marker = paths.dir().to_string_lossy().into_owned();
    let ours = cmdline.split(|b| *b == 0).any(|arg| String::from_utf8_lossy(arg).contains(&marker));
    if let (true, Some(ticks)) = (ours, vireo_qemu::process_start_ticks(pid)) {
        vireo_qemu::kill(pid, ticks).ok();
    }
}
