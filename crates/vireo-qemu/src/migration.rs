//! Live migration between two QEMU processes, as QMP primitives: the daemon's
//! orchestrator decides the order, this module knows the commands.
//!
//! - Destination: QEMU starts with `-incoming defer` (`Incoming::Migration`);
//!   [`QmpClient::listen_incoming`] sets its capabilities and opens the TCP
//!   listener (port 0: QEMU picks one and query-migrate reports it). For
//!   non-shared storage it also exports its (empty) disks read-write over NBD
//!   ([`QmpClient::start_nbd_server`]) on a listening socket the daemon bound
//!   and handed over with `getfd`. QEMU activates exported nodes at once, so the
//!   mirror can write to them while the memory migration is still incoming.
//! - Source: disks first ([`QmpClient::mirror_to_nbd`], a `blockdev-mirror` job
//!   per disk into an NBD client node), then memory ([`QmpClient::start_migration_to`]).
//!   With `pause_before_switchover` QEMU stops the guest and waits in
//!   `pre-switchover` so the mirrors can be completed while nothing writes; then
//!   [`QmpClient::continue_migration`] sends the device state.
//! - Both: figures come from `query-migrate` ([`MigrationInfo`]), the status
//!   from the MIGRATION events of a [`MigrationEvents`] subscription taken
//!   before the command that starts the migration. QEMU 7.2's query-migrate
//!   reports the status of the *incoming* migration forever once a VM has been
//!   received, so on a VM that came by migration it says `completed` for an
//!   outgoing migration that has only just begun.

use std::net::{IpAddr, TcpListener};
use std::os::fd::AsFd;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::QemuError;
use crate::hotplug::{BlockdevDel, GetFd};
use crate::qmp::{EventSubscription, NextEvent, QmpClient, qmp_command};

/// How a memory migration runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationSettings {
    /// Bytes per second on the wire.
    pub max_bandwidth: u64,
    /// Longest acceptable pause at switch-over; QEMU's default (300 ms) when `None`.
    pub downtime_limit_ms: Option<u64>,
    /// Throttle the vCPUs of a guest that dirties memory faster than it can be sent.
    pub auto_converge: bool,
    /// Allow a switch to post-copy (`migrate-start-postcopy`); both sides must have it.
    pub postcopy: bool,
    /// Stop in `pre-switchover` before sending the device state (to finish disk mirrors).
    pub pause_before_switchover: bool,
}

/// `query-migrate`, as far as Vireo reads it. Times are milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// `setup`, `active`, `pre-switchover`, `device`, `postcopy-active`,
    /// `completed`, `failed`, `cancelling`, `cancelled`; absent before any migration.
    pub status: Option<String>,
    pub error_desc: Option<String>,
    pub total_time: Option<u64>,
    pub downtime: Option<u64>,
    pub expected_downtime: Option<u64>,
    pub cpu_throttle_percentage: Option<u64>,
    pub ram: Option<RamStats>,
    /// Where an incoming migration listens (QEMU ≥ 4.0).
    pub socket_address: Option<Vec<SocketAddressInfo>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    pub transferred: u64,
    pub remaining: u64,
    pub total: u64,
    #[serde(default)]
    pub dirty_pages_rate: u64,
    #[serde(default)]
    pub page_size: u64,
    #[serde(default)]
    pub dirty_sync_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SocketAddressInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub host: Option<String>,
    pub port: Option<String>,
}

impl MigrationInfo {
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("none")
    }

    /// The failure, if the migration ended in `failed` or `cancelled`.
    pub fn failure(&self) -> Option<QemuError> {
        let status = self.status();
        matches!(status, "failed" | "cancelled").then(|| QemuError::Migration {
            status: status.to_string(),
            error: self.error_desc.clone().unwrap_or_else(|| "QEMU gave no reason".into()),
        })
    }
}

/// One block job (`query-block-jobs`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BlockJob {
    /// The job id.
    pub device: String,
    pub len: u64,
    pub offset: u64,
    pub ready: bool,
}

/// The migration and block-job events of one QEMU from the moment of
/// subscription, and the migration status they reported last.
pub struct MigrationEvents {
    subscription: EventSubscription,
    status: Option<String>,
}

impl MigrationEvents {
    /// Returns at the next relevant event or at `deadline`, whichever is first.
    /// Fails with `QmpClosed` once QEMU is gone.
    pub async fn wait(&mut self, deadline: Instant) -> Result<(), QemuError> {
        loop {
            let next = self.subscription.next(deadline).await?;
            if self.absorb(next) {
                return Ok(());
            }
        }
    }

    /// An outgoing migration has just been started: until its first event (which
    /// comes only once the connection is up) its status is `setup`, whatever
    /// query-migrate says.
    pub(crate) fn outgoing_started(&mut self) {
        self.refresh();
        self.status.get_or_insert_with(|| "setup".to_string());
    }

