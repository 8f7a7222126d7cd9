//! Section 6, live migration: section 4's guest moved back and forth (A → B, B → A, …)
//! between two private vireo daemons (section 4's measure) and between two private
//! libvirtds on this machine with `virsh migrate --live`, alternating (vireo, libvirt,
//! vireo, libvirt, …), each side with its own defaults; after every migration the guest
//! must answer on its console on the destination.
//!
//! Two libvirtds on one machine: each is a [`PrivateLibvirtd`] (a mount namespace of its
//! own, with overlays over /etc, /run and /var on a directory of its own) with a
//! `host_uuid` of its own, as libvirt refuses to migrate a guest to a daemon that has the
//! same host UUID. The source libvirtd drives the migration (`--p2p`) and reaches the
//! destination on its Unix socket; the migration stream goes over loopback TCP. QEMU's own
//! figures of libvirt's migrations come from the transcript of the QEMU monitor each
//! libvirtd logs (as vireo's come from the daemon, which reads them from QMP); libvirt's own
//! figures (`virsh domjobinfo --completed`) are kept beside them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::boot::{self, BOOT_TIMEOUT, Guest, MARKER};
use crate::daemon::PrivateDaemon;
use crate::libvirt::{self, Domain, PrivateLibvirtd, VirshShell};
use crate::libvirt_bench::{self, Versus};
use crate::libvirt_report::{self, versus_row};
use crate::migration::{self, MigrationRun};
use crate::plain;
use crate::report::{fmt_bytes, fmt_ms};
use crate::stats::{Summary, ms};

/// The libvirt domain.
const DOMAIN: &str = "versus-mig";
/// The libvirtds' host UUIDs (`host_uuid`), A's and B's: libvirt refuses a migration between
/// two daemons with the same one, and both would take this machine's otherwise.
const HOST_UUIDS: [&str; 2] = ["5a1e0000-0000-4000-8000-00000000000a", "5a1e0000-0000-4000-8000-00000000000b"];
/// What each libvirtd logs of its QEMU monitor: every command, reply and event (level 2, info).
const MONITOR_FILTER: &str = "2:qemu.qemu_monitor";
/// The monitor transcript, in the daemon's directory.
const MONITOR_LOG: &str = "monitor.log";
/// How long the guest may take to answer on its console after a migration.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many migrations each side gets.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub runs: usize,
    pub warmup: usize,
}

/// Measured, or why not.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LibvirtMigrationOutcome {
    Measured(Box<LibvirtMigrationResults>),
    NotMeasured { reason: String },
}

/// One migration through libvirt (milliseconds).
#[derive(Clone, Debug, Serialize)]
pub struct LibvirtRun {
    /// `a → b` or `b → a`, between the two libvirtds.
    pub direction: String,
    /// QEMU's `downtime` and `total-time` from the source QEMU's final `query-migrate`, as
    /// libvirt read them (its monitor transcript); `None` if QEMU had not worked them out yet.
    pub downtime_ms: Option<f64>,
    pub total_time_ms: Option<f64>,
    /// The source QEMU's MIGRATION `completed` event → the destination QEMU's RESUME event,
    /// by QEMU's timestamps of the two events.
    pub handover_ms: Option<f64>,
    /// `migrate …` written to the virsh shell connected to the source → virsh done with it.
    pub wall_ms: f64,
    /// QEMU's `ram.transferred` on the source.
    pub memory_transferred_bytes: Option<u64>,
    /// `virsh domjobinfo --completed` on the destination: `Total downtime`, libvirt's own
    /// clock from the source's STOP event to the destination's vCPUs resumed.
    pub libvirt_downtime_ms: Option<f64>,
    /// Likewise `Time elapsed`: from the job's start on the source to its end on the destination.
    pub libvirt_elapsed_ms: Option<f64>,
}

/// A migration on each side, and the guest's answers on its consoles afterwards.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationPair {
    pub vireo: MigrationRun,
    pub libvirt: LibvirtRun,
    /// A command typed into the guest's console on the destination → its answer (vireo: the
    /// destination daemon's console WebSocket, attached afresh; libvirt: the serial socket
    /// the destination QEMU connected to).
    pub vireo_answer_ms: f64,
    pub libvirt_answer_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LibvirtMigrationResults {
    /// `virsh version --daemon`.
    pub libvirt_version: String,
    pub runs: usize,
    pub warmup_runs: usize,
    pub disk_mib: u64,
    /// An A → B run's command, `DIR_A` and `DIR_B` for the daemons' directories.
    pub virsh_command: String,
    /// What each libvirtd.conf has on top of section 6's (its `log_outputs` replaced), `DIR`
    /// for the daemon's directory and `UUID` for [`LibvirtMigrationResults::host_uuids`].
    pub libvirtd_conf_added: String,
    pub host_uuids: [String; 2],
    /// What libvirt sent the source QEMU before `migrate` (the last run's transcript):
    /// `migrate-set-capabilities` and `migrate-set-parameters`.
    pub libvirt_migration_setup: Vec<String>,
    /// QEMU's `downtime-limit` as libvirt found it before that setup (libvirt sets none).
    pub qemu_downtime_limit_ms: Option<f64>,
    pub pairs: Vec<MigrationPair>,
    /// vireo against libvirt, over the pairs where libvirt's figure is known.
    pub downtime: Option<Versus>,
    pub total_time: Option<Versus>,
    pub handover: Option<Versus>,
    /// Downtime + hand-over of each run: the guest's whole pause.
    pub pause: Option<Versus>,
    pub wall: Versus,
    pub memory_transferred_bytes: Option<Versus>,
    /// libvirt's own figures ([`LibvirtRun::libvirt_downtime_ms`], `libvirt_elapsed_ms`).
    pub libvirt_reported_downtime: Option<Summary>,
    pub libvirt_reported_elapsed: Option<Summary>,
}

