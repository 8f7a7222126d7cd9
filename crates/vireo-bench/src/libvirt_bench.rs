//! Section 5: vireo against libvirt. A private vireo daemon and a private libvirtd
//! ([`PrivateLibvirtd`]) run the same test guest, each with its own defaults, one
//! operation at a time, alternating (vireo, libvirt, vireo, libvirt, …):
//!
//! - start → marker on the serial console: a round robin of five sides (vireo's defaults,
//!   vireo with the bzImage, libvirt, plain QEMU, vireo's QEMU command by hand; see
//!   [`start_marker`]), then five VMs at once;
//! - `vireo vm start` against `virsh start`, and `vireo vm stop --force` against `virsh
//!   destroy`, each a process of its own, the latter also timed from QEMU's exit;
//! - snapshot create/revert and save/restore of a running VM with a qcow2 disk;
//! - with a fresh daemon on each side: define N VMs through each CLI (`vireo vm
//!   create` against `virsh define`), the daemons' memory with them, listing them
//!   (`vireo vm list -o json` against `virsh list --all`), deleting them (`vireo vm
//!   delete` against `virsh undefine`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use vireo_api::StopRequest;
use vireo_client::Client;

use crate::boot::{self, BOOT_TIMEOUT, Guest, MARKER};
use crate::cli_timing::{self, timed};
use crate::daemon::PrivateDaemon;
use crate::libvirt::{self, Domain, PrivateLibvirtd, VirshShell};
use crate::snapshots::{self, Op};
use crate::start_marker::{self, LibvirtRun, RunningByHand, Side, StartMarker, StartRound};
use crate::stats::{Summary, ms};
use crate::{plain, process_info};

/// Start → marker, vireo's defaults ≤ this × libvirt's defaults (median of the pairwise ratios).
pub const TARGET_START: f64 = 0.7;
/// Start → marker, vireo's QEMU command by hand ≥ this × through vireo (median of the pairwise
/// ratios): the daemon adds at most 5 %.
pub const TARGET_BY_HAND: f64 = 0.95;
/// `vireo vm start NAME` returns within this many milliseconds (median, spawn → exit).
pub const TARGET_CLI_START_MS: f64 = 50.0;
/// `vireo vm stop --force NAME` returns within this many milliseconds of QEMU's exit (median).
pub const TARGET_DESTROY_AFTER_EXIT_MS: f64 = 20.0;
/// `vireo vm list -o json` ≤ this × `virsh list --all` with the VMs defined (medians).
pub const TARGET_LIST: f64 = 0.1;
/// `vireo vm create` ≤ this × `virsh define` (medians).
pub const TARGET_CREATE: f64 = 0.5;
/// The vireo daemon's RSS with the VMs defined ≤ this × libvirtd's.
pub const TARGET_RSS: f64 = 0.5;
/// Five starts at once ≤ this × five single starts back to back / the cores available.
pub const TARGET_CONCURRENT: f64 = 1.1;
/// VMs started at once.
pub const CONCURRENT_VMS: usize = 5;
/// Let freshly started daemons settle before their idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// How many runs, VMs and warm-ups the section gets.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// Recorded pairs of each start and snapshot measurement.
    pub runs: usize,
    pub warmup: usize,
    /// VMs defined on each side.
    pub vms: usize,
    /// Recorded list runs of each side.
    pub list_runs: usize,
}

