//! VM snapshots kept inside the qcow2 images (internal snapshots).
//!
//! A full snapshot (RAM, device state and every listed disk) is a QEMU job:
//! `snapshot-save`, `snapshot-load`, `snapshot-delete`. Each runs until its
//! `JOB_STATUS_CHANGE` to `concluded`; its error, if any, is then read from
//! `query-jobs` and the job is dismissed. How QEMU 7.2 behaves, as measured:
//!
//! - A job runs in one go in QEMU's main loop: while it runs QMP answers nothing,
//!   so other commands to that VM wait (and may hit their own timeout).
//! - `snapshot-save` stops the vCPUs while saving and resumes them if they ran:
//!   the event stream shows `Paused` then `Resumed`.
//! - `snapshot-load` stops the vCPUs (run state `restore-vm`), loads, and resumes
//!   them only if they ran before *and* the load succeeded. A paused VM stays
//!   `paused`. After a failed load the VM stays stopped in `restore-vm`: when the
//!   tag was missing nothing was loaded and `cont` is safe; a load that failed
//!   half-way leaves the guest in a mixed state, and only a restart is sound.
//! - Errors come from QEMU as text, e.g. "Snapshot 't1' already exists in one or
//!   more devices", "Device 'disk1' is writable but does not support snapshots"
//!   (a raw image), "Snapshot 'x' does not exist in one or more devices".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::QemuError;
use crate::qmp::{NextEvent, QmpClient, QmpCommand, RunStatus, qmp_command};

/// Prefix of the ids of the jobs this driver starts.
const JOB_PREFIX: &str = "vireo-";

impl QmpClient {
    /// Takes full snapshot `tag` of the VM: the vCPU and device state go into node
    /// `vmstate_node`, and every node of `nodes` (format nodes: `DiskAttachment::id`,
    /// all writable disks, all qcow2) gets a disk snapshot of the same instant.
    pub async fn snapshot_save(
        &self,
        tag: &str,
        vmstate_node: &str,
        nodes: &[String],
        timeout: Duration,
    ) -> Result<(), QemuError> {
        let job = job_id("save");
        self.run_job(&job, &SnapshotSave { job_id: &job, tag, vmstate: vmstate_node, devices: nodes }, timeout).await
    }

    /// Reverts the VM to full snapshot `tag` and returns the run state afterwards:
    /// `running` if it ran before, else still `paused` (QEMU 7.2 resumes it itself).
    /// On failure the VM is left stopped (`restore-vm`); see the module notes.
    pub async fn snapshot_load(
        &self,
        tag: &str,
        vmstate_node: &str,
        nodes: &[String],
        timeout: Duration,
    ) -> Result<RunStatus, QemuError> {
        let job = job_id("load");
        self.run_job(&job, &SnapshotLoad { job_id: &job, tag, vmstate: vmstate_node, devices: nodes }, timeout).await?;
        self.query_status().await
    }

    /// Deletes snapshot `tag` from every node of `nodes`. A node that lacks the tag is not an error.
    pub async fn snapshot_delete(&self, tag: &str, nodes: &[String], timeout: Duration) -> Result<(), QemuError> {
        let job = job_id("delete");
        self.run_job(&job, &SnapshotDelete { job_id: &job, tag, devices: nodes }, timeout).await
    }

    /// Takes disk-only snapshot `tag` of every node of `nodes` while the VM keeps
    /// running, all at the same instant (one `transaction`; on error none is taken).
    pub async fn disk_snapshot(&self, tag: &str, nodes: &[String]) -> Result<(), QemuError> {
        let actions = nodes
            .iter()
            .map(|node| TransactionAction {
                kind: "blockdev-snapshot-internal-sync",
                data: InternalSnapshot { device: node, name: tag },
            })
            .collect();
        self.execute(&Transaction { actions }).await.map(drop)
    }

