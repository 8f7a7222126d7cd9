//! Live migration between two QEMU processes on loopback (TCG), with the
//! disk copied over NBD: the primitives the daemon's orchestrator uses.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use common::{
    Console, KillOnDrop, boot_to_prompt, caps, create_image, qemu_binary, runtime_dir, small_guest_spec, take_console,
};
use vireo_api::Accel;
use vireo_qemu::{Incoming, Launch, MigrationSettings, RuntimePaths};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_guest_and_its_disk_move_to_another_qemu() {
    let (dir, source_paths) = runtime_dir();
    let source_disk = dir.path().join("source.qcow2");
    let target_disk = dir.path().join("target.qcow2");
    create_image(&source_disk, "64M");
    create_image(&target_disk, "64M");
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);

    let source_spec = small_guest_spec("moving", &[&source_disk]);
    let launch = Launch::with_path_disks(&source_spec, Accel::Tcg, &caps().await);
    let mut source = vireo_qemu::spawn(&qemu_binary(), &launch, &source_paths).await.expect("spawn source");
    let _source_guard = KillOnDrop { pid: source.pid, pid_start_ticks: source.pid_start_ticks };
    let mut console = boot_to_prompt(&mut source).await;
    console.run("echo in-memory > /tmp/kept; echo on-disk-data | dd of=/dev/vda conv=fsync 2>/dev/null").await;

    let target_spec = small_guest_spec("moving", &[&target_disk]);
    let mut launch = Launch::with_path_disks(&target_spec, Accel::Tcg, &caps().await);
    launch.incoming = Some(Incoming::Migration);
    let target_paths = RuntimePaths::new(dir.path().join("target"));
    let mut target = vireo_qemu::spawn(&qemu_binary(), &launch, &target_paths).await.expect("spawn target");
    let _target_guard = KillOnDrop { pid: target.pid, pid_start_ticks: target.pid_start_ticks };
    let uri = target.qmp.listen_incoming(loopback, false).await.expect("listen_incoming");
    assert!(uri.starts_with("tcp:127.0.0.1:") && !uri.ends_with(":0"), "{uri}");
    let nbd = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind NBD listener");
    let nbd_port = nbd.local_addr().unwrap().port();
    target.qmp.start_nbd_server(&nbd, &["disk0".to_string()]).await.expect("start_nbd_server");
    drop(nbd);

    source.qmp.mirror_to_nbd("mirror-disk0", "disk0", "127.0.0.1", nbd_port, "disk0").await.expect("mirror");
    wait_until_mirrors_ready(&source.qmp).await;
    // Written while the mirror runs: must reach the target too.
    console.run("echo written-during-mirror | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null").await;

    let settings = MigrationSettings {
        max_bandwidth: 8 << 30,
        downtime_limit_ms: None,
        auto_converge: true,
        postcopy: false,
        pause_before_switchover: true,
    };
    let mut source_events = source.qmp.migration_events().unwrap();
    let mut target_events = target.qmp.migration_events().unwrap();
    source.qmp.start_migration_to(&mut source_events, &uri, &settings).await.expect("migrate");
    let pre_switchover = |status: &str| status == "pre-switchover";
    source.qmp.wait_migration_status(&mut source_events, TIMEOUT, pre_switchover).await.expect("pre-switchover");
    source.qmp.end_mirror("mirror-disk0", false, TIMEOUT).await.expect("end mirror");
    assert!(source.qmp.block_jobs().await.unwrap().is_empty());
    source.qmp.continue_migration().await.expect("migrate-continue");
    let completed = |status: &str| status == "completed";
    source.qmp.wait_migration_status(&mut source_events, TIMEOUT, completed).await.expect("completed");
    target.qmp.wait_migration_status(&mut target_events, TIMEOUT, completed).await.expect("target completed");
    target.qmp.stop_nbd_server().await.expect("stop NBD");
    target.qmp.cont().await.expect("cont on target");
    assert_eq!(source.qmp.query_status().await.unwrap().status, "postmigrate");
    // QEMU 7.2 says `completed` a moment before it has worked out these; by `postmigrate` they are there.
    let figures = source.qmp.migration_info(&mut source_events).await.expect("query-migrate");
    assert!(figures.downtime.is_some() && figures.total_time.is_some(), "{figures:?}");

    let mut console = Console::new(take_console(&mut target));
    console.send("\n").await;
    assert_eq!(console.run("cat /tmp/kept").await, "in-memory");
    // Read past the guest's page cache, from the target's disk.
    console.run("echo 3 > /proc/sys/vm/drop_caches").await;
    assert_eq!(console.run("head -c 12 /dev/vda").await, "on-disk-data");
    assert_eq!(
        console.run("dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -n 1").await,
        "written-during-mirror"
    );
}

async fn wait_until_mirrors_ready(qmp: &vireo_qemu::QmpClient) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut events = qmp.migration_events().unwrap();
    loop {
        let jobs = qmp.block_jobs().await.unwrap();
        if !jobs.is_empty() && jobs.iter().all(|job| job.ready) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "mirror not ready: {jobs:?}");
        events.wait(tokio::time::Instant::now() + Duration::from_millis(100)).await.unwrap();
    }
}