/// Measured, or why not.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LibvirtOutcome {
    Measured(Box<LibvirtResults>),
    NotMeasured { reason: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct LibvirtResults {
    /// `virsh version --daemon`.
    pub libvirt_version: String,
    /// The cores available to this process (the concurrent target divides by them).
    pub nproc: usize,
    pub runs: usize,
    pub warmup_runs: usize,
    /// How libvirtd was started, its configuration and the domain, with `DIR` for its directory.
    pub libvirtd_command: String,
    pub libvirtd_conf: String,
    pub qemu_conf: String,
    pub domain_xml: String,
    /// What libvirt made of the domain: the QEMU command from its domain log.
    pub libvirt_qemu_command: Option<String>,
    pub boot: StartMarker,
    /// `vireo vm start` / `stop --force` against `virsh start` / `destroy`, as processes.
    pub commands: CommandsVersus,
    pub concurrent: ConcurrentVersus,
    pub snapshots: SnapshotVersus,
    pub scale: ScaleVersus,
    pub targets: Vec<Target>,
}

/// One measure on both sides, run in pairs.
#[derive(Clone, Debug, Serialize)]
pub struct Versus {
    pub vireo: Summary,
    pub libvirt: Summary,
    /// vireo / libvirt of each pair.
    pub pairwise_ratio: Summary,
    /// median(vireo) / median(libvirt).
    pub ratio_of_medians: f64,
}

impl Versus {
    /// `None` without pairs.
    pub fn of(vireo: &[f64], libvirt: &[f64]) -> Option<Versus> {
        let ratios: Vec<f64> = vireo.iter().zip(libvirt).map(|(v, l)| v / l).collect();
        let (vireo, libvirt) = (Summary::of(vireo)?, Summary::of(libvirt)?);
        Some(Versus {
            ratio_of_medians: vireo.median / libvirt.median,
            pairwise_ratio: Summary::of(&ratios)?,
            vireo,
            libvirt,
        })
    }
}

/// The command-line tools, each command a process of its own (spawn → exit).
#[derive(Clone, Debug, Serialize)]
pub struct CommandsVersus {
    /// `vireo vm start NAME` against `virsh start NAME` (separate starts, stopped at once).
    pub start: Versus,
    /// `vireo vm stop --force NAME` against `virsh destroy NAME`, once the guest printed its
    /// marker (sides (a) and (c) of the round robin).
    pub destroy: Versus,
    /// Of those, QEMU's exit → the command's exit.
    pub destroy_after_exit: Versus,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConcurrentVersus {
    pub vms: usize,
    /// All start requests sent at once → the last of the markers, per run.
    pub all_markers: Versus,
    /// vireo's QEMU command of side (e), `vms` copies run by hand at once → the last marker:
    /// what the machine allows without any manager.
    pub by_hand: Summary,
    /// One guest's QEMU until its marker: started alone (side (e) of the round robin), and
    /// `vms` at once by hand and through vireo.
    pub qemu_cpu_alone: QemuCpu,
    pub qemu_cpu_by_hand: QemuCpu,
    pub qemu_cpu_vireo: QemuCpu,
    /// Each side's bound: [`TARGET_CONCURRENT`] × `vms` × its single start's median / nproc.
    pub vireo_bound_ms: f64,
    pub libvirt_bound_ms: f64,
}

/// CPU time of one guest's QEMU until its marker (medians; `None` where /proc had no answer).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct QemuCpu {
    pub total_ms: Option<f64>,
    /// Of it, in the kernel.
    pub system_ms: Option<f64>,
}

impl QemuCpu {
    fn of(total: &[f64], system: &[f64]) -> QemuCpu {
        let median = |samples: &[f64]| Summary::of(samples).map(|s| s.median);
        QemuCpu { total_ms: median(total), system_ms: median(system) }
    }
}

/// One run of [`CONCURRENT_VMS`] guests started at once, on one side.
#[derive(Clone, Debug, Default)]
struct TogetherRun {
    /// All started → the last marker.
    all_markers_ms: f64,
    /// Each guest's QEMU until its marker: CPU time, and of it in the kernel.
    qemu_cpu_ms: Vec<f64>,
    qemu_system_ms: Vec<f64>,
}

impl TogetherRun {
    fn add_cpu(&mut self, cpu: Option<(Duration, Duration)>) {
        if let Some((user, system)) = cpu {
            self.qemu_cpu_ms.push(ms(user + system));
            self.qemu_system_ms.push(ms(system));
        }
    }
}

/// The concurrent runs of each side.
#[derive(Default)]
struct Concurrent {
    vireo: Vec<TogetherRun>,
    by_hand: Vec<TogetherRun>,
    libvirt: Vec<f64>,
}

/// One operation of a running VM with a qcow2 disk, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct OpVersus {
    pub op: Op,
    pub times: Versus,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotVersus {
    pub disk_mib: u64,
    pub ops: Vec<OpVersus>,
    /// Size of libvirt's saved-state file (its header, the domain XML and QEMU's stream).
    pub libvirt_state_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rss {
    pub vireo_kib: u64,
    pub libvirtd_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScaleVersus {
    pub vms: usize,
    pub list_runs: usize,
    pub rss_idle: Rss,
    pub rss_defined: Rss,
    /// `vireo vm create …` against `virsh define FILE`, per VM (spawn → exit).
    pub create: Versus,
    /// `vireo vm list -o json` against `virsh list --all` with all VMs defined.
    pub list: Versus,
    /// `vireo vm delete` against `virsh undefine`, per VM.
    pub delete: Versus,
    pub vireo_list_bytes: usize,
    pub virsh_list_bytes: usize,
}

/// A target and whether it holds.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub holds: bool,
}

/// The whole section: skipped (with the reason) where libvirt is not installed.
pub async fn run(
    vireo: &Path,
    qemu: &Path,
    guest: &Guest,
    counts: Counts,
    work: &Path,
) -> anyhow::Result<LibvirtOutcome> {
    if let Some(reason) = libvirt::missing_binaries() {
        eprintln!("vireo-bench: vs libvirt not measured: {reason}");
        return Ok(LibvirtOutcome::NotMeasured { reason });
    }
    let dir = work.join("libvirt");
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let libvirt_guest = copy_guest(guest, &dir.join("guest"))?;
    let sides = Sides { vireo, qemu, guest, libvirt_guest: &libvirt_guest, scratch: &scratch };
    let _reaper = libvirt::OrphanReaper::start()?;

    eprintln!(
        "vireo-bench: vs libvirt: starting a private libvirtd (its first start probes QEMU), then {} rounds (start \
         → marker, five sides) or pairs after {} warm-up round(s)",
        counts.runs, counts.warmup
    );
    let daemon = PrivateDaemon::start(vireo, qemu, work.join("libvirt-vireo"), None).await?;
    // The daemon's directory holds the libvirt guest and the scratch files too: `DIR` in the report.
    let libvirtd = PrivateLibvirtd::start(dir.clone()).await?;
    let outcome = sides.starts_and_snapshots(&daemon, &libvirtd, counts).await;
    let libvirt_version = libvirtd.version().await;
    let libvirt_qemu_command = libvirtd.qemu_command("versus-1");
    libvirtd.shutdown().await;
    daemon.shutdown().await;
    let Started { boot, commands, concurrent, snapshots } = outcome?;

    // Fresh daemons for the memory figures; libvirtd on the same directory keeps its capability cache.
    let daemon = PrivateDaemon::start(vireo, qemu, work.join("libvirt-scale-vireo"), None).await?;
    let libvirtd = PrivateLibvirtd::start(dir.clone()).await?;
    let outcome = sides.scale(&daemon, &libvirtd, counts).await;
    libvirtd.shutdown().await;
    daemon.shutdown().await;
    let scale = outcome?;

    let nproc = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let concurrent = concurrent_bounds(concurrent, &boot, nproc)?;
    let placeholder = Path::new("DIR");
    let example = Domain {
        name: "NAME",
        guest: &Guest { kernel: placeholder.join("guest/vmlinuz"), initrd: placeholder.join("guest/initramfs.img") },
        emulator: qemu,
        serial: &placeholder.join("scratch/NAME.serial"),
        disk: None,
    };
    let mut results = LibvirtResults {
        libvirt_version,
        nproc,
        runs: counts.runs,
        warmup_runs: counts.warmup,
        libvirtd_command: libvirt::daemon_command(placeholder),
        libvirtd_conf: libvirt::libvirtd_conf(placeholder),
        qemu_conf: libvirt::QEMU_CONF.to_string(),
        domain_xml: example.xml(),
        libvirt_qemu_command: libvirt_qemu_command.map(|c| c.replace(&dir.to_string_lossy().into_owned(), "DIR")),
        boot,
        commands,
        concurrent,
        snapshots,
        scale,
        targets: Vec::new(),
    };
    results.targets = targets(&results);
    Ok(LibvirtOutcome::Measured(Box::new(results)))
}

/// The kernel and initramfs copied for libvirt: its DAC driver relabels (and records the owner of)
/// the files a domain uses, which must not happen to the test guest the other sections share.
pub(crate) fn copy_guest(guest: &Guest, dir: &Path) -> anyhow::Result<Guest> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = Guest { kernel: dir.join("vmlinuz"), initrd: dir.join("initramfs.img") };
    for (from, to) in [(&guest.kernel, &copy.kernel), (&guest.initrd, &copy.initrd)] {
        std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(copy)
}

/// What both sides run.
struct Sides<'a> {
    vireo: &'a Path,
    qemu: &'a Path,
    /// The test guest for vireo, and its copy for libvirt.
    guest: &'a Guest,
    libvirt_guest: &'a Guest,
    /// Domain XML files and serial sockets.
    scratch: &'a Path,
}

impl Sides<'_> {
    fn domain<'a>(&'a self, name: &'a str, serial: &'a Path, disk: Option<&'a Path>) -> Domain<'a> {
        Domain { name, guest: self.libvirt_guest, emulator: self.qemu, serial, disk }
    }

    /// Writes the domain XML of `name` and defines it through `shell` (untimed).
    async fn define(&self, shell: &mut VirshShell, name: &str, disk: Option<&Path>) -> anyhow::Result<PathBuf> {
        let serial = self.scratch.join(format!("{name}.serial"));
        let file = self.scratch.join(format!("{name}.xml"));
        std::fs::write(&file, self.domain(name, &serial, disk).xml())?;
        shell.run(&format!("define {}", file.display())).await?;
        Ok(serial)
    }

    async fn starts_and_snapshots(
        &self,
        daemon: &PrivateDaemon,
        libvirtd: &PrivateLibvirtd,
        counts: Counts,
    ) -> anyhow::Result<Started> {
        let client = daemon.client();
        let mut shell = libvirtd.shell().await?;
        let Counts { runs, warmup, .. } = counts;
        let mut rounds = Vec::with_capacity(runs);
        let mut commands = [None, None];
        // The command of the latest (a), for (e): the first round runs (a) first.
        let mut vireo_argv = Vec::new();
        for i in 0..warmup + runs {
            let label = boot::run_label(i, warmup, runs);
            let (round, argv) = self
                .start_round(&client, daemon, &mut shell, libvirtd, i, &mut vireo_argv)
                .await
                .with_context(|| format!("start → marker, round {label}"))?;
            eprintln!("vireo-bench: vs libvirt, start → marker {label}: {}", round.progress());
            if i >= warmup {
                rounds.push(round);
                commands = argv.map(|argv| start_marker::shown_command(&argv, &daemon.data_dir));
            }
        }
        let boot = start_marker::summarize(rounds, commands)?;
        let cli_starts = self.cli_starts(&client, daemon, &mut shell, libvirtd, counts).await.context("CLI starts")?;
        let commands = commands_versus(&boot.rounds, &cli_starts)?;

        let mut concurrent = Concurrent::default();
        for i in 0..warmup + runs {
            let label = boot::run_label(i, warmup, runs);
            let names: Vec<String> = (1..=CONCURRENT_VMS).map(|k| format!("together-{}-{k}", i + 1)).collect();
            let vireo_side = vireo_together(&client, self.guest, &names);
            let by_hand_side = by_hand_together(self.qemu, &vireo_argv, self.scratch);
            // Which of the two runs first alternates, so that neither always follows libvirt's run.
            let (vireo, by_hand) = if i % 2 == 0 {
                let vireo = vireo_side.await.with_context(|| format!("vireo, {label}"))?;
                (vireo, by_hand_side.await.with_context(|| format!("by hand, {label}"))?)
            } else {
                let by_hand = by_hand_side.await.with_context(|| format!("by hand, {label}"))?;
                (vireo_side.await.with_context(|| format!("vireo, {label}"))?, by_hand)
            };
            let libvirt = self
                .libvirt_together(&mut shell, libvirtd, &names)
                .await
                .with_context(|| format!("libvirt, {label}"))?;
            eprintln!(
                "vireo-bench: vs libvirt, {CONCURRENT_VMS} starts at once {label}: vireo {:.0} ms, by hand {:.0} ms, \
                 libvirt {libvirt:.0} ms",
                vireo.all_markers_ms, by_hand.all_markers_ms
            );
            if i >= warmup {
                concurrent.vireo.push(vireo);
                concurrent.by_hand.push(by_hand);
                concurrent.libvirt.push(libvirt);
            }
        }

        let snapshots = self.snapshots(&client, daemon, &mut shell, counts).await.context("snapshots")?;
        shell.close().await;
        Ok(Started { boot, commands, concurrent, snapshots })
    }

    /// Round `round` (from 0) of the start → marker round robin: each side once, in the order
    /// [`start_marker::order`] gives; (e) runs `vireo_argv`, the command of the latest (a), which
    /// (a) updates. Also returns the QEMU command lines of (a) and (b) in this round.
    async fn start_round(
        &self,
        client: &Client,
        daemon: &PrivateDaemon,
        shell: &mut VirshShell,
        libvirtd: &PrivateLibvirtd,
        round: usize,
        vireo_argv: &mut Vec<String>,
    ) -> anyhow::Result<(StartRound, [Vec<String>; 2])> {
        let n = round + 1;
        let order = start_marker::order(round);
        let (mut vireo, mut vireo_bzimage, mut libvirt, mut plain, mut by_hand) = (None, None, None, None, None);
        let mut argv = [Vec::new(), Vec::new()];
        for side in order {
            let what = || format!("({}) {}", side.letter(), side.label());
            match side {
                Side::VireoDefaults => {
                    let spec = self.guest.spec(&format!("versus-{n}"));
                    let (run, command) =
                        start_marker::vireo_side(client, daemon, self.vireo, &spec, true).await.with_context(what)?;
                    vireo_argv.clone_from(&command);
                    (vireo, argv[0]) = (Some(run), command);
                }
                Side::VireoBzimage => {
                    let spec = start_marker::bzimage_spec(self.guest, &format!("versus-bzimage-{n}"));
                    let (run, command) =
                        start_marker::vireo_side(client, daemon, self.vireo, &spec, false).await.with_context(what)?;
                    (vireo_bzimage, argv[1]) = (Some(run), command);
                }
                Side::Libvirt => {
                    libvirt =
                        Some(self.libvirt_start(shell, libvirtd, &format!("versus-{n}")).await.with_context(what)?);
                }
                Side::PlainQemu => plain = Some(boot::plain_run(self.qemu, self.guest).await.with_context(what)?),
                Side::VireoCommandByHand => {
                    let running = start_marker::by_hand_run(self.qemu, vireo_argv, self.scratch, "by-hand")
                        .await
                        .with_context(what)?;
                    by_hand = Some(running.run.clone());
                    running.stop().await;
                }
            }
        }
        let missing = "a side did not run";
        let round = StartRound {
            order: order.to_vec(),
            vireo: vireo.context(missing)?,
            vireo_bzimage: vireo_bzimage.context(missing)?,
            libvirt: libvirt.context(missing)?,
            plain: plain.context(missing)?,
            by_hand: by_hand.context(missing)?,
        };
        Ok((round, argv))
    }

    /// Defines `name` (untimed), times `start` → marker, then `virsh destroy NAME` (a process of
    /// its own) against the QEMU's exit, and undefines it.
    async fn libvirt_start(
        &self,
        shell: &mut VirshShell,
        libvirtd: &PrivateLibvirtd,
        name: &str,
    ) -> anyhow::Result<LibvirtRun> {
        let serial = self.define(shell, name, None).await?;
        let mut console = SerialConsole::listen(&serial)?;
        let start = Instant::now();
        shell.run(&format!("start {name}")).await?;
        let returned = start.elapsed();
        let seen = console.marker().await?;
        let pid = libvirtd.qemu_pid(name).context("libvirt names no pid for the domain's QEMU")?;
        let qemu_cpu_ms = process_info::cpu_time(pid).map(ms);
        let destroy = cli_timing::timed_destroy(libvirtd.virsh_command(&["destroy", name]), pid)
            .await
            .with_context(|| format!("virsh destroy {name}"))?;
        shell.run(&format!("undefine {name}")).await?;
        Ok(LibvirtRun { start_ms: ms(returned), marker_ms: ms(seen - start), qemu_cpu_ms, destroy })
    }

    /// `vireo vm start NAME` against `virsh start NAME`, each a process of its own timed spawn →
    /// exit, alternating; each VM defined beforehand and stopped right after (untimed). Returns
    /// the (vireo, virsh) times of the recorded runs.
    async fn cli_starts(
        &self,
        client: &Client,
        daemon: &PrivateDaemon,
        shell: &mut VirshShell,
        libvirtd: &PrivateLibvirtd,
        counts: Counts,
    ) -> anyhow::Result<Vec<(f64, f64)>> {
        let Counts { runs, warmup, .. } = counts;
        let mut times = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let label = boot::run_label(i, warmup, runs);
            let name = format!("cli-start-{}", i + 1);
            client.create_vm(&self.guest.spec(&name)).await.with_context(|| format!("cannot define {name}"))?;
            let mut start = Command::new(self.vireo);
            start.arg("--socket").arg(&daemon.socket).args(["vm", "start", &name]).stdin(Stdio::null());
            let (vireo, _) = timed(start).await?;
            let force = StopRequest { force: true, timeout_secs: None };
            client.stop_vm(&name, &force).await.with_context(|| format!("cannot stop {name}"))?;
            client.delete_vm(&name).await.with_context(|| format!("cannot delete {name}"))?;

            let serial = self.define(shell, &name, None).await?;
            let console = SerialConsole::listen(&serial)?;
            let (virsh, _) = timed(libvirtd.virsh_command(&["start", &name])).await?;
            shell.run(&format!("destroy {name}")).await?;
            shell.run(&format!("undefine {name}")).await?;
            drop(console);
            eprintln!(
                "vireo-bench: vs libvirt, CLI start {label}: vireo vm start {vireo:.1} ms, virsh start {virsh:.1} ms"
            );
            if i >= warmup {
                times.push((vireo, virsh));
            }
        }
        Ok(times)
    }

    /// Defines `names` (untimed), opens a virsh shell for each, sends all the `start`s at once
    /// and times until the last marker; then destroys and undefines them.
    async fn libvirt_together(
        &self,
        shell: &mut VirshShell,
        libvirtd: &PrivateLibvirtd,
        names: &[String],
    ) -> anyhow::Result<f64> {
        let mut consoles = Vec::with_capacity(names.len());
        let mut shells = Vec::with_capacity(names.len());
        for name in names {
            consoles.push(SerialConsole::listen(&self.define(shell, name, None).await?)?);
            shells.push(libvirtd.shell().await?);
        }
        let start = Instant::now();
        for (own, name) in shells.iter_mut().zip(names) {
            own.send(&format!("start {name}")).await?;
        }
        let mut last = start;
        for console in &mut consoles {
            last = last.max(console.marker().await?);
        }
        for (mut own, name) in shells.into_iter().zip(names) {
            own.finish(&format!("start {name}")).await?;
            own.close().await;
        }
        for name in names {
            shell.run(&format!("destroy {name}")).await?;
            shell.run(&format!("undefine {name}")).await?;
        }
        Ok(ms(last - start))
    }

    /// Section 3's rounds (snapshot create, revert, save, restore of a running VM with a qcow2
    /// disk) through vireo against the same through virsh, alternating.
    async fn snapshots(
        &self,
        client: &Client,
        daemon: &PrivateDaemon,
        shell: &mut VirshShell,
        counts: Counts,
    ) -> anyhow::Result<SnapshotVersus> {
        snapshots::boot_vireo_vm(client, self.guest).await?;
        let disk = self.scratch.join("snap.qcow2");
        plain::qemu_img_create(self.qemu, &disk, snapshots::DISK_MIB).await?;
        let serial = self.define(shell, SNAP_DOMAIN, Some(&disk)).await?;
        let mut console = SerialConsole::listen(&serial)?;
        shell.run(&format!("start {SNAP_DOMAIN}")).await?;
        console.marker().await.context("the libvirt guest with a disk never got ready")?;

        let Counts { runs, warmup, .. } = counts;
        let state = self.scratch.join("snap.state");
        let (mut vireo, mut libvirt) = (Vec::new(), Vec::new());
        let mut state_bytes = 0;
        for i in 0..warmup + runs {
            let label = boot::run_label(i, warmup, runs);
            let tag = format!("versus-{}", i + 1);
            let through_vireo =
                snapshots::vireo_round(client, daemon, &tag).await.with_context(|| format!("vireo {label}"))?;
            let through_libvirt =
                libvirt_round(shell, &tag, &state).await.with_context(|| format!("libvirt {label}"))?;
            state_bytes = through_libvirt.1;
            let through_vireo = Op::ALL.map(|op| through_vireo.get(op));
            eprintln!(
                "vireo-bench: vs libvirt, snapshots {label}: create, revert, save, restore: vireo {:.0?} ms, \
                 libvirt {:.0?} ms",
                through_vireo, through_libvirt.0
            );
            if i >= warmup {
                vireo.push(through_vireo);
                libvirt.push(through_libvirt.0);
            }
        }
        let force = StopRequest { force: true, timeout_secs: None };
        client.stop_vm(snapshots::VM, &force).await.context("cannot stop the snapshot VM")?;
        shell.run(&format!("destroy {SNAP_DOMAIN}")).await?;
        shell.run(&format!("undefine {SNAP_DOMAIN}")).await?;
        drop(console);
        let ops = Op::ALL
            .into_iter()
            .enumerate()
            .map(|(k, op)| {
                let column = |runs: &[[f64; 4]]| runs.iter().map(|r| r[k]).collect::<Vec<_>>();
                Versus::of(&column(&vireo), &column(&libvirt)).map(|times| OpVersus { op, times })
            })
            .collect::<Option<Vec<_>>>()
            .context("no snapshot runs")?;
        Ok(SnapshotVersus { disk_mib: snapshots::DISK_MIB, ops, libvirt_state_bytes: state_bytes })
    }

    /// With fresh daemons: RSS idle, N VMs defined through each CLI (alternating), RSS, list runs,
    /// then every VM deleted through each CLI.
    async fn scale(
        &self,
        daemon: &PrivateDaemon,
        libvirtd: &PrivateLibvirtd,
        counts: Counts,
    ) -> anyhow::Result<ScaleVersus> {
        let Counts { vms, list_runs, .. } = counts;
        tokio::time::sleep(IDLE_SETTLE).await;
        let rss_idle = Rss { vireo_kib: daemon.rss_kib()?, libvirtd_kib: libvirtd.rss_kib()? };
        let xml_dir = self.scratch.join("scale");
        std::fs::create_dir_all(&xml_dir)?;
        let names: Vec<String> = (1..=vms).map(|i| format!("scale-{i:04}")).collect();
        let mut files = Vec::with_capacity(vms);
        for name in &names {
            let file = xml_dir.join(format!("{name}.xml"));
            std::fs::write(&file, self.domain(name, &xml_dir.join(format!("{name}.serial")), None).xml())?;
            files.push(file);
        }
        let vireo_cli = |args: &[&str]| {
            let mut command = Command::new(self.vireo);
            command.arg("--socket").arg(&daemon.socket).args(args);
            command
        };
        eprintln!(
            "vireo-bench: vs libvirt: idle RSS vireo {} KiB, libvirtd {} KiB; defining {vms} VMs each way",
            rss_idle.vireo_kib, rss_idle.libvirtd_kib
        );
        let (mut vireo_creates, mut defines) = (Vec::with_capacity(vms), Vec::with_capacity(vms));
        let (kernel, initrd) = (self.guest.kernel.to_string_lossy(), self.guest.initrd.to_string_lossy());
        for (i, (name, file)) in names.iter().zip(&files).enumerate() {
            let create = ["vm", "create", name, "--vcpus", "1", "--memory", "256MiB", "--accel", "tcg"];
            let mut command = vireo_cli(&create);
            command.args(["--kernel", &kernel, "--initrd", &initrd, "--cmdline", boot::CMDLINE]);
            vireo_creates.push(timed(command).await?.0);
            defines.push(timed(libvirtd.virsh_command(&["define", &file.to_string_lossy()])).await?.0);
            if (i + 1) % 100 == 0 || i + 1 == vms {
                eprintln!("vireo-bench: vs libvirt: defined {}/{vms} each way", i + 1);
            }
        }
        let rss_defined = Rss { vireo_kib: daemon.rss_kib()?, libvirtd_kib: libvirtd.rss_kib()? };

        let (mut vireo_lists, mut virsh_lists) = (Vec::with_capacity(list_runs), Vec::with_capacity(list_runs));
        let (mut vireo_list_bytes, mut virsh_list_bytes) = (0, 0);
        // Run 0 warms the page cache for the binaries; it is not counted.
        for run in 0..=list_runs {
            let (vireo, output) = timed(vireo_cli(&["vm", "list", "-o", "json"])).await?;
            let listed: Vec<serde_json::Value> =
                serde_json::from_slice(&output.stdout).context("vireo vm list -o json printed no JSON array")?;
            vireo_list_bytes = output.stdout.len();
            let (virsh, output) = timed(libvirtd.virsh_command(&["list", "--all"])).await?;
            let text = String::from_utf8_lossy(&output.stdout);
            let shut_off = text.lines().filter(|l| l.trim_end().ends_with("shut off")).count();
            virsh_list_bytes = output.stdout.len();
            if listed.len() != vms || shut_off != vms {
                bail!("listed {} VMs through vireo and {shut_off} through virsh, expected {vms}", listed.len());
            }
            if run > 0 {
                vireo_lists.push(vireo);
                virsh_lists.push(virsh);
            }
        }

        let (mut vireo_deletes, mut undefines) = (Vec::with_capacity(vms), Vec::with_capacity(vms));
        for name in &names {
            vireo_deletes.push(timed(vireo_cli(&["vm", "delete", name])).await?.0);
            undefines.push(timed(libvirtd.virsh_command(&["undefine", name])).await?.0);
        }
        let pairs = |vireo: &[f64], libvirt: &[f64]| Versus::of(vireo, libvirt).context("no VMs");
        Ok(ScaleVersus {
            vms,
            list_runs,
            rss_idle,
            rss_defined,
            create: pairs(&vireo_creates, &defines)?,
            list: pairs(&vireo_lists, &virsh_lists)?,
            delete: pairs(&vireo_deletes, &undefines)?,
            vireo_list_bytes,
            virsh_list_bytes,
        })
    }
}

