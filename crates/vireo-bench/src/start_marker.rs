//! Start → marker five ways, in one round robin (section 6; section 1 shows sides (a) and
//! (d) in detail): each round starts the test guest once per side, so that drift in the
//! machine's speed hits every side alike, in an order that changes from round to round
//! ([`order`]). The sides:
//!
//! - (a) vireo with its defaults (PVH entry, qboot, no legacy hardware), through the daemon;
//! - (b) vireo with `boot.pvh: false` (the bzImage as given), otherwise the same;
//! - (c) libvirt with its defaults;
//! - (d) plain QEMU with the bzImage, section 1's hand-written command: the floor a user
//!   typing a QEMU command gets;
//! - (e) the very QEMU command vireo ran for (a) in the same round, read from
//!   /proc/PID/cmdline and run by the bench, with only what ties it to the daemon replaced:
//!   the QMP and console sockets are bound by the bench and inherited (as the daemon does it),
//!   the pid file is in the bench's directory. The bench connects to both before spawning,
//!   answers the QMP greeting with `qmp_capabilities`, sends `cont` and reads the marker from
//!   the console socket: the daemon's work, and nothing else, is what (a) has on top.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vireo_api::{BootStatus, VmSpec};
use vireo_client::Client;

use crate::boot::{self, BOOT_TIMEOUT, BootResults, BootSource, Guest, MARKER, PlainRun, VireoRun};
use crate::cli_timing::Destroy;
use crate::daemon::PrivateDaemon;
use crate::libvirt_bench::Versus;
use crate::qmp::RawQmp;
use crate::stats::{Summary, ms, shuffle};
use crate::{cli_timing, process_info};

/// How long the QEMU run by hand may take to answer QMP.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// One side of the round robin, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    VireoDefaults,
    VireoBzimage,
    Libvirt,
    PlainQemu,
    VireoCommandByHand,
}

impl Side {
    pub const ALL: [Side; 5] =
        [Side::VireoDefaults, Side::VireoBzimage, Side::Libvirt, Side::PlainQemu, Side::VireoCommandByHand];

    /// `(a)` … `(e)`.
    pub fn letter(self) -> char {
        match self {
            Side::VireoDefaults => 'a',
            Side::VireoBzimage => 'b',
            Side::Libvirt => 'c',
            Side::PlainQemu => 'd',
            Side::VireoCommandByHand => 'e',
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Side::VireoDefaults => "vireo, defaults (PVH, qboot, lean machine)",
            Side::VireoBzimage => "vireo, `boot.pvh: false` (bzImage)",
            Side::Libvirt => "libvirt, defaults",
            Side::PlainQemu => "plain QEMU, bzImage (section 1's command)",
            Side::VireoCommandByHand => "vireo's QEMU command, run by hand",
        }
    }

    /// Where its time starts.
    pub fn start_point(self) -> &'static str {
        match self {
            Side::VireoDefaults | Side::VireoBzimage => "`POST /v1/vms/{name}/start` sent",
            Side::Libvirt => "`start NAME` written to the connected virsh shell",
            Side::PlainQemu | Side::VireoCommandByHand => "QEMU spawned",
        }
    }
}

/// The order of round `round` (from 0): the first round runs [`Side::ALL`] in order ((e) needs
/// the command of an (a) before it), every later one a shuffle of its own, the same in every
/// run, so that no side always runs first or right after the same other side.
pub fn order(round: usize) -> [Side; 5] {
    let mut order = Side::ALL;
    if round > 0 {
        shuffle(&mut order, round as u64);
    }
    order
}

/// The ratios the report gives, numerator first; see [`StartMarker::ratios`].
pub const RATIOS: [(Side, Side); 4] = [
    (Side::VireoDefaults, Side::Libvirt),
    (Side::VireoDefaults, Side::PlainQemu),
    (Side::VireoBzimage, Side::VireoDefaults),
    (Side::VireoCommandByHand, Side::VireoDefaults),
];

