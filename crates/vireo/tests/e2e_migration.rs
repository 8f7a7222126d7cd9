//! End-to-end live migration: two daemons, each in a network namespace of its
//! own, the namespaces joined by a veth pair; real TCG guests move between them
//! over TCP (the API, the migration stream and NBD all cross the veth).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use vireo_api::{
    ByteSize, DiskSpec, ErrorCode, MigrateRequest, MigrationPhase, MigrationStatus, NetworkMode, NetworkSpec, NicSpec,
    PoolSpec, PoolType, VmState, VolumeCreate,
};
use vireo_client::Client;

/// How long a migration of a 128 MiB test guest may take at the low bandwidths
/// used here, on a busy 2-core machine.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);
/// How long clean-up after a failed or cancelled migration may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints `TICK-<n>` on the console every 100 ms, in the background. The group
/// braces let `run_in_guest` append its end marker after the `&`.
const TICKER: &str = "{ i=0; while true; do echo TICK-$i; i=$((i+1)); usleep 100000; done & }";

fn disk_spec(name: &str, volume: &str) -> vireo_api::VmSpec {
    let mut spec = guest_spec(name);
    spec.disks = vec![DiskSpec { volume: Some(volume.into()), ..DiskSpec::default() }];
    spec
}

fn to(destination: &Daemon) -> MigrateRequest {
    MigrateRequest {
        to: destination.url(),
        to_token: destination.token(),
        copy_storage: false,
        max_downtime_ms: None,
        bandwidth_mib: None,
        postcopy: false,
    }
}

async fn create_dir_pool(daemon: &Daemon, name: &str, path: &Path) {
    let spec = PoolSpec { name: name.into(), pool_type: PoolType::Dir, path: path.to_path_buf() };
    daemon
        .client()
        .create_pool(&spec)
        .await
        .unwrap_or_else(|e| panic!("create pool {name} at {}: {e}", path.display()));
}

async fn create_volume(client: &Client, pool: &str, name: &str) {
    let request = VolumeCreate { name: name.into(), size: ByteSize::mib(64), format: None };
    client.create_volume(pool, &request).await.unwrap_or_else(|e| panic!("create volume {pool}/{name}: {e}"));
}

async fn boot(client: &Client, spec: &vireo_api::VmSpec) {
    client.create_vm(spec).await.unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
    client.start_vm(&spec.name).await.unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
    wait_for_log(client, &spec.name, MARKER, BOOT_TIMEOUT).await;
}

/// Runs `expr` in the guest and returns what it printed, as one line. The value
/// comes back inside a line that one `echo` writes at once, after a key the
/// guest's shell computes, so other output on the console (the ticker) can
/// neither be mistaken for it nor cut into it.
async fn guest_value(client: &Client, vm: &str, expr: &str) -> String {
    let output = run_in_guest(client, vm, &format!("echo \"VAL-$((1+1))=$({expr})\"")).await;
    output
        .lines()
        .rev()
        .find_map(|line| line.split_once("VAL-2=").map(|(_, value)| value.trim().to_string()))
        .unwrap_or_else(|| panic!("no value from `{expr}` in {vm}: {output:?}"))
}

/// The `TICK-<n>` lines of a console log that are complete.
fn ticks(log: &str) -> Vec<u64> {
    log.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter_map(|line| line.trim().strip_prefix("TICK-")?.parse().ok())
        .collect()
}

async fn console_log(client: &Client, vm: &str) -> String {
    String::from_utf8_lossy(&client.vm_logs(vm, None).await.unwrap_or_else(|e| panic!("logs of {vm}: {e}")))
        .into_owned()
}

