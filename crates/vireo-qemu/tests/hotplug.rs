//! Disk hot-plug into the running test guest (TCG).

mod common;

use std::time::{Duration, Instant};

use common::{
    Console, KillOnDrop, boot_to_prompt, caps, create_image, disk, events_until, qemu_binary, runtime_dir,
    small_guest_spec,
};
use serde::Deserialize;
use vireo_api::{Accel, DiskFormat};
use vireo_qemu::{AttachedDisk, Launch, QemuError, QemuEvent, QmpClient, QmpCommand};

const DETACH_TIMEOUT: Duration = Duration::from_secs(60);

/// The block nodes QEMU has, to check that none is left behind.
#[derive(serde::Serialize)]
struct QueryNamedBlockNodes {
    flat: bool,
}

#[derive(Deserialize)]
struct NamedNode {
    #[serde(rename = "node-name")]
    node_name: String,
}

impl QmpCommand for QueryNamedBlockNodes {
    const NAME: &'static str = "query-named-block-nodes";
    type Reply = Vec<NamedNode>;
}

async fn node_names(qmp: &QmpClient) -> Vec<String> {
    let nodes = qmp.execute(&QueryNamedBlockNodes { flat: true }).await.expect("query-named-block-nodes");
    let mut names: Vec<String> = nodes.into_iter().map(|n| n.node_name).collect();
    names.sort();
    names
}