/// The libvirt domain of the snapshot rounds.
const SNAP_DOMAIN: &str = "snap";

/// snapshot-create-as, snapshot-revert (then snapshot-delete, untimed), save and restore of the
/// running domain through the connected shell; returns their times in [`Op::ALL`] order and the
/// size of the state file.
async fn libvirt_round(shell: &mut VirshShell, tag: &str, state: &Path) -> anyhow::Result<([f64; 4], u64)> {
    let _ = std::fs::remove_file(state);
    let state = state.display();
    let commands = [
        format!("snapshot-create-as {SNAP_DOMAIN} {tag}"),
        format!("snapshot-revert {SNAP_DOMAIN} {tag}"),
        format!("save {SNAP_DOMAIN} {state}"),
        format!("restore {state}"),
    ];
    let mut times = [0.0; 4];
    for (k, command) in commands.iter().enumerate() {
        let start = Instant::now();
        shell.run(command).await?;
        times[k] = ms(start.elapsed());
        if k == 1 {
            shell.run(&format!("snapshot-delete {SNAP_DOMAIN} {tag}")).await?;
        }
    }
    let status = shell.run(&format!("domstate {SNAP_DOMAIN}")).await?;
    if !status.contains("running") {
        bail!("after restore the domain is not running: {}", status.trim());
    }
    let bytes = std::fs::metadata(state.to_string()).map(|m| m.len()).unwrap_or(0);
    Ok((times, bytes))
}