    /// Takes in the events that have arrived, without waiting.
    fn refresh(&mut self) {
        while let Some(next) = self.subscription.try_next() {
            self.absorb(next);
        }
    }

    /// Notes a MIGRATION event's status; true if the event matters to a waiter.
    fn absorb(&mut self, next: NextEvent) -> bool {
        match next {
            NextEvent::Event(event) if event.name == "MIGRATION" => {
                self.status = event.data_str("status").map(str::to_string);
                true
            }
            NextEvent::Event(event) => is_migration_event(&event.name),
            // Lost events: only query-migrate is left to go by.
            NextEvent::Missed => {
                self.status = None;
                true
            }
            NextEvent::TimedOut => true,
        }
    }
}

fn is_migration_event(name: &str) -> bool {
    name.starts_with("MIGRATION") || name.starts_with("BLOCK_JOB") || name == "JOB_STATUS_CHANGE" || name == "STOP"
}

/// Block jobs are polled at least this often while waiting for them.
const JOB_POLL: Duration = Duration::from_millis(100);
/// The fd name under which the NBD listener is handed to QEMU.
const NBD_LISTENER_FD: &str = "vireo-nbd-listener";

impl QmpClient {
    /// Subscribes to migration and block-job events; subscribe before the command whose events you await.
    pub fn migration_events(&self) -> Result<MigrationEvents, QemuError> {
        Ok(MigrationEvents { subscription: self.subscribe()?, status: None })
    }

    /// `query-migrate`, with the status the events of `events` reported if they did.
    pub async fn migration_info(&self, events: &mut MigrationEvents) -> Result<MigrationInfo, QemuError> {
        let mut info: MigrationInfo = self.execute(&QueryMigrate {}).await?;
        // After the reply: QEMU writes the events of every change it made before
        // answering ahead of the answer, so the status is at least as new as the
        // reply. (The figures may lag a just-reported `completed`; see `final_info`.)
        events.refresh();
        if let Some(status) = &events.status {
            info.status = Some(status.clone());
        }
        Ok(info)
    }