/// Two vireo daemons and two libvirtds, the same guest booted on the first of each, then
/// `warmup` unrecorded and `runs` recorded migrations on each side. Everything is stopped
/// again, also on error. Skipped (with the reason) where libvirt is not installed.
pub async fn run(
    vireo: &Path,
    qemu: &Path,
    guest: &Guest,
    counts: Counts,
    work: &Path,
) -> anyhow::Result<LibvirtMigrationOutcome> {
    if let Some(reason) = libvirt::missing_binaries() {
        eprintln!("vireo-bench: live migration vs libvirt not measured: {reason}");
        return Ok(LibvirtMigrationOutcome::NotMeasured { reason });
    }
    eprintln!(
        "vireo-bench: live migration vs libvirt: two vireo daemons, two private libvirtds, {} migration(s) on each \
         side after {} warm-up run(s)",
        counts.runs, counts.warmup
    );
    let dir = work.join("libvirt-migration");
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).with_context(|| format!("cannot create {}", shared.display()))?;
    let _reaper = libvirt::OrphanReaper::start()?;
    let dirs = ["a", "b"].map(|side| work.join(format!("libvirt-migration-vireo-{side}")));
    let [a, b] = migration::start_pair(vireo, qemu, dirs).await?;
    let outcome = match start_libvirtds(&dir).await {
        Ok(libvirtds) => {
            let outcome = measure([&a, &b], &libvirtds, qemu, guest, &shared, counts).await;
            let [la, lb] = libvirtds;
            la.shutdown().await;
            lb.shutdown().await;
            outcome
        }
        Err(err) => Err(err),
    };
    a.shutdown().await;
    b.shutdown().await;
    Ok(LibvirtMigrationOutcome::Measured(Box::new(outcome?)))
}

/// Libvirtd A and B, each on a directory of its own in `dir`.
async fn start_libvirtds(dir: &Path) -> anyhow::Result<[PrivateLibvirtd; 2]> {
    let a = start_libvirtd(dir.join("a"), HOST_UUIDS[0]).await?;
    match start_libvirtd(dir.join("b"), HOST_UUIDS[1]).await {
        Ok(b) => Ok([a, b]),
        Err(err) => {
            a.shutdown().await;
            Err(err)
        }
    }
}

async fn start_libvirtd(dir: PathBuf, host_uuid: &str) -> anyhow::Result<PrivateLibvirtd> {
    let conf = libvirtd_conf(&dir, host_uuid);
    PrivateLibvirtd::start_with_conf(dir, &conf).await
}

/// Section 6's libvirtd.conf with [`added_conf`] in place of its `log_outputs`.
fn libvirtd_conf(dir: &Path, host_uuid: &str) -> String {
    let mut conf: String = libvirt::libvirtd_conf(dir)
        .lines()
        .filter(|l| !l.starts_with("log_outputs"))
        .map(|l| format!("{l}\n"))
        .collect();
    conf.push_str(&added_conf(dir, host_uuid));
    conf
}

/// A host UUID of its own, and the QEMU monitor's transcript in a log of its own beside the
/// daemon's log (which keeps its warnings and errors).
fn added_conf(dir: &Path, host_uuid: &str) -> String {
    format!(
        "host_uuid = \"{host_uuid}\"\nlog_filters = \"{MONITOR_FILTER}\"\nlog_outputs = \"3:file:{} 2:file:{}\"\n",
        dir.join("libvirtd.log").display(),
        dir.join(MONITOR_LOG).display()
    )
}

/// `migrate` as written to the source's virsh shell: live, peer to peer (the source libvirtd
/// drives it, as vireo's source daemon does), `--unsafe` (the disk is on a local file system,
/// which libvirt cannot know both ends share), the migration stream on loopback.
fn migrate_command(destination_uri: &str) -> String {
    format!(
        "migrate --live --p2p --unsafe {DOMAIN} '{destination_uri}' --migrateuri tcp://127.0.0.1 --listen-address \
         127.0.0.1"
    )
}

/// The URI the source libvirtd reaches the destination at: with `--p2p` libvirt refuses a URI
/// without a host ("Attempt to migrate guest to the same host") unless its transport is
/// `unix` and it names the socket.
fn peer_uri(uri: &str) -> anyhow::Result<String> {
    match uri.strip_prefix("qemu://") {
        Some(rest) => Ok(format!("qemu+unix://{rest}")),
        None => bail!("unexpected libvirtd URI {uri}"),
    }
}