/// Defines `names` (untimed), starts them all at once through the API and times until every
/// one's marker; then force-stops and deletes them.
async fn vireo_together(client: &Client, guest: &Guest, names: &[String]) -> anyhow::Result<TogetherRun> {
    for name in names {
        client.create_vm(&guest.spec(name)).await.with_context(|| format!("cannot define {name}"))?;
    }
    let start = Instant::now();
    let mut starts = JoinSet::new();
    for name in names {
        let (client, name) = (client.clone(), name.clone());
        starts.spawn(async move {
            let pid = boot::start_until_marker(&client, &name).await.with_context(|| name)?;
            anyhow::Ok(pid.and_then(process_info::cpu_split))
        });
    }
    let mut together = TogetherRun::default();
    while let Some(started) = starts.join_next().await {
        together.add_cpu(started??);
    }
    together.all_markers_ms = ms(start.elapsed());
    let force = StopRequest { force: true, timeout_secs: None };
    for name in names {
        client.stop_vm(name, &force).await.with_context(|| format!("cannot stop {name}"))?;
        client.delete_vm(name).await.with_context(|| format!("cannot delete {name}"))?;
    }
    Ok(together)
}

/// Runs vireo's QEMU command `vireo_argv` [`CONCURRENT_VMS`] times at once by hand (as side (e)
/// runs it once) and times until every one's marker; then kills them.
async fn by_hand_together(qemu: &Path, vireo_argv: &[String], scratch: &Path) -> anyhow::Result<TogetherRun> {
    let tags: Vec<String> = (1..=CONCURRENT_VMS).map(|k| format!("together-{k}")).collect();
    let start = Instant::now();
    let runs = tags.iter().map(|tag| start_marker::by_hand_run(qemu, vireo_argv, scratch, tag));
    // Each guest keeps running until the last is ready, as through vireo and libvirt.
    let running = futures_util::future::try_join_all(runs).await?;
    let mut together = TogetherRun::default();
    for guest in &running {
        together.all_markers_ms = together.all_markers_ms.max(ms(guest.marker_at - start));
        together.qemu_cpu_ms.extend(guest.run.qemu_cpu_ms);
        together.qemu_system_ms.extend(guest.run.qemu_system_ms);
    }
    futures_util::future::join_all(running.into_iter().map(RunningByHand::stop)).await;
    Ok(together)
}

