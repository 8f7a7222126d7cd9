//! NIC hot-plug and user-mode networking with the real test guest (TCG). Each test
//! runs in a network namespace of its own: its TAP never exists on the host.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{Console, KillOnDrop, boot_to_prompt, caps, create_image, disk, guest_spec, qemu_binary, runtime_dir};
use nix::sched::CloneFlags;
use vireo_api::{Accel, DiskFormat};
use vireo_qemu::{Launch, NicAttachment, QemuError};

const DETACH_TIMEOUT: Duration = Duration::from_secs(60);
const MAC: &str = "52:54:00:76:69:01";

/// Runs `body` on a thread in a new network namespace, on a current-thread runtime.
fn in_private_netns<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): these tests need root");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(body());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Polls a guest command (every 100 ms, at most `tries` times) until `done` holds for its output.
async fn wait_for(console: &mut Console, command: &str, tries: u32, done: impl Fn(&str) -> bool) -> String {
    let mut output = String::new();
    for _ in 0..tries {
        output = console.run(command).await;
        if done(&output) {
            return output;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{command}` never got there; last output: {output:?}");
}

fn has_eth0(links: &str) -> bool {
    links.split_whitespace().any(|link| link == "eth0")
}

#[test]
fn attaches_and_detaches_a_tap_nic_in_a_running_guest() {
    in_private_netns(|| async {
        let (dir, paths) = runtime_dir();
        let spec = guest_spec("nic-hotplug");
        let mut vm =
            vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
                .await
                .expect("spawn");
        let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
        let mut console = boot_to_prompt(&mut vm).await;
        assert!(!has_eth0(&console.run("ls /sys/class/net").await));

        let tap = vireo_net::open_tap("vtnictest0", vireo_net::VnetHdr::On).expect("open_tap");
        vm.qmp.attach_nic(NicAttachment::tap("net0", MAC, tap, None)).await.expect("attach_nic");
        wait_for(&mut console, "ls /sys/class/net", 100, has_eth0).await;
        assert_eq!(console.run("cat /sys/class/net/eth0/address").await, MAC);
        assert_eq!(
            vm.qmp.attached_nics().await.expect("attached_nics"),
            [("net0".to_string(), MAC.to_string(), Some(0))]
        );

        // A disk hot-plugged now takes the next port, never the NIC's.
        let extra = dir.path().join("extra.raw");
        create_image(&extra, "8M");
        vm.qmp.attach_disk(&disk("disk0", &extra, DiskFormat::Raw)).await.expect("attach_disk");
        let disks = vm.qmp.attached_disks().await.expect("attached_disks");
        assert_eq!(disks.iter().map(|d| (d.id.as_str(), d.hotplug_port)).collect::<Vec<_>>(), [("disk0", Some(1))]);
        let again = vm.qmp.attach_nic(NicAttachment::user("net0", MAC)).await.unwrap_err();
        assert!(matches!(again, QemuError::DeviceExists { .. }), "{again}");

        vm.qmp.detach_nic("net0", DETACH_TIMEOUT).await.expect("detach_nic");
        wait_for(&mut console, "ls /sys/class/net", 100, |links| !has_eth0(links)).await;
        assert_eq!(vm.qmp.attached_nics().await.expect("attached_nics"), []);
        // Idempotent: the device and the netdev are gone already.
        vm.qmp.detach_nic("net0", DETACH_TIMEOUT).await.expect("second detach_nic");

        // The port is free again, and a user-mode NIC can be hot-plugged too.
        vm.qmp.attach_nic(NicAttachment::user("net1", MAC)).await.expect("attach user NIC");
        wait_for(&mut console, "ls /sys/class/net", 100, has_eth0).await;
        assert_eq!(
            vm.qmp.attached_nics().await.expect("attached_nics"),
            [("net1".to_string(), MAC.to_string(), Some(0))]
        );
        vm.qmp.quit().await.expect("quit");
    });
}

#[test]
fn a_user_mode_nic_gets_an_address_from_qemu() {
    in_private_netns(|| async {
        let (_dir, paths) = runtime_dir();
        let spec = guest_spec("nic-user");
        let mut launch = Launch::with_path_disks(&spec, Accel::Tcg, &caps().await);
        launch.nics.push(NicAttachment::user("net0", MAC));
        let mut vm = vireo_qemu::spawn(&qemu_binary(), &launch, &paths).await.expect("spawn");
        let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
        let mut console = boot_to_prompt(&mut vm).await;
        let addr = wait_for(&mut console, "ip -4 addr show eth0", 100, |out| out.contains("10.0.2.15/")).await;
        eprintln!("{addr}");
        assert_eq!(vm.qmp.attached_nics().await.expect("attached_nics"), [("net0".to_string(), MAC.to_string(), None)]);
        let err = vm.qmp.detach_nic("net0", DETACH_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, QemuError::NotHotUnpluggable { .. }), "{err}");
        vm.qmp.quit().await.expect("quit");
    });
}