async fn measure(
    daemons: [&PrivateDaemon; 2],
    libvirtds: &[PrivateLibvirtd; 2],
    qemu: &Path,
    guest: &Guest,
    shared: &Path,
    counts: Counts,
) -> anyhow::Result<LibvirtMigrationResults> {
    migration::boot_on_shared_pool(daemons, guest, &shared.join("vireo-pool")).await?;

    // libvirt's DAC driver relabels the files a domain uses: its own copy of the test guest.
    let libvirt_guest = libvirt_bench::copy_guest(guest, shared)?;
    let disk = shared.join("disk.qcow2");
    plain::qemu_img_create(qemu, &disk, migration::DISK_MIB).await?;
    let serial = shared.join(format!("{DOMAIN}.serial"));
    let domain = Domain { name: DOMAIN, guest: &libvirt_guest, emulator: qemu, serial: &serial, disk: Some(&disk) };
    let xml = shared.join(format!("{DOMAIN}.xml"));
    std::fs::write(&xml, domain.xml())?;
    let mut console = SerialConsole::listen(&serial)?;
    let mut shells = [libvirtds[0].shell().await?, libvirtds[1].shell().await?];
    shells[0].run(&format!("define {}", xml.display())).await?;
    shells[0].run(&format!("start {DOMAIN}")).await?;
    let pid = libvirtds[0].qemu_pid(DOMAIN).context("libvirt has no pid file for the domain's QEMU")?;
    console.marker(pid).await.context("the libvirt guest never got ready")?;

    let Counts { runs, warmup } = counts;
    let mut pairs = Vec::with_capacity(runs);
    let mut setup = Setup::default();
    for i in 0..warmup + runs {
        let label = boot::run_label(i, warmup, runs);
        let (from, to) = (i % 2, (i + 1) % 2);
        let direction = if from == 0 { "a → b" } else { "b → a" };
        let vireo = migration::vireo_run(daemons[from], daemons[to], direction)
            .await
            .with_context(|| format!("vireo migration {label}"))?;
        let vireo_answer_ms =
            vireo_answer(daemons[to], i).await.with_context(|| format!("vireo migration {label}: the guest"))?;
        let [a, b] = &mut shells;
        let ends = if from == 0 { [a, b] } else { [b, a] };
        let (libvirt, run_setup) = libvirt_run(ends, [&libvirtds[from], &libvirtds[to]], direction)
            .await
            .with_context(|| format!("libvirt migration {label}"))?;
        setup = run_setup;
        let pid = libvirtds[to].qemu_pid(DOMAIN).context("libvirt has no pid file for the destination's QEMU")?;
        let libvirt_answer_ms =
            console.answer(pid, i).await.with_context(|| format!("libvirt migration {label}: the guest"))?;
        let known = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        eprintln!(
            "vireo-bench: vs libvirt, migration {label} ({direction}): downtime {:.0}/{} ms, total {:.0}/{} ms, \
             hand-over {:.0}/{} ms, wall {:.0}/{:.0} ms (vireo/libvirt); the guest answered on both",
            vireo.downtime_ms,
            known(libvirt.downtime_ms),
            vireo.total_time_ms,
            known(libvirt.total_time_ms),
            vireo.handover_ms,
            known(libvirt.handover_ms),
            vireo.wall_ms,
            libvirt.wall_ms
        );
        if i >= warmup {
            pairs.push(MigrationPair { vireo, libvirt, vireo_answer_ms, libvirt_answer_ms });
        }
    }
    for shell in shells {
        shell.close().await;
    }
    drop(console);

    let shown = |k: usize, dir: &str| libvirtds[k].uri.replace(&*libvirtds[k].dir.to_string_lossy(), dir);
    let virsh_command = format!("virsh -c '{}' {}", shown(0, "DIR_A"), migrate_command(&peer_uri(&shown(1, "DIR_B"))?));
    let conf = added_conf(Path::new("DIR"), "UUID");
    summarize(libvirtds[0].version().await, counts, virsh_command, conf, setup, pairs)
}

/// Migrates the domain from `libvirtds[0]` to `libvirtds[1]` through `shells[0]`, connected to
/// the source, and reads the figures: QEMU's from both daemons' monitor transcripts of the
/// run, libvirt's from `domjobinfo --completed` on the destination (which worked them out and
/// sent them to the source; after B → A the source no longer knows the domain, transient there).
async fn libvirt_run(
    shells: [&mut VirshShell; 2],
    libvirtds: [&PrivateLibvirtd; 2],
    direction: &str,
) -> anyhow::Result<(LibvirtRun, Setup)> {
    let [source, destination] = shells;
    let logs = libvirtds.map(|daemon| daemon.dir.join(MONITOR_LOG));
    let offsets = logs.clone().map(|log| std::fs::metadata(log).map_or(0, |m| m.len()));
    let command = migrate_command(&peer_uri(&libvirtds[1].uri)?);
    let start = Instant::now();
    let logs_of = |k: usize| libvirtds[k].dir.join("libvirtd.log");
    let see = || format!("see {} and {}", logs_of(0).display(), logs_of(1).display());
    source.run(&command).await.with_context(see)?;
    let wall = start.elapsed();
    let info = destination.run(&format!("domjobinfo --completed {DOMAIN}")).await?;
    let [on_source, on_destination] = [0, 1].map(|k| transcript(&read_from(&logs[k], offsets[k])));
    let figures = Figures::of(&on_source);
    let completed = event_us(&on_source, "MIGRATION", Some("completed"));
    let resumed = event_us(&on_destination, "RESUME", None);
    let run = LibvirtRun {
        direction: direction.into(),
        downtime_ms: figures.downtime_ms,
        total_time_ms: figures.total_time_ms,
        handover_ms: completed.zip(resumed).map(|(completed, resumed)| (resumed - completed) as f64 / 1000.0),
        wall_ms: ms(wall),
        memory_transferred_bytes: figures.memory_transferred_bytes,
        libvirt_downtime_ms: jobinfo_ms(&info, "Total downtime"),
        libvirt_elapsed_ms: jobinfo_ms(&info, "Time elapsed"),
    };
    Ok((run, Setup::of(&on_source)))
}