    /// Starts a job and waits until it concluded, then dismisses it.
    async fn run_job<C: QmpCommand>(&self, job: &str, command: &C, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        self.dismiss_stale_jobs().await;
        let mut events = self.subscribe()?;
        self.execute(command).await?;
        loop {
            match events.next(deadline).await? {
                NextEvent::Event(event)
                    if event.name == "JOB_STATUS_CHANGE"
                        && event.data_str("id") == Some(job)
                        && event.data_str("status") == Some("concluded") =>
                {
                    break;
                }
                NextEvent::Event(_) => {}
                NextEvent::Missed => {
                    if self.job_info(job).await?.is_some_and(|info| info.status == "concluded") {
                        break;
                    }
                }
                NextEvent::TimedOut => return Err(QemuError::JobTimeout { job: job.to_string(), timeout }),
            }
        }
        let info = self.job_info(job).await?;
        self.execute(&JobDismiss { id: job }).await?;
        match info.and_then(|info| info.error) {
            Some(error) => Err(QemuError::Job { job: job.to_string(), error }),
            None => Ok(()),
        }
    }

    async fn job_info(&self, job: &str) -> Result<Option<JobInfo>, QemuError> {
        Ok(self.execute(&QueryJobs {}).await?.into_iter().find(|info| info.id == job))
    }

    /// Jobs of ours that concluded after their waiter gave up (a timeout, or a
    /// daemon restart) would stay forever; they are dismissed before the next one.
    async fn dismiss_stale_jobs(&self) {
        let jobs = match self.execute(&QueryJobs {}).await {
            Ok(jobs) => jobs,
            Err(err) => return tracing::debug!(error = %err, "query-jobs failed"),
        };
        for job in jobs.iter().filter(|j| j.id.starts_with(JOB_PREFIX) && j.status == "concluded") {
            tracing::info!(job = %job.id, error = ?job.error, "dismissing a job nobody waited for");
            if let Err(err) = self.execute(&JobDismiss { id: &job.id }).await {
                tracing::debug!(job = %job.id, error = %err, "job-dismiss failed");
            }
        }
    }
}

/// Unique across daemon restarts too (QEMU refuses a job id in use).
fn job_id(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{JOB_PREFIX}{kind}-{ms}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

qmp_command! {
    struct SnapshotSave<'a> {
        #[serde(rename = "job-id")]
        job_id: &'a str,
        tag: &'a str,
        vmstate: &'a str,
        devices: &'a [String],
    } => "snapshot-save" -> IgnoredAny
}

qmp_command! {
    struct SnapshotLoad<'a> {
        #[serde(rename = "job-id")]
        job_id: &'a str,
        tag: &'a str,
        vmstate: &'a str,
        devices: &'a [String],
    } => "snapshot-load" -> IgnoredAny
}

qmp_command! {
    struct SnapshotDelete<'a> {
        #[serde(rename = "job-id")]
        job_id: &'a str,
        tag: &'a str,
        devices: &'a [String],
    } => "snapshot-delete" -> IgnoredAny
}

qmp_command! {
    struct QueryJobs {} => "query-jobs" -> Vec<JobInfo>
}

#[derive(Debug, Deserialize)]
struct JobInfo {
    id: String,
    status: String,
    error: Option<String>,
}

qmp_command! {
    struct JobDismiss<'a> {
        id: &'a str,
    } => "job-dismiss" -> IgnoredAny
}

qmp_command! {
    struct Transaction<'a> {
        actions: Vec<TransactionAction<'a>>,
    } => "transaction" -> IgnoredAny
}

#[derive(Serialize)]
struct TransactionAction<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: InternalSnapshot<'a>,
}

#[derive(Serialize)]
struct InternalSnapshot<'a> {
    device: &'a str,
    name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_unique_and_ours() {
        let (a, b) = (job_id("save"), job_id("save"));
        assert_ne!(a, b);
        assert!(a.starts_with("vireo-save-"), "{a}");
    }

    #[test]
    fn a_disk_snapshot_is_one_transaction() {
        let actions = vec![TransactionAction {
            kind: "blockdev-snapshot-internal-sync",
            data: InternalSnapshot { device: "disk0", name: "t" },
        }];
        assert_eq!(
            serde_json::to_value(Transaction { actions }).unwrap(),
            serde_json::json!({"actions": [{"type": "blockdev-snapshot-internal-sync", "data": {"device": "disk0", "name": "t"}}]})
        );
    }
}