    /// Destination: listens for the migration stream on `host` (a port QEMU picks)
    /// and returns the URI the source migrates to.
    pub async fn listen_incoming(&self, host: IpAddr, postcopy: bool) -> Result<String, QemuError> {
        if postcopy {
            self.set_capabilities(&[("postcopy-ram", true)]).await?;
        }
        let host_part = match host {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        self.execute(&MigrateIncoming { uri: format!("tcp:{host_part}:0") }).await?;
        let info: MigrationInfo = self.execute(&QueryMigrate {}).await?;
        let port = info
            .socket_address
            .unwrap_or_default()
            .into_iter()
            .find_map(|address| address.port)
            .ok_or_else(|| QemuError::QmpProtocol("query-migrate names no listening port".into()))?;
        Ok(format!("tcp:{host_part}:{port}"))
    }

    /// Destination: exports each node of `nodes` read-write over NBD, under its own
    /// name, on `listener` (bound by the caller; QEMU takes it over).
    pub async fn start_nbd_server(&self, listener: &TcpListener, nodes: &[String]) -> Result<(), QemuError> {
        self.execute_with_fd(&GetFd { fdname: NBD_LISTENER_FD }, Some(listener.as_fd())).await?;
        // nbd-server-start takes the legacy (nested) socket address form.
        let addr = serde_json::json!({ "type": "fd", "data": { "str": NBD_LISTENER_FD } });
        self.execute(&NbdServerStart { addr }).await?;
        for node in nodes {
            self.execute(&NbdServerAdd { device: node, name: node, writable: true }).await?;
        }
        Ok(())
    }

    /// Destination: ends the NBD server and its exports (before the guest runs).
    pub async fn stop_nbd_server(&self) -> Result<(), QemuError> {
        self.execute(&NbdServerStop {}).await.map(drop)
    }

    /// Source: starts copying format node `node` into export `export` of the
    /// NBD server at `host:port`, as block job `job`. Writes of the guest are
    /// mirrored synchronously once the job is ready (`write-blocking`), so the
    /// copy keeps up with any guest.
    pub async fn mirror_to_nbd(
        &self,
        job: &str,
        node: &str,
        host: &str,
        port: u16,
        export: &str,
    ) -> Result<(), QemuError> {
        let target = mirror_target_node(job);
        let server = serde_json::json!({ "type": "inet", "host": host, "port": port.to_string() });
        self.execute(&BlockdevAddNbd { driver: "nbd", node_name: &target, server, export }).await?;
        let mirror = BlockdevMirror {
            job_id: job,
            device: node,
            target: &target,
            sync: "full",
            copy_mode: "write-blocking",
            auto_dismiss: true,
        };
        if let Err(err) = self.execute(&mirror).await {
            self.remove_mirror_target(job).await;
            return Err(err);
        }
        Ok(())
    }

    pub async fn block_jobs(&self) -> Result<Vec<BlockJob>, QemuError> {
        self.execute(&QueryBlockJobs {}).await
    }

    /// Source: ends mirror `job` without switching the guest over to the target:
    /// a ready job first copies what is left (`force` false), so with the guest
    /// paused the target then equals the source. With `force` the copy is abandoned.
    pub async fn end_mirror(&self, job: &str, force: bool, timeout: Duration) -> Result<(), QemuError> {
        let mut events = self.migration_events()?;
        let result = match self.execute(&BlockJobCancel { device: job, force }).await {
            Ok(_) => self.wait_job_gone(job, &mut events, timeout).await,
            Err(err) if self.block_jobs().await?.iter().all(|j| j.device != job) => {
                tracing::debug!(job, error = %err, "block job already gone");
                Ok(())
            }
            Err(err) => Err(err),
        };
        self.remove_mirror_target(job).await;
        result
    }

    async fn wait_job_gone(&self, job: &str, events: &mut MigrationEvents, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        while self.block_jobs().await?.iter().any(|j| j.device == job) {
            if Instant::now() >= deadline {
                return Err(QemuError::JobTimeout { job: job.to_string(), timeout });
            }
            events.wait(deadline.min(Instant::now() + JOB_POLL)).await?;
        }
        Ok(())
    }

    async fn remove_mirror_target(&self, job: &str) {
        if let Err(err) = self.execute(&BlockdevDel { node_name: &mirror_target_node(job) }).await {
            tracing::debug!(job, error = %err, "cannot remove the NBD target node");
        }
    }

    /// Source: sets capabilities and parameters, then starts migrating to `uri`;
    /// `events` (subscribed before) then follow it.
    pub async fn start_migration_to(
        &self,
        events: &mut MigrationEvents,
        uri: &str,
        settings: &MigrationSettings,
    ) -> Result<(), QemuError> {
        self.set_capabilities(&[
            ("events", true),
            ("auto-converge", settings.auto_converge),
            ("postcopy-ram", settings.postcopy),
            ("pause-before-switchover", settings.pause_before_switchover),
        ])
        .await?;
        let parameters = MigrateSetParameters {
            max_bandwidth: Some(settings.max_bandwidth),
            downtime_limit: settings.downtime_limit_ms,
        };
        self.execute(&parameters).await?;
        self.execute(&Migrate { uri: uri.to_string() }).await?;
        events.outgoing_started();
        Ok(())
    }

    /// Source: changes the downtime limit of the migration under way.
    pub async fn set_downtime_limit(&self, ms: u64) -> Result<(), QemuError> {
        self.execute(&MigrateSetParameters { max_bandwidth: None, downtime_limit: Some(ms) }).await.map(drop)
    }

    /// Source: switches a running migration to post-copy; the guest then runs on the destination.
    pub async fn start_postcopy(&self) -> Result<(), QemuError> {
        self.execute(&MigrateStartPostcopy {}).await.map(drop)
    }

    /// Source: goes on from `pre-switchover` (see `pause_before_switchover`).
    pub async fn continue_migration(&self) -> Result<(), QemuError> {
        self.execute(&MigrateContinue { state: "pre-switchover" }).await.map(drop)
    }

    /// Cancels the migration and waits (at most `grace`) until QEMU has wound it
    /// down; the guest then runs as before. A finished migration is left as it is.
    pub async fn cancel_migration(&self, grace: Duration) -> Result<MigrationInfo, QemuError> {
        let mut events = self.migration_events()?;
        self.execute(&MigrateCancel {}).await?;
        let deadline = Instant::now() + grace;
        loop {
            let info = self.migration_info(&mut events).await?;
            if !matches!(info.status(), "setup" | "active" | "cancelling" | "pre-switchover" | "device")
                || Instant::now() >= deadline
            {
                return Ok(info);
            }
            events.wait(deadline.min(Instant::now() + JOB_POLL)).await?;
        }
    }

    /// Waits until `accept` holds for the migration's status (or it failed), at
    /// most `timeout`. `events` must date from before the migration began.
    pub async fn wait_migration_status(
        &self,
        events: &mut MigrationEvents,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<MigrationInfo, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.migration_info(events).await?;
            if accept(info.status()) {
                return Ok(info);
            }
            if let Some(failure) = info.failure() {
                return Err(failure);
            }
            if Instant::now() >= deadline {
                return Err(QemuError::MigrationTimeout { timeout });
            }
            events.wait(deadline.min(Instant::now() + JOB_POLL)).await?;
        }
    }