/// The guest notices a hot-plug asynchronously: polls `ls /sys/block` until it shows `vdb` (or not).
async fn wait_for_vdb(console: &mut Console, present: bool) -> String {
    for _ in 0..100 {
        let devices = console.run("ls /sys/block").await;
        if devices.split_whitespace().any(|d| d == "vdb") == present {
            return devices;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("vdb {} in the guest", if present { "never appeared" } else { "never went away" });
}

#[tokio::test]
async fn attaches_and_detaches_a_disk_in_a_running_guest() {
    let (dir, paths) = runtime_dir();
    let root = dir.path().join("root.qcow2");
    let extra = dir.path().join("extra.raw");
    create_image(&root, "64M");
    create_image(&extra, "16M");
    let spec = small_guest_spec("hotplug", &[&root]);
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let mut console = boot_to_prompt(&mut vm).await;
    let nodes_before = node_names(&vm.qmp).await;

    let attach = Instant::now();
    vm.qmp.attach_disk(&disk("disk1", &extra, DiskFormat::Raw)).await.expect("attach");
    let attached = attach.elapsed();
    assert_eq!(wait_for_vdb(&mut console, true).await, "vda  vdb");
    eprintln!(
        "timing: attach_disk {} ms, until vdb in the guest {} ms",
        attached.as_millis(),
        attach.elapsed().as_millis()
    );
    let disks = vm.qmp.attached_disks().await.expect("attached_disks");
    let expected = [
        AttachedDisk { id: "disk0".into(), path: root.clone(), node: "disk0".into(), hotplug_port: None },
        AttachedDisk { id: "disk1".into(), path: extra.clone(), node: "disk1".into(), hotplug_port: Some(0) },
    ];
    assert_eq!(disks, expected);
    assert_eq!(vm.qmp.disk_ids().await.unwrap(), [("disk0".to_string(), root.clone()), ("disk1".to_string(), extra)]);
    assert_eq!(console.run("echo hot | dd of=/dev/vdb conv=fsync 2>/dev/null; head -c 3 /dev/vdb").await, "hot");

    // An id in use is refused before anything is added.
    let err = vm.qmp.attach_disk(&disk("disk0", &root, DiskFormat::Qcow2)).await.expect_err("duplicate id");
    assert!(matches!(&err, QemuError::DeviceExists { id } if id == "disk0"), "{err}");
    // A failing step rolls back the nodes added before it: here the format node
    // (a raw file is no qcow2), so the file node must go again.
    let not_qcow2 = dir.path().join("not.qcow2");
    std::fs::write(&not_qcow2, vec![0u8; 1 << 20]).unwrap();
    let err = vm.qmp.attach_disk(&disk("disk2", &not_qcow2, DiskFormat::Qcow2)).await.expect_err("bad image");
    assert!(err.to_string().contains("blockdev-add"), "{err}");
    assert!(!node_names(&vm.qmp).await.iter().any(|n| n.starts_with("disk2")), "disk2's nodes were left behind");

    let err = vm.qmp.detach_disk("disk0", DETACH_TIMEOUT).await.expect_err("disk0 sits on the root bus");
    assert!(matches!(&err, QemuError::NotHotUnpluggable { id } if id == "disk0"), "{err}");

    let detach = Instant::now();
    vm.qmp.detach_disk("disk1", DETACH_TIMEOUT).await.expect("detach");
    eprintln!("timing: detach_disk (guest releases the device) {} ms", detach.elapsed().as_millis());
    assert_eq!(wait_for_vdb(&mut console, false).await, "vda");
    assert_eq!(node_names(&vm.qmp).await, nodes_before);
    assert_eq!(vm.qmp.disk_ids().await.unwrap(), [("disk0".to_string(), root)]);
    // The daemon hears of it too.
    events_until(&mut vm.events, QemuEvent::DeviceDeleted { id: "disk1".into() }).await;
    // The disk that is still there works.
    assert_eq!(console.run("echo cold | dd of=/dev/vda conv=fsync 2>/dev/null; head -c 4 /dev/vda").await, "cold");
}

#[tokio::test]
async fn ports_come_from_qemu_after_reattach_and_an_unreleased_disk_can_be_detached_later() {
    let (dir, paths) = runtime_dir();
    let images: Vec<_> = (1..=2).map(|i| dir.path().join(format!("extra{i}.qcow2"))).collect();
    images.iter().for_each(|image| create_image(image, "16M"));
    let spec = small_guest_spec("hotplug-retry", &[]);
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let (pid, ticks) = (vm.pid, vm.pid_start_ticks);
    let _guard = KillOnDrop { pid, pid_start_ticks: ticks };
    let console = boot_to_prompt(&mut vm).await;
    vm.qmp.attach_disk(&disk("disk1", &images[0], DiskFormat::Qcow2)).await.expect("attach disk1");

    // A new daemon knows nothing of hp0 being taken; QEMU does.
    drop((vm, console));
    let mut vm = vireo_qemu::reattach(pid, ticks, &paths).await.expect("reattach");
    let mut second = disk("disk2", &images[1], DiskFormat::Qcow2);
    second.hotplug_port = Some(0);
    let err = vm.qmp.attach_disk(&second).await.expect_err("hp0 is taken");
    assert!(matches!(&err, QemuError::HotplugPortUnavailable { port } if port == "hp0"), "{err}");
    second.hotplug_port = None;
    vm.qmp.attach_disk(&second).await.expect("attach disk2");
    let ports: Vec<_> = vm.qmp.attached_disks().await.unwrap().into_iter().map(|d| (d.id, d.hotplug_port)).collect();
    assert_eq!(ports, [("disk1".to_string(), Some(0)), ("disk2".to_string(), Some(1))]);

    // A paused guest cannot release the device: the detach times out, the disk stays.
    vm.qmp.stop().await.expect("stop");
    let err = vm.qmp.detach_disk("disk2", Duration::from_secs(2)).await.expect_err("paused guest");
    assert!(matches!(&err, QemuError::DetachTimeout { id, .. } if id == "disk2"), "{err}");
    assert_eq!(vm.qmp.disk_ids().await.unwrap().len(), 2);
    // Once running, the guest honours the pending request; a second detach_disk
    // then only removes the block nodes.
    vm.qmp.cont().await.expect("cont");
    events_until(&mut vm.events, QemuEvent::DeviceDeleted { id: "disk2".into() }).await;
    vm.qmp.detach_disk("disk2", DETACH_TIMEOUT).await.expect("detach after the late release");
    let nodes = node_names(&vm.qmp).await;
    assert_eq!(nodes, ["disk1", "disk1-file"]);
    vm.qmp.detach_disk("disk2", DETACH_TIMEOUT).await.expect("detaching a detached disk is a no-op");
}