/// What of `path` lies past `offset` (the log of one run), lossily as UTF-8.
fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Types a command into the guest's console through the destination daemon and waits for its answer.
async fn vireo_answer(daemon: &PrivateDaemon, k: usize) -> anyhow::Result<f64> {
    let (command, answer) = console_check(k);
    let mut console = daemon.client().console(migration::VM).await.context("cannot attach the console")?;
    let start = Instant::now();
    console.send_line(&command).await.context("cannot type into the console")?;
    console.read_until(answer.as_bytes(), ANSWER_TIMEOUT).await.with_context(|| format!("no `{answer}`"))?;
    let answered = ms(start.elapsed());
    let _ = console.close().await;
    Ok(answered)
}

/// The `k`-th console check: a command for the guest's shell and its answer, which the
/// command as echoed back does not contain.
fn console_check(k: usize) -> (String, String) {
    (format!("echo migrated-$(({k} + 1000))"), format!("migrated-{}", k + 1000))
}

/// One line of a libvirtd's QEMU monitor transcript.
#[derive(Debug, PartialEq)]
enum Monitor {
    Sent(Value),
    Reply(Value),
    Event(Value),
}

/// The monitor lines of a libvirtd log at [`MONITOR_FILTER`], in order:
/// `… QEMU_MONITOR_SEND_MSG: mon=0x… msg={…}`, `… QEMU_MONITOR_RECV_REPLY: mon=0x… reply={…}`,
/// `… QEMU_MONITOR_RECV_EVENT: mon=0x… event={…}`.
fn transcript(log: &str) -> Vec<Monitor> {
    let mut lines = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("QEMU_MONITOR_") else { continue };
        let kind: fn(Value) -> Monitor = if rest.starts_with("SEND_MSG: ") {
            Monitor::Sent
        } else if rest.starts_with("RECV_REPLY: ") {
            Monitor::Reply
        } else if rest.starts_with("RECV_EVENT: ") {
            Monitor::Event
        } else {
            continue;
        };
        let json = rest.find('{').map(|at| rest[at..].trim_end());
        if let Some(value) = json.and_then(|json| serde_json::from_str(json).ok()) {
            lines.push(kind(value));
        }
    }
    lines
}

/// QEMU's figures from the source's last `query-migrate` that says `completed`.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    downtime_ms: Option<f64>,
    total_time_ms: Option<f64>,
    memory_transferred_bytes: Option<u64>,
}

impl Figures {
    fn of(transcript: &[Monitor]) -> Figures {
        let completed = transcript.iter().rev().find_map(|line| match line {
            Monitor::Reply(reply) if reply["return"]["status"] == "completed" => Some(&reply["return"]),
            _ => None,
        });
        let Some(info) = completed else { return Figures::default() };
        // QEMU 7.2 says `completed` a moment before it has worked out the times (0 until then).
        let total_time_ms = info["total-time"].as_f64().filter(|&t| t > 0.0);
        Figures {
            downtime_ms: total_time_ms.and(info["downtime"].as_f64()),
            total_time_ms,
            memory_transferred_bytes: info["ram"]["transferred"].as_u64(),
        }
    }
}

/// QEMU's timestamp (microseconds) of the first `event` (whose `data.status` is `status`, if given).
fn event_us(transcript: &[Monitor], event: &str, status: Option<&str>) -> Option<i64> {
    transcript.iter().find_map(|line| {
        let Monitor::Event(value) = line else { return None };
        if value["event"] != event || status.is_some_and(|s| value["data"]["status"] != s) {
            return None;
        }
        let at = &value["timestamp"];
        Some(at["seconds"].as_i64()? * 1_000_000 + at["microseconds"].as_i64()?)
    })
}

/// How libvirt set up the source QEMU's migration.
#[derive(Clone, Debug, Default, PartialEq)]
struct Setup {
    /// The `migrate-set-capabilities` and `migrate-set-parameters` sent before `migrate`.
    commands: Vec<String>,
    /// `downtime-limit` in the last `query-migrate-parameters` answer before `migrate`.
    downtime_limit_ms: Option<f64>,
}

impl Setup {
    fn of(transcript: &[Monitor]) -> Setup {
        let mut setup = Setup::default();
        for line in transcript {
            match line {
                Monitor::Sent(command) if command["execute"] == "migrate" => break,
                Monitor::Sent(command)
                    if command["execute"] == "migrate-set-capabilities"
                        || command["execute"] == "migrate-set-parameters" =>
                {
                    let shown = json!({ "execute": command["execute"], "arguments": command["arguments"] });
                    setup.commands.push(shown.to_string());
                }
                Monitor::Reply(reply) if reply["return"]["downtime-limit"].is_number() => {
                    setup.downtime_limit_ms = reply["return"]["downtime-limit"].as_f64();
                }
                _ => {}
            }
        }
        setup
    }
}

/// A `NAME: VALUE ms` line of `virsh domjobinfo`.
fn jobinfo_ms(info: &str, name: &str) -> Option<f64> {
    info.lines().find_map(|line| {
        let mut words = line.strip_prefix(name)?.strip_prefix(':')?.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("ms")).then_some(value)
    })
}

/// Where the libvirt domain's serial console connects (`mode='connect'`): each of its QEMUs,
/// the first and every migration's destination, connects as it starts. The connections are
/// told apart by their peer's pid.
struct SerialConsole {
    incoming: mpsc::UnboundedReceiver<UnixStream>,
    connections: Vec<(Option<u32>, UnixStream)>,
    task: JoinHandle<()>,
}

