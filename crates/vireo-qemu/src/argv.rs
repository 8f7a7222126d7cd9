//! The QEMU command line for a VM: a pure function of the spec, golden-tested.
//!
//! Every option here was checked against QEMU 7.2 by booting the test guest.
//! Disks use the JSON form of `-blockdev` so host paths never need QEMU's
//! comma escaping; `-kernel`, `-initrd`, `-append` and `-pidfile` take their
//! argument verbatim.

use std::path::Path;

use serde::Serialize;
use vireo_api::{Accel, VmSpec};
use vireo_core::spec::effective_disk_format;

use crate::paths::RuntimePaths;

const MIB: u64 = 1024 * 1024;

/// Everything `build_argv` needs besides the spec.
pub struct LaunchConfig<'a> {
    pub spec: &'a VmSpec,
    /// The resolved accelerator: `Kvm` or `Tcg`. `Auto` is treated as `Tcg`.
    pub accel: Accel,
    pub paths: &'a RuntimePaths,
    /// Listening Unix socket QEMU inherits for QMP.
    pub qmp_fd: i32,
    /// Listening Unix socket QEMU inherits for the serial console.
    pub console_fd: i32,
}

/// The arguments of `qemu-system-x86_64` (without the binary itself).
pub fn build_argv(cfg: &LaunchConfig) -> Vec<String> {
    let spec = cfg.spec;
    let mut argv = Args::default();
    argv.push2("-name", format!("guest={},debug-threads=on", escape_opt(&spec.name)));
    machine_args(&mut argv, cfg.accel);
    argv.push2("-m", (spec.memory.bytes() / MIB).to_string());
    argv.push2("-smp", spec.vcpus.to_string());
    argv.push_all(&["-nodefaults", "-no-user-config", "-display", "none", "-vga", "none"]);
    // QEMU never needs to fork, exec or gain privileges; the seccomp filter keeps it that way.
    argv.push2("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    argv.push2("-msg", "timestamp=on");
    // Start paused: the daemon attaches QMP and the console first, then sends `cont`,
    // so no console output is ever lost.
    argv.push("-S");
    argv.push2("-pidfile", path_arg(&cfg.paths.pid_file()));
    // Both sockets are bound by the daemon and inherited: the daemon can connect
    // before QEMU runs (the listen backlog holds the connection), so there is no
    // waiting for socket files to appear.
    argv.push2("-chardev", format!("socket,id=qmp,fd={},server=on,wait=off", cfg.qmp_fd));
    argv.push2("-mon", "chardev=qmp,mode=control");
    argv.push2("-chardev", format!("socket,id=console,fd={},server=on,wait=off", cfg.console_fd));
    argv.push2("-serial", "chardev:console");
    boot_args(&mut argv, spec);
    disk_args(&mut argv, spec);
    argv.0
}

fn machine_args(argv: &mut Args, accel: Accel) {
    match accel {
        Accel::Kvm => {
            argv.push2("-machine", "q35,accel=kvm");
            argv.push2("-cpu", "host");
        }
        // TCG keeps QEMU's default CPU model: `-cpu max` boots no faster and emulates more.
        Accel::Tcg | Accel::Auto => argv.push2("-machine", "q35,accel=tcg"),
    }
}

fn boot_args(argv: &mut Args, spec: &VmSpec) {
    let Some(kernel) = &spec.boot.kernel else {
        return;
    };
    argv.push2("-kernel", path_arg(kernel));
    if let Some(initrd) = &spec.boot.initrd {
        argv.push2("-initrd", path_arg(initrd));
    }
    if let Some(cmdline) = &spec.boot.cmdline {
        argv.push2("-append", cmdline.clone());
    }
}

/// A protocol node (`fileN`) and a format node (`diskN`) per disk, then the virtio device.
fn disk_args(argv: &mut Args, spec: &VmSpec) {
    let firmware_boot = spec.boot.kernel.is_none();
    for (index, disk) in spec.disks.iter().enumerate() {
        let file_node = format!("file{index}");
        let disk_node = format!("disk{index}");
        let file = FileNode {
            driver: "file",
            filename: path_arg(&disk.path),
            node_name: &file_node,
            read_only: disk.readonly,
        };
        let format = FormatNode {
            driver: effective_disk_format(disk).as_str(),
            file: &file_node,
            node_name: &disk_node,
            read_only: disk.readonly,
        };
        argv.push2("-blockdev", to_json(&file));
        argv.push2("-blockdev", to_json(&format));
        let mut device = format!("virtio-blk-pci,drive={disk_node},id={disk_node}");
        if firmware_boot && index == 0 {
            device.push_str(",bootindex=1");
        }
        argv.push2("-device", device);
    }
}

// Structs rather than `json!` so the key order is fixed whatever serde_json features
// other crates enable (the golden files depend on it).
#[derive(Serialize)]
struct FileNode<'a> {
    driver: &'static str,
    filename: String,
    #[serde(rename = "node-name")]
    node_name: &'a str,
    #[serde(rename = "read-only")]
    read_only: bool,
}

