//! Golden files for the QEMU command line. Regenerate with
//! `VIREO_UPDATE_GOLDEN=1 cargo test -p vireo-qemu --test argv_golden` and review the diff.

use std::path::PathBuf;

use vireo_api::{Accel, VmSpec};
use vireo_qemu::{Incoming, Launch, LaunchConfig, NicAttachment, NicFds, QemuCaps, RuntimePaths, build_argv};

/// QEMU 7.2 as Debian ships it, as far as the argv is concerned.
fn qemu_7_2() -> QemuCaps {
    let properties = ["acpi", "hpet", "i8042", "pic", "pit", "sata", "smbus", "smm", "usb", "vmport"];
    QemuCaps {
        version: "QEMU emulator version 7.2.22".into(),
        machine_properties: properties.into_iter().map(String::from).collect(),
        qboot: true,
    }
}

fn check_golden(name: &str, spec_json: &str, accel: Accel) {
    check_golden_launch(name, spec_json, accel, |_| None);
}

/// `adjust` may change the launch and returns the inherited state file's fd, if any.
fn check_golden_launch(name: &str, spec_json: &str, accel: Accel, adjust: impl FnOnce(&mut Launch) -> Option<i32>) {
    let spec: VmSpec = serde_json::from_str(spec_json).expect("test spec parses");
    let paths = RuntimePaths::new(PathBuf::from("/run/vireo/vms/web1"));
    let mut launch = Launch::with_path_disks(&spec, accel, &qemu_7_2());
    let incoming_fd = adjust(&mut launch);
    // Fixed descriptor numbers for TAP NICs, whatever the test process has open.
    let nic_fds: Vec<Option<NicFds>> = (0..launch.nics.len() as i32)
        .zip(&launch.nics)
        .map(|(i, nic)| nic.fds().map(|fds| NicFds { tap: 10 + 2 * i, vhost: fds.vhost.map(|_| 11 + 2 * i) }))
        .collect();
    let argv =
        build_argv(&LaunchConfig { launch: &launch, paths: &paths, qmp_fd: 3, console_fd: 4, incoming_fd, nic_fds });
    // One argument per line: a diff shows exactly which argument changed.
    let actual = argv.join("\n") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    if std::env::var_os("VIREO_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run with VIREO_UPDATE_GOLDEN=1 to create it", path.display()));
    assert_eq!(actual, expected, "argv differs from {}; VIREO_UPDATE_GOLDEN=1 regenerates it", path.display());
}

#[test]
fn kernel_boot_with_initrd_cmdline_and_two_disks() {
    let spec = r#"{
        "name": "web1", "vcpus": 2, "memory": "512MiB", "accel": "tcg",
        "boot": {"kernel": "/var/lib/vireo/images/vmlinuz", "initrd": "/var/lib/vireo/images/initramfs.img",
                 "cmdline": "console=ttyS0 root=/dev/vda rw quiet"},
        "disks": [
            {"path": "/var/lib/vireo/disks/web1 root,v2.qcow2"},
            {"path": "/var/lib/vireo/disks/seed.img", "format": "raw", "readonly": true}
        ]
    }"#;
    check_golden("argv_kernel_boot.txt", spec, Accel::Tcg);
}

#[test]
fn disk_boot_without_kernel_on_kvm() {
    let spec = r#"{
        "name": "db-2", "memory": "2GiB",
        "disks": [{"path": "/var/lib/vireo/disks/db.raw"}, {"path": "/var/lib/vireo/disks/data.qcow2", "format": "qcow2"}]
    }"#;
    check_golden("argv_disk_boot.txt", spec, Accel::Kvm);
}

