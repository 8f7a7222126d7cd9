//! Snapshots, save/restore and linked clones: each operation through the
//! daemon's API against the same operation done with raw QMP on a plain QEMU
//! started by hand, and the time to clone volumes of different sizes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use vireo_api::{ByteSize, DiskFormat, SnapshotCreate, VmState, VolumeClone, VolumeCreate};
use vireo_client::Client;

use crate::boot::{self, Guest, VolumeDisk};
use crate::daemon::PrivateDaemon;
use crate::plain::{self, Incoming, PlainQemu, QMP_TIMEOUT};
use crate::process_info;
use crate::qmp::is_event;
use crate::stats::{Summary, ms};

/// The VM's disk: a qcow2 volume of this size in the default pool (plain QEMU: a qcow2 file).
pub(crate) const DISK_MIB: u64 = 256;
/// The bases of the clone measurements.
const CLONE_BASES_GIB: [u64; 2] = [1, 20];
const POOL: &str = "default";
pub(crate) const VM: &str = "snap";
const DISK_VOLUME: &str = "snap-disk";
/// Migration bandwidth of the plain side's save, as vireo sets it (8 GiB/s, no limit in
/// practice; QEMU 7.2's default of 128 MiB/s would make the plain save slower for nothing).
const SAVE_BANDWIDTH: u64 = 8 << 30;
const COPY_BUFFER: usize = 1 << 20;

/// The four operations, in the order each run does them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    SnapshotCreate,
    SnapshotRevert,
    Save,
    Restore,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::SnapshotCreate, Op::SnapshotRevert, Op::Save, Op::Restore];

    /// What each phase of the operation through vireo spans, in order; see [`op_phases`].
    pub fn phase_labels(self) -> &'static [&'static str] {
        match self {
            Op::SnapshotCreate => &[
                "request → `snapshot-save` sent (job lock, store reads, `query-jobs`, `query-block`)",
                "→ job `concluded` (QEMU)",
                "→ response (`query-jobs`, `job-dismiss`, snapshot record written)",
            ],
            Op::SnapshotRevert => &[
                "request → `snapshot-load` sent",
                "→ job `concluded` (QEMU)",
                "→ response (`query-jobs`, `job-dismiss`, `query-status`, `cont`, state written)",
            ],
            Op::Save => &[
                "request → `migrate` sent (migration capabilities and parameters set)",
                "→ migration `completed` (QEMU)",
                "→ `quit` sent (the stream's tail written, fsync, rename)",
                "→ the QEMU process has exited (seen in /proc by the bench)",
                "→ response (the daemon notices the exit, state written)",
            ],
            Op::Restore => &[
                "request → new QEMU's QMP greeting (state written, spawn, QEMU's start-up)",
                "→ migration `completed` (QEMU loads the state)",
                "→ response (`query-migrate`, `cont`, state written)",
            ],
        }
    }

    /// The phase that is QEMU's own work.
    pub const QEMU_PHASE: usize = 1;
}

/// One run through the daemon (milliseconds, request → response).
#[derive(Clone, Debug, Serialize)]
pub struct VireoRun {
    pub snapshot_create_ms: f64,
    pub snapshot_revert_ms: f64,
    pub save_ms: f64,
    pub restore_ms: f64,
    /// Each operation's phases ([`Op::phase_labels`]), from the VM's qmp.log; `None` where the log did not show them.
    pub phases: OpPhases,
    /// CPU time of the restored QEMU when the restore had returned.
    pub restore_qemu_cpu: Option<QemuCpu>,
    /// The saved QEMU's exit → the restore request (the plain side restores right after its exit).
    pub exit_to_restore_ms: Option<f64>,
}

/// User and system CPU time of a QEMU process (clock ticks, usually 10 ms).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct QemuCpu {
    pub user_ms: f64,
    pub system_ms: f64,
}

