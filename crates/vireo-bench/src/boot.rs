//! Start → marker: how long until the test guest prints its ready marker,
//! started through the daemon and started as plain QEMU by hand.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::Serialize;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use vireo_api::{Accel, BootStatus, ByteSize, DiskFormat, StopRequest, VmSpec, VolumeCreate};
use vireo_client::Client;

use crate::daemon::PrivateDaemon;
use crate::process_info;
use crate::stats::{Summary, ms};

pub const MARKER: &str = "VIREO-TEST-GUEST-READY";
/// Under TCG on a busy 2-core machine a boot takes seconds; allow plenty.
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const MEMORY_MIB: u64 = 256;
pub(crate) const CMDLINE: &str = "console=ttyS0 quiet";

/// The test guest built by scripts/build-test-guest.sh.
#[derive(Clone, Debug, Serialize)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl Guest {
    pub fn in_dir(dir: &Path) -> anyhow::Result<Guest> {
        let guest = Guest { kernel: dir.join("vmlinuz"), initrd: dir.join("initramfs.img") };
        for file in [&guest.kernel, &guest.initrd] {
            if !file.is_file() {
                bail!("{} is missing; build the test guest with scripts/build-test-guest.sh", file.display());
            }
        }
        Ok(guest)
    }

    /// 256 MiB, 1 vCPU, TCG (like the plain QEMU it is compared with), `console=ttyS0 quiet`;
    /// written as a user would POST it, everything else left at its default.
    pub fn spec(&self, name: &str) -> VmSpec {
        let spec = serde_json::json!({
            "name": name,
            "vcpus": 1,
            "memory": ByteSize::mib(MEMORY_MIB),
            "accel": Accel::Tcg,
            "boot": { "kernel": self.kernel, "initrd": self.initrd, "cmdline": CMDLINE },
        });
        serde_json::from_value(spec).expect("the bench's VM spec matches the API's VmSpec")
    }

    /// [`Guest::spec`] with `volume` (`POOL/NAME`) as its disk.
    pub fn spec_with_volume(&self, name: &str, volume: &str) -> VmSpec {
        let mut spec = self.spec(name);
        let disk = serde_json::json!({ "volume": volume });
        spec.disks.push(serde_json::from_value(disk).expect("a volume disk is a valid DiskSpec"));
        spec
    }

    /// The hand-written QEMU command line the daemon is compared with.
    pub fn plain_qemu_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-machine",
            "q35,accel=tcg",
            "-m",
            "256",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ]
        .map(String::from)
        .to_vec();
        args.extend(["-kernel".into(), self.kernel.to_string_lossy().into_owned()]);
        args.extend(["-initrd".into(), self.initrd.to_string_lossy().into_owned()]);
        args.extend(["-append".into(), CMDLINE.into()]);
        args
    }
}

/// A qcow2 volume to create as a VM's disk.
pub struct VolumeDisk<'a> {
    pub pool: &'a str,
    pub volume: &'a str,
    pub mib: u64,
}

impl VolumeDisk<'_> {
    /// `POOL/NAME`, as a VM spec names it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.pool, self.volume)
    }
}

/// Creates `disk` and VM `name` with it as its disk, starts the VM and waits for the marker
/// on its console (nothing of it timed).
pub(crate) async fn boot_with_volume(
    client: &Client,
    guest: &Guest,
    name: &str,
    disk: &VolumeDisk<'_>,
) -> anyhow::Result<()> {
    boot_spec_with_volume(client, &guest.spec_with_volume(name, &disk.path()), disk).await
}

/// Creates `disk`, defines `spec` (which has it as a disk), starts the VM and waits for the
/// marker on its console (nothing of it timed).
pub(crate) async fn boot_spec_with_volume(client: &Client, spec: &VmSpec, disk: &VolumeDisk<'_>) -> anyhow::Result<()> {
    let volume =
        VolumeCreate { name: disk.volume.into(), size: ByteSize::mib(disk.mib), format: Some(DiskFormat::Qcow2) };
    client.create_volume(disk.pool, &volume).await.context("cannot create the disk volume")?;
    client.create_vm(spec).await.context("cannot define the VM")?;
    start_until_marker(client, &spec.name).await.map(drop)
}

