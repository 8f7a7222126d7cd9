//! Live migration with shared storage on loopback: an idle guest moved back and
//! forth between two private daemons on this machine (A → B, B → A, …), against
//! the same guest moved between two plain QEMUs by hand with raw QMP and QEMU's
//! default migration capabilities and parameters.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use vireo_api::{MigrateRequest, MigrationPhase, PoolSpec, PoolType, VmState};

use crate::boot::{self, Guest, VolumeDisk};
use crate::daemon::PrivateDaemon;
use crate::plain::{self, Incoming, PlainQemu};
use crate::stats::{Summary, ms};

/// The VM's disk: a small qcow2 volume in the pool both daemons share (plain QEMU: a qcow2 file both open).
pub(crate) const DISK_MIB: u64 = 64;
/// The pool both daemons define, on the same directory.
const POOL: &str = "shared";
pub(crate) const VM: &str = "mig";
const DISK_VOLUME: &str = "mig-disk";
/// How often the client polls the source daemon's migration status.
const POLL: Duration = Duration::from_millis(5);
/// How long one migration may take before the bench gives up.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);
/// The target for the guest's pause at switch-over (QEMU's figure, median).
pub const TARGET_DOWNTIME_MS: f64 = 30.0;

/// One live migration (milliseconds), either side.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationRun {
    /// `a → b` or `b → a`: between the two daemons, or the plain QEMUs' two scratch directories.
    pub direction: String,
    /// QEMU's `downtime` from `query-migrate` on the source (vireo: the final status's `downtime_ms`).
    pub downtime_ms: f64,
    /// QEMU's `total-time` from `query-migrate` on the source (vireo: `total_time_ms`).
    pub total_time_ms: f64,
    /// The source QEMU done → the guest running on the destination. Vireo: the final status's
    /// `handover_ms`; plain: the source's MIGRATION `completed` event → `cont` answered on the destination.
    pub handover_ms: f64,
    /// As the client sees it. Vireo: `POST /v1/vms/{vm}/migrate` sent → status `completed` read;
    /// plain: `migrate` sent → `cont` answered on the destination.
    pub wall_ms: f64,
    /// QEMU's `ram.transferred` on the source.
    pub memory_transferred_bytes: u64,
}

/// One measure, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub vireo: Summary,
    pub plain: Summary,
    /// median(vireo) / median(plain).
    pub ratio_of_medians: f64,
}

