//! Live migration, source side: this daemon sends a running VM to another
//! daemon (the destination, see `incoming`).
//!
//! The request itself does the checks and the destination's preparation, so a
//! refusal is the request's answer and changes nothing. The rest runs in a
//! task: disks (with `copy_storage`), memory, then the hand-over. The VM is
//! `migrating` meanwhile, which refuses every other operation but a forced
//! stop; the task takes the job lock only for its final state change.
//!
//! Safety rule: the guest runs on the destination only after the source's
//! QEMU has stopped it for good (migration `completed`, or `postcopy-active`),
//! and the source resumes it only when the destination has certainly not run
//! it (it answered that it did not, or was never reached). If the hand-over's
//! outcome is unknown, the source keeps the guest paused: never on both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vireo_api::{
    Accel, ErrorCode, EventKind, IncomingMigration, IncomingReady, IncomingVolume, MigrateRequest, MigrationPhase,
    MigrationStatus, StorageProbe, VmState,
};
use vireo_client::{Client, ClientError, Endpoint};
use vireo_core::spec::parse_volume_ref;
use vireo_core::{Action, VmRecord};
use vireo_qemu::{MigrationInfo, MigrationSettings, QemuError};

use super::live::Live;
use super::{VmManager, ensure, now_ms};
use crate::error::ServerError;

/// Memory bandwidth when the request sets none: no limit in practice (QEMU 7.2's
/// default of 128 MiB/s would make a big guest's migration needlessly slow).
const UNLIMITED_BANDWIDTH: u64 = 64 << 30;
/// How often the destination daemon is asked whether it is still there.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A destination call (prepare excepted) that takes longer counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Preparing starts a QEMU and may create volumes: allow for a busy host.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);
/// Progress is read at least this often (events wake the loop earlier).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// After a cancel, how long QEMU may take to resume the guest.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Ending a ready mirror copies what is left while the guest is paused.
const MIRROR_END_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to keep asking a destination whose hand-over answer was lost.
const HANDOVER_RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause at switch-over allowed when the request sets none. QEMU's own default
/// (300 ms) makes it stop the guest as soon as 300 ms' worth of transfer is left,
/// which on a fast link can be the whole of a small guest's memory.
const DEFAULT_DOWNTIME_MS: u64 = 30;
/// The default limit of a guest under TCG: QEMU's own. QEMU 7.2's TCG loses
/// guest memory writes in long migrations with many passes (docs/migration.md,
/// "Known problem"): at the 30 ms default a guest writing to its disk during a
/// `--copy-storage` migration arrived damaged in 5 of 10 runs when booted
/// through PVH, 0 of 3 at 300 ms; a memory-churning guest in 6 of 9 runs
/// (plain QEMU) at 30 ms, 0 of 9 at 300 ms. Under KVM dirty pages are logged by
/// the kernel, not by TCG, and the 30 ms default stands.
const TCG_DEFAULT_DOWNTIME_MS: u64 = 300;
/// How far the default limit is raised for a guest that does not converge.
/// QEMU 7.2 under TCG corrupted guest memory when auto-converge had to throttle
/// a busy guest to 90 %+ to meet 30 ms (6 of 9 runs, plain QEMU, no Vireo);
/// raising the limit as the throttle rises, as Proxmox does, converges with far
/// less throttling (0 of 9 runs broken at 100 and 300 ms). A limit the user
/// sets is never raised.
const RAISED_DOWNTIME_MS: u64 = 300;
/// How long the final figures may take to appear after `completed`.
const FIGURES_WAIT: Duration = Duration::from_secs(2);
/// Largest accepted `max_downtime_ms` (QEMU's own limit is 2000 s).
const MAX_DOWNTIME_MS: u64 = 60_000;

/// The latest migration of each VM that had one, kept after it ends so its
/// outcome can be read (the VM itself is gone from here when it succeeded).
#[derive(Default)]
pub struct Migrations {
    entries: Mutex<HashMap<String, Arc<MigrationEntry>>>,
}

pub struct MigrationEntry {
    status: Mutex<MigrationStatus>,
    cancel: watch::Sender<bool>,
}

impl MigrationEntry {
    fn new(status: MigrationStatus) -> Arc<Self> {
        Arc::new(MigrationEntry { status: Mutex::new(status), cancel: watch::channel(false).0 })
    }