/// Waits until the VM's console shows a tick above `above`; returns the log.
async fn wait_for_tick_above(client: &Client, vm: &str, above: u64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = console_log(client, vm).await;
        if ticks(&log).into_iter().max().is_some_and(|max| max > above) {
            return log;
        }
        assert!(Instant::now() < deadline, "{vm} printed no TICK above {above} within {timeout:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the ticker and waits until it runs; returns the highest tick seen.
async fn start_ticker(client: &Client, vm: &str) -> u64 {
    run_in_guest(client, vm, TICKER).await;
    let log = wait_for_tick_above(client, vm, 3, Duration::from_secs(60)).await;
    ticks(&log).into_iter().max().unwrap()
}

/// What a guest whose memory came through a migration damaged prints.
const GUEST_FAILURES: [&str; 8] = [
    "Oops",
    "BUG:",
    "kernel BUG",
    "corruption",
    "Kernel panic",
    "general protection fault",
    "Call Trace",
    "shell exited, respawning",
];

/// The guest's kernel and shell are fine so far: its console log shows none of [`GUEST_FAILURES`].
async fn assert_guest_healthy(client: &Client, vm: &str) {
    let log = console_log(client, vm).await;
    if let Some(failure) = GUEST_FAILURES.iter().find(|failure| log.contains(**failure)) {
        let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("{vm}'s console shows '{failure}' (guest memory damaged?):\n{}", tail.join("\n"));
    }
}

/// What was seen while a migration ran.
struct Watched {
    status: MigrationStatus,
    /// Every phase seen, in order, without repeats.
    phases: Vec<MigrationPhase>,
    max_throttle: u64,
    max_dirty_rate: u64,
}

/// Polls the source's migration status until the migration has ended.
async fn watch_migration(client: &Client, vm: &str, timeout: Duration) -> Watched {
    let deadline = Instant::now() + timeout;
    let mut watched =
        Watched { status: MigrationStatus::default(), phases: Vec::new(), max_throttle: 0, max_dirty_rate: 0 };
    loop {
        let status = client.migration_status(vm).await.unwrap_or_else(|e| panic!("migration status of {vm}: {e}"));
        if let Some(phase) = status.phase
            && watched.phases.last() != Some(&phase)
        {
            watched.phases.push(phase);
        }
        watched.max_throttle = watched.max_throttle.max(status.cpu_throttle_percent);
        watched.max_dirty_rate = watched.max_dirty_rate.max(status.dirty_rate_bytes_per_sec);
        let done = status.phase.is_some_and(MigrationPhase::is_final);
        watched.status = status;
        if done {
            return watched;
        }
        assert!(
            Instant::now() < deadline,
            "migration of {vm} not over after {timeout:?}; phases {:?}, status {:#?}",
            watched.phases,
            watched.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the migration is in `phase`; fails if it ends first.
async fn wait_for_phase(client: &Client, vm: &str, phase: MigrationPhase, timeout: Duration) -> MigrationStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = client.migration_status(vm).await.unwrap_or_else(|e| panic!("migration status of {vm}: {e}"));
        if status.phase == Some(phase) {
            return status;
        }
        assert!(
            !status.phase.is_some_and(MigrationPhase::is_final),
            "migration of {vm} ended before reaching {phase}: {status:#?}"
        );
        assert!(Instant::now() < deadline, "migration of {vm} not {phase} within {timeout:?}: {status:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `daemon` has no VM, no QEMU process for `vm` and (if given) no
/// volume in `pool`: what a failed or cancelled migration must leave on the destination.
async fn wait_for_nothing_left(daemon: &Daemon, vm: &str, pool: Option<&str>) {
    let client = daemon.client();
    let deadline = Instant::now() + CLEANUP_TIMEOUT;
    loop {
        let vms: Vec<String> = client.list_vms().await.expect("list vms").into_iter().map(|v| v.name).collect();
        let processes = daemon.qemu_processes(vm);
        let volumes: Vec<String> = match pool {
            Some(pool) => {
                client.list_volumes(Some(pool)).await.expect("list volumes").into_iter().map(|v| v.name).collect()
            }
            None => Vec::new(),
        };
        if vms.is_empty() && processes.is_empty() && volumes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the destination still has, {CLEANUP_TIMEOUT:?} after the migration ended: VMs {vms:?}, \
             QEMU processes of {vm} {processes:?}, volumes in {pool:?} {volumes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_no_qemu(daemon: &Daemon, vm: &str) {
    let deadline = Instant::now() + CLEANUP_TIMEOUT;
    while !daemon.qemu_processes(vm).is_empty() {
        assert!(Instant::now() < deadline, "QEMU of {vm} still runs: {:?}", daemon.qemu_processes(vm));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `vm` is gone from `src` and runs on `dst` in one QEMU, and
/// waits for its QEMU on `src` to exit. Returns the VM as `dst` reports it.
async fn assert_moved(src: &Daemon, dst: &Daemon, vm: &str) -> vireo_api::Vm {
    assert_eq!(code(src.client().get_vm(vm).await.unwrap_err()), ErrorCode::VmNotFound);
    let moved = dst.client().get_vm(vm).await.unwrap();
    assert_eq!(moved.state, VmState::Running);
    wait_for_no_qemu(src, vm).await;
    assert_eq!(dst.qemu_processes(vm).len(), 1, "one QEMU runs {vm} on the destination");
    moved
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_storage_migration_moves_a_running_guest_without_a_restart() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let shared = tempfile::Builder::new().prefix("vireo-e2e-shared-").tempdir().expect("tempdir");
    let shared_path = shared.path().to_str().expect("utf-8 path");
    // The same pool on both hosts: same name, same directory.
    src.cli_ok(&["pool", "create", "shared", "--path", shared_path]);
    dst.cli_ok(&["pool", "create", "shared", "--path", shared_path]);
    src.cli_ok(&["volume", "create", "shared/mover.qcow2", "--size", "64MiB"]);
    let (a, b) = (src.client(), dst.client());
    boot(&a, &disk_spec("mover", "shared/mover.qcow2")).await;

    run_in_guest(&a, "mover", "echo kept-in-memory > /tmp/note").await;
    run_in_guest(&a, "mover", "echo ON-SHARED-DISK | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null").await;
    start_ticker(&a, "mover").await;
    let last_on_source = ticks(&console_log(&a, "mover").await).into_iter().max().unwrap();

    let output = src.cli(&[
        "vm",
        "migrate",
        "mover",
        "--to",
        &dst.url(),
        "--to-token",
        &dst.token(),
        "--max-downtime",
        "500",
        "--bandwidth",
        "256",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "vireo vm migrate failed ({}):\n{stdout}\n{stderr}", output.status);
    eprintln!("vireo vm migrate printed:\n{stdout}{stderr}");

    // Gone from the source, running on the destination.
    let moved = assert_moved(&src, &dst, "mover").await;
    assert!(a.list_vms().await.unwrap().is_empty());
    let status = a.migration_status("mover").await.expect("the source still reports the migration");
    assert_eq!(status.phase, Some(MigrationPhase::Completed), "{status:#?}");
    assert!(!status.copy_storage);
    assert!(status.finished_at.is_some() && status.error.is_none(), "{status:#?}");
    assert_eq!(moved.spec.disks[0].volume.as_deref(), Some("shared/mover.qcow2"));

    // The guest went on where it was: the ticker counts on, and it never booted there.
    let log = wait_for_tick_above(&b, "mover", last_on_source, Duration::from_secs(60)).await;
    assert!(!log.contains(MARKER), "the guest booted again on the destination:\n{log}");
    assert_guest_healthy(&b, "mover").await;
    assert_eq!(guest_value(&b, "mover", "cat /tmp/note").await, "kept-in-memory");
    let disk =
        guest_value(&b, "mover", "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=14 count=1 2>/dev/null").await;
    assert_eq!(disk, "ON-SHARED-DISK");
    let log =
        wait_for_tick_above(&b, "mover", ticks(&log).into_iter().max().unwrap() + 5, Duration::from_secs(60)).await;
    assert!(!log.contains(MARKER));
    assert_guest_healthy(&b, "mover").await;

    // The destination knows the volume its VM now uses.
    let volume = b.get_volume("shared", "mover.qcow2").await.expect("the destination lists the shared volume");
    assert_eq!(volume.path, shared.path().join("mover.qcow2"));
}

/// The copy-storage test's disk pattern: `BLOCKS` blocks of `BLOCK` bytes.
const BLOCK: usize = 64 << 10;
const BLOCKS: usize = 256;

/// Block `index` of the test pattern: `BLOCK-<index>\n` over and over, 64 KiB.
fn pattern_block(index: usize) -> Vec<u8> {
    format!("BLOCK-{index}\n").into_bytes().into_iter().cycle().take(BLOCK).collect()
}

/// A guest loop writing blocks `from..to` of the pattern, each with its own fsync.
fn pattern_writer(from: usize, to: usize, pause_us: u32) -> String {
    format!(
        "i={from}; while [ $i -lt {to} ]; do yes BLOCK-$i | head -c {BLOCK} | \
         dd of=/dev/vda bs={BLOCK} seek=$i conv=fsync 2>/dev/null; i=$((i+1)); usleep {pause_us}; done"
    )
}

fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("md5sum");
    child.stdin.take().unwrap().write_all(data).expect("feed md5sum");
    let output = child.wait_with_output().expect("md5sum");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().expect("md5").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_storage_migration_keeps_what_the_guest_wrote_before_and_during_it() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    // A pool of the same name on each host, each in a directory of its own.
    let (src_pool, dst_pool) = (src.dir.path().join("local-pool"), dst.dir.path().join("local-pool"));
    create_dir_pool(&src, "local", &src_pool).await;
    create_dir_pool(&dst, "local", &dst_pool).await;
    let (a, b) = (src.client(), dst.client());
    create_volume(&a, "local", "data.qcow2").await;
    boot(&a, &disk_spec("copier", "local/data.qcow2")).await;

    // A quarter of the pattern before the migration, the rest by a background
    // writer that goes on while the disk is mirrored and memory copied: its
    // pauses alone add up to ~10 s, so it is still writing when the migration
    // begins right after it is started.
    run_in_guest(&a, "copier", &pattern_writer(0, BLOCKS / 4, 0)).await;
    let writer = pattern_writer(BLOCKS / 4, BLOCKS, 50_000);
    run_in_guest(&a, "copier", &format!("{{ ( {writer}; touch /tmp/writer-done ) & }}")).await;

    let request = MigrateRequest { copy_storage: true, bandwidth_mib: Some(8), ..to(&dst) };
    let started = a.migrate_vm("copier", &request).await.expect("migrate");
    assert!(started.copy_storage);
    let watched = watch_migration(&a, "copier", MIGRATION_TIMEOUT).await;
    eprintln!("phases {:?}, final status {:#?}", watched.phases, watched.status);
    assert_eq!(watched.status.phase, Some(MigrationPhase::Completed), "{:#?}", watched.status);
    assert!(watched.status.disk_total_bytes > 0 && watched.status.disk_copied_bytes > 0, "{:#?}", watched.status);

    assert_moved(&src, &dst, "copier").await;
    assert_guest_healthy(&b, "copier").await;

    // The writer finishes on the destination; then what the disk holds is read back uncached.
    let deadline = Instant::now() + Duration::from_secs(180);
    while guest_value(&b, "copier", "[ -e /tmp/writer-done ] && echo done || echo busy").await != "done" {
        assert!(Instant::now() < deadline, "the guest's writer did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected = md5_hex(&(0..BLOCKS).flat_map(pattern_block).collect::<Vec<u8>>());
    let sum = guest_value(
        &b,
        "copier",
        &format!("echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs={BLOCK} count={BLOCKS} 2>/dev/null | md5sum"),
    )
    .await;
    assert_eq!(sum.split_whitespace().next(), Some(expected.as_str()), "the disk's data on the destination");
    assert_guest_healthy(&b, "copier").await;

    // The volume moved: the destination has it in its pool, the source no longer.
    let volume = b.get_volume("local", "data.qcow2").await.expect("the destination lists the volume");
    assert!(volume.path.starts_with(&dst_pool) && volume.path.exists(), "{volume:?}");
    let left: Vec<String> = a.list_volumes(Some("local")).await.unwrap().into_iter().map(|v| v.name).collect();
    assert!(left.is_empty(), "the source still lists {left:?}");
    assert!(!src_pool.join("data.qcow2").exists(), "the source's copy is gone: {:?}", files_in(&src_pool));
}

/// How fast the guest dirties memory with `yes | head` into tmpfs, in MiB/s.
async fn measure_dirty_rate(client: &Client, vm: &str) -> f64 {
    let output =
        run_in_guest(client, vm, "time sh -c 'for i in 1 2 3; do yes abcdefgh | head -c 8388608 > /tmp/dirty; done'")
            .await;
    // busybox: "real\t0m 1.83s"
    let mut words = output.split_once("real").map(|(_, rest)| rest.split_whitespace()).expect("time output");
    let minutes: f64 = words.next().and_then(|m| m.strip_suffix('m')?.parse().ok()).expect("minutes");
    let seconds: f64 = words.next().and_then(|s| s.strip_suffix('s')?.parse().ok()).expect("seconds");
    24.0 / (minutes * 60.0 + seconds).max(0.01)
}

/// Boots `vm` on `src` with a NIC on `default` (which each host has) and sets
/// it rewriting an 8 MiB tmpfs file over and over. Returns a bandwidth (MiB/s)
/// of half the guest's dirty rate: each pass over that memory then takes twice
/// as long as the guest needs to dirty all of it again, so a plain pre-copy
/// migration would never converge.
async fn boot_memory_churner(client: &Client, vm: &str) -> (vireo_api::Vm, u64) {
    let mut spec = guest_spec(vm);
    spec.nics = vec![NicSpec { network: "default".into(), ..NicSpec::default() }];
    boot(client, &spec).await;
    let rate = measure_dirty_rate(client, vm).await;
    let bandwidth = ((rate / 2.0).floor() as u64).clamp(1, 64);
    eprintln!("guest dirties {rate:.1} MiB/s; migrating at {bandwidth} MiB/s");
    run_in_guest(client, vm, "{ while true; do yes abcdefgh | head -c 8388608 > /tmp/dirty; done & }").await;
    (client.get_vm(vm).await.unwrap(), bandwidth)
}

fn macs(vm: &vireo_api::Vm) -> Vec<String> {
    vm.nics.iter().map(|n| n.mac.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_dirtying_memory_converges_by_throttling() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let a = src.client();
    let (here, bandwidth) = boot_memory_churner(&a, "churn").await;

    // 30 ms as under KVM: TCG's 300 ms default would let this guest converge unthrottled.
    let request = MigrateRequest { bandwidth_mib: Some(bandwidth), max_downtime_ms: Some(30), ..to(&dst) };
    a.migrate_vm("churn", &request).await.expect("migrate");
    let watched = watch_migration(&a, "churn", MIGRATION_TIMEOUT).await;
    eprintln!(
        "phases {:?}, max throttle {}%, max dirty rate {} B/s, final status {:#?}",
        watched.phases, watched.max_throttle, watched.max_dirty_rate, watched.status
    );
    assert_eq!(watched.status.phase, Some(MigrationPhase::Completed), "{:#?}", watched.status);
    assert!(watched.max_throttle > 0, "auto-converge never throttled the guest: {:#?}", watched.status);
    let there = assert_moved(&src, &dst, "churn").await;
    assert_eq!(macs(&there), macs(&here), "the NIC keeps its MAC");
    // Not asserted here: that the guest itself survived. QEMU 7.2 under TCG
    // sometimes corrupts the memory of a guest that rewrites memory throughout
    // a long migration (reproduced with plain QEMU and no Vireo; see "Known
    // problem" in docs/migration.md). The guest's integrity after a migration is
    // asserted by the tests whose guests are not churning.
}

/// A guest of its own, not the one the throttling test moved: a guest damaged
/// by that long migration (the known problem above) may stop dirtying memory,
/// and a migration of a guest that dirties nothing ends by pre-copy even when
/// post-copy was asked for.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_dirtying_memory_moves_by_postcopy() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let a = src.client();
    let (here, bandwidth) = boot_memory_churner(&a, "pc").await;

    // Again 30 ms: with TCG's 300 ms QEMU may finish by pre-copy once the
    // guest is throttled, even after post-copy was asked for.
    let request =
        MigrateRequest { bandwidth_mib: Some(bandwidth), max_downtime_ms: Some(30), postcopy: true, ..to(&dst) };
    a.migrate_vm("pc", &request).await.expect("migrate");
    let watched = watch_migration(&a, "pc", MIGRATION_TIMEOUT).await;
    eprintln!("phases {:?}, final status {:#?}", watched.phases, watched.status);
    if !watched.phases.contains(&MigrationPhase::Postcopy) {
        eprintln!("note: the postcopy phase was too short to be seen by polling");
    }
    assert_eq!(watched.status.phase, Some(MigrationPhase::Completed), "{:#?}", watched.status);
    assert!(watched.status.postcopy);
    // The guest keeps dirtying 8 MiB faster than the link carries it, so the
    // first pass cannot end the migration: it must have gone over to post-copy,
    // which the receiving QEMU reports in its MIGRATION events (kept in qmp.log).
    let qmp_log = std::fs::read_to_string(dst.dir.path().join("vms/pc/qmp.log")).unwrap_or_default();
    assert!(qmp_log.contains("postcopy-active"), "the receiving QEMU never was in post-copy");
    let there = assert_moved(&src, &dst, "pc").await;
    assert_eq!(macs(&there), macs(&here), "the NIC keeps its MAC");
}

/// A VM with a disk in the pool `local` (a directory of its own on each host), booted on `src`, printing ticks.
async fn booted_with_local_disk(src: &Daemon, dst: &Daemon, vm: &str) -> u64 {
    create_dir_pool(src, "local", &src.dir.path().join("local-pool")).await;
    create_dir_pool(dst, "local", &dst.dir.path().join("local-pool")).await;
    let a = src.client();
    create_volume(&a, "local", &format!("{vm}.qcow2")).await;
    boot(&a, &disk_spec(vm, &format!("local/{vm}.qcow2"))).await;
    run_in_guest(&a, vm, "echo BEFORE-MIGRATION | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null").await;
    start_ticker(&a, vm).await
}

/// After a migration that did not happen, the guest runs on the source as before: it
/// ticks on, and its disk is its own: it still holds `expected` (16 bytes) and takes
/// the write of `next` (16 bytes).
async fn assert_still_on_source(src: &Daemon, vm: &str, expected: &str, next: &str) {
    let a = src.client();
    wait_for_state(&a, vm, VmState::Running, Duration::from_secs(30)).await;
    let shown = a.get_vm(vm).await.unwrap();
    assert!(shown.migration.is_none(), "no migration under way any more: {:#?}", shown.migration);
    let last = ticks(&console_log(&a, vm).await).into_iter().max().unwrap_or(0);
    wait_for_tick_above(&a, vm, last + 5, Duration::from_secs(60)).await;
    let read = "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=16 count=1 2>/dev/null";
    assert_eq!(guest_value(&a, vm, read).await, expected);
    run_in_guest(&a, vm, &format!("echo {next} | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null")).await;
    assert_eq!(guest_value(&a, vm, read).await, next);
    let volumes: Vec<String> = a.list_volumes(Some("local")).await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, [format!("{vm}.qcow2")], "the source keeps its volume");
    assert_eq!(src.qemu_processes(vm).len(), 1, "the same one QEMU runs the guest on the source");
    assert_guest_healthy(&a, vm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_migration_leaves_the_guest_on_the_source_and_nothing_on_the_destination() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let (a, b) = (src.client(), dst.client());
    booted_with_local_disk(&src, &dst, "stay").await;
    let pid = a.get_vm("stay").await.unwrap().pid;

    // Slow enough to be still copying memory when it is cancelled.
    let request = MigrateRequest { copy_storage: true, bandwidth_mib: Some(1), ..to(&dst) };
    a.migrate_vm("stay", &request).await.expect("migrate");
    wait_for_phase(&a, "stay", MigrationPhase::Migrating, MIGRATION_TIMEOUT).await;
    let migrating = a.get_vm("stay").await.unwrap();
    assert_eq!(migrating.state, VmState::Migrating);
    assert!(migrating.migration.is_some(), "the VM shows its migration under way");
    assert_eq!(b.get_vm("stay").await.expect("the destination has the VM being received").state, VmState::Incoming);

    let cancelled = a.cancel_migration("stay").await.expect("cancel");
    eprintln!("cancel returned {cancelled:#?}");
    let watched = watch_migration(&a, "stay", MIGRATION_TIMEOUT).await;
    eprintln!("phases {:?}, final status {:#?}", watched.phases, watched.status);
    assert_eq!(watched.status.phase, Some(MigrationPhase::Cancelled), "{:#?}", watched.status);

    assert_still_on_source(&src, "stay", "BEFORE-MIGRATION", "AFTER-MIGRATION1").await;
    assert_eq!(a.get_vm("stay").await.unwrap().pid, pid, "the guest never left its QEMU");
    wait_for_nothing_left(&dst, "stay", Some("local")).await;
    assert!(files_in(&dst.dir.path().join("local-pool")).is_empty(), "no file left in the destination's pool");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_daemon_killed_mid_way_leaves_the_guest_on_the_source_and_recovery_cleans_up() {
    let (src, mut dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let a = src.client();
    booted_with_local_disk(&src, &dst, "survivor").await;

    let request = MigrateRequest { copy_storage: true, bandwidth_mib: Some(4), ..to(&dst) };
    a.migrate_vm("survivor", &request).await.expect("migrate");
    wait_for_phase(&a, "survivor", MigrationPhase::Migrating, MIGRATION_TIMEOUT).await;
    dst.kill9();

    // The source notices and keeps the guest.
    let watched = watch_migration(&a, "survivor", MIGRATION_TIMEOUT).await;
    eprintln!("phases {:?}, final status {:#?}", watched.phases, watched.status);
    assert_eq!(watched.status.phase, Some(MigrationPhase::Failed), "{:#?}", watched.status);
    assert!(watched.status.error.is_some(), "a failed migration says why: {:#?}", watched.status);
    assert_still_on_source(&src, "survivor", "BEFORE-MIGRATION", "AFTER-MIGRATION1").await;

    // The destination's next daemon finds the half-received VM and removes it.
    dst.spawn();
    wait_for_nothing_left(&dst, "survivor", Some("local")).await;
    assert!(files_in(&dst.dir.path().join("local-pool")).is_empty(), "no file left in the destination's pool");
    assert_still_on_source(&src, "survivor", "AFTER-MIGRATION1", "AFTER-MIGRATION2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_without_the_vms_network_refuses_and_nothing_changes() {
    let (src, dst) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&src, &dst]);
    let (a, b) = (src.client(), dst.client());
    let only_here = NetworkSpec {
        name: "only-here".into(),
        mode: NetworkMode::Isolated,
        subnet: Some("10.93.0.0/24".into()),
        bridge: None,
        vlan: None,
    };
    a.create_network(&only_here).await.unwrap();
    let mut spec = guest_spec("homebody");
    spec.nics = vec![NicSpec { network: "only-here".into(), ..NicSpec::default() }];
    boot(&a, &spec).await;
    let before = a.get_vm("homebody").await.unwrap();
    let networks_before: Vec<String> = b.list_networks().await.unwrap().into_iter().map(|n| n.name).collect();

    let err = a.migrate_vm("homebody", &to(&dst)).await.expect_err("the destination lacks the network");
    eprintln!("refused: {err}");
    assert_eq!(code(err), ErrorCode::MigrationRefused);
    let after = a.get_vm("homebody").await.unwrap();
    assert_eq!((after.state, after.pid), (VmState::Running, before.pid));
    assert!(after.migration.is_none());
    assert!(b.list_vms().await.unwrap().is_empty());
    assert!(dst.qemu_processes("homebody").is_empty());
    let networks_after: Vec<String> = b.list_networks().await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(networks_after, networks_before, "the destination created no network");

    // Nobody listening there: unreachable, and again nothing changes.
    let nobody = MigrateRequest { to: dst.url().replace(&format!(":{PAIR_PORT}"), ":7401"), ..to(&dst) };
    assert_eq!(code(a.migrate_vm("homebody", &nobody).await.unwrap_err()), ErrorCode::DestinationUnreachable);
    // A wrong token is turned away by the destination.
    let stranger = MigrateRequest { to_token: "not-the-token".into(), ..to(&dst) };
    let err = a.migrate_vm("homebody", &stranger).await.expect_err("a wrong token is refused");
    assert!(err.api().is_some(), "{err}");

    assert_eq!(a.get_vm("homebody").await.unwrap().state, VmState::Running);
    assert!(b.list_vms().await.unwrap().is_empty());
    assert!(dst.qemu_processes("homebody").is_empty());
    assert!(run_in_guest(&a, "homebody", "echo alive-$((6*7))").await.contains("alive-42"));
}