/// Listens where a domain's serial console connects (`<serial type='unix'>`, `mode='connect'`)
/// and notes when the marker goes by on the first connection; later connections (a restored
/// QEMU's) are read and dropped.
struct SerialConsole {
    seen: oneshot::Receiver<Instant>,
    task: JoinHandle<()>,
}

impl SerialConsole {
    fn listen(path: &Path) -> anyhow::Result<SerialConsole> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
        let (found, seen) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut found = Some(found);
            while let Ok((mut stream, _)) = listener.accept().await {
                let found = found.take();
                tokio::spawn(async move {
                    if let (Ok(true), Some(found)) = (boot::read_until(&mut stream, MARKER.as_bytes()).await, found) {
                        let _ = found.send(Instant::now());
                    }
                    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                });
            }
        });
        Ok(SerialConsole { seen, task })
    }

    async fn marker(&mut self) -> anyhow::Result<Instant> {
        match tokio::time::timeout(BOOT_TIMEOUT, &mut self.seen).await {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(_)) => bail!("the serial console closed before the marker"),
            Err(_) => bail!("no marker within {BOOT_TIMEOUT:?}"),
        }
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the start measurements with both daemons of the first pair give.
struct Started {
    boot: StartMarker,
    commands: CommandsVersus,
    concurrent: Concurrent,
    snapshots: SnapshotVersus,
}