impl Comparison {
    fn of(vireo: &[MigrationRun], plain: &[MigrationRun], figure: fn(&MigrationRun) -> f64) -> Option<Self> {
        let vireo = Summary::of(&vireo.iter().map(figure).collect::<Vec<_>>())?;
        let plain = Summary::of(&plain.iter().map(figure).collect::<Vec<_>>())?;
        Some(Comparison { ratio_of_medians: vireo.median / plain.median, vireo, plain })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MigrationResults {
    pub runs: usize,
    pub warmup_runs: usize,
    pub disk_mib: u64,
    /// The plain QEMUs, with `DISK` for the qcow2 file and `N` for the inherited QMP socket.
    pub plain_qemu_command: String,
    /// What the plain destination adds to it.
    pub plain_incoming_args: String,
    pub vireo: Vec<MigrationRun>,
    pub plain: Vec<MigrationRun>,
    pub downtime: Comparison,
    pub total_time: Comparison,
    pub handover: Comparison,
    /// Downtime + hand-over of each run: the guest's whole pause.
    pub pause: Comparison,
    pub wall: Comparison,
    pub memory_transferred_bytes: Comparison,
    pub target_downtime_ms: f64,
    /// median(vireo downtime) ≤ [`TARGET_DOWNTIME_MS`].
    pub downtime_target_holds: bool,
    /// median(vireo total time) ≤ median(plain total time).
    pub total_time_target_holds: bool,
}

/// A loopback address for a daemon's `--listen`, with a port that was free a moment ago.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

/// Two private daemons on `dirs`, each also serving its API on a loopback port, as a migration
/// between them needs.
pub(crate) async fn start_pair(vireo: &Path, qemu: &Path, dirs: [PathBuf; 2]) -> anyhow::Result<[PrivateDaemon; 2]> {
    let [a, b] = dirs;
    let a = PrivateDaemon::start(vireo, qemu, a, Some(free_port()?)).await?;
    let b = PrivateDaemon::start(vireo, qemu, b, Some(free_port()?)).await?;
    Ok([a, b])
}

/// Defines the pool both daemons share, on `shared`, and boots the VM on the first with a qcow2
/// volume there as its disk (nothing of it timed).
pub(crate) async fn boot_on_shared_pool(
    daemons: [&PrivateDaemon; 2],
    guest: &Guest,
    shared: &Path,
) -> anyhow::Result<()> {
    for daemon in daemons {
        let spec = PoolSpec { name: POOL.into(), pool_type: PoolType::Dir, path: shared.to_path_buf() };
        daemon.client().create_pool(&spec).await.context("cannot define the shared pool")?;
    }
    let disk = VolumeDisk { pool: POOL, volume: DISK_VOLUME, mib: DISK_MIB };
    boot::boot_with_volume(&daemons[0].client(), guest, VM, &disk).await.context("cannot boot the VM through daemon A")
}

/// Section 4: defines a shared pool on both daemons (listening on loopback) and boots the VM
/// on the first, boots a plain QEMU, then runs `warmup` unrecorded and `runs` recorded
/// migrations on each side (alternating vireo, plain). The plain QEMUs are stopped again, also
/// on error; the daemons are the caller's.
pub async fn run(
    daemons: [&PrivateDaemon; 2],
    qemu: &Path,
    guest: &Guest,
    runs: usize,
    warmup: usize,
    work: &Path,
) -> anyhow::Result<MigrationResults> {
    boot_on_shared_pool(daemons, guest, &work.join("migration-shared")).await?;

    let scratch = work.join("plain-migration");
    let dirs = [scratch.join("a"), scratch.join("b")];
    for dir in &dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let disk = scratch.join("disk.qcow2");
    plain::qemu_img_create(qemu, &disk, DISK_MIB).await?;
    let args = plain::disk_args(guest, &disk);
    let mut plain = PlainQemu::spawn(qemu, &args, None, &dirs[0]).await.context("cannot start the plain QEMU")?;
    plain.wait_marker().await.context("the plain QEMU's guest never got ready")?;
    plain.migration_events().await?;

    let mut vireo_runs = Vec::with_capacity(runs);
    let mut plain_runs = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let label = boot::run_label(i, warmup, runs);
        let (from, to) = (i % 2, (i + 1) % 2);
        let direction = if from == 0 { "a → b" } else { "b → a" };
        let through_daemons = vireo_run(daemons[from], daemons[to], direction)
            .await
            .with_context(|| format!("vireo migration {label}"))?;
        let (by_hand, next) = plain_run(plain, qemu, &args, &dirs[to], direction)
            .await
            .with_context(|| format!("plain QEMU migration {label}"))?;
        plain = next;
        eprintln!(
            "vireo-bench: migration {label} ({direction}): downtime {:.0}/{:.0} ms, total {:.0}/{:.0} ms, \
             hand-over {:.0}/{:.0} ms, wall {:.0}/{:.0} ms (vireo/plain)",
            through_daemons.downtime_ms,
            by_hand.downtime_ms,
            through_daemons.total_time_ms,
            by_hand.total_time_ms,
            through_daemons.handover_ms,
            by_hand.handover_ms,
            through_daemons.wall_ms,
            by_hand.wall_ms
        );
        if i >= warmup {
            vireo_runs.push(through_daemons);
            plain_runs.push(by_hand);
        }
    }
    plain.quit().await;

    let mut shown_args = plain::disk_args(guest, Path::new("DISK"));
    shown_args.extend(plain::qmp_args("N"));
    let incoming = plain::incoming_args("defer").join(" ");
    summarize(boot::quote_command(&shown_args), incoming, warmup, vireo_runs, plain_runs)
}

pub(crate) fn summarize(
    plain_qemu_command: String,
    plain_incoming_args: String,
    warmup: usize,
    vireo: Vec<MigrationRun>,
    plain: Vec<MigrationRun>,
) -> anyhow::Result<MigrationResults> {
    let compare = |figure| Comparison::of(&vireo, &plain, figure).context("no migration runs");
    let downtime = compare(|r| r.downtime_ms)?;
    let total_time = compare(|r| r.total_time_ms)?;
    Ok(MigrationResults {
        runs: vireo.len(),
        warmup_runs: warmup,
        disk_mib: DISK_MIB,
        plain_qemu_command,
        plain_incoming_args,
        handover: compare(|r| r.handover_ms)?,
        pause: compare(|r| r.downtime_ms + r.handover_ms)?,
        wall: compare(|r| r.wall_ms)?,
        memory_transferred_bytes: compare(|r| r.memory_transferred_bytes as f64)?,
        target_downtime_ms: TARGET_DOWNTIME_MS,
        downtime_target_holds: downtime.vireo.median <= TARGET_DOWNTIME_MS,
        total_time_target_holds: total_time.vireo.median <= total_time.plain.median,
        downtime,
        total_time,
        vireo,
        plain,
    })
}

// ---- through the daemons ----

/// Migrates the VM from `source` to `destination` (shared storage, everything else left at
/// vireo's defaults) and polls the source's status until the migration has ended.
pub(crate) async fn vireo_run(
    source: &PrivateDaemon,
    destination: &PrivateDaemon,
    direction: &str,
) -> anyhow::Result<MigrationRun> {
    let (to, to_token) = destination.remote()?;
    let request = MigrateRequest {
        to,
        to_token,
        copy_storage: false,
        max_downtime_ms: None,
        bandwidth_mib: None,
        postcopy: false,
    };
    let logs = || {
        format!(
            "see {} and {} (daemon.log, vms/{VM}/qmp.log; --keep keeps them)",
            source.data_dir.display(),
            destination.data_dir.display()
        )
    };
    let client = source.client();
    let start = Instant::now();
    client.migrate_vm(VM, &request).await.with_context(|| format!("cannot start the migration; {}", logs()))?;
    let status = loop {
        let status = client.migration_status(VM).await.context("cannot read the migration status")?;
        if status.phase.is_some_and(MigrationPhase::is_final) {
            break status;
        }
        if start.elapsed() > MIGRATION_TIMEOUT {
            bail!("the migration is still {:?} after {MIGRATION_TIMEOUT:?}; {}", status.phase, logs());
        }
        tokio::time::sleep(POLL).await;
    };
    let wall = start.elapsed();
    if status.phase != Some(MigrationPhase::Completed) {
        bail!("the migration ended {:?}: {}; {}", status.phase, status.error.unwrap_or_default(), logs());
    }
    let figure = |value: Option<u64>, name: &str| {
        value.map(|v| v as f64).with_context(|| format!("the completed migration's status has no {name}; {}", logs()))
    };
    if status.total_time_ms == Some(0) {
        bail!(
            "the completed migration's status says total_time_ms 0 (downtime_ms {:?}): QEMU's figures were read \
             before they were final (QEMU 7.2 reports `completed` before it works them out; they are final once \
             query-status says `postmigrate`); {}",
            status.downtime_ms,
            logs()
        );
    }
    let run = MigrationRun {
        direction: direction.into(),
        downtime_ms: figure(status.downtime_ms, "downtime_ms")?,
        total_time_ms: figure(status.total_time_ms, "total_time_ms")?,
        handover_ms: figure(status.handover_ms, "handover_ms")?,
        wall_ms: ms(wall),
        memory_transferred_bytes: status.memory_transferred_bytes,
    };
    let vm = destination.client().get_vm(VM).await.context("the destination does not know the VM")?;
    if vm.state != VmState::Running {
        bail!("after the migration the VM is {:?} on the destination, expected Running; {}", vm.state, logs());
    }
    Ok(run)
}

// ---- plain QEMU by hand ----

/// Starts a destination QEMU (`-incoming defer`, listening on a loopback port QEMU picks) in
/// `dir`, not timed; migrates `source` to it with QEMU's defaults, `cont`s the destination
/// once its incoming migration has completed, and quits the source. Returns the destination.
async fn plain_run(
    mut source: PlainQemu,
    qemu: &Path,
    args: &[String],
    dir: &Path,
    direction: &str,
) -> anyhow::Result<(MigrationRun, PlainQemu)> {
    let mut destination = PlainQemu::spawn(qemu, args, Some(Incoming::Migration), dir)
        .await
        .context("cannot start the destination QEMU")?;
    let uri = destination.listen_incoming("127.0.0.1").await?;
    let sent = source.migrate(&uri).await?;
    let completed = Instant::now();
    destination.wait_incoming().await?;
    destination.qmp.execute("cont", json!({})).await?;
    let running = Instant::now();
    let info = source.final_migration_info().await?;
    let figure =
        |value: &Value, name: &str| value.as_f64().with_context(|| format!("query-migrate has no {name}: {info}"));
    let run = MigrationRun {
        direction: direction.into(),
        downtime_ms: figure(&info["downtime"], "downtime")?,
        total_time_ms: figure(&info["total-time"], "total-time")?,
        handover_ms: ms(running - completed),
        wall_ms: ms(running - sent),
        memory_transferred_bytes: info["ram"]["transferred"].as_u64().unwrap_or(0),
    };
    source.quit().await;
    Ok((run, destination))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn runs(figures: &[(f64, f64)], handover_ms: f64, memory_mib: u64) -> Vec<MigrationRun> {
        let run = |&(downtime_ms, total_time_ms): &(f64, f64)| MigrationRun {
            direction: "a → b".into(),
            downtime_ms,
            total_time_ms,
            handover_ms,
            wall_ms: total_time_ms + 60.0,
            memory_transferred_bytes: memory_mib << 20,
        };
        figures.iter().map(run).collect()
    }

    #[test]
    fn targets_are_judged_on_the_medians() {
        let vireo = runs(&[(12.0, 400.0), (40.0, 500.0), (20.0, 450.0)], 30.0, 10);
        let plain = runs(&[(250.0, 900.0), (280.0, 1000.0), (260.0, 950.0)], 2.0, 20);
        let results = summarize("q".into(), "-S".into(), 1, vireo, plain.clone()).unwrap();
        assert_eq!((results.downtime.vireo.median, results.downtime.plain.median), (20.0, 260.0));
        assert!(results.downtime_target_holds, "20 ms ≤ 30 ms");
        assert!(results.total_time_target_holds, "450 ms ≤ 950 ms");
        assert_eq!(results.pause.vireo.median, 50.0);
        assert_eq!(results.pause.plain.median, 262.0);
        assert_eq!(results.memory_transferred_bytes.ratio_of_medians, 0.5);
        let slow = runs(&[(31.0, 1000.0)], 30.0, 10);
        let results = summarize("q".into(), "-S".into(), 0, slow, plain[..1].to_vec()).unwrap();
        assert!(!results.downtime_target_holds && !results.total_time_target_holds);
    }
}