#[derive(Serialize)]
struct FormatNode<'a> {
    driver: &'static str,
    file: &'a str,
    #[serde(rename = "node-name")]
    node_name: &'a str,
    #[serde(rename = "read-only")]
    read_only: bool,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Spec paths are validated as UTF-8 by vireo-core; lossy conversion only guards misuse.
fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// QEMU's option syntax: a literal comma is written twice.
fn escape_opt(value: &str) -> String {
    value.replace(',', ",,")
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, arg: &str) {
        self.0.push(arg.to_string());
    }

    fn push2(&mut self, option: &str, value: impl Into<String>) {
        self.0.push(option.to_string());
        self.0.push(value.into());
    }

    fn push_all(&mut self, args: &[&str]) {
        self.0.extend(args.iter().map(|a| a.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_api::{ByteSize, DiskSpec};

    fn spec() -> VmSpec {
        serde_json::from_str(r#"{"name":"a,b","memory":"64MiB","disks":[{"path":"/d/x,y.img"}]}"#).unwrap()
    }

    #[test]
    fn commas_in_names_are_escaped_and_paths_go_into_json() {
        let paths = RuntimePaths::new("/run/vireo/a".into());
        let spec = spec();
        let argv =
            build_argv(&LaunchConfig { spec: &spec, accel: Accel::Tcg, paths: &paths, qmp_fd: 3, console_fd: 4 });
        assert!(argv.contains(&"guest=a,,b,debug-threads=on".to_string()));
        assert!(argv.contains(
            &r#"{"driver":"file","filename":"/d/x,y.img","node-name":"file0","read-only":false}"#.to_string()
        ));
        assert!(argv.contains(&"virtio-blk-pci,drive=disk0,id=disk0,bootindex=1".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_auto_falls_back_to_tcg() {
        let paths = RuntimePaths::new("/r".into());
        let mut spec = spec();
        spec.memory = ByteSize::mib(2048);
        spec.disks = vec![DiskSpec { path: "/d/a.qcow2".into(), format: None, readonly: true }];
        let kvm = build_argv(&LaunchConfig { spec: &spec, accel: Accel::Kvm, paths: &paths, qmp_fd: 3, console_fd: 4 });
        assert!(kvm.windows(2).any(|w| w == ["-machine", "q35,accel=kvm"]));
        assert!(kvm.windows(2).any(|w| w == ["-cpu", "host"]));
        assert!(kvm.windows(2).any(|w| w == ["-m", "2048"]));
        let auto =
            build_argv(&LaunchConfig { spec: &spec, accel: Accel::Auto, paths: &paths, qmp_fd: 3, console_fd: 4 });
        assert!(auto.windows(2).any(|w| w == ["-machine", "q35,accel=tcg"]));
        assert!(!auto.contains(&"-cpu".to_string()));
    }
}