/// Starts VM `name` and waits for the marker on its console, or in its console log if it came
/// before the console was attached. Returns its QEMU's pid, if the daemon said.
pub(crate) async fn start_until_marker(client: &Client, name: &str) -> anyhow::Result<Option<u32>> {
    let vm = client.start_vm(name).await.context("cannot start the VM")?;
    let mut console = client.console(name).await.context("cannot attach the console")?;
    let logs = client.vm_logs(name, None).await.context("cannot read the console log")?;
    if !contains(&logs, MARKER.as_bytes()) {
        console.read_until(MARKER.as_bytes(), BOOT_TIMEOUT).await.context("the guest never got ready")?;
    }
    let _ = console.close().await;
    Ok(vm.pid)
}

/// Where the marker was first seen in a run through the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenIn {
    /// On the console WebSocket attached right after start returned.
    Console,
    /// Already in the console log when checked right after attaching.
    Log,
}

/// One start of a VM through the daemon.
#[derive(Clone, Debug, Serialize)]
pub struct VireoRun {
    pub vm: String,
    /// Start request → 200 response.
    pub start_return_ms: f64,
    /// Start request → console WebSocket attached.
    pub attached_ms: f64,
    /// Start request → marker seen.
    pub marker_ms: f64,
    pub seen_in: SeenIn,
    /// The accelerator the daemon reported for the running VM.
    pub accel: Option<String>,
    /// Phases from the VM's qmp.log, if it could be read.
    pub phases: Option<Phases>,
    /// CPU time used from the start request to the marker.
    pub cpu: CpuUse,
}

/// CPU time (clock-tick resolution) used until the marker was seen; `None` where /proc had no answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    /// The guest's QEMU, all its threads, since it was spawned.
    pub qemu_ms: Option<f64>,
    /// The daemon, since the start request (vireo runs only).
    pub daemon_ms: Option<f64>,
    /// This benchmark process, since the start request (vireo runs only).
    pub bench_ms: Option<f64>,
}

/// One run of the plain QEMU.
#[derive(Clone, Debug, Serialize)]
pub struct PlainRun {
    /// Spawn → marker on stdout.
    pub marker_ms: f64,
    pub qemu_cpu_ms: Option<f64>,
}

/// Where a start through the daemon spends its time, from the QMP log's
/// millisecond timestamps (wall clock, same host).
#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    /// Start request → QEMU's QMP greeting read: the daemon's checks and
    /// state write, spawning QEMU and QEMU's own initialisation.
    pub request_to_greeting_ms: f64,
    /// Greeting → `cont` sent: QMP negotiation, recording the pid, console hub.
    pub greeting_to_cont_ms: f64,
    /// `cont` sent → its reply.
    pub cont_reply_ms: f64,
    /// `cont` sent → marker seen by the bench: the guest's own boot plus delivery.
    pub cont_to_marker_ms: f64,
}

/// The whole start → marker benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BootResults {
    pub runs: usize,
    pub warmup_runs: usize,
    pub plain_qemu_command: String,
    pub vireo: Vec<VireoRun>,
    pub plain: Vec<PlainRun>,
    pub vireo_marker: Summary,
    pub plain_marker: Summary,
    pub start_return: Summary,
    /// vireo / plain of each pair (run i of both).
    pub pairwise_ratio: Summary,
    /// median(vireo) / median(plain).
    pub ratio_of_medians: f64,
    /// Median of each phase over the runs that have them.
    pub phase_medians: Option<PhaseMedians>,
    /// Median CPU time until the marker.
    pub cpu_medians: CpuMedians,
    /// QEMU's own start-up, which both sides pay before the guest runs: spawn → QMP
    /// answering, with the plain command plus `-S` and a QMP socket (one per run, after the pairs).
    pub qemu_startup: Option<Summary>,
    /// Start request → `cont` answered (the guest runs), per run, from qmp.log.
    pub request_to_running: Option<Summary>,
    /// The target: vireo ≤ 1.05 × plain QEMU (ratio of the medians).
    pub target_ratio: f64,
    pub target_holds: bool,
    /// Where the runs come from.
    pub source: BootSource,
}