impl QemuCpu {
    fn of(pid: Option<u32>) -> Option<QemuCpu> {
        let (user, system) = process_info::cpu_split(pid?)?;
        Some(QemuCpu { user_ms: ms(user), system_ms: ms(system) })
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OpPhases {
    pub snapshot_create: Option<Vec<f64>>,
    pub snapshot_revert: Option<Vec<f64>>,
    pub save: Option<Vec<f64>>,
    pub restore: Option<Vec<f64>>,
}

/// One run on the plain QEMU (milliseconds).
#[derive(Clone, Debug, Serialize)]
pub struct PlainRun {
    /// `snapshot-save` sent → job `concluded`.
    pub snapshot_create_ms: f64,
    /// `snapshot-load` sent → job `concluded`.
    pub snapshot_revert_ms: f64,
    /// `migrate` to a Unix socket sent → migration `completed` and the last byte written to the file.
    pub save_ms: f64,
    /// `fsync` of the state file afterwards (vireo's save makes it durable).
    pub save_fsync_ms: f64,
    pub state_bytes: u64,
    /// Spawn with `-incoming fd:N` → migration `completed`.
    pub restore_loaded_ms: f64,
    /// Spawn → `cont` answered (the guest runs again; vireo's restore returns after its `cont`).
    pub restore_ms: f64,
    /// CPU time of the restored QEMU once `cont` was answered.
    pub restore_qemu_cpu: Option<QemuCpu>,
}

impl VireoRun {
    pub(crate) fn get(&self, op: Op) -> f64 {
        match op {
            Op::SnapshotCreate => self.snapshot_create_ms,
            Op::SnapshotRevert => self.snapshot_revert_ms,
            Op::Save => self.save_ms,
            Op::Restore => self.restore_ms,
        }
    }
}

impl OpPhases {
    fn get(&self, op: Op) -> Option<&Vec<f64>> {
        match op {
            Op::SnapshotCreate => self.snapshot_create.as_ref(),
            Op::SnapshotRevert => self.snapshot_revert.as_ref(),
            Op::Save => self.save.as_ref(),
            Op::Restore => self.restore.as_ref(),
        }
    }

    fn set(&mut self, op: Op, phases: Option<Vec<f64>>) {
        match op {
            Op::SnapshotCreate => self.snapshot_create = phases,
            Op::SnapshotRevert => self.snapshot_revert = phases,
            Op::Save => self.save = phases,
            Op::Restore => self.restore = phases,
        }
    }
}

impl PlainRun {
    fn get(&self, op: Op) -> f64 {
        match op {
            Op::SnapshotCreate => self.snapshot_create_ms,
            Op::SnapshotRevert => self.snapshot_revert_ms,
            Op::Save => self.save_ms,
            Op::Restore => self.restore_ms,
        }
    }
}

/// One operation, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct OpComparison {
    pub op: Op,
    pub vireo: Summary,
    pub plain: Summary,
    /// median(vireo) / median(plain).
    pub ratio_of_medians: f64,
    pub phase_labels: Vec<String>,
    /// Median of each phase of vireo's operation over the runs whose qmp.log shows them all.
    pub phase_medians: Option<Vec<f64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotResults {
    pub runs: usize,
    pub warmup_runs: usize,
    pub disk_mib: u64,
    /// The plain QEMU, with `DISK` for its qcow2 file and `N` for the inherited QMP socket.
    pub plain_qemu_command: String,
    /// What the plain restore adds to it.
    pub plain_restore_args: String,
    pub vireo: Vec<VireoRun>,
    pub plain: Vec<PlainRun>,
    pub ops: Vec<OpComparison>,
    pub plain_save_fsync: Summary,
    pub plain_restore_loaded: Summary,
    /// Size of the plain QEMU's state file (vireo's is the same stream).
    pub state_bytes: u64,
    /// Medians of the restored QEMU's CPU time, each side.
    pub restore_cpu: RestoreCpu,
    /// Median of [`VireoRun::exit_to_restore_ms`].
    pub vireo_exit_to_restore_ms: Option<f64>,
    pub clones: CloneResults,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreCpu {
    pub vireo_user_ms: Option<f64>,
    pub vireo_system_ms: Option<f64>,
    pub plain_user_ms: Option<f64>,
    pub plain_system_ms: Option<f64>,
}

/// Clone creation through the API (request → 201), per base.
#[derive(Clone, Debug, Serialize)]
pub struct CloneResults {
    pub runs: usize,
    pub linked: Vec<CloneSeries>,
    pub full: CloneSeries,
}

#[derive(Clone, Debug, Serialize)]
pub struct CloneSeries {
    pub base_gib: u64,
    /// Bytes the (empty) base occupies on disk.
    pub base_allocation_bytes: u64,
    /// Bytes the clone occupies on disk.
    pub clone_allocation_bytes: u64,
    pub time: Summary,
}

/// Section 3: boots one VM through the daemon and one plain QEMU, runs `warmup` unrecorded
/// and `runs` recorded rounds of the four operations on each (alternating vireo, plain),
/// then times clones.
pub async fn run(
    daemon: &PrivateDaemon,
    qemu: &Path,
    guest: &Guest,
    runs: usize,
    warmup: usize,
    scratch: &Path,
) -> anyhow::Result<SnapshotResults> {
    let client = daemon.client();
    let scratch = scratch.join("plain-snapshots");
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;

    boot_vireo_vm(&client, guest).await?;
    let disk = scratch.join("disk.qcow2");
    plain::qemu_img_create(qemu, &disk, DISK_MIB).await?;
    let base_args = plain::disk_args(guest, &disk);
    let mut plain = PlainQemu::spawn(qemu, &base_args, None, &scratch).await.context("cannot start the plain QEMU")?;
    plain.wait_marker().await.context("the plain QEMU's guest never got ready")?;
    plain.allow_saving().await?;

    let mut vireo_runs = Vec::with_capacity(runs);
    let mut plain_runs = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let label = boot::run_label(i, warmup, runs);
        let tag = format!("bench-{}", i + 1);
        let through_daemon =
            vireo_round(&client, daemon, &tag).await.with_context(|| format!("vireo snapshot run {label}"))?;
        let (by_hand, next) = plain_round(plain, qemu, &base_args, &tag, &scratch)
            .await
            .with_context(|| format!("plain QEMU snapshot run {label}"))?;
        plain = next;
        eprintln!(
            "vireo-bench: snapshots {label}: create {:.0}/{:.0} ms, revert {:.0}/{:.0} ms, save {:.0}/{:.0} ms, \
             restore {:.0}/{:.0} ms (vireo/plain)",
            through_daemon.snapshot_create_ms,
            by_hand.snapshot_create_ms,
            through_daemon.snapshot_revert_ms,
            by_hand.snapshot_revert_ms,
            through_daemon.save_ms,
            by_hand.save_ms,
            through_daemon.restore_ms,
            by_hand.restore_ms
        );
        if i >= warmup {
            vireo_runs.push(through_daemon);
            plain_runs.push(by_hand);
        }
    }
    plain.quit().await;
    let force = vireo_api::StopRequest { force: true, timeout_secs: None };
    client.stop_vm(VM, &force).await.context("cannot stop the snapshot VM")?;

    let clones = clone_runs(&client, runs, warmup).await.context("clone runs")?;
    let mut shown_args = plain::disk_args(guest, Path::new("DISK"));
    shown_args.extend(plain::qmp_args("N"));
    let restore_args = plain::incoming_args("fd:M").join(" ");
    summarize(boot::quote_command(&shown_args), restore_args, warmup, vireo_runs, plain_runs, clones)
}

pub(crate) fn summarize(
    plain_qemu_command: String,
    plain_restore_args: String,
    warmup: usize,
    vireo: Vec<VireoRun>,
    plain: Vec<PlainRun>,
    clones: CloneResults,
) -> anyhow::Result<SnapshotResults> {
    let ops = Op::ALL
        .into_iter()
        .map(|op| {
            let vireo_summary = Summary::of(&vireo.iter().map(|r| r.get(op)).collect::<Vec<_>>()).context("no runs")?;
            let plain_summary = Summary::of(&plain.iter().map(|r| r.get(op)).collect::<Vec<_>>()).context("no runs")?;
            let labels = op.phase_labels();
            let with_phases: Vec<&Vec<f64>> =
                vireo.iter().filter_map(|r| r.phases.get(op)).filter(|p| p.len() == labels.len()).collect();
            let phase_medians = (0..labels.len())
                .map(|i| Summary::of(&with_phases.iter().map(|p| p[i]).collect::<Vec<_>>()).map(|s| s.median))
                .collect();
            Ok(OpComparison {
                op,
                ratio_of_medians: vireo_summary.median / plain_summary.median,
                phase_labels: labels.iter().map(|l| l.to_string()).collect(),
                phase_medians,
                vireo: vireo_summary,
                plain: plain_summary,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let of = |f: fn(&PlainRun) -> f64| Summary::of(&plain.iter().map(f).collect::<Vec<_>>()).context("no runs");
    let median =
        |values: Vec<Option<f64>>| Summary::of(&values.into_iter().flatten().collect::<Vec<_>>()).map(|s| s.median);
    let restore_cpu = RestoreCpu {
        vireo_user_ms: median(vireo.iter().map(|r| r.restore_qemu_cpu.map(|c| c.user_ms)).collect()),
        vireo_system_ms: median(vireo.iter().map(|r| r.restore_qemu_cpu.map(|c| c.system_ms)).collect()),
        plain_user_ms: median(plain.iter().map(|r| r.restore_qemu_cpu.map(|c| c.user_ms)).collect()),
        plain_system_ms: median(plain.iter().map(|r| r.restore_qemu_cpu.map(|c| c.system_ms)).collect()),
    };
    Ok(SnapshotResults {
        runs: vireo.len(),
        warmup_runs: warmup,
        disk_mib: DISK_MIB,
        plain_qemu_command,
        plain_restore_args,
        ops,
        plain_save_fsync: of(|r| r.save_fsync_ms)?,
        plain_restore_loaded: of(|r| r.restore_loaded_ms)?,
        state_bytes: plain.last().map_or(0, |r| r.state_bytes),
        restore_cpu,
        vireo_exit_to_restore_ms: median(vireo.iter().map(|r| r.exit_to_restore_ms).collect()),
        vireo,
        plain,
        clones,
    })
}

// ---- through the daemon ----

/// Boots the VM the rounds work on: a qcow2 volume, the VM with it as its disk, until the marker.
pub(crate) async fn boot_vireo_vm(client: &Client, guest: &Guest) -> anyhow::Result<()> {
    let disk = VolumeDisk { pool: POOL, volume: DISK_VOLUME, mib: DISK_MIB };
    boot::boot_with_volume(client, guest, VM, &disk).await.context("cannot boot the VM through the daemon")
}

/// Snapshot create, revert (then delete, untimed), save and restore of the running VM.
pub(crate) async fn vireo_round(client: &Client, daemon: &PrivateDaemon, tag: &str) -> anyhow::Result<VireoRun> {
    // (request at, wall clock in ms; request → response) of each operation.
    let mut spans = Vec::with_capacity(Op::ALL.len());
    let begin = || (wall_ms(), Instant::now());

    let (at, timer) = begin();
    let snapshot = SnapshotCreate { name: tag.into(), disk_only: false };
    client.create_snapshot(VM, &snapshot).await.context("snapshot create")?;
    spans.push((at, timer.elapsed()));

    let (at, timer) = begin();
    let vm = client.revert_snapshot(VM, tag).await.context("snapshot revert")?;
    spans.push((at, timer.elapsed()));
    expect_state(vm.state, VmState::Running, "snapshot revert")?;
    client.delete_snapshot(VM, tag).await.context("snapshot delete")?;

    let pid = client.get_vm(VM).await.context("cannot read the VM")?.pid.context("the running VM has no pid")?;
    let exit = tokio::spawn(exit_time(pid));
    let (at, timer) = begin();
    let vm = client.save_vm(VM).await.context("vm save")?;
    spans.push((at, timer.elapsed()));
    expect_state(vm.state, VmState::Saved, "vm save")?;
    let exited_at = exit.await.ok().flatten();

    let (at, timer) = begin();
    let vm = client.restore_vm(VM).await.context("vm restore")?;
    spans.push((at, timer.elapsed()));
    let restore_qemu_cpu = QemuCpu::of(vm.pid);
    expect_state(vm.state, VmState::Running, "vm restore")?;

    let log = std::fs::read_to_string(daemon.data_dir.join("vms").join(VM).join("qmp.log")).unwrap_or_default();
    let log = parse_log(&log);
    let mut phases = OpPhases::default();
    for (op, (at, elapsed)) in Op::ALL.into_iter().zip(&spans) {
        phases.set(op, op_phases(&log, op, *at, ms(*elapsed), exited_at));
    }
    Ok(VireoRun {
        snapshot_create_ms: ms(spans[0].1),
        snapshot_revert_ms: ms(spans[1].1),
        save_ms: ms(spans[2].1),
        restore_ms: ms(spans[3].1),
        phases,
        restore_qemu_cpu,
        exit_to_restore_ms: exited_at.map(|exit| spans[3].0 - exit),
    })
}

fn expect_state(state: VmState, wanted: VmState, op: &str) -> anyhow::Result<()> {
    if state != wanted {
        bail!("after {op} the VM is {state:?}, expected {wanted:?}");
    }
    Ok(())
}

/// When (wall clock, ms) process `pid` ended, polled every millisecond for at most 10 minutes.
async fn exit_time(pid: u32) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if process_info::has_exited(pid) {
            return Some(wall_ms());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

fn wall_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The lines of a qmp.log (`{"ts_ms":…,"dir":"in"|"out","msg":…}` each, appended across QEMU processes).
pub(crate) fn parse_log(qmp_log: &str) -> Vec<Value> {
    qmp_log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The phases ([`Op::phase_labels`]) of the operation requested at `request` (wall clock, ms) that
/// took `elapsed` ms, from the qmp.log lines written meanwhile; a save's phases also need the
/// moment its QEMU ended (`exited_at`). The log's timestamps are whole milliseconds, cut off: each
/// stands for the middle of its millisecond.
pub(crate) fn op_phases(log: &[Value], op: Op, request: f64, elapsed: f64, exited_at: Option<f64>) -> Option<Vec<f64>> {
    let response = request + elapsed;
    let logged = |l: &Value| l["ts_ms"].as_f64();
    let stamp = |l: &Value| logged(l).map(|ts| ts + 0.5);
    // The lines whose millisecond [ts, ts + 1) overlaps request → response.
    let window: Vec<&Value> =
        log.iter().filter(|l| logged(l).is_some_and(|ts| ts + 1.0 >= request && ts <= response)).collect();
    // The first line at or after `from` that matches.
    let find =
        |from: usize, what: &dyn Fn(&Value) -> bool| window.iter().skip(from).position(|l| what(l)).map(|i| from + i);
    let incoming = |l: &Value| l["dir"] == "in";
    let sent = |name: &'static str| move |l: &Value| l["dir"] == "out" && l["msg"]["execute"] == name;
    let completed = |l: &Value| {
        incoming(l)
            && (is_event(&l["msg"], "MIGRATION", &[("status", "completed")])
                || l["msg"]["return"]["status"] == "completed")
    };
    let marks: Vec<usize> = match op {
        Op::SnapshotCreate | Op::SnapshotRevert => {
            let command = if op == Op::SnapshotCreate { "snapshot-save" } else { "snapshot-load" };
            let start = find(0, &sent(command))?;
            let job = window[start]["msg"]["arguments"]["job-id"].as_str()?;
            let concluded = |l: &Value| {
                incoming(l) && is_event(&l["msg"], "JOB_STATUS_CHANGE", &[("id", job), ("status", "concluded")])
            };
            vec![start, find(start, &concluded)?]
        }
        Op::Save => {
            let start = find(0, &sent("migrate"))?;
            let done = find(start, &completed)?;
            vec![start, done, find(done, &sent("quit"))?]
        }
        Op::Restore => {
            let greeting = find(0, &|l: &Value| incoming(l) && l["msg"].get("QMP").is_some())?;
            vec![greeting, find(greeting, &completed)?]
        }
    };
    let mut bounds = vec![request];
    bounds.extend(marks.iter().map(|&i| stamp(window[i]).unwrap_or(request)));
    if op == Op::Save {
        bounds.push(exited_at?);
    }
    bounds.push(response);
    Some(bounds.windows(2).map(|pair| pair[1] - pair[0]).collect())
}

// ---- plain QEMU by hand ----

impl PlainQemu {
    /// MIGRATION events and vireo's save bandwidth, set on every new QEMU (not timed).
    async fn allow_saving(&mut self) -> anyhow::Result<()> {
        self.migration_events().await?;
        self.qmp.execute("migrate-set-parameters", json!({ "max-bandwidth": SAVE_BANDWIDTH })).await?;
        Ok(())
    }

    /// Runs a snapshot job; times command sent → `concluded`. Then checks and dismisses it.
    async fn job(&mut self, command: &str, tag: &str, with_vmstate: bool) -> anyhow::Result<Duration> {
        let job = format!("{command}-{tag}");
        let mut arguments = json!({ "job-id": job, "tag": tag, "devices": ["disk0"] });
        if with_vmstate {
            arguments["vmstate"] = json!("disk0");
        }
        let start = Instant::now();
        self.qmp.execute(command, arguments).await?;
        self.qmp.wait_event(|e| is_event(e, "JOB_STATUS_CHANGE", &[("id", &job), ("status", "concluded")])).await?;
        let elapsed = start.elapsed();
        let jobs = self.qmp.execute("query-jobs", json!({})).await?;
        let error = jobs.as_array().into_iter().flatten().find(|j| j["id"] == job.as_str()).map(|j| j["error"].clone());
        self.qmp.execute("job-dismiss", json!({ "id": job })).await?;
        if let Some(Value::String(error)) = error {
            bail!("{command}: {error}");
        }
        Ok(elapsed)
    }

    /// Migrates to a Unix socket whose stream the bench writes to `file`; times `migrate`
    /// sent → `completed` with every byte in the file, then the fsync separately.
    async fn save(&mut self, file: &Path, scratch: &Path) -> anyhow::Result<(Duration, Duration, u64)> {
        let socket = scratch.join("migrate.sock");
        let _ = std::fs::remove_file(&socket);
        let listener =
            tokio::net::UnixListener::bind(&socket).with_context(|| format!("cannot bind {}", socket.display()))?;
        let target = File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
        let receiving = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            tokio::task::spawn_blocking(move || copy_to_file(stream, target)).await.map_err(std::io::Error::other)?
        });
        let start = match self.migrate(&format!("unix:{}", socket.display())).await {
            Ok(sent) => sent,
            Err(err) => {
                receiving.abort();
                return Err(err);
            }
        };
        let (target, bytes) = tokio::time::timeout(QMP_TIMEOUT, receiving)
            .await
            .context("the migration stream did not end")?
            .context("the copy task failed")?
            .context("cannot write the state file")?;
        let saved = start.elapsed();
        let start = Instant::now();
        target.sync_all().context("cannot fsync the state file")?;
        let fsync = start.elapsed();
        let _ = std::fs::remove_file(&socket);
        Ok((saved, fsync, bytes))
    }

    /// Spawns a new QEMU from `file`; times spawn → migration `completed`, and → `cont` answered;
    /// and its CPU time then.
    async fn restore(
        qemu: &Path,
        args: &[String],
        file: &Path,
        scratch: &Path,
    ) -> anyhow::Result<(PlainQemu, Duration, Duration, Option<QemuCpu>)> {
        let start = Instant::now();
        let mut plain = PlainQemu::spawn(qemu, args, Some(Incoming::StateFile(file)), scratch).await?;
        plain.wait_incoming().await?;
        let loaded = start.elapsed();
        plain.qmp.execute("cont", json!({})).await?;
        let running = start.elapsed();
        let cpu = QemuCpu::of(plain.child.id());
        Ok((plain, loaded, running, cpu))
    }
}

/// Large reads and writes, as vireo's save does; returns the file and the bytes written.
fn copy_to_file(mut stream: std::os::unix::net::UnixStream, mut file: File) -> std::io::Result<(File, u64)> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        file.write_all(&buffer[..n])?;
        total += n as u64;
    }
    Ok((file, total))
}

/// The same four operations with raw QMP. Save ends that QEMU; the restore starts the one
/// returned for the next round.
async fn plain_round(
    mut plain: PlainQemu,
    qemu: &Path,
    args: &[String],
    tag: &str,
    scratch: &Path,
) -> anyhow::Result<(PlainRun, PlainQemu)> {
    let snapshot_create = plain.job("snapshot-save", tag, true).await?;
    let snapshot_revert = plain.job("snapshot-load", tag, true).await?;
    let status = plain.qmp.execute("query-status", json!({})).await?;
    if status["status"] != "running" {
        bail!("after snapshot-load the plain QEMU is {}, expected running", status["status"]);
    }
    plain.job("snapshot-delete", tag, false).await?;

    let state = scratch.join("saved.state");
    let (save, save_fsync, state_bytes) = plain.save(&state, scratch).await?;
    plain.quit().await;
    let (mut plain, restore_loaded, restore, restore_qemu_cpu) =
        PlainQemu::restore(qemu, args, &state, scratch).await?;
    let _ = std::fs::remove_file(&state);
    plain.allow_saving().await?;
    let run = PlainRun {
        snapshot_create_ms: ms(snapshot_create),
        snapshot_revert_ms: ms(snapshot_revert),
        save_ms: ms(save),
        save_fsync_ms: ms(save_fsync),
        state_bytes,
        restore_loaded_ms: ms(restore_loaded),
        restore_ms: ms(restore),
        restore_qemu_cpu,
    };
    Ok((run, plain))
}

// ---- clones ----

/// Linked clones of an empty 1 GiB and 20 GiB base and full clones of the 1 GiB one,
/// `warmup` unrecorded and `runs` recorded rounds; each clone is deleted again (not timed).
async fn clone_runs(client: &Client, runs: usize, warmup: usize) -> anyhow::Result<CloneResults> {
    let mut bases = Vec::new();
    for gib in CLONE_BASES_GIB {
        let name = format!("base-{gib}g");
        let create =
            VolumeCreate { name: name.clone(), size: ByteSize::mib(gib * 1024), format: Some(DiskFormat::Qcow2) };
        let volume = client.create_volume(POOL, &create).await.with_context(|| format!("cannot create {name}"))?;
        bases.push((gib, name, volume.allocation_bytes));
    }
    // (base index, linked) per series: linked 1 GiB, linked 20 GiB, full 1 GiB.
    let series = [(0, true), (1, true), (0, false)];
    let mut times = vec![Vec::new(); series.len()];
    let mut allocation = vec![0; series.len()];
    for i in 0..warmup + runs {
        for (s, &(base, linked)) in series.iter().enumerate() {
            let (gib, base_name, _) = &bases[base];
            let name = format!("{}-clone-{gib}g-{}", if linked { "linked" } else { "full" }, i + 1);
            let request = VolumeClone { target: format!("{POOL}/{name}"), linked };
            let start = Instant::now();
            let clone =
                client.clone_volume(POOL, base_name, &request).await.with_context(|| format!("clone {name}"))?;
            let elapsed = start.elapsed();
            client.delete_volume(POOL, &name).await.with_context(|| format!("cannot delete {name}"))?;
            if i >= warmup {
                times[s].push(elapsed);
                allocation[s] = clone.allocation_bytes;
            }
        }
        if i >= warmup {
            eprintln!(
                "vireo-bench: clones {}/{runs}: linked 1 GiB {:.1?}, linked 20 GiB {:.1?}, full 1 GiB {:.1?}",
                i - warmup + 1,
                times[0].last().unwrap(),
                times[1].last().unwrap(),
                times[2].last().unwrap()
            );
        }
    }
    let series_of = |s: usize| -> anyhow::Result<CloneSeries> {
        let (gib, _, base_allocation) = &bases[series[s].0];
        Ok(CloneSeries {
            base_gib: *gib,
            base_allocation_bytes: *base_allocation,
            clone_allocation_bytes: allocation[s],
            time: Summary::of_ms(&times[s]).context("no clone runs")?,
        })
    };
    Ok(CloneResults { runs, linked: vec![series_of(0)?, series_of(1)?], full: series_of(2)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_come_from_the_qmp_log() {
        // Lines outside an operation's request → response are not its own.
        let log = parse_log(
            r#"{"ts_ms":999,"dir":"out","msg":{"execute":"snapshot-save","arguments":{"job-id":"old"}}}
{"ts_ms":1000,"dir":"out","msg":{"execute":"query-block","id":5}}
{"ts_ms":1002,"dir":"out","msg":{"execute":"snapshot-save","arguments":{"job-id":"vireo-save-1","tag":"t"},"id":6}}
{"ts_ms":1003,"dir":"in","msg":{"return":{},"id":6}}
{"ts_ms":1010,"dir":"in","msg":{"event":"JOB_STATUS_CHANGE","data":{"id":"vireo-save-1","status":"running"}}}
{"ts_ms":1302,"dir":"in","msg":{"event":"JOB_STATUS_CHANGE","data":{"id":"vireo-save-1","status":"concluded"}}}
{"ts_ms":2000,"dir":"out","msg":{"execute":"migrate","arguments":{"uri":"unix:/x"},"id":20}}
{"ts_ms":2250,"dir":"in","msg":{"event":"MIGRATION","data":{"status":"completed"}}}
{"ts_ms":2300,"dir":"out","msg":{"execute":"quit","id":21}}
{"ts_ms":3000,"dir":"in","msg":{"QMP":{"version":{}}}}
{"ts_ms":3001,"dir":"out","msg":{"execute":"query-migrate","id":1}}
{"ts_ms":3120,"dir":"in","msg":{"return":{"status":"completed"},"id":1}}
garbage
"#,
        );
        assert_eq!(op_phases(&log, Op::SnapshotCreate, 1000.5, 310.0, None), Some(vec![2.0, 300.0, 8.0]));
        assert_eq!(op_phases(&log, Op::Save, 1990.5, 320.0, Some(2302.5)), Some(vec![10.0, 250.0, 50.0, 2.0, 8.0]));
        assert_eq!(op_phases(&log, Op::Save, 1990.5, 320.0, None), None, "the exit was not seen");
        assert_eq!(op_phases(&log, Op::Restore, 2900.5, 230.0, None), Some(vec![100.0, 120.0, 10.0]));
        assert_eq!(op_phases(&log, Op::SnapshotRevert, 1000.5, 310.0, None), None, "no snapshot-load");
        for op in Op::ALL {
            assert!(Op::QEMU_PHASE < op.phase_labels().len());
        }
    }
}
