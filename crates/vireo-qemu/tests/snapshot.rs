//! Internal snapshots of the running test guest (TCG): full snapshots (save, load,
//! start from one with -loadvm, delete) and disk-only snapshots.

mod common;

use std::time::{Duration, Instant};

use common::{
    Console, KillOnDrop, boot_to_prompt, caps, create_image, events_until, image_snapshots, qemu_binary, runtime_dir,
    small_guest_spec, take_console,
};
use vireo_api::Accel;
use vireo_qemu::{Launch, QemuError, QemuEvent};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn full_snapshot_reverts_a_running_guest_and_loadvm_starts_from_it() {
    let (dir, paths) = runtime_dir();
    let root = dir.path().join("root.qcow2");
    create_image(&root, "64M");
    let spec = small_guest_spec("snapshots", &[&root]);
    let nodes = vec!["disk0".to_string()];
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let mut console = boot_to_prompt(&mut vm).await;

    console.run("echo one > /tmp/x; echo AAAA | dd of=/dev/vda conv=fsync 2>/dev/null").await;
    let save = Instant::now();
    vm.qmp.snapshot_save("first", "disk0", &nodes, JOB_TIMEOUT).await.expect("snapshot_save");
    let saved = save.elapsed();
    assert!(vm.qmp.query_status().await.unwrap().running, "a running guest runs on after the save");
    console.run("echo two > /tmp/x; echo BBBB | dd of=/dev/vda conv=fsync 2>/dev/null").await;
    assert_eq!(console.run("cat /tmp/x; head -c 4 /dev/vda").await, "two\nBBBB");

    let load = Instant::now();
    let status = vm.qmp.snapshot_load("first", "disk0", &nodes, JOB_TIMEOUT).await.expect("snapshot_load");
    eprintln!("timing: snapshot_save {} ms, snapshot_load {} ms", saved.as_millis(), load.elapsed().as_millis());
    assert!(status.running, "QEMU resumes a guest that ran: {status:?}");
    assert_eq!(console.run("cat /tmp/x; head -c 4 /dev/vda").await, "one\nAAAA");

    // A paused guest stays paused.
    vm.qmp.stop().await.unwrap();
    let status = vm.qmp.snapshot_load("first", "disk0", &nodes, JOB_TIMEOUT).await.expect("load while paused");
    assert_eq!(status.status, "paused");
    vm.qmp.cont().await.unwrap();

    // A failed job reports QEMU's reason; a failed load leaves the guest stopped.
    let err = vm.qmp.snapshot_save("first", "disk0", &nodes, JOB_TIMEOUT).await.expect_err("tag exists");
    assert!(matches!(&err, QemuError::Job { error, .. } if error.contains("already exists")), "{err}");
    let err = vm.qmp.snapshot_load("missing", "disk0", &nodes, JOB_TIMEOUT).await.expect_err("no such tag");
    assert!(matches!(&err, QemuError::Job { error, .. } if error.contains("does not exist")), "{err}");
    eprintln!("snapshot_load of a missing tag: {err}");
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "restore-vm");
    vm.qmp.cont().await.expect("cont after a failed load");
    assert_eq!(console.run("cat /tmp/x").await, "one");

    vm.qmp.quit().await.unwrap();
    events_until(&mut vm.events, QemuEvent::Exited).await;
    drop(guard);
    assert!(image_snapshots(&root).contains("first"));

    // Start a new QEMU from the snapshot: paused until cont, then at the snapshot's moment.
    let mut launch = Launch::with_path_disks(&spec, Accel::Tcg, &caps().await);
    launch.loadvm = Some("first".into());
    let spawn = Instant::now();
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &launch, &paths).await.expect("spawn with loadvm");
    eprintln!("timing: spawn with -loadvm {} ms", spawn.elapsed().as_millis());
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "prelaunch");
    let mut console = Console::new(take_console(&mut vm));
    vm.qmp.cont().await.expect("cont");
    assert_eq!(console.run("cat /tmp/x; head -c 4 /dev/vda").await, "one\nAAAA");

    vm.qmp.snapshot_delete("first", &nodes, JOB_TIMEOUT).await.expect("snapshot_delete");
    assert!(!image_snapshots(&root).contains("first"));
    vm.qmp.snapshot_delete("first", &nodes, JOB_TIMEOUT).await.expect("deleting a missing tag is no error");
}

#[tokio::test]
async fn disk_snapshot_of_a_running_guest_covers_all_disks_or_none() {
    let (dir, paths) = runtime_dir();
    let images = [dir.path().join("a.qcow2"), dir.path().join("b.qcow2")];
    images.iter().for_each(|image| create_image(image, "16M"));
    let spec = small_guest_spec("disk-snapshots", &[&images[0], &images[1]]);
    let nodes = vec!["disk0".to_string(), "disk1".to_string()];
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let mut console = boot_to_prompt(&mut vm).await;
    console.run("echo data | dd of=/dev/vdb conv=fsync 2>/dev/null").await;

    let snapshot = Instant::now();
    vm.qmp.disk_snapshot("nightly", &nodes).await.expect("disk_snapshot");
    eprintln!("timing: disk_snapshot of 2 disks {} ms", snapshot.elapsed().as_millis());
    assert!(vm.qmp.query_status().await.unwrap().running);
    for image in &images {
        assert!(image_snapshots(image).contains("nightly"), "{}", image_snapshots(image));
    }

    // One disk already has the tag: the transaction takes none.
    vm.qmp.disk_snapshot("weekly", &nodes[1..]).await.expect("disk_snapshot of disk1");
    let err = vm.qmp.disk_snapshot("weekly", &nodes).await.expect_err("tag exists on disk1");
    eprintln!("disk_snapshot with a tag in use: {err}");
    assert!(!image_snapshots(&images[0]).contains("weekly"));
    assert_eq!(console.run("head -c 4 /dev/vdb").await, "data");
}