/// Where section 1's runs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootSource {
    /// Its own pairs (vireo, plain, vireo, plain, …); QEMU's start-up alone is the plain
    /// command plus `-S` and a QMP socket, one run per pair after them.
    OwnPairs,
    /// Sides (a) and (d) of section 6's round robin; QEMU's start-up alone is side (e)'s:
    /// vireo's own QEMU command run by hand, spawn → QMP answers.
    RoundRobin,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseMedians {
    pub request_to_greeting_ms: f64,
    pub greeting_to_cont_ms: f64,
    pub cont_reply_ms: f64,
    pub cont_to_marker_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CpuMedians {
    pub vireo_qemu_ms: Option<f64>,
    pub plain_qemu_ms: Option<f64>,
    pub daemon_ms: Option<f64>,
    pub bench_ms: Option<f64>,
}

pub const TARGET_RATIO: f64 = 1.05;

/// Runs `runs` pairs (vireo, plain), alternating, after `warmup` unrecorded pairs.
pub async fn run(
    daemon: &PrivateDaemon,
    qemu: &Path,
    guest: &Guest,
    runs: usize,
    warmup: usize,
    scratch: &Path,
) -> anyhow::Result<BootResults> {
    let client = daemon.client();
    let mut vireo = Vec::new();
    let mut plain = Vec::new();
    for i in 0..warmup + runs {
        let label = run_label(i, warmup, runs);
        let name = if i < warmup { format!("boot-warmup-{}", i + 1) } else { format!("boot-{}", i - warmup + 1) };
        let through_daemon =
            vireo_run(&client, daemon, guest, &name).await.with_context(|| format!("vireo run {label}"))?;
        let by_hand = plain_run(qemu, guest).await.with_context(|| format!("plain QEMU run {label}"))?;
        eprintln!(
            "vireo-bench: start → marker {label}: vireo {:.0} ms (start returned after {:.0} ms, seen in {:?}), plain QEMU {:.0} ms",
            through_daemon.marker_ms, through_daemon.start_return_ms, through_daemon.seen_in, by_hand.marker_ms
        );
        if i >= warmup {
            vireo.push(through_daemon);
            plain.push(by_hand);
        }
    }
    let mut startup = Vec::with_capacity(runs);
    for _ in 0..runs {
        startup.push(qemu_startup(qemu, guest, scratch).await.context("QEMU start-up run")?);
    }
    eprintln!("vireo-bench: QEMU start-up alone (spawn → QMP ready): {:.0?}", startup);
    summarize(guest, vireo, plain, &startup, warmup)
}

/// `warm-up 1/1`, then `1/5`, `2/5`, … for run `i` (from 0) of `warmup` + `runs`.
pub(crate) fn run_label(i: usize, warmup: usize, runs: usize) -> String {
    if i < warmup { format!("warm-up {}/{warmup}", i + 1) } else { format!("{}/{runs}", i - warmup + 1) }
}

pub(crate) fn summarize(
    guest: &Guest,
    vireo: Vec<VireoRun>,
    plain: Vec<PlainRun>,
    startup: &[Duration],
    warmup: usize,
) -> anyhow::Result<BootResults> {
    let marker: Vec<f64> = vireo.iter().map(|r| r.marker_ms).collect();
    let plain_marker: Vec<f64> = plain.iter().map(|r| r.marker_ms).collect();
    let ratios: Vec<f64> = marker.iter().zip(&plain_marker).map(|(v, p)| v / p).collect();
    let vireo_marker = Summary::of(&marker).context("no runs")?;
    let plain_marker = Summary::of(&plain_marker).context("no runs")?;
    let phases: Vec<&Phases> = vireo.iter().filter_map(|r| r.phases.as_ref()).collect();
    let median =
        |values: Vec<Option<f64>>| Summary::of(&values.into_iter().flatten().collect::<Vec<_>>()).map(|s| s.median);
    let cpu_medians = CpuMedians {
        vireo_qemu_ms: median(vireo.iter().map(|r| r.cpu.qemu_ms).collect()),
        plain_qemu_ms: median(plain.iter().map(|r| r.qemu_cpu_ms).collect()),
        daemon_ms: median(vireo.iter().map(|r| r.cpu.daemon_ms).collect()),
        bench_ms: median(vireo.iter().map(|r| r.cpu.bench_ms).collect()),
    };
    let running: Vec<f64> =
        phases.iter().map(|p| p.request_to_greeting_ms + p.greeting_to_cont_ms + p.cont_reply_ms).collect();
    let start_return = Summary::of(&vireo.iter().map(|r| r.start_return_ms).collect::<Vec<_>>()).context("no runs")?;
    let pairwise_ratio = Summary::of(&ratios).context("no runs")?;
    let ratio_of_medians = vireo_marker.median / plain_marker.median;
    let median_of =
        |f: fn(&Phases) -> f64| Summary::of(&phases.iter().map(|p| f(p)).collect::<Vec<_>>()).map(|s| s.median);
    let phase_medians = (|| {
        Some(PhaseMedians {
            request_to_greeting_ms: median_of(|p| p.request_to_greeting_ms)?,
            greeting_to_cont_ms: median_of(|p| p.greeting_to_cont_ms)?,
            cont_reply_ms: median_of(|p| p.cont_reply_ms)?,
            cont_to_marker_ms: median_of(|p| p.cont_to_marker_ms)?,
        })
    })();
    Ok(BootResults {
        runs: vireo.len(),
        warmup_runs: warmup,
        plain_qemu_command: shell_words(guest),
        vireo,
        plain,
        cpu_medians,
        qemu_startup: Summary::of_ms(startup),
        request_to_running: Summary::of(&running),
        target_holds: ratio_of_medians <= TARGET_RATIO,
        vireo_marker,
        plain_marker,
        start_return,
        pairwise_ratio,
        ratio_of_medians,
        phase_medians,
        target_ratio: TARGET_RATIO,
        source: BootSource::OwnPairs,
    })
}

fn shell_words(guest: &Guest) -> String {
    quote_command(&guest.plain_qemu_args())
}

/// `qemu-system-x86_64 ARGS…`, each argument quoted for a POSIX shell where it needs it.
pub(crate) fn quote_command(args: &[String]) -> String {
    let quote = |arg: &str| {
        if arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,./:".contains(c)) {
            arg.to_string()
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    let mut words = vec!["qemu-system-x86_64".to_string()];
    words.extend(args.iter().map(|a| quote(a)));
    words.join(" ")
}

/// Defines a fresh VM (untimed), then times start → marker, and force-stops it.
pub(crate) async fn vireo_run(
    client: &Client,
    daemon: &PrivateDaemon,
    guest: &Guest,
    name: &str,
) -> anyhow::Result<VireoRun> {
    let running = vireo_until_marker(client, daemon, &guest.spec(name)).await?;
    client
        .stop_vm(name, &StopRequest { force: true, timeout_secs: None })
        .await
        .with_context(|| format!("cannot stop {name}"))?;
    Ok(running.run)
}

/// A VM started through the daemon that has printed its marker, still running.
pub(crate) struct Running {
    pub run: VireoRun,
    /// Its QEMU, as the start response named it.
    pub pid: Option<u32>,
    /// Its QEMU's command line (/proc/PID/cmdline, the binary first), read once the marker was seen.
    pub argv: Vec<String>,
    /// How the daemon booted it (`GET /v1/vms/{name}`'s `boot`).
    pub boot: Option<BootStatus>,
}

/// Defines `spec` (untimed), then times start → marker; the VM is left running.
pub(crate) async fn vireo_until_marker(
    client: &Client,
    daemon: &PrivateDaemon,
    spec: &VmSpec,
) -> anyhow::Result<Running> {
    let name = spec.name.as_str();
    client.create_vm(spec).await.with_context(|| format!("cannot define {name}"))?;
    let me = std::process::id();
    let cpu_before = (process_info::cpu_time(daemon.pid), process_info::cpu_time(me));
    let wall_start = SystemTime::now();
    let start = Instant::now();
    let vm = client.start_vm(name).await.with_context(|| format!("cannot start {name}"))?;
    let start_return = start.elapsed();
    // The console can only be attached once the VM runs, i.e. after start returned.
    let mut console = client.console(name).await.with_context(|| format!("cannot attach {name}'s console"))?;
    let attached_at = start.elapsed();
    // Safety net: anything printed before the WebSocket subscribed is in the log.
    let logs = client.vm_logs(name, None).await.with_context(|| format!("cannot read {name}'s console log"))?;
    let (seen_at, seen_in) = if contains(&logs, MARKER.as_bytes()) {
        (start.elapsed(), SeenIn::Log)
    } else {
        console.read_until(MARKER.as_bytes(), BOOT_TIMEOUT).await.with_context(|| format!("{name} never got ready"))?;
        (start.elapsed(), SeenIn::Console)
    };
    let cpu = CpuUse {
        qemu_ms: vm.pid.and_then(process_info::cpu_time).map(ms),
        daemon_ms: since(cpu_before.0, process_info::cpu_time(daemon.pid)),
        bench_ms: since(cpu_before.1, process_info::cpu_time(me)),
    };
    let _ = console.close().await;
    let argv = vm.pid.map(process_info::cmdline).unwrap_or_default();
    // `cont` and its reply were logged before start returned.
    let qmp_log = daemon.data_dir.join("vms").join(name).join("qmp.log");
    let phases = std::fs::read_to_string(&qmp_log).ok().and_then(|log| phases(&log, wall_start, seen_at));
    let run = VireoRun {
        vm: name.to_string(),
        start_return_ms: ms(start_return),
        attached_ms: ms(attached_at),
        marker_ms: ms(seen_at),
        seen_in,
        accel: vm.accel,
        phases,
        cpu,
    };
    Ok(Running { run, pid: vm.pid, argv, boot: vm.boot })
}

fn since(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    Some(ms(after?.saturating_sub(before?)))
}

/// Spawns the plain QEMU and times spawn → marker on its stdout; then kills it.
pub(crate) async fn plain_run(qemu: &Path, guest: &Guest) -> anyhow::Result<PlainRun> {
    let mut command = tokio::process::Command::new(qemu);
    command.args(guest.plain_qemu_args()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    let start = Instant::now();
    let mut child = command.spawn().with_context(|| format!("cannot run {}", qemu.display()))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let found = tokio::time::timeout(BOOT_TIMEOUT, read_until(&mut stdout, MARKER.as_bytes())).await;
    let elapsed = start.elapsed();
    let qemu_cpu_ms = child.id().and_then(process_info::cpu_time).map(ms);
    let _ = child.kill().await;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    match found {
        Ok(Ok(true)) => Ok(PlainRun { marker_ms: ms(elapsed), qemu_cpu_ms }),
        Ok(Ok(false)) => bail!("QEMU exited before the marker: {}", stderr.trim()),
        Ok(Err(err)) => Err(err).context("cannot read QEMU's output"),
        Err(_) => bail!("no marker within {BOOT_TIMEOUT:?}"),
    }
}

/// QEMU's start-up alone: the plain command plus `-S` and a QMP monitor on an inherited
/// listening socket (as vireo does it), timed from spawn until QMP answers `qmp_capabilities`,
/// which QEMU does only once its initialisation is done.
async fn qemu_startup(qemu: &Path, guest: &Guest, scratch: &Path) -> anyhow::Result<Duration> {
    let path = scratch.join("startup-qmp.sock");
    let _ = std::fs::remove_file(&path);
    let listener =
        std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    // Connecting before QEMU runs is fine: the listen backlog holds the connection.
    let stream = std::os::unix::net::UnixStream::connect(&path)?;
    // QEMU must inherit the listener; nothing else is spawned meanwhile.
    fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let mut command = tokio::process::Command::new(qemu);
    command
        .args(guest.plain_qemu_args())
        .arg("-S")
        .args(["-chardev", &format!("socket,id=qmp,fd={},server=on,wait=off", listener.as_raw_fd())])
        .args(["-mon", "chardev=qmp,mode=control"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = command.spawn().with_context(|| format!("cannot run {}", qemu.display()))?;
    drop(listener);
    stream.set_nonblocking(true)?;
    let (read, mut write) = tokio::net::UnixStream::from_std(stream)?.into_split();
    let mut lines = BufReader::new(read).lines();
    let handshake = async {
        lines.next_line().await?; // the greeting
        write.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").await?;
        while let Some(line) = lines.next_line().await? {
            if line.contains("\"return\"") {
                return Ok(true);
            }
        }
        Ok::<_, std::io::Error>(false)
    };
    let answered = tokio::time::timeout(Duration::from_secs(30), handshake).await;
    let elapsed = start.elapsed();
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&path);
    match answered {
        Ok(Ok(true)) => Ok(elapsed),
        Ok(Ok(false)) => bail!("QEMU closed QMP before answering"),
        Ok(Err(err)) => Err(err).context("QMP with the start-up QEMU failed"),
        Err(_) => bail!("QEMU did not answer QMP within 30 s"),
    }
}

/// True once `pattern` went by; false at end of stream.
pub(crate) async fn read_until(reader: &mut (impl AsyncReadExt + Unpin), pattern: &[u8]) -> std::io::Result<bool> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        let search_from = seen.len().saturating_sub(pattern.len() - 1);
        seen.extend_from_slice(&buf[..n]);
        if contains(&seen[search_from..], pattern) {
            return Ok(true);
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads the phases of the start made at `wall_start` from a VM's qmp.log
/// (`{"ts_ms":…,"dir":"in"|"out","msg":…}` per line); `seen_at` is request → marker.
fn phases(qmp_log: &str, wall_start: SystemTime, seen_at: Duration) -> Option<Phases> {
    let start_ms = wall_start.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0;
    let lines: Vec<serde_json::Value> = qmp_log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let ts = |line: &serde_json::Value| line["ts_ms"].as_f64();
    let greeting = lines.iter().position(|l| l["dir"] == "in" && l["msg"].get("QMP").is_some())?;
    let cont = greeting + lines[greeting..].iter().position(|l| l["dir"] == "out" && l["msg"]["execute"] == "cont")?;
    let reply = cont + lines[cont..].iter().position(|l| l["dir"] == "in" && l["msg"].get("return").is_some())?;
    let (greeting_ms, cont_ms, reply_ms) = (ts(&lines[greeting])?, ts(&lines[cont])?, ts(&lines[reply])?);
    Some(Phases {
        request_to_greeting_ms: greeting_ms - start_ms,
        greeting_to_cont_ms: cont_ms - greeting_ms,
        cont_reply_ms: reply_ms - cont_ms,
        cont_to_marker_ms: start_ms + ms(seen_at) - cont_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_come_from_the_qmp_log() {
        let log = r#"{"ts_ms":1000100,"dir":"in","msg":{"QMP":{"version":{}}}}
{"ts_ms":1000101,"dir":"out","msg":{"execute":"qmp_capabilities","id":1}}
{"ts_ms":1000102,"dir":"in","msg":{"return":{},"id":1}}
{"ts_ms":1000110,"dir":"out","msg":{"execute":"cont","id":2}}
{"ts_ms":1000112,"dir":"in","msg":{"event":"RESUME"}}
{"ts_ms":1000113,"dir":"in","msg":{"return":{},"id":2}}
"#;
        let start = UNIX_EPOCH + Duration::from_millis(1_000_000);
        let phases = phases(log, start, Duration::from_millis(2110)).unwrap();
        assert_eq!(phases.request_to_greeting_ms, 100.0);
        assert_eq!(phases.greeting_to_cont_ms, 10.0);
        assert_eq!(phases.cont_reply_ms, 3.0);
        assert_eq!(phases.cont_to_marker_ms, 2000.0);
        assert!(super::phases("garbage\n", start, Duration::ZERO).is_none());
    }

    #[test]
    fn the_spec_is_a_valid_api_spec() {
        let guest = Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() };
        let spec = guest.spec("boot-1");
        assert_eq!((spec.vcpus, spec.memory, spec.accel), (1, ByteSize::mib(256), Accel::Tcg));
        assert_eq!(spec.boot.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    }

    #[test]
    fn the_vm_has_the_volume_as_its_disk() {
        let guest = Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() };
        let spec = guest.spec_with_volume("snap", "default/snap-disk");
        assert_eq!(spec.disks.len(), 1);
        assert_eq!(spec.disks[0].volume.as_deref(), Some("default/snap-disk"));
    }

    #[test]
    fn the_plain_command_is_quoted_for_a_shell() {
        let guest = Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() };
        assert_eq!(
            shell_words(&guest),
            "qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 -nodefaults -no-user-config -display none \
             -serial stdio -kernel /g/vmlinuz -initrd /g/initramfs.img -append 'console=ttyS0 quiet'"
        );
    }

    #[tokio::test]
    async fn the_marker_is_found_across_reads() {
        let (mut writer, mut reader) = tokio::io::duplex(8);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(b"boot noise VIREO-TEST-").await.unwrap();
            writer.write_all(b"GUEST-READY\r\n").await.unwrap();
        });
        assert!(read_until(&mut reader, MARKER.as_bytes()).await.unwrap());
        let (writer, mut reader) = tokio::io::duplex(8);
        drop(writer);
        assert!(!read_until(&mut reader, MARKER.as_bytes()).await.unwrap());
    }
}