/// A start through the daemon (sides (a) and (b)).
#[derive(Clone, Debug, Serialize)]
pub struct VireoSide {
    #[serde(flatten)]
    pub run: VireoRun,
    /// How the daemon booted it.
    pub boot: Option<BootStatus>,
    /// `vireo vm stop --force` once the marker was seen (side (a); (b) is stopped through the API).
    pub destroy: Option<Destroy>,
}

/// A start through libvirt (side (c)).
#[derive(Clone, Debug, Serialize)]
pub struct LibvirtRun {
    /// `start` sent → virsh done with it (the domain runs).
    pub start_ms: f64,
    /// `start` sent → marker on the serial socket.
    pub marker_ms: f64,
    pub qemu_cpu_ms: Option<f64>,
    /// `virsh destroy NAME` once the marker was seen.
    pub destroy: Destroy,
}

/// vireo's QEMU command run by hand (side (e)); every time from the spawn.
#[derive(Clone, Debug, Serialize)]
pub struct ByHandRun {
    /// → QMP answered `qmp_capabilities` (QEMU has initialised).
    pub qmp_ready_ms: f64,
    /// → `cont` answered (the guest runs).
    pub running_ms: f64,
    /// → marker on the console socket.
    pub marker_ms: f64,
    pub qemu_cpu_ms: Option<f64>,
    /// Of `qemu_cpu_ms`, the time QEMU spent in the kernel.
    pub qemu_system_ms: Option<f64>,
}

/// One round: every side once.
#[derive(Clone, Debug, Serialize)]
pub struct StartRound {
    /// The order the sides ran in.
    pub order: Vec<Side>,
    pub vireo: VireoSide,
    pub vireo_bzimage: VireoSide,
    pub libvirt: LibvirtRun,
    pub plain: PlainRun,
    pub by_hand: ByHandRun,
}

impl StartRound {
    pub fn marker_ms(&self, side: Side) -> f64 {
        match side {
            Side::VireoDefaults => self.vireo.run.marker_ms,
            Side::VireoBzimage => self.vireo_bzimage.run.marker_ms,
            Side::Libvirt => self.libvirt.marker_ms,
            Side::PlainQemu => self.plain.marker_ms,
            Side::VireoCommandByHand => self.by_hand.marker_ms,
        }
    }

    fn qemu_cpu_ms(&self, side: Side) -> Option<f64> {
        match side {
            Side::VireoDefaults => self.vireo.run.cpu.qemu_ms,
            Side::VireoBzimage => self.vireo_bzimage.run.cpu.qemu_ms,
            Side::Libvirt => self.libvirt.qemu_cpu_ms,
            Side::PlainQemu => self.plain.qemu_cpu_ms,
            Side::VireoCommandByHand => self.by_hand.qemu_cpu_ms,
        }
    }

    /// `(a) 1700 ms, (b) …` for the progress line.
    pub fn progress(&self) -> String {
        let sides: Vec<String> =
            self.order.iter().map(|side| format!("({}) {:.0} ms", side.letter(), self.marker_ms(*side))).collect();
        sides.join(", ")
    }
}

/// One side over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct SideFigures {
    pub side: Side,
    pub marker: Summary,
    /// Median CPU time of the guest's QEMU until the marker (/proc/PID/stat).
    pub qemu_cpu_ms: Option<f64>,
}

/// `of` / `to`, round by round and of the medians.
#[derive(Clone, Debug, Serialize)]
pub struct SideRatio {
    pub of: Side,
    pub to: Side,
    pub pairwise: Summary,
    pub ratio_of_medians: f64,
}

/// The whole round robin.
#[derive(Clone, Debug, Serialize)]
pub struct StartMarker {
    pub rounds: Vec<StartRound>,
    pub sides: Vec<SideFigures>,
    /// [`RATIOS`], in that order.
    pub ratios: Vec<SideRatio>,
    /// (a) against (c), as the other comparisons with libvirt give it.
    pub marker: Versus,
    /// Start sent → returned (the guest runs): (a)'s request → 200 against (c)'s `start` in the shell.
    pub start_return: Versus,
    /// The QEMU command vireo ran for (a) and (b) in the last round, `DATA_DIR` for the daemon's directory.
    pub vireo_command: Option<String>,
    pub vireo_bzimage_command: Option<String>,
}