    pub fn status(&self) -> MigrationStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, change: impl FnOnce(&mut MigrationStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn set_phase(&self, phase: MigrationPhase) {
        self.update(|status| status.phase = Some(phase));
        tracing::info!(vm = %self.status().vm, %phase, "migration");
    }

    fn phase(&self) -> Option<MigrationPhase> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).phase
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Copies QEMU's progress figures into the status.
    fn record_progress(&self, info: &MigrationInfo) {
        self.update(|status| {
            if let Some(ram) = &info.ram {
                status.memory_total_bytes = ram.total;
                status.memory_transferred_bytes = ram.transferred;
                status.memory_remaining_bytes = ram.remaining;
                status.dirty_rate_bytes_per_sec = ram.dirty_pages_rate.saturating_mul(ram.page_size.max(1));
                status.memory_passes = ram.dirty_sync_count;
            }
            status.cpu_throttle_percent = info.cpu_throttle_percentage.unwrap_or(0);
            status.expected_downtime_ms = info.expected_downtime.or(status.expected_downtime_ms);
            status.downtime_ms = info.downtime.or(status.downtime_ms);
            status.total_time_ms = info.total_time.or(status.total_time_ms);
        });
    }

    fn finish(&self, phase: MigrationPhase, error: Option<String>) {
        self.update(|status| {
            status.phase = Some(phase);
            status.error = error;
            status.finished_at = Some(crate::api::rfc3339(now_ms()));
        });
        let status = self.status();
        match &status.error {
            Some(error) => tracing::warn!(vm = %status.vm, %phase, %error, "migration ended"),
            None => tracing::info!(vm = %status.vm, %phase, downtime_ms = ?status.downtime_ms,
                total_time_ms = ?status.total_time_ms, handover_ms = ?status.handover_ms, "migration ended"),
        }
    }
}

/// The event that reports how a migration ended; none while it runs.
fn outcome_event(status: &MigrationStatus) -> Option<EventKind> {
    let destination = status.destination.clone();
    match status.phase? {
        MigrationPhase::Completed => Some(EventKind::MigrationCompleted { destination }),
        MigrationPhase::Cancelled => Some(EventKind::MigrationCancelled { destination }),
        MigrationPhase::Failed => {
            let reason = status.error.clone().unwrap_or_else(|| "no reason given".into());
            Some(EventKind::MigrationFailed { destination, reason })
        }
        _ => None,
    }
}

impl Migrations {
    pub fn get(&self, vm: &str) -> Option<Arc<MigrationEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(vm).cloned()
    }

    fn insert(&self, vm: &str, entry: Arc<MigrationEntry>) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(vm.to_string(), entry);
    }
}

/// The destination daemon, reached over TCP with its token.
struct Destination {
    url: String,
    client: Client,
}

impl Destination {
    fn new(request: &MigrateRequest) -> Result<Self, ServerError> {
        let url = request.to.trim_end_matches('/').to_string();
        if !url.starts_with("http://") {
            return Err(ServerError::BadRequest(format!("'to' must be an http://HOST:PORT URL, got '{url}'")));
        }
        let client = Client::new(Endpoint::Tcp { url: url.clone(), token: request.to_token.clone() });
        Ok(Destination { url, client })
    }

    /// A destination error as this daemon reports it: refused, or not reached.
    fn error(&self, vm: &str, err: ClientError) -> ServerError {
        match err {
            ClientError::Api(reason) => ServerError::MigrationRefused { vm: vm.to_string(), reason },
            other => ServerError::DestinationUnreachable { url: self.url.clone(), reason: other.to_string() },
        }
    }

    async fn call<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ClientError::Api(api))) => Err(CallError::Answered(api.code, api.message)),
            // Never connected: the request certainly did not arrive.
            Ok(Err(ClientError::Connect { source, .. })) => Err(CallError::NotDelivered(source.to_string())),
            Ok(Err(other)) => Err(CallError::Unknown(other.to_string())),
            Err(_) => Err(CallError::Unknown(format!("no answer within {} s", limit.as_secs()))),
        }
    }
}

/// How a call to the destination went wrong.
enum CallError {
    /// It answered with an error.
    Answered(ErrorCode, String),
    /// It was not reached at all.
    NotDelivered(String),
    /// It may or may not have acted on the request.
    Unknown(String),
}

impl CallError {
    fn reason(&self) -> String {
        match self {
            CallError::Answered(code, message) => format!("{message} ({})", serde_json::json!(code)),
            CallError::NotDelivered(reason) => format!("destination unreachable: {reason}"),
            CallError::Unknown(reason) => format!("no answer from the destination: {reason}"),
        }
    }
}

/// What the source sends with `copy_storage`: one mirror job per volume disk.
struct Mirror {
    job: String,
    /// The source's format node of the disk.
    node: String,
    /// The destination's export: the disk's id there (`disk<index>`).
    export: String,
}

/// Files written into shared pools for the destination to find; removed when dropped.
#[derive(Default)]
struct Probes {
    files: Vec<PathBuf>,
    probes: Vec<StorageProbe>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for file in &self.files {
            if let Err(err) = std::fs::remove_file(file) {
                tracing::warn!(file = %file.display(), error = %err, "cannot remove storage probe");
            }
        }
    }
}