/// The CLI starts (vireo, virsh) and the destroys of the round robin's sides (a) and (c).
fn commands_versus(rounds: &[StartRound], starts: &[(f64, f64)]) -> anyhow::Result<CommandsVersus> {
    let (vireo_starts, virsh_starts): (Vec<f64>, Vec<f64>) = starts.iter().copied().unzip();
    let destroys: Vec<_> = rounds.iter().filter_map(|r| Some((r.vireo.destroy?, r.libvirt.destroy))).collect();
    let column = |f: fn(&cli_timing::Destroy) -> f64| {
        let vireo: Vec<f64> = destroys.iter().map(|(v, _)| f(v)).collect();
        let libvirt: Vec<f64> = destroys.iter().map(|(_, l)| f(l)).collect();
        Versus::of(&vireo, &libvirt).context("no destroys")
    };
    Ok(CommandsVersus {
        start: Versus::of(&vireo_starts, &virsh_starts).context("no CLI starts")?,
        destroy: column(|d| d.command_ms)?,
        destroy_after_exit: column(|d| d.after_exit_ms)?,
    })
}

/// The concurrent runs with each side's bound, from its own single starts.
fn concurrent_bounds(runs: Concurrent, boot: &StartMarker, nproc: usize) -> anyhow::Result<ConcurrentVersus> {
    let bound = |single: f64| TARGET_CONCURRENT * CONCURRENT_VMS as f64 * single / nproc.max(1) as f64;
    let all_markers = |side: &[TogetherRun]| side.iter().map(|run| run.all_markers_ms).collect::<Vec<_>>();
    let cpu = |side: &[TogetherRun]| {
        QemuCpu::of(
            &side.iter().flat_map(|run| run.qemu_cpu_ms.iter().copied()).collect::<Vec<_>>(),
            &side.iter().flat_map(|run| run.qemu_system_ms.iter().copied()).collect::<Vec<_>>(),
        )
    };
    let alone = |f: fn(&StartRound) -> Option<f64>| boot.rounds.iter().filter_map(f).collect::<Vec<_>>();
    Ok(ConcurrentVersus {
        vms: CONCURRENT_VMS,
        all_markers: Versus::of(&all_markers(&runs.vireo), &runs.libvirt).context("no concurrent runs")?,
        by_hand: Summary::of(&all_markers(&runs.by_hand)).context("no concurrent runs by hand")?,
        qemu_cpu_alone: QemuCpu::of(&alone(|r| r.by_hand.qemu_cpu_ms), &alone(|r| r.by_hand.qemu_system_ms)),
        qemu_cpu_by_hand: cpu(&runs.by_hand),
        qemu_cpu_vireo: cpu(&runs.vireo),
        vireo_bound_ms: bound(boot.marker.vireo.median),
        libvirt_bound_ms: bound(boot.marker.libvirt.median),
    })
}

