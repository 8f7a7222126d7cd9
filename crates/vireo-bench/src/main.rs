//! `vireo-bench`: the figures of docs/benchmarks.md.
//!
//! It measures vireo from the outside, as a user meets it: a private
//! `vireo serve` (the release binary, a temporary data directory) driven
//! through vireo-client and the real CLI binary. Start → marker is compared
//! with the same guest run by plain QEMU by hand, through libvirt, and with
//! vireo's own QEMU command run by hand, and each of vireo's lean machine
//! defaults is undone one at a time; the scale benchmark defines
//! many VMs and times listing them; snapshots and save/restore through the
//! API are compared with the same operations in raw QMP on a plain QEMU,
//! linked clones are timed for small and large bases, and a live migration
//! between two daemons is compared with one between two plain QEMUs; scraping
//! the metrics is timed with many idle guests running; and starts, snapshots,
//! defining and listing VMs, and the CLI's start and destroy are compared
//! with a private libvirtd, and live migration with one between two private
//! libvirtds. It must
//! not reach into the daemon's internals: only the API, the CLI, what /proc
//! says about processes, and the QMP log the daemon writes for each VM.
//! Everything it starts (daemons, QEMUs) is stopped again, also on Ctrl-C.

mod ablation;
mod ablation_report;
mod boot;
mod cli_timing;
mod daemon;
mod libvirt;
mod libvirt_bench;
mod libvirt_migration;
mod libvirt_report;
mod machine;
mod metrics;
mod migration;
mod plain;
mod process_info;
mod qmp;
mod report;
mod scale;
mod snapshots;
mod start_marker;
mod stats;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use crate::boot::Guest;
use crate::daemon::{PrivateDaemon, QemuReaper};
use crate::libvirt_bench::LibvirtOutcome;
use crate::report::Results;