fn random_hex(bytes: usize) -> Result<String, ServerError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| ServerError::Internal(format!("no randomness: {e}")))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a migration did not complete.
enum Failure {
    Cancelled,
    Failed(String),
    /// The destination may already run the guest: the source must not resume it.
    Unresolved(String),
}

fn qemu_failure(err: QemuError) -> Failure {
    Failure::Failed(err.to_string())
}

/// The downtime limit when the request sets none.
fn default_downtime_ms(accel: Accel) -> u64 {
    match accel {
        Accel::Kvm => DEFAULT_DOWNTIME_MS,
        Accel::Tcg | Accel::Auto => TCG_DEFAULT_DOWNTIME_MS,
    }
}

/// The QEMU settings of `request` for a guest running on `accel`.
fn settings_of(request: &MigrateRequest, accel: Accel) -> Result<MigrationSettings, ServerError> {
    if request.postcopy && request.copy_storage {
        return Err(ServerError::Unsupported(
            "post-copy with --copy-storage is not supported: the disks must be in sync before the guest moves".into(),
        ));
    }
    let max_bandwidth = match request.bandwidth_mib {
        Some(0) => return Err(ServerError::BadRequest("bandwidth_mib must be at least 1".into())),
        Some(mib) => {
            mib.checked_mul(1 << 20).ok_or_else(|| ServerError::BadRequest("bandwidth_mib is too large".into()))?
        }
        None => UNLIMITED_BANDWIDTH,
    };
    if let Some(ms) = request.max_downtime_ms
        && !(1..=MAX_DOWNTIME_MS).contains(&ms)
    {
        return Err(ServerError::BadRequest(format!(
            "max_downtime_ms must be between 1 and {MAX_DOWNTIME_MS}, got {ms}"
        )));
    }
    Ok(MigrationSettings {
        max_bandwidth,
        downtime_limit_ms: Some(request.max_downtime_ms.unwrap_or(default_downtime_ms(accel))),
        auto_converge: true,
        postcopy: request.postcopy,
        pause_before_switchover: request.copy_storage,
    })
}

impl VmManager {
    /// The latest migration of `vm` on this daemon.
    pub fn migration_status(&self, vm: &str) -> Result<MigrationStatus, ServerError> {
        self.migrations.get(vm).map(|entry| entry.status()).ok_or_else(|| ServerError::NoMigration(vm.to_string()))
    }

    /// The migration under way, for `vm show`.
    pub fn active_migration(&self, vm: &str) -> Option<MigrationStatus> {
        self.migrations.get(vm).map(|entry| entry.status()).filter(|s| s.phase.is_some_and(|p| !p.is_final()))
    }

    /// Asks a migration under way to stop; the VM then runs on here as before.
    pub fn cancel_migration(&self, vm: &str) -> Result<MigrationStatus, ServerError> {
        let entry = self.migrations.get(vm).ok_or_else(|| ServerError::NoMigration(vm.to_string()))?;
        match entry.phase() {
            Some(phase) if phase.is_final() => {
                Err(ServerError::BadRequest(format!("the migration of VM '{vm}' has already ended ({phase})")))
            }
            Some(MigrationPhase::Postcopy) => Err(ServerError::BadRequest(format!(
                "VM '{vm}' already runs on the destination (post-copy): too late to cancel"
            ))),
            _ => {
                entry.cancel.send_replace(true);
                tracing::info!(vm, "migration cancel requested");
                Ok(entry.status())
            }
        }
    }