impl SerialConsole {
    fn listen(path: &Path) -> anyhow::Result<SerialConsole> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
        let (sender, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if sender.send(stream).is_err() {
                    break;
                }
            }
        });
        Ok(SerialConsole { incoming, connections: Vec::new(), task })
    }

    /// The connection of the QEMU with `pid`, once it has come; the others are dropped (their
    /// QEMUs have handed the guest over).
    async fn of(&mut self, pid: u32) -> anyhow::Result<&mut UnixStream> {
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        while !self.connections.iter().any(|(peer, _)| *peer == Some(pid)) {
            let stream = tokio::time::timeout_at(deadline, self.incoming.recv())
                .await
                .with_context(|| format!("QEMU {pid} did not connect to the serial socket"))?
                .context("the serial socket is closed")?;
            let peer = stream.peer_cred().ok().and_then(|cred| cred.pid()).and_then(|p| u32::try_from(p).ok());
            self.connections.push((peer, stream));
        }
        self.connections.retain(|(peer, _)| *peer == Some(pid));
        Ok(&mut self.connections[0].1)
    }

    /// Waits for the marker on the console of QEMU `pid`.
    async fn marker(&mut self, pid: u32) -> anyhow::Result<()> {
        let stream = self.of(pid).await?;
        match tokio::time::timeout(BOOT_TIMEOUT, boot::read_until(stream, MARKER.as_bytes())).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => bail!("the serial console closed before the marker"),
            Ok(Err(err)) => Err(err).context("cannot read the serial console"),
            Err(_) => bail!("no marker within {BOOT_TIMEOUT:?}"),
        }
    }

    /// Types the `k`-th check into the console of QEMU `pid` and waits for the guest's answer.
    async fn answer(&mut self, pid: u32, k: usize) -> anyhow::Result<f64> {
        let (command, answer) = console_check(k);
        let stream = self.of(pid).await?;
        let start = Instant::now();
        stream.write_all(format!("{command}\n").as_bytes()).await.context("cannot type into the console")?;
        match tokio::time::timeout(ANSWER_TIMEOUT, boot::read_until(stream, answer.as_bytes())).await {
            Ok(Ok(true)) => Ok(ms(start.elapsed())),
            Ok(Ok(false)) => bail!("the serial console closed before `{answer}`"),
            Ok(Err(err)) => Err(err).context("cannot read the serial console"),
            Err(_) => bail!("no `{answer}` within {ANSWER_TIMEOUT:?}"),
        }
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn summarize(
    libvirt_version: String,
    counts: Counts,
    virsh_command: String,
    libvirtd_conf_added: String,
    setup: Setup,
    pairs: Vec<MigrationPair>,
) -> anyhow::Result<LibvirtMigrationResults> {
    let versus = |vireo: fn(&MigrationRun) -> f64, libvirt: fn(&LibvirtRun) -> Option<f64>| {
        let (v, l): (Vec<f64>, Vec<f64>) =
            pairs.iter().filter_map(|p| Some((vireo(&p.vireo), libvirt(&p.libvirt)?))).unzip();
        Versus::of(&v, &l)
    };
    let reported = |figure: fn(&LibvirtRun) -> Option<f64>| {
        Summary::of(&pairs.iter().filter_map(|p| figure(&p.libvirt)).collect::<Vec<_>>())
    };
    let wall = versus(|v| v.wall_ms, |l| Some(l.wall_ms)).context("no migration runs")?;
    Ok(LibvirtMigrationResults {
        libvirt_version,
        runs: pairs.len(),
        warmup_runs: counts.warmup,
        disk_mib: migration::DISK_MIB,
        virsh_command,
        libvirtd_conf_added,
        host_uuids: HOST_UUIDS.map(String::from),
        libvirt_migration_setup: setup.commands,
        qemu_downtime_limit_ms: setup.downtime_limit_ms,
        downtime: versus(|v| v.downtime_ms, |l| l.downtime_ms),
        total_time: versus(|v| v.total_time_ms, |l| l.total_time_ms),
        handover: versus(|v| v.handover_ms, |l| l.handover_ms),
        pause: versus(|v| v.downtime_ms + v.handover_ms, |l| Some(l.downtime_ms? + l.handover_ms?)),
        wall,
        memory_transferred_bytes: versus(
            |v| v.memory_transferred_bytes as f64,
            |l| l.memory_transferred_bytes.map(|b| b as f64),
        ),
        libvirt_reported_downtime: reported(|l| l.libvirt_downtime_ms),
        libvirt_reported_elapsed: reported(|l| l.libvirt_elapsed_ms),
        pairs,
    })
}

// ---- the report ----

/// The "Live migration" subsection of section 6; with `heading`, the section's heading first
/// (when the rest of section 6 was not measured).
pub fn section(out: &mut String, outcome: &LibvirtMigrationOutcome, heading: bool) {
    if heading {
        let _ = writeln!(out, "{}\n", libvirt_report::HEADING);
    }
    match outcome {
        LibvirtMigrationOutcome::Measured(results) => measured(out, results),
        LibvirtMigrationOutcome::NotMeasured { reason } => {
            let _ = writeln!(out, "### Live migration\n\nNot measured: {reason}.\n");
        }
    }
}

fn measured(out: &mut String, r: &LibvirtMigrationResults) {
    let known_ms = |value: Option<f64>| value.map_or("n/a".to_string(), fmt_ms);
    let _ = write!(
        out,
        "### Live migration\n\n\
         Section 4's guest (256 MiB, 1 vCPU, TCG) with a {disk} MiB qcow2 disk on storage both ends see, idle after \
         booting to the marker, live-migrated back and forth between two daemons on this machine, A → B, B → A, …: \
         {runs} recorded migration(s) on each side after {warmup} unrecorded warm-up run(s), alternating (vireo, \
         libvirt, vireo, libvirt, …), each side with its own defaults, the guest's machine included. After every \
         migration the bench types `echo migrated-$((K + 1000))` into the guest's console on the destination and \
         waits for the answer, so that each figure is of a guest that runs on after its migration (vireo: through \
         the destination daemon's console WebSocket; libvirt: on the serial socket the destination QEMU connected \
         to); every one answered.\n\n\
         - **vireo**: section 4's measure, on two more private daemons with a pool on one directory: `POST \
         /v1/vms/{{vm}}/migrate` to the source (`copy_storage: false`, everything else at vireo's defaults), its \
         status polled until the migration has ended.\n\
         - **libvirt** ({version}): two private libvirtds, A and B, each as above in a mount namespace of its own \
         with its own overlays over /etc, /run and /var, on directories `DIR_A` and `DIR_B`. Section 6's domain \
         plus the disk (`<disk type='file' device='disk'>`, qcow2, virtio) on one file, defined on A and started \
         there. Each run writes to a virsh shell connected to the source (here A → B):\n\n\
         ```\n{command}\n```\n\n  \
         Peer to peer: the source libvirtd drives the migration and talks to the destination itself, as vireo's \
         source daemon does (virsh's default, virsh driving the steps between the two daemons, works here as \
         well). What libvirt needs to migrate between two daemons on one machine, and nothing more: a host UUID of \
         its own for each daemon (libvirt compares the host UUIDs of the two ends and refuses \"Attempt to migrate \
         guest to the same host\"; 9.0 no longer compares host names, so both keep this machine's); the \
         destination's socket in a `qemu+unix://` URI (with `--p2p`, a URI without a host must name a Unix \
         socket); and `--unsafe`, as the disk is on a local file system, which libvirt cannot know both ends share \
         (it is one machine; the flag skips that check only). `--migrateuri tcp://127.0.0.1` and \
         `--listen-address 127.0.0.1` keep the migration stream on loopback, as vireo's. Each libvirtd.conf has, in \
         place of section 6's `log_outputs` (`UUID` is `{uuid_a}` for A, `{uuid_b}` for B):\n\n\
         ```\n{conf}```\n\n  \
         The second log is the transcript of the QEMU monitor (libvirt's commands, QEMU's replies and events), \
         from which QEMU's own figures of libvirt's migrations are read; it costs libvirtd a line written per \
         message (most of them answers to the destination QEMU's CPU probe), as vireo's daemon writes a QMP log of \
         every VM. libvirt's defaults here: no downtime limit of its own, so QEMU's ({limit}); no bandwidth limit \
         (libvirt sets `max-bandwidth` to its largest value; QEMU's own default is 128 MiB/s); and it pauses the \
         source at `pre-switchover` and lets it go on with `migrate-continue`. What it sent the source QEMU \
         before `migrate`:\n\n```\n{setup}\n```\n\n\
         Downtime and total time are QEMU's `downtime` and `total-time` from the source's final `query-migrate`: \
         vireo's as its daemon reports them, libvirt's from libvirt's own `query-migrate` in the source \
         libvirtd's transcript. The hand-over is vireo's `handover_ms` (the source daemon's go-ahead → the guest \
         running on the destination) and, for libvirt, the source QEMU's MIGRATION `completed` event → the \
         destination QEMU's RESUME event (QEMU's timestamps). The wall time is from the request (vireo) or \
         `migrate` written to the connected virsh shell (libvirt) until the client sees the migration done; both \
         include starting the destination's QEMU.\n\n\
         | measure | vireo: min / median / max | libvirt: min / median / max | vireo / libvirt, pairwise (median) | \
         vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
        disk = r.disk_mib,
        runs = r.runs,
        warmup = r.warmup_runs,
        version = r.libvirt_version,
        command = r.virsh_command,
        uuid_a = r.host_uuids[0],
        uuid_b = r.host_uuids[1],
        conf = r.libvirtd_conf_added,
        limit = known_ms(r.qemu_downtime_limit_ms),
        setup = r.libvirt_migration_setup.join("\n"),
    );
    let times = [
        ("downtime (QEMU's `downtime`)", r.downtime.as_ref()),
        ("total time (QEMU's `total-time`)", r.total_time.as_ref()),
        ("hand-over: the source done → the guest running on the destination", r.handover.as_ref()),
        ("the guest's whole pause: downtime + hand-over, per run", r.pause.as_ref()),
        ("wall time: command → done, as the client sees it", Some(&r.wall)),
    ];
    for (label, versus) in times {
        row(out, label, versus, r.runs, fmt_ms);
    }
    let memory = r.memory_transferred_bytes.as_ref();
    row(out, "memory sent (QEMU's `ram.transferred`)", memory, r.runs, |b| fmt_bytes(b as u64));
    let range = |s: &Option<Summary>| {
        s.as_ref().map_or("n/a".into(), |s| format!("{} / **{}** / {}", fmt_ms(s.min), fmt_ms(s.median), fmt_ms(s.max)))
    };
    let _ = write!(
        out,
        "\nWhat libvirt reports itself (`virsh domjobinfo --completed` on the destination, which works the figures \
         out and sends them to the source; after B → A the source no longer has the domain, transient there) are \
         not QEMU's figures but times on libvirt's own clock: `Total downtime`, from libvirt seeing the source \
         QEMU's STOP event to the destination's vCPUs resumed, {downtime}; `Time elapsed`, from the migration \
         job's start on the source to its end on the destination, {elapsed} (min / median / max).\n\n\
         #### Every run\n\n\
         | run | direction | vireo: downtime | total | hand-over | wall | libvirt: downtime | total | hand-over | wall \
         | `Total downtime` | `Time elapsed` |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        downtime = range(&r.libvirt_reported_downtime),
        elapsed = range(&r.libvirt_reported_elapsed),
    );
    for (i, MigrationPair { vireo: v, libvirt: l, .. }) in r.pairs.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            v.direction,
            fmt_ms(v.downtime_ms),
            fmt_ms(v.total_time_ms),
            fmt_ms(v.handover_ms),
            fmt_ms(v.wall_ms),
            known_ms(l.downtime_ms),
            known_ms(l.total_time_ms),
            known_ms(l.handover_ms),
            fmt_ms(l.wall_ms),
            known_ms(l.libvirt_downtime_ms),
            known_ms(l.libvirt_elapsed_ms),
        );
    }
    out.push('\n');
}