impl StartMarker {
    pub fn side(&self, side: Side) -> Option<&SideFigures> {
        self.sides.iter().find(|s| s.side == side)
    }

    pub fn ratio(&self, of: Side, to: Side) -> Option<&SideRatio> {
        self.ratios.iter().find(|r| r.of == of && r.to == to)
    }

    /// Section 1's view: (a) against (d), with (e)'s spawn → QMP answering as QEMU's own start-up.
    pub fn section_one(&self, guest: &Guest, warmup: usize) -> anyhow::Result<BootResults> {
        let vireo = self.rounds.iter().map(|r| r.vireo.run.clone()).collect();
        let plain = self.rounds.iter().map(|r| r.plain.clone()).collect();
        let startup: Vec<Duration> =
            self.rounds.iter().map(|r| Duration::from_secs_f64(r.by_hand.qmp_ready_ms / 1000.0)).collect();
        let mut results = boot::summarize(guest, vireo, plain, &startup, warmup)?;
        results.source = BootSource::RoundRobin;
        Ok(results)
    }
}

/// The figures of `rounds`; `commands` are (a)'s and (b)'s QEMU commands, for the report.
pub fn summarize(rounds: Vec<StartRound>, commands: [Option<String>; 2]) -> anyhow::Result<StartMarker> {
    let column = |side: Side| rounds.iter().map(|r| r.marker_ms(side)).collect::<Vec<_>>();
    let sides = Side::ALL
        .into_iter()
        .map(|side| {
            let cpu: Vec<f64> = rounds.iter().filter_map(|r| r.qemu_cpu_ms(side)).collect();
            let marker = Summary::of(&column(side)).context("no rounds")?;
            Ok(SideFigures { side, marker, qemu_cpu_ms: Summary::of(&cpu).map(|s| s.median) })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ratios = RATIOS
        .into_iter()
        .map(|(of, to)| {
            let versus = Versus::of(&column(of), &column(to)).context("no rounds")?;
            Ok(SideRatio { of, to, pairwise: versus.pairwise_ratio, ratio_of_medians: versus.ratio_of_medians })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start_return: (Vec<f64>, Vec<f64>) =
        rounds.iter().map(|r| (r.vireo.run.start_return_ms, r.libvirt.start_ms)).unzip();
    let [vireo_command, vireo_bzimage_command] = commands;
    Ok(StartMarker {
        marker: Versus::of(&column(Side::VireoDefaults), &column(Side::Libvirt)).context("no rounds")?,
        start_return: Versus::of(&start_return.0, &start_return.1).context("no rounds")?,
        sides,
        ratios,
        rounds,
        vireo_command,
        vireo_bzimage_command,
    })
}

/// The test guest's spec with the bzImage booted as given (side (b)).
pub fn bzimage_spec(guest: &Guest, name: &str) -> VmSpec {
    let mut spec = guest.spec(name);
    spec.boot.pvh = false;
    spec
}

/// Side (a) or (b): `spec` defined (untimed) and started through the daemon until the marker;
/// then stopped with `vireo vm stop --force` timed against QEMU's exit (`destroy_by_cli`), or
/// through the API. Returns the run and its QEMU's command line.
pub async fn vireo_side(
    client: &Client,
    daemon: &PrivateDaemon,
    vireo: &Path,
    spec: &VmSpec,
    destroy_by_cli: bool,
) -> anyhow::Result<(VireoSide, Vec<String>)> {
    let running = boot::vireo_until_marker(client, daemon, spec).await?;
    let name = &spec.name;
    let destroy = match running.pid.filter(|_| destroy_by_cli) {
        Some(pid) => {
            let mut stop = std::process::Command::new(vireo);
            stop.arg("--socket").arg(&daemon.socket).args(["vm", "stop", "--force", name]).stdin(Stdio::null());
            Some(cli_timing::timed_destroy(stop, pid).await.with_context(|| format!("vireo vm stop --force {name}"))?)
        }
        None => {
            let force = vireo_api::StopRequest { force: true, timeout_secs: None };
            client.stop_vm(name, &force).await.with_context(|| format!("cannot stop {name}"))?;
            None
        }
    };
    Ok((VireoSide { run: running.run, boot: running.boot, destroy }, running.argv))
}

/// A QEMU command line as the report shows it: the daemon's directory as `DATA_DIR`.
pub fn shown_command(argv: &[String], data_dir: &Path) -> Option<String> {
    let args = argv.get(1..).filter(|args| !args.is_empty())?;
    Some(boot::quote_command(args).replace(&*data_dir.to_string_lossy(), "DATA_DIR"))
}

/// vireo's QEMU arguments (without the binary) with the bench's QMP and console descriptors
/// and pid file in place of the daemon's; everything else exactly as vireo had it.
pub fn by_hand_args(
    vireo_args: &[String],
    qmp_fd: i32,
    console_fd: i32,
    pid_file: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut replaced = [false; 3];
    let args = vireo_args
        .iter()
        .enumerate()
        .map(|(i, arg)| match i.checked_sub(1).map(|option| vireo_args[option].as_str()) {
            Some("-pidfile") => {
                replaced[0] = true;
                pid_file.to_string_lossy().into_owned()
            }
            Some("-chardev") if arg.starts_with("socket,id=qmp,") => {
                replaced[1] = true;
                with_fd(arg, qmp_fd)
            }
            Some("-chardev") if arg.starts_with("socket,id=console,") => {
                replaced[2] = true;
                with_fd(arg, console_fd)
            }
            _ => arg.clone(),
        })
        .collect();
    if replaced != [true; 3] {
        bail!("vireo's QEMU command has no -pidfile, QMP or console socket to replace: {vireo_args:?}");
    }
    Ok(args)
}

/// `socket,id=…,fd=N,…` with `fd` as N.
fn with_fd(chardev: &str, fd: i32) -> String {
    let parts: Vec<String> = chardev
        .split(',')
        .map(|part| if part.starts_with("fd=") { format!("fd={fd}") } else { part.to_string() })
        .collect();
    parts.join(",")
}

/// vireo's QEMU command run by hand, its guest past the marker. [`RunningByHand::stop`] ends
/// it; dropping it kills QEMU too.
pub struct RunningByHand {
    pub run: ByHandRun,
    /// When the marker came.
    pub marker_at: Instant,
    child: tokio::process::Child,
    reader: JoinHandle<()>,
}

impl RunningByHand {
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for RunningByHand {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Side (e): runs vireo's QEMU command `vireo_argv` (binary first) by hand and times spawn →
/// QMP ready → `cont` answered → marker, leaving it running. Its sockets and files in `scratch`
/// are named after `tag`, so that several can run at once.
pub async fn by_hand_run(
    qemu: &Path,
    vireo_argv: &[String],
    scratch: &Path,
    tag: &str,
) -> anyhow::Result<RunningByHand> {
    let vireo_args = vireo_argv.get(1..).context("no QEMU command line from vireo's run")?;
    let bind = |name: &str| -> anyhow::Result<_> {
        let path = scratch.join(name);
        let _ = std::fs::remove_file(&path);
        let listener =
            std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
        // Connecting before QEMU runs is fine: the listen backlog holds the connection.
        let stream = std::os::unix::net::UnixStream::connect(&path)?;
        stream.set_nonblocking(true)?;
        Ok((listener, stream))
    };
    let (qmp_listener, qmp_stream) = bind(&format!("{tag}-qmp.sock"))?;
    let (console_listener, console_stream) = bind(&format!("{tag}-console.sock"))?;
    let pid_file = scratch.join(format!("{tag}.pid"));
    let args = by_hand_args(vireo_args, qmp_listener.as_raw_fd(), console_listener.as_raw_fd(), &pid_file)?;
    let log = scratch.join(format!("{tag}.log"));
    let mut command = tokio::process::Command::new(qemu);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).with_context(|| format!("cannot create {}", log.display()))?)
        .kill_on_drop(true);
    // QEMU must inherit the listeners; nothing else is spawned meanwhile.
    fcntl(&qmp_listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
    fcntl(&console_listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let start = Instant::now();
    let spawned = command.spawn().with_context(|| format!("cannot run {}", qemu.display()));
    drop((qmp_listener, console_listener));
    let mut child = spawned?;
    let (found, seen) = oneshot::channel();
    let mut console = tokio::net::UnixStream::from_std(console_stream)?;
    let reader = tokio::spawn(async move {
        if let Ok(true) = boot::read_until(&mut console, MARKER.as_bytes()).await {
            let _ = found.send(Instant::now());
        }
        let _ = tokio::io::copy(&mut console, &mut tokio::io::sink()).await;
    });
    let timed = async {
        let mut qmp = RawQmp::handshake(tokio::net::UnixStream::from_std(qmp_stream)?, QMP_TIMEOUT).await?;
        let qmp_ready = start.elapsed();
        qmp.execute("cont", json!({})).await?;
        let running = start.elapsed();
        let marker_at = match tokio::time::timeout(BOOT_TIMEOUT, seen).await {
            Ok(Ok(at)) => at,
            Ok(Err(_)) => bail!("QEMU closed the console before the marker"),
            Err(_) => bail!("no marker within {BOOT_TIMEOUT:?}"),
        };
        let cpu = child.id().and_then(process_info::cpu_split);
        let run = ByHandRun {
            qmp_ready_ms: ms(qmp_ready),
            running_ms: ms(running),
            marker_ms: ms(marker_at - start),
            qemu_cpu_ms: cpu.map(|(user, system)| ms(user + system)),
            qemu_system_ms: cpu.map(|(_, system)| ms(system)),
        };
        Ok((run, marker_at))
    };
    let outcome: anyhow::Result<(ByHandRun, Instant)> = timed.await;
    match outcome {
        Ok((run, marker_at)) => Ok(RunningByHand { run, marker_at, child, reader }),
        Err(error) => {
            let _ = child.kill().await;
            reader.abort();
            Err(error.context(format!("QEMU said: {}", std::fs::read_to_string(&log).unwrap_or_default().trim())))
        }
    }
}

/// Rounds for the report's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::boot::{CpuUse, Phases, SeenIn};

    pub fn destroy(command_ms: f64, after_exit_ms: f64) -> Destroy {
        Destroy { command_ms, qemu_exit_ms: command_ms - after_exit_ms, after_exit_ms }
    }

    fn vireo(marker_ms: f64, start_return_ms: f64, destroy: Option<Destroy>) -> VireoSide {
        let phases = Phases {
            request_to_greeting_ms: 18.0,
            greeting_to_cont_ms: start_return_ms - 20.0,
            cont_reply_ms: 1.0,
            cont_to_marker_ms: marker_ms - start_return_ms + 1.0,
        };
        let run = VireoRun {
            vm: "versus-1".into(),
            start_return_ms,
            attached_ms: start_return_ms + 0.5,
            marker_ms,
            seen_in: SeenIn::Console,
            accel: Some("tcg".into()),
            phases: Some(phases),
            cpu: CpuUse { qemu_ms: Some(marker_ms), daemon_ms: None, bench_ms: None },
        };
        VireoSide { run, boot: None, destroy }
    }

    /// A round per row of markers of (a) … (e), with (a)'s and (c)'s start returns.
    pub fn rounds(markers: &[[f64; 5]], start_returns: &[(f64, f64)]) -> Vec<StartRound> {
        markers
            .iter()
            .zip(start_returns)
            .map(|([a, b, c, d, e], (vireo_start, libvirt_start))| StartRound {
                order: Side::ALL.to_vec(),
                vireo: vireo(*a, *vireo_start, Some(destroy(12.0, 6.0))),
                vireo_bzimage: vireo(*b, *vireo_start, None),
                libvirt: LibvirtRun {
                    start_ms: *libvirt_start,
                    marker_ms: *c,
                    qemu_cpu_ms: None,
                    destroy: destroy(60.0, 35.0),
                },
                plain: PlainRun { marker_ms: *d, qemu_cpu_ms: Some(*d) },
                by_hand: ByHandRun {
                    qmp_ready_ms: 30.0,
                    running_ms: 32.0,
                    marker_ms: *e,
                    qemu_cpu_ms: Some(*e),
                    qemu_system_ms: None,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_changes_from_round_to_round() {
        assert_eq!(order(0), Side::ALL);
        let firsts: std::collections::HashSet<char> = (1..20).map(|round| order(round)[0].letter()).collect();
        assert_eq!(firsts.len(), 5, "every side comes first in some round");
        assert_eq!(order(7), order(7));
    }

    #[test]
    fn each_ratio_is_taken_round_by_round() {
        let rows = [[1600.0, 2000.0, 2400.0, 1900.0, 1580.0], [1700.0, 2100.0, 2500.0, 2000.0, 1650.0]];
        let boot = summarize(testing::rounds(&rows, &[(40.0, 200.0), (50.0, 220.0)]), [None, None]).unwrap();
        assert_eq!(boot.side(Side::Libvirt).unwrap().marker.median, 2450.0);
        let by_hand = boot.ratio(Side::VireoCommandByHand, Side::VireoDefaults).unwrap();
        assert_eq!(by_hand.pairwise.samples, vec![1580.0 / 1600.0, 1650.0 / 1700.0]);
        assert_eq!(by_hand.ratio_of_medians, 1615.0 / 1650.0);
        assert_eq!(boot.ratios.len(), RATIOS.len());
        assert_eq!((boot.marker.vireo.median, boot.start_return.libvirt.median), (1650.0, 210.0));
        let section_one = boot.section_one(&Guest { kernel: "/k".into(), initrd: "/i".into() }, 1).unwrap();
        assert_eq!(section_one.source, BootSource::RoundRobin);
        assert_eq!((section_one.vireo_marker.median, section_one.plain_marker.median), (1650.0, 1950.0));
        assert_eq!(section_one.qemu_startup.unwrap().median, 30.0);
    }

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    #[test]
    fn only_what_ties_the_command_to_the_daemon_is_replaced() {
        let vireo = words(
            "-name guest=v,debug-threads=on -machine q35,accel=tcg,hpet=off -bios qboot.rom -S -pidfile \
             /d/vms/v/qemu.pid -chardev socket,id=qmp,fd=23,server=on,wait=off -mon chardev=qmp,mode=control \
             -chardev socket,id=console,fd=24,server=on,wait=off -serial chardev:console -kernel /d/kernels/k.vmlinux",
        );
        let by_hand = by_hand_args(&vireo, 7, 8, Path::new("/t/by-hand.pid")).unwrap();
        assert_eq!(
            by_hand.join(" "),
            "-name guest=v,debug-threads=on -machine q35,accel=tcg,hpet=off -bios qboot.rom -S -pidfile \
             /t/by-hand.pid -chardev socket,id=qmp,fd=7,server=on,wait=off -mon chardev=qmp,mode=control \
             -chardev socket,id=console,fd=8,server=on,wait=off -serial chardev:console -kernel /d/kernels/k.vmlinux"
        );
        assert!(by_hand_args(&words("-machine q35 -serial stdio"), 7, 8, Path::new("/t/p")).is_err());
    }

    #[test]
    fn the_daemons_directory_is_named_in_the_shown_command() {
        let argv = words("/usr/bin/qemu-system-x86_64 -pidfile /tmp/b/vms/v/qemu.pid -append a,b");
        assert_eq!(
            shown_command(&argv, Path::new("/tmp/b")).unwrap(),
            "qemu-system-x86_64 -pidfile DATA_DIR/vms/v/qemu.pid -append a,b"
        );
        assert!(shown_command(&[], Path::new("/tmp/b")).is_none());
    }
}