#[test]
fn restore_from_a_state_file_with_a_hot_plugged_disk() {
    let spec = r#"{
        "name": "web1", "memory": "256MiB", "accel": "tcg",
        "boot": {"kernel": "/var/lib/vireo/images/vmlinuz"},
        "disks": [{"path": "/var/lib/vireo/disks/root.qcow2"}, {"path": "/var/lib/vireo/disks/data.qcow2", "cache": "writethrough"}]
    }"#;
    check_golden_launch("argv_restore.txt", spec, Accel::Tcg, |launch| {
        launch.disks[1].hotplug_port = Some(2);
        launch.incoming = Some(Incoming::StateFile("/var/lib/vireo/vms/web1/state.save".into()));
        Some(5)
    });
}

#[test]
fn receive_a_live_migration() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "disks": [{"path": "/var/lib/vireo/disks/root.qcow2"}]}"#;
    check_golden_launch("argv_incoming_migration.txt", spec, Accel::Tcg, |launch| {
        launch.incoming = Some(Incoming::Migration);
        None
    });
}

#[test]
fn start_from_a_full_snapshot() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "disks": [{"path": "/var/lib/vireo/disks/root.qcow2"}]}"#;
    check_golden_launch("argv_loadvm.txt", spec, Accel::Tcg, |launch| {
        launch.loadvm = Some("before upgrade, v2".into());
        None
    });
}

#[test]
fn nics_on_tap_devices_with_vhost() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz"}}"#;
    check_golden_launch("argv_nics.txt", spec, Accel::Tcg, |launch| {
        // The descriptors themselves do not matter here: the argv takes its fd numbers from `nic_fds`.
        let null = || std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        for (id, mac) in [("net0", "52:54:00:12:34:56"), ("net1", "52:54:00:ab:cd:ef")] {
            launch.nics.push(NicAttachment::tap(id, mac, null(), Some(null())));
        }
        // A NIC hot-plugged before a save gets its port back; this one has no vhost-net.
        let mut plugged = NicAttachment::tap("net2", "52:54:00:00:00:02", null(), None);
        plugged.hotplug_port = Some(1);
        launch.nics.push(plugged);
        None
    });
}

#[test]
fn nic_on_user_mode_networking() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz"}}"#;
    check_golden_launch("argv_nic_user.txt", spec, Accel::Tcg, |launch| {
        launch.nics.push(NicAttachment::user("net0", "52:54:00:12:34:56"));
        None
    });
}

#[test]
fn pvh_entry_of_an_unpacked_kernel() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz", "cmdline": "console=ttyS0"}}"#;
    check_golden_launch("argv_pvh.txt", spec, Accel::Tcg, |launch| {
        launch.machine = launch.machine.clone().with_pvh_kernel("/var/lib/vireo/kernels/0f3a.vmlinux".into());
        None
    });
}

#[test]
fn legacy_hardware_and_seabios_on_request() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz"},
                   "machine": {"firmware": "seabios", "legacy": ["hpet", "ps2", "smm"], "hotplug_ports": 2}}"#;
    check_golden("argv_legacy.txt", spec, Accel::Tcg);
}

#[test]
fn an_older_qemu_keeps_what_it_cannot_leave_out() {
    let spec: VmSpec =
        serde_json::from_str(r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz"}}"#)
            .expect("test spec parses");
    let old = QemuCaps { machine_properties: ["smm", "vmport"].map(String::from).into(), ..QemuCaps::default() };
    let launch = Launch::with_path_disks(&spec, Accel::Tcg, &old);
    assert_eq!(launch.machine.disabled, ["vmport", "smm"]);
    assert_eq!(launch.machine.firmware, vireo_api::Firmware::Seabios, "no qboot.rom: SeaBIOS");
}

#[test]
fn a_display_with_vnc_on_a_unix_socket() {
    let spec = r#"{"name": "web1", "memory": "256MiB", "boot": {"kernel": "/k/vmlinuz", "cmdline": "console=ttyS0"},
                   "disks": [{"path": "/var/lib/vireo/disks/root.qcow2"}], "display": {"vga": "std"}}"#;
    check_golden_launch("argv_display.txt", spec, Accel::Tcg, |launch| {
        launch.nics.push(NicAttachment::user("net0", "52:54:00:12:34:56"));
        None
    });
}