/// A row of the table, over the runs where libvirt's figure is known.
fn row(out: &mut String, label: &str, versus: Option<&Versus>, runs: usize, fmt: impl Fn(f64) -> String) {
    match versus {
        Some(v) if v.vireo.n < runs => versus_row(out, &format!("{label} ({} of {runs} runs)", v.vireo.n), v, fmt),
        Some(v) => versus_row(out, label, v, fmt),
        None => {
            let _ = writeln!(out, "| {label} | n/a | n/a | n/a | n/a |");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE_LOG: &str = "\
2026-11-22 05:29:07.557+0000: 1: info : qemuMonitorSend:861 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={\"execute\":\"query-migrate-parameters\",\"id\":\"libvirt-420\"}\r
 fd=-1
2026-11-22 05:29:07.558+0000: 2: info : qemuMonitorJSONIOProcessLine:208 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={\"return\": {\"downtime-limit\": 300, \"max-bandwidth\": 134217728}, \"id\": \"libvirt-420\"}
2026-11-22 05:29:07.559+0000: 1: info : qemuMonitorSend:861 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{\"capability\":\"pause-before-switchover\",\"state\":true}]},\"id\":\"libvirt-421\"}\r
 fd=-1
2026-11-22 05:29:07.561+0000: 1: info : qemuMonitorSend:861 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":9223372036853727232},\"id\":\"libvirt-422\"}\r
 fd=-1
2026-11-22 05:29:07.562+0000: 1: info : qemuMonitorSend:861 : QEMU_MONITOR_SEND_MSG: mon=0x1 msg={\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:migrate\"},\"id\":\"libvirt-424\"}\r
 fd=-1
2026-11-22 05:29:07.829+0000: 2: info : qemuMonitorJSONIOProcessLine:208 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={\"return\": {\"status\": \"active\", \"total-time\": 250}, \"id\": \"libvirt-427\"}
2026-11-22 05:29:07.877+0000: 2: info : qemuMonitorJSONIOProcessLine:203 : QEMU_MONITOR_RECV_EVENT: mon=0x1 event={\"timestamp\": {\"seconds\": 1795325347, \"microseconds\": 876981}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}
2026-11-22 05:29:07.877+0000: 2: info : qemuMonitorJSONIOProcessLine:208 : QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={\"return\": {\"status\": \"completed\", \"setup-time\": 1, \"downtime\": 140, \"total-time\": 314, \"ram\": {\"transferred\": 96174000}}, \"id\": \"libvirt-428\"}
2026-11-22 05:29:07.898+0000: 3: warning : something else entirely
";

    #[test]
    fn the_transcript_gives_qemus_figures_and_libvirts_setup() {
        let source = transcript(SOURCE_LOG);
        assert_eq!(source.len(), 8, "{source:?}");
        let figures = Figures::of(&source);
        assert_eq!(
            figures,
            Figures { downtime_ms: Some(140.0), total_time_ms: Some(314.0), memory_transferred_bytes: Some(96174000) }
        );
        assert_eq!(event_us(&source, "MIGRATION", Some("completed")), Some(1_795_325_347_876_981));
        assert_eq!(event_us(&source, "MIGRATION", Some("failed")), None);
        let setup = Setup::of(&source);
        assert_eq!(setup.downtime_limit_ms, Some(300.0));
        assert_eq!(
            setup.commands,
            [
                r#"{"arguments":{"capabilities":[{"capability":"pause-before-switchover","state":true}]},"execute":"migrate-set-capabilities"}"#,
                r#"{"arguments":{"max-bandwidth":9223372036853727232},"execute":"migrate-set-parameters"}"#,
            ]
        );
        // Times not worked out yet: QEMU's figures are unknown, not 0.
        let early = SOURCE_LOG.replace("\"total-time\": 314", "\"total-time\": 0");
        assert_eq!(Figures::of(&transcript(&early)).downtime_ms, None);
        assert_eq!(Figures::of(&transcript("nothing")), Figures::default());
    }

    #[test]
    fn libvirts_own_figures_come_from_domjobinfo() {
        let info = [
            "Job type:         Completed   ",
            "Time elapsed:     561          ms",
            "Time elapsed w/o network: 558          ms",
            "Data processed:   91.718 MiB",
            "Total downtime:   151          ms",
            "Downtime w/o network: 149          ms",
        ]
        .join("\n");
        assert_eq!(jobinfo_ms(&info, "Time elapsed"), Some(561.0));
        assert_eq!(jobinfo_ms(&info, "Total downtime"), Some(151.0));
        assert_eq!(jobinfo_ms(&info, "Data processed"), None);
        assert_eq!(jobinfo_ms(&info, "Setup time"), None);
    }

    #[test]
    fn each_libvirtd_has_its_own_host_uuid_and_a_monitor_log() {
        let conf = libvirtd_conf(Path::new("/t/a"), HOST_UUIDS[0]);
        assert!(conf.contains("unix_sock_dir = \"/t/a/sock\"\n"), "{conf}");
        assert!(conf.contains(&format!("host_uuid = \"{}\"\n", HOST_UUIDS[0])), "{conf}");
        assert_eq!(conf.matches("log_outputs").count(), 1, "{conf}");
        assert!(conf.ends_with("log_outputs = \"3:file:/t/a/libvirtd.log 2:file:/t/a/monitor.log\"\n"), "{conf}");
        assert_ne!(HOST_UUIDS[0], HOST_UUIDS[1]);
    }

    #[test]
    fn the_destination_is_named_by_its_socket() {
        let uri = peer_uri("qemu:///system?socket=/t/b/sock/libvirt-sock").unwrap();
        assert_eq!(uri, "qemu+unix:///system?socket=/t/b/sock/libvirt-sock");
        assert!(peer_uri("qemu+ssh://host/system").is_err());
        assert_eq!(
            migrate_command(&uri),
            "migrate --live --p2p --unsafe versus-mig 'qemu+unix:///system?socket=/t/b/sock/libvirt-sock' \
             --migrateuri tcp://127.0.0.1 --listen-address 127.0.0.1"
        );
    }

    #[test]
    fn the_console_check_is_answered_only_by_the_guest() {
        let (command, answer) = console_check(3);
        assert_eq!((command.as_str(), answer.as_str()), ("echo migrated-$((3 + 1000))", "migrated-1003"));
        assert!(!command.contains(&answer));
    }

    fn results() -> LibvirtMigrationResults {
        let vireo = migration::tests::runs(&[(2.0, 60.0), (3.0, 70.0), (1.0, 65.0)], 9.0, 92);
        let libvirt =
            [(Some(100.0), 300.0), (None, 320.0), (Some(140.0), 310.0)].map(|(downtime_ms, total)| LibvirtRun {
                direction: "a → b".into(),
                downtime_ms,
                total_time_ms: Some(total),
                handover_ms: Some(10.0),
                wall_ms: total + 300.0,
                memory_transferred_bytes: Some(92 << 20),
                libvirt_downtime_ms: downtime_ms.map(|d| d + 12.0),
                libvirt_elapsed_ms: Some(total + 250.0),
            });
        let pairs = vireo
            .into_iter()
            .zip(libvirt)
            .map(|(vireo, libvirt)| MigrationPair { vireo, libvirt, vireo_answer_ms: 5.0, libvirt_answer_ms: 4.0 })
            .collect();
        let setup =
            Setup { commands: vec!["{\"execute\":\"migrate-set-parameters\"}".into()], downtime_limit_ms: Some(300.0) };
        let counts = Counts { runs: 3, warmup: 1 };
        summarize("9.0.0".into(), counts, "virsh -c 'A' migrate".into(), "host_uuid = \"UUID\"\n".into(), setup, pairs)
            .unwrap()
    }

    #[test]
    fn unknown_figures_leave_their_pairs_out() {
        let r = results();
        let downtime = r.downtime.as_ref().unwrap();
        assert_eq!((downtime.vireo.n, downtime.vireo.median, downtime.libvirt.median), (2, 1.5, 120.0));
        assert_eq!(r.total_time.as_ref().unwrap().libvirt.median, 310.0);
        // 2 + 9 against 100 + 10, 1 + 9 against 140 + 10.
        assert_eq!(r.pause.as_ref().unwrap().pairwise_ratio.samples, [0.1, 10.0 / 150.0]);
        assert_eq!(r.wall.libvirt.median, 610.0);
        assert_eq!(r.libvirt_reported_downtime.as_ref().unwrap().n, 2);
        assert!(
            summarize(
                "9".into(),
                Counts { runs: 0, warmup: 0 },
                String::new(),
                String::new(),
                Setup::default(),
                Vec::new()
            )
            .is_err()
        );
    }

    #[test]
    fn the_subsection_shows_both_sides_and_every_run() {
        let mut out = String::new();
        section(&mut out, &LibvirtMigrationOutcome::Measured(Box::new(results())), false);
        assert!(out.starts_with("### Live migration\n\nSection 4's guest"), "{out}");
        assert!(out.contains("```\nvirsh -c 'A' migrate\n```"), "{out}");
        assert!(out.contains("so QEMU's (300 ms)"), "{out}");
        assert!(
            out.contains(
                "| downtime (QEMU's `downtime`) (2 of 3 runs) | 1.00 ms / **1.50 ms** / 2.00 ms | \
                 100 ms / **120 ms** / 140 ms |"
            ),
            "{out}"
        );
        assert!(
            out.contains("| memory sent (QEMU's `ram.transferred`) | 92.0 MiB / **92.0 MiB** / 92.0 MiB |"),
            "{out}"
        );
        assert!(out.contains("`Total downtime`, from libvirt seeing the source QEMU's STOP"), "{out}");
        assert!(
            out.contains(
                "| 2 | a → b | 3.00 ms | 70.0 ms | 9.00 ms | 130 ms | n/a | 320 ms | 10.0 ms | 620 ms | n/a | 570 ms |"
            ),
            "{out}"
        );
        let mut skipped = String::new();
        section(&mut skipped, &LibvirtMigrationOutcome::NotMeasured { reason: "virsh not found".into() }, true);
        assert_eq!(skipped, "## 6. Against libvirt\n\n### Live migration\n\nNot measured: virsh not found.\n\n");
    }
}