/// The section's targets, from its figures.
pub fn targets(results: &LibvirtResults) -> Vec<Target> {
    use crate::report::fmt_ms;
    let ratio = |name: &str, limit: f64, versus: &Versus, fmt: &dyn Fn(f64) -> String, of: &str| Target {
        target: format!("{name} ≤ {limit} × {of} (medians)"),
        measured: format!(
            "{:.3} × ({} vs {}); median of the pairwise ratios {:.3} ×",
            versus.ratio_of_medians,
            fmt(versus.vireo.median),
            fmt(versus.libvirt.median),
            versus.pairwise_ratio.median
        ),
        holds: versus.ratio_of_medians <= limit,
    };
    let scale = &results.scale;
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let rss = scale.rss_defined.vireo_kib as f64 / scale.rss_defined.libvirtd_kib as f64;
    let together = &results.concurrent;
    let mut targets = start_targets(&results.boot);
    let commands = &results.commands;
    targets.push(Target {
        target: format!("`vireo vm start` returns ≤ {} (median, spawn → exit)", fmt_ms(TARGET_CLI_START_MS)),
        measured: format!(
            "median {} (`virsh start`: {})",
            fmt_ms(commands.start.vireo.median),
            fmt_ms(commands.start.libvirt.median)
        ),
        holds: commands.start.vireo.median <= TARGET_CLI_START_MS,
    });
    targets.push(Target {
        target: format!(
            "`vireo vm stop --force` returns ≤ {} after QEMU exits (median)",
            fmt_ms(TARGET_DESTROY_AFTER_EXIT_MS)
        ),
        measured: format!(
            "median {} (`virsh destroy`: {}); the whole command {} vs {}",
            fmt_ms(commands.destroy_after_exit.vireo.median),
            fmt_ms(commands.destroy_after_exit.libvirt.median),
            fmt_ms(commands.destroy.vireo.median),
            fmt_ms(commands.destroy.libvirt.median)
        ),
        holds: commands.destroy_after_exit.vireo.median <= TARGET_DESTROY_AFTER_EXIT_MS,
    });
    targets.extend([
        ratio(
            &format!("`vireo vm list -o json` with {} VMs defined", scale.vms),
            TARGET_LIST,
            &scale.list,
            &fmt_ms,
            "`virsh list --all`",
        ),
        ratio("`vireo vm create`", TARGET_CREATE, &scale.create, &fmt_ms, "`virsh define`"),
        Target {
            target: format!("vireo daemon's RSS with {} VMs defined ≤ {TARGET_RSS} × libvirtd's", scale.vms),
            measured: format!(
                "{rss:.3} × ({} vs {})",
                mib(scale.rss_defined.vireo_kib),
                mib(scale.rss_defined.libvirtd_kib)
            ),
            holds: rss <= TARGET_RSS,
        },
        Target {
            target: format!(
                "{} VMs started at once through vireo, until the last marker ≤ {TARGET_CONCURRENT} × {} single starts \
                 back to back / {} cores (medians)",
                together.vms, together.vms, results.nproc
            ),
            measured: format!(
                "{} vs a bound of {} (vireo's QEMU command by hand, {} at once: {}; libvirt: {} vs its bound of {})",
                fmt_ms(together.all_markers.vireo.median),
                fmt_ms(together.vireo_bound_ms),
                together.vms,
                fmt_ms(together.by_hand.median),
                fmt_ms(together.all_markers.libvirt.median),
                fmt_ms(together.libvirt_bound_ms)
            ),
            holds: together.all_markers.vireo.median <= together.vireo_bound_ms,
        },
    ]);
    targets
}