    pub(crate) async fn set_capabilities(&self, capabilities: &[(&'static str, bool)]) -> Result<(), QemuError> {
        let capabilities =
            capabilities.iter().map(|&(capability, state)| MigrationCapability { capability, state }).collect();
        self.execute(&MigrateSetCapabilities { capabilities }).await.map(drop)
    }
}

fn mirror_target_node(job: &str) -> String {
    format!("{job}-nbd")
}

qmp_command! {
    pub(crate) struct MigrateSetCapabilities {
        capabilities: Vec<MigrationCapability>,
    } => "migrate-set-capabilities" -> IgnoredAny
}

#[derive(Serialize)]
struct MigrationCapability {
    capability: &'static str,
    state: bool,
}

qmp_command! {
    pub(crate) struct MigrateSetParameters {
        #[serde(rename = "max-bandwidth", skip_serializing_if = "Option::is_none")]
        pub(crate) max_bandwidth: Option<u64>,
        #[serde(rename = "downtime-limit", skip_serializing_if = "Option::is_none")]
        pub(crate) downtime_limit: Option<u64>,
    } => "migrate-set-parameters" -> IgnoredAny
}

qmp_command! {
    pub(crate) struct Migrate {
        pub(crate) uri: String,
    } => "migrate" -> IgnoredAny
}

qmp_command! {
    struct MigrateIncoming {
        uri: String,
    } => "migrate-incoming" -> IgnoredAny
}

qmp_command! {
    pub(crate) struct MigrateCancel {} => "migrate_cancel" -> IgnoredAny
}

qmp_command! {
    pub(crate) struct QueryMigrate {} => "query-migrate" -> MigrationInfo
}

qmp_command! {
    struct MigrateStartPostcopy {} => "migrate-start-postcopy" -> IgnoredAny
}

qmp_command! {
    struct MigrateContinue {
        state: &'static str,
    } => "migrate-continue" -> IgnoredAny
}

qmp_command! {
    struct NbdServerStart {
        addr: serde_json::Value,
    } => "nbd-server-start" -> IgnoredAny
}

qmp_command! {
    struct NbdServerAdd<'a> {
        device: &'a str,
        name: &'a str,
        writable: bool,
    } => "nbd-server-add" -> IgnoredAny
}

qmp_command! {
    struct NbdServerStop {} => "nbd-server-stop" -> IgnoredAny
}

qmp_command! {
    struct BlockdevAddNbd<'a> {
        driver: &'static str,
        #[serde(rename = "node-name")]
        node_name: &'a str,
        server: serde_json::Value,
        export: &'a str,
    } => "blockdev-add" -> IgnoredAny
}

qmp_command! {
    #[serde(rename_all = "kebab-case")]
    struct BlockdevMirror<'a> {
        job_id: &'a str,
        device: &'a str,
        target: &'a str,
        sync: &'static str,
        copy_mode: &'static str,
        auto_dismiss: bool,
    } => "blockdev-mirror" -> IgnoredAny
}

qmp_command! {
    struct QueryBlockJobs {} => "query-block-jobs" -> Vec<BlockJob>
}

qmp_command! {
    struct BlockJobCancel<'a> {
        device: &'a str,
        force: bool,
    } => "block-job-cancel" -> IgnoredAny
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_migrate_of_an_incoming_listener_names_its_port() {
        let reply = r#"{"status":"setup","socket-address":[{"type":"inet","host":"10.0.0.2","port":"40123"}]}"#;
        let info: MigrationInfo = serde_json::from_str(reply).unwrap();
        assert_eq!(info.socket_address.unwrap()[0].port.as_deref(), Some("40123"));
    }

    #[test]
    fn a_failed_migration_reports_qemus_reason() {
        let reply = r#"{"status":"failed","error-desc":"Unable to write to socket: Broken pipe"}"#;
        let info: MigrationInfo = serde_json::from_str(reply).unwrap();
        let failure = info.failure().expect("failure").to_string();
        assert!(failure.contains("Broken pipe"), "{failure}");
        let active: MigrationInfo = serde_json::from_str(r#"{"status":"active"}"#).unwrap();
        assert!(active.failure().is_none());
    }

    #[test]
    fn ram_statistics_parse() {
        let reply = r#"{"status":"completed","total-time":812,"downtime":12,"ram":{"transferred":1000,"remaining":0,
            "total":268435456,"dirty-pages-rate":0,"page-size":4096,"dirty-sync-count":3,"mbps":0.5,"normal":3}}"#;
        let info: MigrationInfo = serde_json::from_str(reply).unwrap();
        assert_eq!(info.downtime, Some(12));
        assert_eq!(info.ram.unwrap().dirty_sync_count, 3);
    }
}
