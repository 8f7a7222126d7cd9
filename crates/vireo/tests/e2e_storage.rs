//! End-to-end storage: pools, volumes, linked clones, hot-plug, snapshots and
//! save/restore, with real qemu-img and real TCG guests.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;
use vireo_api::{
    ByteSize, DiskFormat, DiskSpec, ErrorCode, PoolSpec, PoolType, SnapshotCreate, SnapshotKind, StopRequest, VmState,
    VolumeClone, VolumeCreate, VolumeResize,
};

/// Writes or checks a byte pattern in an image from the host (qemu-io, as QEMU itself would).
fn qemu_io(path: &Path, command: &str) -> bool {
    let output = Command::new("qemu-io").args(["-f", "qcow2", "-c", command]).arg(path).output().expect("qemu-io");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    output.status.success() && !text.contains("Pattern verification failed") && !text.contains("error")
}

fn volume_spec(name: &str, volume: &str) -> vireo_api::VmSpec {
    let mut spec = guest_spec(name);
    spec.disks = vec![DiskSpec { volume: Some(volume.into()), ..DiskSpec::default() }];
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_clones_and_refusals() {
    let daemon = Daemon::start();
    let client = daemon.client();
    let pools = client.list_pools().await.unwrap();
    assert!(pools.iter().any(|p| p.name == "default"), "a default pool exists after first start");

    let dir = daemon.dir.path().join("extra-pool");
    let pool = client
        .create_pool(&PoolSpec { name: "extra".into(), pool_type: PoolType::Dir, path: dir.clone() })
        .await
        .unwrap();
    assert_eq!(pool.volume_count, 0);
    assert!(pool.capacity_bytes >= pool.available_bytes && pool.capacity_bytes > 0);

    let base = client
        .create_volume("extra", &VolumeCreate { name: "base.qcow2".into(), size: ByteSize(1 << 30), format: None })
        .await
        .unwrap();
    assert_eq!(base.format, DiskFormat::Qcow2);
    assert_eq!(base.capacity_bytes, 1 << 30);
    assert!(qemu_io(&base.path, "write -P 0xab 0 64k"));

    let clone = client
        .clone_volume("extra", "base.qcow2", &VolumeClone { target: "default/clone.qcow2".into(), linked: true })
        .await
        .unwrap();
    assert_eq!(clone.backing.as_deref(), Some("extra/base.qcow2"));
    assert!(clone.allocation_bytes < 1 << 20, "a linked clone is thin");
    assert!(qemu_io(&clone.path, "read -P 0xab 0 64k"), "the clone sees the base's data");
    assert!(qemu_io(&clone.path, "write -P 0xcd 0 64k"));
    assert!(qemu_io(&base.path, "read -P 0xab 0 64k"), "a write to the clone leaves the base alone");
    let shown = client.get_volume("default", "clone.qcow2").await.unwrap();
    assert_eq!(shown.backing_chain.len(), 1, "{shown:?}");

    let full = client
        .clone_volume("extra", "base.qcow2", &VolumeClone { target: "extra/full.qcow2".into(), linked: false })
        .await
        .unwrap();
    assert_eq!(full.backing, None);
    assert!(qemu_io(&full.path, "read -P 0xab 0 64k"));

    // Refusals, each changing nothing.
    assert_eq!(code(client.delete_volume("extra", "base.qcow2").await.unwrap_err()), ErrorCode::InUse);
    let shrink = VolumeResize { size: ByteSize(1 << 20), allow_shrink: false };
    assert_eq!(code(client.resize_volume("extra", "full.qcow2", &shrink).await.unwrap_err()), ErrorCode::InvalidSpec);
    assert_eq!(client.get_volume("extra", "full.qcow2").await.unwrap().capacity_bytes, 1 << 30);
    let grown = client
        .resize_volume("extra", "full.qcow2", &VolumeResize { size: ByteSize(2 << 30), allow_shrink: false })
        .await
        .unwrap();
    assert_eq!(grown.capacity_bytes, 2 << 30);
    for bad in ["../escape", ".hidden", "a/b"] {
        let request = VolumeCreate { name: bad.into(), size: ByteSize(1 << 20), format: None };
        assert_eq!(code(client.create_volume("extra", &request).await.unwrap_err()), ErrorCode::InvalidSpec, "{bad}");
    }
    assert!(!dir.join("escape").exists() && !daemon.dir.path().join("escape").exists());
    let raw = client
        .create_volume(
            "extra",
            &VolumeCreate { name: "data.raw".into(), size: ByteSize(1 << 20), format: Some(DiskFormat::Raw) },
        )
        .await
        .unwrap();
    assert_eq!(raw.format, DiskFormat::Raw);

    client.create_vm(&volume_spec("holder", "default/clone.qcow2")).await.unwrap();
    assert_eq!(code(client.delete_volume("default", "clone.qcow2").await.unwrap_err()), ErrorCode::InUse);
    assert_eq!(code(client.delete_pool("extra").await.unwrap_err()), ErrorCode::InUse);

    client.create_vm(&volume_spec("rawvm", "extra/data.raw")).await.unwrap();
    let snapshot = SnapshotCreate { name: "s1".into(), disk_only: false };
    assert_eq!(code(client.create_snapshot("rawvm", &snapshot).await.unwrap_err()), ErrorCode::Unsupported);
    assert!(client.list_snapshots("rawvm").await.unwrap().is_empty());

    // Once nothing uses them, they go.
    client.delete_vm("holder").await.unwrap();
    client.delete_vm("rawvm").await.unwrap();
    client.delete_volume("default", "clone.qcow2").await.unwrap();
    client.delete_volume("extra", "base.qcow2").await.unwrap();
    assert!(!base.path.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn import_copies_and_a_failed_import_leaves_nothing() {
    let daemon = Daemon::start();
    let client = daemon.client();
    let source = daemon.dir.path().join("source.raw");
    std::fs::write(&source, vec![0x5a; 4 << 20]).unwrap();
    let mut seen = Vec::new();
    let volume = client
        .import_volume(
            "default",
            &vireo_api::VolumeImport { name: "imported.qcow2".into(), source: source.clone(), format: None },
            |fraction| seen.push(fraction),
        )
        .await
        .unwrap();
    assert_eq!(volume.format, DiskFormat::Qcow2);
    assert_eq!(volume.capacity_bytes, 4 << 20);
    assert!(qemu_io(&volume.path, "read -P 0x5a 0 1M"));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {seen:?}");

    let bad = daemon.dir.path().join("not-an-image.qcow2");
    std::fs::write(&bad, b"QFI\xfbgarbage").unwrap();
    let request = vireo_api::VolumeImport { name: "broken.qcow2".into(), source: bad, format: None };
    let err = client.import_volume("default", &request, |_| {}).await.unwrap_err();
    assert!(err.api().is_some(), "{err}");
    let names: Vec<String> = client.list_volumes(Some("default")).await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["imported.qcow2"]);
    let pool_dir = daemon.dir.path().join("pools/default");
    let files: Vec<_> = std::fs::read_dir(&pool_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 1, "no partial file left behind: {files:?}");
}

/// Writes `text` at the start of the guest's first disk.
async fn write_disk(client: &vireo_client::Client, vm: &str, text: &str) {
    run_in_guest(client, vm, &format!("echo {text} | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; sync"))
        .await;
}

async fn read_disk(client: &vireo_client::Client, vm: &str) -> String {
    run_in_guest(client, vm, "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=9 count=1 2>/dev/null; echo").await
}

async fn booted_volume_vm(daemon: &Daemon, name: &str) -> vireo_client::Client {
    let client = daemon.client();
    let volume = format!("{name}.qcow2");
    client
        .create_volume("default", &VolumeCreate { name: volume.clone(), size: ByteSize(64 << 20), format: None })
        .await
        .unwrap();
    client.create_vm(&volume_spec(name, &format!("default/{volume}"))).await.unwrap();
    client.start_vm(name).await.unwrap();
    wait_for_log(&client, name, MARKER, BOOT_TIMEOUT).await;
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn full_snapshot_brings_back_disk_and_memory() {
    let daemon = Daemon::start();
    let client = booted_volume_vm(&daemon, "snap").await;
    write_disk(&client, "snap", "PATTERN-A").await;
    run_in_guest(&client, "snap", "echo memory-A > /tmp/mem").await;

    let snapshot =
        client.create_snapshot("snap", &SnapshotCreate { name: "before".into(), disk_only: false }).await.unwrap();
    assert_eq!(snapshot.kind, SnapshotKind::Full);
    assert_eq!(snapshot.vm_state, VmState::Running);

    write_disk(&client, "snap", "PATTERN-B").await;
    run_in_guest(&client, "snap", "echo memory-B > /tmp/mem").await;
    assert_eq!(read_disk(&client, "snap").await, "PATTERN-B");

    let vm = client.revert_snapshot("snap", "before").await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(read_disk(&client, "snap").await, "PATTERN-A");
    assert_eq!(run_in_guest(&client, "snap", "cat /tmp/mem").await, "memory-A");

    // From a stopped VM, the same snapshot starts the guest at that moment.
    client.stop_vm("snap", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    let vm = client.revert_snapshot("snap", "before").await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(run_in_guest(&client, "snap", "cat /tmp/mem").await, "memory-A");

    client.delete_snapshot("snap", "before").await.unwrap();
    assert!(client.list_snapshots("snap").await.unwrap().is_empty());
    client.stop_vm("snap", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_snapshot_of_a_stopped_vm_reverts_its_disk() {
    let daemon = Daemon::start();
    let client = daemon.client();
    client
        .create_volume("default", &VolumeCreate { name: "d.qcow2".into(), size: ByteSize(64 << 20), format: None })
        .await
        .unwrap();
    client.create_vm(&volume_spec("cold", "default/d.qcow2")).await.unwrap();
    let path = client.get_volume("default", "d.qcow2").await.unwrap().path;
    assert!(qemu_io(&path, "write -P 0x11 0 64k"));
    let snapshot =
        client.create_snapshot("cold", &SnapshotCreate { name: "s".into(), disk_only: false }).await.unwrap();
    assert_eq!(snapshot.kind, SnapshotKind::Disk, "a stopped VM has only its disks to keep");
    assert!(qemu_io(&path, "write -P 0x22 0 64k"));
    let vm = client.revert_snapshot("cold", "s").await.unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(qemu_io(&path, "read -P 0x11 0 64k"), "the disk is back as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn save_and_restore_continue_the_guest() {
    let daemon = Daemon::start();
    let client = booted_volume_vm(&daemon, "sleeper").await;
    run_in_guest(&client, "sleeper", "echo still-here > /tmp/note").await;
    let host_start = std::time::Instant::now();
    let uptime_before: f64 =
        run_in_guest(&client, "sleeper", "cut -d' ' -f1 /proc/uptime").await.parse().expect("uptime");

    let vm = client.save_vm("sleeper").await.unwrap();
    assert_eq!(vm.state, VmState::Saved);
    assert_eq!(vm.pid, None);
    assert_eq!(
        code(
            client
                .create_snapshot("sleeper", &SnapshotCreate { name: "x".into(), disk_only: false })
                .await
                .unwrap_err()
        ),
        ErrorCode::InvalidState
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let vm = client.restore_vm("sleeper").await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(run_in_guest(&client, "sleeper", "cat /tmp/note").await, "still-here");
    let uptime_after: f64 =
        run_in_guest(&client, "sleeper", "cut -d' ' -f1 /proc/uptime").await.parse().expect("uptime");
    let host_elapsed = host_start.elapsed().as_secs_f64();
    assert!(uptime_after >= uptime_before, "uptime continues: {uptime_before} -> {uptime_after}");
    // The guest must not count the (at least 2 s) it spent saved; measured against the host's
    // time across both readings, so slow console round trips on a loaded machine cannot fail it.
    let advanced = uptime_after - uptime_before;
    assert!(
        advanced < host_elapsed - 1.5,
        "the guest counted the time it was saved: uptime advanced {advanced:.2} s in {host_elapsed:.2} s"
    );
    client.stop_vm("sleeper", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_without_hot_plug_ports_boots_and_refuses_a_hot_plug() {
    let daemon = Daemon::start();
    let client = daemon.client();
    for volume in ["bare.qcow2", "more.qcow2"] {
        let create = VolumeCreate { name: volume.into(), size: ByteSize(32 << 20), format: None };
        client.create_volume("default", &create).await.unwrap();
    }
    let mut spec = volume_spec("bare", "default/bare.qcow2");
    spec.machine.hotplug_ports = Some(0);
    client.create_vm(&spec).await.unwrap();
    client.start_vm("bare").await.unwrap();
    wait_for_log(&client, "bare", MARKER, BOOT_TIMEOUT).await;
    // The ports sit in slot 0x1c; the boot disk is on the root bus as always.
    let devices = run_in_guest(&client, "bare", "ls /sys/bus/pci/devices").await;
    assert!(!devices.contains("0000:00:1c."), "no hot-plug port: {devices}");
    assert!(run_in_guest(&client, "bare", "ls /sys/block").await.contains("vda"));

    let more = DiskSpec { volume: Some("default/more.qcow2".into()), ..DiskSpec::default() };
    let err = client.attach_disk("bare", &more).await.unwrap_err();
    assert!(err.to_string().contains("machine.hotplug_ports"), "the error names the setting: {err}");
    assert_eq!(code(err), ErrorCode::Unsupported);
    assert_eq!(client.get_vm("bare").await.unwrap().spec.disks.len(), 1, "a refused attach changes nothing");
    client.stop_vm("bare", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hotplugged_disk_appears_and_disappears_in_the_guest() {
    let daemon = Daemon::start();
    let client = booted_volume_vm(&daemon, "plug").await;
    client
        .create_volume("default", &VolumeCreate { name: "extra.qcow2".into(), size: ByteSize(32 << 20), format: None })
        .await
        .unwrap();
    let before = run_in_guest(&client, "plug", "ls /sys/block").await;
    assert!(!before.contains("vdb"), "{before}");

    let vm = client
        .attach_disk("plug", &DiskSpec { volume: Some("default/extra.qcow2".into()), ..DiskSpec::default() })
        .await
        .unwrap();
    assert_eq!(vm.spec.disks.len(), 2, "the spec keeps the new disk");
    let mut listing = String::new();
    for _ in 0..100 {
        listing = run_in_guest(&client, "plug", "ls /sys/block").await;
        if listing.contains("vdb") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listing.contains("vdb"), "the guest sees the new disk: {listing}");
    assert_eq!(code(client.delete_volume("default", "extra.qcow2").await.unwrap_err()), ErrorCode::InUse);

    // A saved state expects the same disk layout: the hot-plugged disk goes back on its port.
    assert_eq!(client.save_vm("plug").await.unwrap().state, VmState::Saved);
    assert_eq!(client.restore_vm("plug").await.unwrap().state, VmState::Running);
    assert!(run_in_guest(&client, "plug", "ls /sys/block").await.contains("vdb"));
    // The boot disk sits on the root bus and cannot be unplugged while the VM runs.
    let err = client.detach_disk("plug", "default/plug.qcow2").await.unwrap_err();
    assert_eq!(code(err), ErrorCode::Unsupported);

    let vm = client.detach_disk("plug", "default/extra.qcow2").await.unwrap();
    assert_eq!(vm.spec.disks.len(), 1);
    let listing = run_in_guest(&client, "plug", "ls /sys/block").await;
    assert!(!listing.contains("vdb"), "the disk is gone from the guest: {listing}");
    client.delete_volume("default", "extra.qcow2").await.unwrap();
    client.stop_vm("plug", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}