/// The round robin's targets, on the median of the pairwise ratios (each round's sides ran
/// back to back, so a round's ratio is the least disturbed by the machine's drift).
fn start_targets(boot: &StartMarker) -> Vec<Target> {
    use crate::report::fmt_ms;
    let row = |of: Side, to: Side, limit: f64, at_most: bool, target: String| {
        let ratio = boot.ratio(of, to)?;
        let (a, b) = (boot.side(of)?, boot.side(to)?);
        let pairwise = ratio.pairwise.median;
        Some(Target {
            target,
            measured: format!(
                "{pairwise:.3} ×; medians {} vs {} ({:.3} ×)",
                fmt_ms(a.marker.median),
                fmt_ms(b.marker.median),
                ratio.ratio_of_medians
            ),
            holds: if at_most { pairwise <= limit } else { pairwise >= limit },
        })
    };
    [
        row(
            Side::VireoDefaults,
            Side::Libvirt,
            TARGET_START,
            true,
            format!(
                "start → marker, vireo's defaults ≤ {TARGET_START} × libvirt's defaults (median of the pairwise ratios)"
            ),
        ),
        row(
            Side::VireoCommandByHand,
            Side::VireoDefaults,
            TARGET_BY_HAND,
            false,
            format!(
                "start → marker, vireo's own QEMU command run by hand ≥ {TARGET_BY_HAND} × through vireo (by hand / \
                 vireo, median of the pairwise ratios)"
            ),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}