#[derive(Debug, Parser)]
#[command(
    name = "vireo-bench",
    about = "Benchmark vireo: start → marker, snapshots/save/restore and live migration against plain QEMU, \
             1000 defined VMs, linked clones, scraping metrics, against libvirt, the lean machine's defaults"
)]
struct Args {
    /// Smoke test: 2 boot runs, 100 VMs, 1 snapshot run, 1 migration, 2 guests and 30 scrapes for the metrics, 1
    /// ablation round (unless --runs / --vms / --snapshot-runs / --migration-runs / --metrics-guests / --scrapes /
    /// --ablation-rounds say otherwise)
    #[arg(long)]
    quick: bool,
    /// Start → marker runs of each side (rounds of section 6's round robin) [default: 7, --quick: 2]
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Unrecorded warm-up pairs before the start → marker runs, the snapshot runs, the clone runs and the migrations
    #[arg(long, value_name = "N", default_value_t = 1)]
    warmup: usize,
    /// Runs of each snapshot, save/restore and clone measurement [default: 5, --quick: 1]
    #[arg(long, value_name = "N")]
    snapshot_runs: Option<usize>,
    /// Live migrations on each side (vireo A → B, B → A, …; plain QEMU and libvirt likewise) [default: 5, --quick: 1]
    #[arg(long, value_name = "N")]
    migration_runs: Option<usize>,
    /// VMs to define for the scale benchmark [default: 1000, --quick: 100]
    #[arg(long, value_name = "N")]
    vms: Option<usize>,
    /// Runs of each list latency measurement
    #[arg(long, value_name = "N", default_value_t = 20)]
    list_runs: usize,
    /// Idle guests running while the metrics are scraped [default: 20, --quick: 2]
    #[arg(long, value_name = "N")]
    metrics_guests: Option<usize>,
    /// Timed scrapes of GET /metrics [default: 100, --quick: 30]
    #[arg(long, value_name = "N")]
    scrapes: Option<usize>,
    /// Rounds of the lean-defaults ablation, each starting all its variants once [default: 7, --quick: 1 and no
    /// warm-up round]
    #[arg(long, value_name = "N")]
    ablation_rounds: Option<usize>,
    /// Run only one of the benchmarks
    #[arg(long, value_enum)]
    only: Option<Bench>,
    /// The vireo binary [default: `vireo` beside this program]
    #[arg(long, value_name = "PATH")]
    vireo: Option<PathBuf>,
    /// The QEMU binary, for the daemon and the plain runs [default: $VIREO_QEMU, else qemu-system-x86_64 in PATH]
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// Directory with the test guest's vmlinuz and initramfs.img
    #[arg(long, value_name = "DIR", env = "VIREO_TEST_GUEST_DIR", default_value = "/var/cache/vireo/test-guest")]
    guest_dir: PathBuf,
    /// Write the Markdown report to FILE (e.g. docs/benchmarks.md)
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Write the results as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the temporary directory (daemon logs, qmp.log of every VM) and print its path
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Bench {
    Boot,
    Scale,
    Snapshots,
    Migration,
    Metrics,
    /// Section 6: against a private libvirtd (with section 1's runs, when they are not measured on their own)
    Libvirt,
    /// Section 7: the lean machine's defaults one at a time
    Ablation,
    /// Section 6's live migration: two vireo daemons against two private libvirtds
    LibvirtMigration,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(err) = main_with(&args).await {
        eprintln!("vireo-bench: error: {err:#}");
        std::process::exit(1);
    }
}

async fn main_with(args: &Args) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let work =
        tempfile::Builder::new().prefix("vireo-bench-").tempdir().context("cannot create a temporary directory")?;
    let reaper = QemuReaper { dir: work.path().to_path_buf() };
    // On a signal the benchmark future is dropped, which kills its daemons and plain QEMUs;
    // the reaper then takes the daemons' QEMUs, which live in their own sessions.
    let outcome = tokio::select! {
        outcome = run(args, work.path()) => outcome,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    drop(reaper);
    if args.keep {
        eprintln!("vireo-bench: kept {}", work.keep().display());
    }
    let results = outcome?;

    let markdown = report::markdown(&results);
    print!("{markdown}");
    if let Some(path) = &args.write {
        std::fs::write(path, &markdown).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("vireo-bench: wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results)? + "\n";
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("vireo-bench: wrote {}", path.display());
    }
    Ok(())
}

async fn run(args: &Args, work: &Path) -> anyhow::Result<Results> {
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let vireo = match &args.vireo {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("vireo"),
    };
    if !vireo.is_file() {
        bail!("{} not found; build it with cargo build --release -p vireo, or pass --vireo", vireo.display());
    }
    let qemu = find_qemu(args.qemu.as_deref())?;
    let guest = Guest::in_dir(&args.guest_dir)?;
    let runs = args.runs.unwrap_or(if args.quick { 2 } else { 7 });
    let vms = args.vms.unwrap_or(if args.quick { 100 } else { 1000 });
    let counts = Counts {
        runs,
        vms,
        snapshot_runs: args.snapshot_runs.unwrap_or(if args.quick { 1 } else { 5 }),
        migration_runs: args.migration_runs.unwrap_or(if args.quick { 1 } else { 5 }),
        metrics_guests: args.metrics_guests.unwrap_or(if args.quick { 2 } else { 20 }),
        scrapes: args.scrapes.unwrap_or(if args.quick { 30 } else { 100 }),
        ablation_rounds: args.ablation_rounds.unwrap_or(if args.quick { 1 } else { 7 }),
        ablation_warmup: if args.quick { 0 } else { args.warmup },
    };
    measure(args, &date, &vireo, &qemu, &guest, counts, work).await
}

/// How many runs and VMs each benchmark gets.
struct Counts {
    runs: usize,
    vms: usize,
    snapshot_runs: usize,
    migration_runs: usize,
    metrics_guests: usize,
    scrapes: usize,
    ablation_rounds: usize,
    ablation_warmup: usize,
}

/// The benchmarks, each with its own daemon, which is shut down (VMs force-stopped) whatever happens.
async fn measure(
    args: &Args,
    date: &str,
    vireo: &Path,
    qemu: &Path,
    guest: &Guest,
    counts: Counts,
    work: &Path,
) -> anyhow::Result<Results> {
    let Counts { runs, vms, snapshot_runs, migration_runs, metrics_guests, scrapes, ablation_rounds, ablation_warmup } =
        counts;
    let wanted = |bench: Bench| args.only.is_none_or(|only| only == bench);
    // Section 6's start → marker round robin has section 1's two sides among its five: when it
    // runs, section 1 shows those runs rather than measuring the same thing again on its own.
    let boot_in_libvirt = wanted(Bench::Libvirt) && libvirt::missing_binaries().is_none();
    let boot_daemon = PrivateDaemon::start(vireo, qemu, work.join("boot"), None).await?;
    let mut machine = machine::Machine::gather(qemu, &boot_daemon.client()).await;
    let boot = if wanted(Bench::Boot) && !boot_in_libvirt {
        eprintln!("vireo-bench: start → marker, {runs} runs each way after {} warm-up pair(s)", args.warmup);
        let outcome = boot::run(&boot_daemon, qemu, guest, runs, args.warmup, work).await;
        boot_daemon.shutdown().await;
        Some(outcome?)
    } else {
        boot_daemon.shutdown().await;
        None
    };
    let ablation = if wanted(Bench::Ablation) {
        eprintln!(
            "vireo-bench: lean defaults one at a time: {ablation_rounds} round(s) of {} variants after \
             {ablation_warmup} warm-up round(s)",
            ablation::Variant::all().len()
        );
        let daemon = PrivateDaemon::start(vireo, qemu, work.join("ablation"), None).await?;
        let outcome = ablation::run(&daemon, guest, ablation_rounds, ablation_warmup).await;
        daemon.shutdown().await;
        Some(outcome?)
    } else {
        None
    };
    let scale = if wanted(Bench::Scale) {
        let daemon = PrivateDaemon::start(vireo, qemu, work.join("scale"), None).await?;
        let outcome = scale::run(&daemon, vireo, guest, vms, args.list_runs).await;
        daemon.shutdown().await;
        Some(outcome?)
    } else {
        None
    };
    let snapshots = if wanted(Bench::Snapshots) {
        eprintln!(
            "vireo-bench: snapshots, save/restore: {snapshot_runs} runs each way after {} warm-up run(s); clones",
            args.warmup
        );
        let daemon = PrivateDaemon::start(vireo, qemu, work.join("snapshots"), None).await?;
        let outcome = snapshots::run(&daemon, qemu, guest, snapshot_runs, args.warmup, work).await;
        daemon.shutdown().await;
        Some(outcome?)
    } else {
        None
    };
    let migration = if wanted(Bench::Migration) {
        eprintln!(
            "vireo-bench: live migration: {migration_runs} runs on each side after {} warm-up run(s)",
            args.warmup
        );
        let [a, b] = migration::start_pair(vireo, qemu, [work.join("migration-a"), work.join("migration-b")]).await?;
        let outcome = migration::run([&a, &b], qemu, guest, migration_runs, args.warmup, work).await;
        a.shutdown().await;
        b.shutdown().await;
        Some(outcome?)
    } else {
        None
    };
    let metrics = if wanted(Bench::Metrics) {
        let metrics_listen = Some(migration::free_port()?);
        let daemon = PrivateDaemon::start_with_metrics(vireo, qemu, work.join("metrics"), None, metrics_listen).await?;
        let outcome = metrics::run(&daemon, guest, metrics_guests, scrapes).await;
        daemon.shutdown().await;
        Some(outcome?)
    } else {
        None
    };
    let libvirt = if wanted(Bench::Libvirt) {
        let counts = libvirt_bench::Counts { runs, warmup: args.warmup, vms, list_runs: args.list_runs };
        Some(libvirt_bench::run(vireo, qemu, guest, counts, work).await?)
    } else {
        None
    };
    let libvirt_migration = if wanted(Bench::LibvirtMigration) {
        let counts = libvirt_migration::Counts { runs: migration_runs, warmup: args.warmup };
        Some(libvirt_migration::run(vireo, qemu, guest, counts, work).await?)
    } else {
        None
    };
    let boot = match (boot, &libvirt) {
        (None, Some(LibvirtOutcome::Measured(measured))) => Some(measured.boot.section_one(guest, args.warmup)?),
        (boot, _) => boot,
    };
    machine.loadavg_after = machine::loadavg();
    Ok(Results {
        date: date.to_string(),
        command: std::env::var("VIREO_BENCH_COMMAND").ok().filter(|c| !c.is_empty()),
        program: std::env::args().collect::<Vec<_>>().join(" "),
        revision: std::env::var("VIREO_BENCH_REVISION").ok().filter(|r| !r.is_empty()),
        quick: args.quick,
        machine,
        boot,
        scale,
        snapshots,
        migration,
        metrics,
        libvirt,
        libvirt_migration,
        ablation,
    })
}

fn find_qemu(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("VIREO_QEMU").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("qemu-system-x86_64"))
        .find(|candidate| candidate.is_file())
        .context("qemu-system-x86_64 is not in PATH (scripts/install-deps.sh installs it)")
}