    /// Starts migrating `name` to the daemon `request.to`. Returns once the
    /// destination is ready and the migration runs; it goes on in the background.
    pub async fn migrate(
        self: &Arc<Self>,
        name: &str,
        request: MigrateRequest,
    ) -> Result<MigrationStatus, ServerError> {
        let destination = Destination::new(&request)?;
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::Migrate)?;
        let accel = record.runtime.as_ref().map_or(Accel::Auto, |runtime| runtime.accel);
        let settings = settings_of(&request, accel)?;
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        if !self.store.list_snapshots(name).await?.is_empty() {
            return Err(ServerError::Unsupported(format!(
                "VM '{name}' has snapshots, which cannot move with it; delete them first"
            )));
        }
        let (volumes, mirrors) = self.migrating_volumes(&record, &live, request.copy_storage).await?;
        let probes = if request.copy_storage { Probes::default() } else { self.write_probes(&volumes).await? };
        let incoming = IncomingMigration {
            spec: record.spec.clone(),
            disk_ports: record.disk_ports.clone(),
            qemu_version: self.qemu_version().await,
            copy_storage: request.copy_storage,
            postcopy: request.postcopy,
            volumes,
            probes: probes.probes.clone(),
        };
        let entry = MigrationEntry::new(MigrationStatus {
            vm: name.to_string(),
            destination: destination.url.clone(),
            phase: Some(MigrationPhase::Preparing),
            copy_storage: request.copy_storage,
            postcopy: request.postcopy,
            started_at: crate::api::rfc3339(now_ms()),
            ..MigrationStatus::default()
        });
        tracing::info!(vm = name, to = %destination.url, copy_storage = request.copy_storage, "migration requested");
        let prepare = tokio::time::timeout(PREPARE_TIMEOUT, destination.client.prepare_incoming(&incoming)).await;
        drop(probes);
        let ready = match prepare {
            Ok(Ok(ready)) => ready,
            Ok(Err(err)) => return Err(destination.error(name, err)),
            Err(_) => {
                // It may have prepared after all: tell it to give up.
                self.abort_destination(&destination, name).await;
                let reason = format!("no answer to prepare within {} s", PREPARE_TIMEOUT.as_secs());
                return Err(ServerError::DestinationUnreachable { url: destination.url.clone(), reason });
            }
        };
        let previous = record.state;
        if let Err(err) = self.save_state(&mut record, VmState::Migrating).await {
            self.abort_destination(&destination, name).await;
            return Err(err);
        }
        self.migrations.insert(name, entry.clone());
        let started =
            EventKind::MigrationStarted { destination: destination.url.clone(), copy_storage: request.copy_storage };
        self.events.emit(Some(name), started).await;
        let explicit_downtime = request.max_downtime_ms.is_some();
        let run = Run {
            name: name.to_string(),
            live,
            destination,
            ready,
            mirrors,
            settings,
            explicit_downtime,
            entry,
            previous,
        };
        let manager = self.clone();
        tokio::spawn(async move { manager.run_migration(run).await });
        self.migration_status(name)
    }

    /// The VM's volumes as the destination needs them, and with `copy_storage`
    /// the mirror job of each. Path disks are not copied: they must exist on the
    /// destination at the same path, and only read-only ones can move with a copy.
    async fn migrating_volumes(
        &self,
        record: &VmRecord,
        live: &Live,
        copy_storage: bool,
    ) -> Result<(Vec<IncomingVolume>, Vec<Mirror>), ServerError> {
        let attached = if copy_storage {
            live.qmp.attached_disks().await.map_err(|source| ServerError::Qemu {
                name: record.name.clone(),
                action: "list disks",
                source,
            })?
        } else {
            Vec::new()
        };
        let mut volumes = Vec::new();
        let mut mirrors = Vec::new();
        for (index, disk) in record.spec.disks.iter().enumerate() {
            let Some(reference) = &disk.volume else {
                if copy_storage && !disk.readonly {
                    let path = disk.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
                    return Err(ServerError::Unsupported(format!(
                        "disk {path} is a writable file, not a volume: --copy-storage copies volumes only"
                    )));
                }
                continue;
            };
            let (pool, name) = parse_volume_ref(reference).map_err(ServerError::BadRequest)?;
            let volume = self.load_volume(pool, name).await?;
            if !copy_storage && let Some((base_pool, base)) = &volume.backing {
                return Err(ServerError::Unsupported(format!(
                    "volume {reference} is a linked clone of {base_pool}/{base}; migrate it with --copy-storage, \
                     which copies it in full"
                )));
            }
            if copy_storage {
                let (path, _) = self.volume_file(pool, name).await?;
                let node = attached.iter().find(|d| d.path == path).map(|d| d.node.clone()).ok_or_else(|| {
                    ServerError::Internal(format!("volume {reference} is not attached to the running QEMU"))
                })?;
                mirrors.push(Mirror { job: format!("migrate-disk{index}"), node, export: format!("disk{index}") });
            }
            volumes.push(IncomingVolume {
                pool: volume.pool,
                name: volume.name,
                format: volume.format,
                capacity_bytes: volume.capacity_bytes,
            });
        }
        Ok((volumes, mirrors))
    }

    /// One probe file in each pool the volumes are in, for the destination to find.
    async fn write_probes(&self, volumes: &[IncomingVolume]) -> Result<Probes, ServerError> {
        let mut probes = Probes::default();
        for volume in volumes {
            if probes.probes.iter().any(|p| p.pool == volume.pool) {
                continue;
            }
            let pool = self.load_pool(&volume.pool).await?;
            let file = format!(".vireo-migration-probe-{}", random_hex(8)?);
            let content = random_hex(16)?;
            let path = pool.path.join(&file);
            std::fs::write(&path, &content)
                .map_err(|source| ServerError::Io { path: path.display().to_string(), source })?;
            probes.files.push(path);
            probes.probes.push(StorageProbe { pool: pool.name, path: pool.path, file, content });
        }
        Ok(probes)
    }

    /// Best effort: the destination also cleans up by itself when its QEMU
    /// loses the migration stream, or at its next start.
    async fn abort_destination(&self, destination: &Destination, name: &str) {
        match destination.call(CALL_TIMEOUT, destination.client.abort_incoming(name)).await {
            Ok(()) | Err(CallError::Answered(ErrorCode::VmNotFound, _)) => {}
            Err(err) => tracing::warn!(vm = name, error = %err.reason(), "cannot tell the destination to give up"),
        }
    }

    async fn run_migration(self: Arc<Self>, run: Run) {
        let outcome = self.drive(&run).await;
        match outcome {
            Ok(()) => self.complete_source(&run).await,
            Err(failure) => self.roll_back(&run, failure).await,
        }
        if let Some(ended) = outcome_event(&run.entry.status()) {
            self.events.emit(Some(&run.name), ended).await;
        }
    }

    /// Disks, memory, hand-over. Ok once the guest runs on the destination.
    async fn drive(&self, run: &Run) -> Result<(), Failure> {
        let qmp = &run.live.qmp;
        let mut events = qmp.migration_events().map_err(qemu_failure)?;
        let mut heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        if let Some(nbd) = &run.ready.nbd {
            run.entry.set_phase(MigrationPhase::CopyingDisks);
            for mirror in &run.mirrors {
                qmp.mirror_to_nbd(&mirror.job, &mirror.node, &nbd.host, nbd.port, &mirror.export)
                    .await
                    .map_err(qemu_failure)?;
            }
            loop {
                let jobs = qmp.block_jobs().await.map_err(qemu_failure)?;
                let ours: Vec<_> = jobs.iter().filter(|j| run.mirrors.iter().any(|m| m.job == j.device)).collect();
                if ours.len() < run.mirrors.len() {
                    return Err(Failure::Failed("a disk copy stopped (the NBD connection broke?)".into()));
                }
                run.entry.update(|status| {
                    status.disk_total_bytes = ours.iter().map(|j| j.len).sum();
                    status.disk_copied_bytes = ours.iter().map(|j| j.offset).sum();
                });
                if ours.iter().all(|job| job.ready) {
                    break;
                }
                self.check_going(run, &mut heartbeat).await?;
                events.wait(Instant::now() + PROGRESS_INTERVAL).await.map_err(qemu_failure)?;
            }
        }
        run.entry.set_phase(MigrationPhase::Migrating);
        qmp.start_migration_to(&mut events, &run.ready.migration_uri, &run.settings).await.map_err(qemu_failure)?;
        let mut postcopy_requested = false;
        let mut continued = false;
        let mut downtime = DowntimeLimit::new(&run.settings, run.explicit_downtime);
        loop {
            let info = qmp.migration_info(&mut events).await.map_err(qemu_failure)?;
            run.entry.record_progress(&info);
            if let Some(raised) = downtime.raise_for(&info) {
                tracing::info!(vm = %run.name, downtime_ms = raised, "guest does not converge; raising the downtime limit");
                qmp.set_downtime_limit(raised).await.map_err(qemu_failure)?;
            }
            match info.status() {
                "completed" => break,
                "postcopy-active" => {
                    if run.entry.phase() != Some(MigrationPhase::Postcopy) {
                        // The guest's vCPUs are stopped here for good: let it run there.
                        self.hand_over(run).await?;
                        run.entry.set_phase(MigrationPhase::Postcopy);
                    }
                }
                "pre-switchover" if !continued => {
                    continued = true;
                    run.entry.set_phase(MigrationPhase::SwitchingOver);
                    for mirror in &run.mirrors {
                        qmp.end_mirror(&mirror.job, false, MIRROR_END_TIMEOUT).await.map_err(qemu_failure)?;
                    }
                    qmp.continue_migration().await.map_err(qemu_failure)?;
                }
                "active"
                    if run.settings.postcopy
                        && !postcopy_requested
                        && info.ram.as_ref().is_some_and(|ram| ram.dirty_sync_count >= 2) =>
                {
                    // The first pass is done: what is left moves on demand.
                    qmp.start_postcopy().await.map_err(qemu_failure)?;
                    postcopy_requested = true;
                }
                _ => {
                    if let Some(failure) = info.failure() {
                        return Err(Failure::Failed(failure.to_string()));
                    }
                }
            }
            if run.entry.phase() != Some(MigrationPhase::Postcopy) {
                self.check_going(run, &mut heartbeat).await?;
            }
            events.wait(Instant::now() + PROGRESS_INTERVAL).await.map_err(qemu_failure)?;
        }
        if run.entry.phase() == Some(MigrationPhase::Postcopy) {
            return Ok(());
        }
        run.entry.set_phase(MigrationPhase::SwitchingOver);
        self.hand_over(run).await
    }

    /// Fails if a cancel was asked for or the destination daemon is gone.
    async fn check_going(&self, run: &Run, heartbeat: &mut Instant) -> Result<(), Failure> {
        if run.entry.cancelled() {
            return Err(Failure::Cancelled);
        }
        if Instant::now() < *heartbeat {
            return Ok(());
        }
        *heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        let destination = &run.destination;
        match destination.call(CALL_TIMEOUT, destination.client.get_vm(&run.name)).await {
            Ok(vm) if vm.state == VmState::Incoming => Ok(()),
            Ok(vm) => Err(Failure::Failed(format!("the destination reports the VM {}", vm.state))),
            Err(err) => Err(Failure::Failed(err.reason())),
        }
    }

    /// Tells the destination to run the guest, whose vCPUs the source has
    /// stopped for good. Ok when it runs there.
    async fn hand_over(&self, run: &Run) -> Result<(), Failure> {
        let destination = &run.destination;
        let started = Instant::now();
        let outcome = destination.call(CALL_TIMEOUT, destination.client.finish_incoming(&run.name)).await;
        let handed_over = match outcome {
            Ok(_) => Ok(()),
            Err(CallError::Answered(_, message)) => {
                Err(Failure::Failed(format!("the destination cannot run it: {message}")))
            }
            Err(CallError::NotDelivered(reason)) => Err(Failure::Failed(format!("destination unreachable: {reason}"))),
            Err(CallError::Unknown(reason)) => self.resolve_hand_over(run, reason).await,
        };
        if handed_over.is_ok() {
            let handover_ms = started.elapsed().as_millis() as u64;
            run.entry.update(|status| status.handover_ms = Some(handover_ms));
        }
        handed_over
    }

    /// The hand-over's answer was lost: asks the destination whether the guest runs there.
    async fn resolve_hand_over(&self, run: &Run, reason: String) -> Result<(), Failure> {
        let destination = &run.destination;
        let deadline = Instant::now() + HANDOVER_RESOLVE_TIMEOUT;
        while Instant::now() < deadline {
            match destination.call(CALL_TIMEOUT, destination.client.get_vm(&run.name)).await {
                Ok(vm) if vm.state == VmState::Incoming => {
                    return Err(Failure::Failed(format!("the hand-over failed: {reason}")));
                }
                Ok(_) => return Ok(()),
                Err(CallError::Answered(ErrorCode::VmNotFound, _)) => {
                    return Err(Failure::Failed(format!("the destination gave the VM up: {reason}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        Err(Failure::Unresolved(reason))
    }

    /// The guest runs on the destination: the source's QEMU, record and (copied) volumes go.
    async fn complete_source(&self, run: &Run) {
        self.read_final_figures(run).await;
        let slot = self.slot(&run.name);
        let _job = slot.job.lock().await;
        run.live.kill();
        if !run.live.wait_exit(super::lifecycle::KILL_GRACE).await {
            tracing::error!(vm = %run.name, pid = run.live.pid, "the source QEMU did not exit after the migration");
        }
        slot.set_live(None);
        let record = match self.store.get_vm(&run.name).await {
            Ok(Some(record)) => record,
            Ok(None) => return run.entry.finish(MigrationPhase::Completed, None),
            Err(err) => {
                tracing::error!(vm = %run.name, error = %err, "cannot read the migrated VM's record");
                return run.entry.finish(MigrationPhase::Completed, None);
            }
        };
        if let Err(err) = self.store.delete_vm(&run.name).await {
            tracing::error!(vm = %run.name, error = %err, "cannot remove the migrated VM's record");
        }
        self.release_migrated_volumes(&record, run.ready.nbd.is_some()).await;
        if let Err(err) = std::fs::remove_dir_all(self.vm_dir(&run.name)) {
            tracing::warn!(vm = %run.name, error = %err, "cannot remove the migrated VM's directory");
        }
        run.entry.finish(MigrationPhase::Completed, None);
    }

    /// QEMU 7.2 reports `completed` a moment before it has worked out the
    /// downtime and total time (query-migrate says 0 in between); they are final
    /// once the run state is `postmigrate`. Read after the hand-over, so the
    /// guest never waits for this.
    async fn read_final_figures(&self, run: &Run) {
        let qmp = &run.live.qmp;
        let deadline = Instant::now() + FIGURES_WAIT;
        while Instant::now() < deadline {
            if qmp.query_status().await.is_ok_and(|status| status.status == "postmigrate") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let figures = match qmp.migration_events() {
            Ok(mut events) => qmp.migration_info(&mut events).await,
            Err(err) => Err(err),
        };
        match figures {
            Ok(info) => run.entry.record_progress(&info),
            Err(err) => tracing::debug!(vm = %run.name, error = %err, "cannot read the final migration figures"),
        }
    }

    /// The volumes now belong to the destination: copies are deleted here, shared
    /// ones are only forgotten (their files are the destination's now).
    async fn release_migrated_volumes(&self, record: &VmRecord, copied: bool) {
        for reference in record.spec.disks.iter().filter_map(|d| d.volume.as_deref()) {
            let Ok((pool, name)) = parse_volume_ref(reference) else { continue };
            if let Err(err) = self.forget_volume(pool, name, copied).await {
                tracing::warn!(vm = %record.name, volume = reference, error = %err.message(), "cannot release volume");
            }
        }
    }

    /// Recovery: an earlier daemon died while migrating this VM. Its task is
    /// gone, so the migration is cancelled (QEMU resumes the guest unless the
    /// migration had completed, which the caller reports).
    pub(super) async fn abandon_migration(&self, record: &VmRecord, live: &Live) {
        match live.qmp.cancel_migration(CANCEL_GRACE).await {
            Ok(info) => {
                tracing::warn!(vm = %record.name, status = info.status(), "migration abandoned after a restart")
            }
            Err(err) => tracing::warn!(vm = %record.name, error = %err, "cannot cancel the abandoned migration"),
        }
        // The destination's address went with the previous daemon's memory.
        let reason = "the daemon restarted during the migration, which was abandoned".to_string();
        self.events.emit(Some(&record.name), EventKind::MigrationFailed { destination: String::new(), reason }).await;
    }

    /// Winds the migration back: the guest runs on the source as before, unless
    /// the destination may already run it.
    async fn roll_back(&self, run: &Run, failure: Failure) {
        let qmp = &run.live.qmp;
        let (phase, error, resume) = match failure {
            Failure::Cancelled => (MigrationPhase::Cancelled, "cancelled".to_string(), true),
            Failure::Failed(reason) => (MigrationPhase::Failed, reason, true),
            Failure::Unresolved(reason) => {
                let reason = format!(
                    "{reason}; the hand-over's outcome is unknown, so the VM stays paused here: check the \
                     destination, then resume or delete it here"
                );
                (MigrationPhase::Failed, reason, false)
            }
        };
        let after_postcopy = run.entry.phase() == Some(MigrationPhase::Postcopy);
        if resume && !after_postcopy {
            match qmp.cancel_migration(CANCEL_GRACE).await {
                Ok(info) => run.entry.record_progress(&info),
                Err(err) => tracing::debug!(vm = %run.name, error = %err, "migrate_cancel"),
            }
            for mirror in &run.mirrors {
                if let Err(err) = qmp.end_mirror(&mirror.job, true, MIRROR_END_TIMEOUT).await {
                    tracing::warn!(vm = %run.name, job = %mirror.job, error = %err, "cannot stop the disk copy");
                }
            }
            self.abort_destination(&run.destination, &run.name).await;
        }
        let slot = self.slot(&run.name);
        let _job = slot.job.lock().await;
        let Ok(Some(mut record)) = self.store.get_vm(&run.name).await else {
            return run.entry.finish(phase, Some(error));
        };
        if record.state != VmState::Migrating {
            // A forced stop or a crash got there first and recorded it.
            return run.entry.finish(phase, Some(error));
        }
        let state = match qmp.query_status().await {
            // After a completed migration QEMU waits in `postmigrate`; `cont` takes the disks back.
            Ok(status) if resume && !after_postcopy && !status.running && run.previous == VmState::Running => {
                match qmp.cont().await {
                    Ok(()) => VmState::Running,
                    Err(err) => {
                        tracing::error!(vm = %run.name, error = %err, "cannot resume the guest after the migration");
                        VmState::Paused
                    }
                }
            }
            Ok(status) if status.running => VmState::Running,
            _ => VmState::Paused,
        };
        if !resume || after_postcopy {
            record.last_error = Some(format!("migration to {} failed: {error}", run.destination.url));
        }
        if let Err(err) = self.save_state(&mut record, state).await {
            tracing::error!(vm = %run.name, error = %err, "cannot record the state after a failed migration");
        }
        run.entry.finish(phase, Some(error));
    }
}

/// The downtime limit of a migration at the default: doubled (up to
/// `RAISED_DOWNTIME_MS`) after each pass over memory that auto-converge had to
/// throttle.
struct DowntimeLimit {
    current: Option<u64>,
    passes: u64,
}

impl DowntimeLimit {
    fn new(settings: &MigrationSettings, explicit: bool) -> Self {
        DowntimeLimit { current: if explicit { None } else { settings.downtime_limit_ms }, passes: 0 }
    }

    /// The new limit, if this progress calls for one.
    fn raise_for(&mut self, info: &MigrationInfo) -> Option<u64> {
        let current = self.current?;
        let passes = info.ram.as_ref()?.dirty_sync_count;
        let throttled = info.cpu_throttle_percentage.unwrap_or(0) > 0;
        if passes <= self.passes || !throttled || current >= RAISED_DOWNTIME_MS {
            self.passes = self.passes.max(passes);
            return None;
        }
        self.passes = passes;
        let raised = (current * 2).min(RAISED_DOWNTIME_MS);
        self.current = Some(raised);
        Some(raised)
    }
}

/// Everything the migration task needs.
struct Run {
    name: String,
    live: Arc<Live>,
    destination: Destination,
    ready: IncomingReady,
    mirrors: Vec<Mirror>,
    settings: MigrationSettings,
    /// The user chose the downtime limit: it is never raised.
    explicit_downtime: bool,
    entry: Arc<MigrationEntry>,
    /// The VM's state before the migration, to go back to if it fails.
    previous: VmState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_ended_migration_has_an_outcome_event() {
        let status = |phase, error: Option<&str>| MigrationStatus {
            destination: "http://10.0.0.6:7070".into(),
            phase: Some(phase),
            error: error.map(str::to_string),
            ..MigrationStatus::default()
        };
        let destination = "http://10.0.0.6:7070".to_string();
        assert_eq!(
            outcome_event(&status(MigrationPhase::Failed, Some("destination unreachable"))),
            Some(EventKind::MigrationFailed {
                destination: destination.clone(),
                reason: "destination unreachable".into()
            })
        );
        assert_eq!(
            outcome_event(&status(MigrationPhase::Cancelled, Some("cancelled"))),
            Some(EventKind::MigrationCancelled { destination: destination.clone() })
        );
        assert_eq!(
            outcome_event(&status(MigrationPhase::Completed, None)),
            Some(EventKind::MigrationCompleted { destination })
        );
        assert_eq!(outcome_event(&status(MigrationPhase::Migrating, None)), None);
    }

    fn progress(passes: u64, throttle: u64) -> MigrationInfo {
        let ram = vireo_qemu::RamStats { dirty_sync_count: passes, ..Default::default() };
        MigrationInfo { ram: Some(ram), cpu_throttle_percentage: Some(throttle), ..Default::default() }
    }

    fn settings(limit: u64) -> MigrationSettings {
        MigrationSettings {
            max_bandwidth: UNLIMITED_BANDWIDTH,
            downtime_limit_ms: Some(limit),
            auto_converge: true,
            postcopy: false,
            pause_before_switchover: false,
        }
    }

    #[test]
    fn the_default_downtime_grows_only_while_the_guest_is_throttled() {
        let mut limit = DowntimeLimit::new(&settings(DEFAULT_DOWNTIME_MS), false);
        assert_eq!(limit.raise_for(&progress(2, 0)), None, "converging without throttling");
        assert_eq!(limit.raise_for(&progress(3, 20)), Some(60));
        assert_eq!(limit.raise_for(&progress(3, 30)), None, "once per pass");
        assert_eq!(limit.raise_for(&progress(4, 30)), Some(120));
        assert_eq!(limit.raise_for(&progress(5, 40)), Some(240));
        assert_eq!(limit.raise_for(&progress(6, 50)), Some(RAISED_DOWNTIME_MS));
        assert_eq!(limit.raise_for(&progress(7, 60)), None, "capped");
    }

    #[test]
    fn a_downtime_the_user_chose_stays() {
        let mut limit = DowntimeLimit::new(&settings(10), true);
        assert_eq!(limit.raise_for(&progress(5, 90)), None);
    }

    #[test]
    fn requests_are_checked_before_anything_happens() {
        let request = |bandwidth_mib, max_downtime_ms, postcopy, copy_storage| MigrateRequest {
            to: "http://10.0.0.2:7070".into(),
            to_token: "t".into(),
            copy_storage,
            max_downtime_ms,
            bandwidth_mib,
            postcopy,
        };
        assert!(settings_of(&request(Some(0), None, false, false), Accel::Kvm).is_err());
        assert!(settings_of(&request(None, Some(0), false, false), Accel::Kvm).is_err());
        assert!(settings_of(&request(None, None, true, true), Accel::Kvm).is_err(), "post-copy with copy_storage");
        let chosen = settings_of(&request(Some(100), Some(50), false, true), Accel::Tcg).unwrap();
        assert_eq!((chosen.max_bandwidth, chosen.downtime_limit_ms), (100 << 20, Some(50)));
        assert!(chosen.pause_before_switchover && chosen.auto_converge);
        let default = |accel| settings_of(&request(None, None, false, false), accel).unwrap().downtime_limit_ms;
        assert_eq!(default(Accel::Kvm), Some(DEFAULT_DOWNTIME_MS));
        assert_eq!(
            default(Accel::Tcg),
            Some(TCG_DEFAULT_DOWNTIME_MS),
            "QEMU 7.2's TCG loses writes in long migrations"
        );
    }
}
