//! The QEMU command line for a VM: a pure function of the spec, golden-tested.
//!
//! Every option here was checked against QEMU 7.2 by booting the test guest.
//! Disks use the JSON form of `-blockdev` so host paths never need QEMU's
//! comma escaping; `-kernel`, `-initrd`, `-append`, `-pidfile` and `-loadvm`
//! take their argument verbatim.
//!
//! Hot-plug: q35's root bus (`pcie.0`) cannot hot-plug, so a VM gets
//! `machine.hotplug_ports` `pcie-root-port`s (`hp0`…, 4 by default) at fixed addresses, and a disk
//! hot-plugged by `QmpClient::attach_disk` sits on one of them. Cold-plugged disks
//! stay on the root bus at the addresses they always had. NICs hot-plugged by
//! `QmpClient::attach_nic` share the same ports (a port holds one device).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::Serialize;
use vireo_api::{Accel, BootEntry, DiskAio, DiskCache, DiskFormat, Firmware, LegacyHardware, Vga, VmSpec};
use vireo_core::spec::path_disk_format;

use crate::paths::RuntimePaths;
use crate::probe::{QBOOT_ROM, QemuCaps};

const MIB: u64 = 1024 * 1024;

/// The QEMU id of hot-plug port `index` (`hp0`…).
pub fn hotplug_port_id(index: u32) -> String {
    format!("hp{index}")
}

/// A disk as QEMU gets it: the spec's disk with its volume resolved to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskAttachment {
    /// QEMU id of the device; its block nodes are `<id>-file` (protocol) and `<id>` (format).
    pub id: String,
    pub path: PathBuf,
    pub format: DiskFormat,
    pub readonly: bool,
    pub cache: DiskCache,
    pub aio: DiskAio,
    pub boot_index: Option<u32>,
    /// `Some(n)`: the device sits on hot-plug port `hp<n>` rather than on the root bus.
    /// `attach_disk` uses that port (or the first free one when `None`). At start,
    /// a disk that was hot-plugged must be given its port again when the VM starts
    /// from saved state (`Launch::loadvm`, `Launch::incoming`): QEMU restores device
    /// state by PCI address, so the layout must be the one the state was saved with.
    pub hotplug_port: Option<u32>,
}

impl DiskAttachment {
    /// The attachments of a spec whose disks are all given by path (volumes need the daemon to resolve them).
    pub fn from_path_disks(spec: &VmSpec) -> Vec<DiskAttachment> {
        spec.disks
            .iter()
            .enumerate()
            .filter_map(|(index, disk)| {
                let path = disk.path.clone()?;
                Some(DiskAttachment {
                    id: format!("disk{index}"),
                    format: path_disk_format(&path, disk.format),
                    path,
                    readonly: disk.readonly,
                    cache: disk.cache,
                    aio: disk.aio,
                    boot_index: disk.boot_order,
                    hotplug_port: None,
                })
            })
            .collect()
    }
}

/// What to launch: the spec, with the host-specific decisions already taken.
pub struct Launch<'a> {
    pub spec: &'a VmSpec,
    /// The resolved accelerator: `Kvm` or `Tcg`. `Auto` is treated as `Tcg`.
    pub accel: Accel,
    pub disks: Vec<DiskAttachment>,
    /// Start from this full (internal) snapshot: `-loadvm TAG`. QEMU loads it before
    /// the QMP handshake, so `spawn` takes that much longer; the VM then waits for
    /// `cont` like any other (state `prelaunch`).
    pub loadvm: Option<String>,
    /// Start from a saved state or a live migration instead of booting.
    pub incoming: Option<Incoming>,
    /// NICs, each on a TAP device the daemon opened or on user-mode networking.
    pub nics: Vec<NicAttachment>,
    /// Firmware, kernel entry and the legacy hardware left out.
    pub machine: MachinePlan,
}

/// How the guest is started and on what hardware: what [`build_argv`] follows for
/// `-machine`, `-bios` and `-kernel`. A start from saved state must use the plan the
/// state was saved with (same firmware, same devices); the plan is a function of the
/// spec, the QEMU binary and the kernel file, so planning again gives the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachinePlan {
    pub entry: BootEntry,
    /// The file QEMU loads as the kernel (`Pvh`, `Linux`); `None` for `Firmware`.
    pub kernel: Option<PathBuf>,
    /// `Seabios` or `Qboot`; never `Auto`.
    pub firmware: Firmware,
    /// q35 properties switched off (`hpet`, `i8042`, …): the legacy hardware the spec
    /// does not ask for, among what this QEMU can leave out.
    pub disabled: Vec<&'static str>,
}

impl MachinePlan {
    /// The plan for `spec` on the QEMU described by `caps`, booting the spec's kernel as given.
    pub fn new(spec: &VmSpec, caps: &QemuCaps) -> Self {
        let kernel = spec.boot.kernel.clone();
        let entry = if kernel.is_some() { BootEntry::Linux } else { BootEntry::Firmware };
        let firmware = match spec.machine.firmware {
            Firmware::Auto if kernel.is_some() && spec.display.is_none() && caps.qboot => Firmware::Qboot,
            Firmware::Auto => Firmware::Seabios,
            chosen => chosen,
        };
        let disabled = LegacyHardware::ALL
            .into_iter()
            .filter(|hardware| !spec.machine.has_legacy(*hardware))
            .map(machine_property)
            .filter(|property| caps.has_machine_property(property))
            .collect();
        MachinePlan { entry, kernel, firmware, disabled }
    }

    /// Boots `kernel` (the ELF the kernel cache unpacked from the spec's kernel) through its PVH entry.
    pub fn with_pvh_kernel(self, kernel: PathBuf) -> Self {
        MachinePlan { entry: BootEntry::Pvh, kernel: Some(kernel), ..self }
    }
}

/// The q35 machine property that switches a piece of legacy hardware on or off.
fn machine_property(hardware: LegacyHardware) -> &'static str {
    match hardware {
        LegacyHardware::Hpet => "hpet",
        LegacyHardware::Ps2 => "i8042",
        LegacyHardware::Vmport => "vmport",
        LegacyHardware::Sata => "sata",
        LegacyHardware::Smbus => "smbus",
        LegacyHardware::Smm => "smm",
    }
}

/// A NIC as QEMU gets it: a virtio-net device with id `id` and a netdev of the
/// same id, on the given backend.
#[derive(Debug)]
pub struct NicAttachment {
    /// QEMU id of the netdev and the device.
    pub id: String,
    pub mac: String,
    pub backend: NicBackend,
    /// `Some(n)`: the device sits on hot-plug port `hp<n>` rather than on the root bus;
    /// the same rules as [`DiskAttachment::hotplug_port`] (a NIC that was hot-plugged
    /// must get its port again when the VM starts from saved state).
    pub hotplug_port: Option<u32>,
}

/// Where a NIC's frames go.
#[derive(Debug)]
pub enum NicBackend {
    /// A TAP device the daemon opened (and attached to its bridge), plus
    /// vhost-net where the host has it.
    Tap { tap: OwnedFd, vhost: Option<OwnedFd> },
    /// QEMU's own user-mode NAT (`-netdev user,restrict=off`): no host device, no
    /// privileges; the guest gets 10.0.2.15 from QEMU's DHCP, 10.0.2.2 is the host.
    User,
}

/// The descriptor numbers QEMU inherits for one TAP NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicFds {
    pub tap: i32,
    pub vhost: Option<i32>,
}

impl NicAttachment {
    /// A NIC on a TAP device (and vhost-net), on the root bus.
    pub fn tap(id: impl Into<String>, mac: impl Into<String>, tap: OwnedFd, vhost: Option<OwnedFd>) -> Self {
        NicAttachment { id: id.into(), mac: mac.into(), backend: NicBackend::Tap { tap, vhost }, hotplug_port: None }
    }

    /// A NIC on QEMU's user-mode networking, on the root bus.
    pub fn user(id: impl Into<String>, mac: impl Into<String>) -> Self {
        NicAttachment { id: id.into(), mac: mac.into(), backend: NicBackend::User, hotplug_port: None }
    }

    /// The descriptors of a TAP NIC; `None` for user-mode networking.
    pub fn fds(&self) -> Option<NicFds> {
        match &self.backend {
            NicBackend::Tap { tap, vhost } => {
                Some(NicFds { tap: tap.as_raw_fd(), vhost: vhost.as_ref().map(AsRawFd::as_raw_fd) })
            }
            NicBackend::User => None,
        }
    }
}

impl<'a> Launch<'a> {
    /// A fresh start of a spec whose disks are all given by path, its kernel booted as given.
    pub fn with_path_disks(spec: &'a VmSpec, accel: Accel, caps: &QemuCaps) -> Self {
        Launch {
            spec,
            accel,
            disks: DiskAttachment::from_path_disks(spec),
            loadvm: None,
            incoming: None,
            nics: Vec::new(),
            machine: MachinePlan::new(spec, caps),
        }
    }
}

/// Where the state of a VM that does not boot comes from. Either way the
/// devices (disks, their order and hot-plug ports, memory, vCPUs) must be
/// those of the VM that sent the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A state file written by `QmpClient::save_to_file`: spawn opens it read-only
    /// and QEMU reads it as an incoming migration (`-incoming fd:N`). Wait for it
    /// with `QmpClient::wait_incoming`, then `cont`. The disks must not have been
    /// written since the save.
    StateFile(PathBuf),
    /// A live migration from another QEMU (`-incoming defer`): it listens once
    /// `QmpClient::listen_incoming` says where.
    Migration,
}

/// Everything `build_argv` needs.
pub struct LaunchConfig<'a> {
    pub launch: &'a Launch<'a>,
    pub paths: &'a RuntimePaths,
    /// Listening Unix socket QEMU inherits for QMP.
    pub qmp_fd: i32,
    /// Listening Unix socket QEMU inherits for the serial console.
    pub console_fd: i32,
    /// The state file (`Launch::incoming`), opened read-only and inherited.
    pub incoming_fd: Option<i32>,
    /// Inherited descriptors of `launch.nics`, one entry per NIC in the same order
    /// (`None` for user-mode NICs). A TAP NIC without an entry uses its own descriptors' numbers.
    pub nic_fds: Vec<Option<NicFds>>,
}

/// The arguments of `qemu-system-x86_64` (without the binary itself).
pub fn build_argv(cfg: &LaunchConfig) -> Vec<String> {
    let spec = cfg.launch.spec;
    let mut argv = Args::default();
    argv.push2("-name", format!("guest={},debug-threads=on", escape_opt(&spec.name)));
    machine_args(&mut argv, cfg.launch.accel, &cfg.launch.machine);
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
    hotplug_port_args(&mut argv, spec.machine.hotplug_ports());
    boot_args(&mut argv, spec, &cfg.launch.machine);
    disk_args(&mut argv, spec, &cfg.launch.disks);
    nic_args(&mut argv, &cfg.launch.nics, &cfg.nic_fds);
    display_args(&mut argv, spec, cfg.paths);
    saved_state_args(&mut argv, cfg);
    argv.0
}

/// `ports` hot-plug ports, as one multifunction device in slot 0x1c. Their address
/// is fixed so they never move (device state is restored by PCI address) and cannot
/// collide with the cold-plugged devices, which QEMU places from slot 1 upwards
/// (at most 16 disks: slots 1..=0x10). Chassis 1, slots 1..=8 are theirs.
///
/// Each port costs a PCI function, an ACPI hot-plug slot and a bridge window the
/// firmware reserves (4 KiB of the 64 KiB I/O space, 2 MiB each of 32-bit and
/// prefetchable MMIO). Boot time does not move measurably: four ports against none
/// is within this machine's noise under TCG (docs/benchmarks.md, section 7).
fn hotplug_port_args(argv: &mut Args, ports: u32) {
    for index in 0..ports {
        let multifunction = if index == 0 { ",multifunction=on" } else { "" };
        argv.push2(
            "-device",
            format!(
                "pcie-root-port,id={},bus=pcie.0,addr=0x1c.{index}{multifunction},chassis=1,slot={}",
                hotplug_port_id(index),
                index + 1
            ),
        );
    }
}

/// The display of a VM that has one: the video card, a USB keyboard and tablet (a
/// guest without PS/2, the default, has no other input; the tablet's absolute
/// pointer keeps the VNC viewer's cursor and the guest's in step), and a VNC server
/// on a Unix socket in the VM's private directory, never on a TCP port. `-vga none`
/// and `-display none` stay: the card is an explicit device, and VNC is not a local
/// display.
///
/// The card and the USB controller sit at fixed addresses, slots 0x1b and 0x1a:
/// above the cold-plugged disks and NICs (at most 16 + 8, slots 1..=0x18) and below
/// the hot-plug ports (0x1c), so no device moves because the VM has a display, and
/// they never move with the disks (device state is restored by PCI address). The
/// argv is a function of the spec, so a restore or a migration's destination gets the
/// same devices (with a socket of its own).
fn display_args(argv: &mut Args, spec: &VmSpec, paths: &RuntimePaths) {
    let card = match spec.display.vga {
        Vga::None => return,
        Vga::Std => "VGA",
        Vga::Virtio => "virtio-vga",
    };
    argv.push2("-device", format!("{card},id=video0,bus=pcie.0,addr=0x1b"));
    argv.push2("-device", "qemu-xhci,id=usb,bus=pcie.0,addr=0x1a");
    argv.push2("-device", "usb-kbd,id=kbd,bus=usb.0");
    argv.push2("-device", "usb-tablet,id=tablet,bus=usb.0");
    argv.push2("-vnc", format!("unix:{}", escape_opt(&path_arg(&paths.vnc_socket()))));
}

fn saved_state_args(argv: &mut Args, cfg: &LaunchConfig) {
    if let Some(tag) = &cfg.launch.loadvm {
        argv.push2("-loadvm", tag.clone());
    }
    let source = match (&cfg.launch.incoming, cfg.incoming_fd) {
        (Some(Incoming::Migration), _) => "defer".to_string(),
        (Some(Incoming::StateFile(_)), Some(fd)) => format!("fd:{fd}"),
        _ => return,
    };
    argv.push2("-incoming", source);
    // MIGRATION events on the incoming side too; `-incoming` starts before QMP
    // could set the capability. (QEMU 7.2's name for the `events` capability.)
    argv.push2("-global", "migration.x-events=on");
}

fn machine_args(argv: &mut Args, accel: Accel, plan: &MachinePlan) {
    let kvm = accel == Accel::Kvm;
    let mut machine = format!("q35,accel={}", if kvm { "kvm" } else { "tcg" });
    for property in &plan.disabled {
        machine.push_str(&format!(",{property}=off"));
    }
    argv.push2("-machine", machine);
    // TCG keeps QEMU's default CPU model: `-cpu max` boots no faster and emulates more.
    if kvm {
        argv.push2("-cpu", "host");
    }
    if plan.firmware == Firmware::Qboot {
        // QEMU finds it by name in its firmware directories (`-L help`).
        argv.push2("-bios", QBOOT_ROM);
    }
}

fn boot_args(argv: &mut Args, spec: &VmSpec, plan: &MachinePlan) {
    let Some(kernel) = &plan.kernel else {
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

/// A protocol node (`<id>-file`) and a format node (`<id>`) per disk, then the virtio device.
fn disk_args(argv: &mut Args, spec: &VmSpec, disks: &[DiskAttachment]) {
    // Without a kernel the firmware boots a disk: the first one unless boot orders say otherwise.
    let firmware_boot = spec.boot.kernel.is_none();
    let any_boot_order = disks.iter().any(|d| d.boot_index.is_some());
    for (index, disk) in disks.iter().enumerate() {
        let (file, format) = blockdev_nodes(disk);
        argv.push2("-blockdev", to_json(&file));
        argv.push2("-blockdev", to_json(&format));
        let boot_index = match (firmware_boot, any_boot_order) {
            (true, true) => disk.boot_index,
            (true, false) => (index == 0).then_some(1),
            (false, _) => None,
        };
        argv.push2("-device", device_arg(disk, boot_index));
    }
}

/// A netdev (TAP or user-mode) and a virtio-net device per NIC.
fn nic_args(argv: &mut Args, nics: &[NicAttachment], fds: &[Option<NicFds>]) {
    for (index, nic) in nics.iter().enumerate() {
        let netdev = match &nic.backend {
            NicBackend::Tap { .. } => {
                let Some(fds) = fds.get(index).copied().flatten().or_else(|| nic.fds()) else { continue };
                let mut netdev = format!("tap,id={},fd={}", nic.id, fds.tap);
                if let Some(vhost) = fds.vhost {
                    netdev.push_str(&format!(",vhost=on,vhostfd={vhost}"));
                }
                netdev
            }
            NicBackend::User => format!("user,id={},restrict=off", nic.id),
        };
        argv.push2("-netdev", netdev);
        argv.push2("-device", VirtioNetDevice::new(nic, nic.hotplug_port).to_opts());
    }
}

/// A NIC's virtio device: `-device` options at start, the arguments of QMP
/// `device_add` when hot-plugged (serialized).
#[derive(Clone, Debug, Serialize)]
pub struct VirtioNetDevice {
    pub driver: &'static str,
    pub netdev: String,
    pub id: String,
    pub mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
}

impl VirtioNetDevice {
    pub fn new(nic: &NicAttachment, hotplug_port: Option<u32>) -> Self {
        VirtioNetDevice {
            driver: "virtio-net-pci",
            netdev: nic.id.clone(),
            id: nic.id.clone(),
            mac: nic.mac.clone(),
            bus: hotplug_port.map(hotplug_port_id),
        }
    }

    /// `driver,key=value,…` for `-device`.
    pub fn to_opts(&self) -> String {
        let mut opts = format!("{},netdev={},id={},mac={}", self.driver, self.netdev, self.id, self.mac);
        if let Some(bus) = &self.bus {
            opts.push_str(&format!(",bus={bus}"));
        }
        opts
    }
}

/// The `-device` options of a disk.
pub fn device_arg(disk: &DiskAttachment, boot_index: Option<u32>) -> String {
    VirtioBlkDevice::new(disk, boot_index).to_opts()
}

/// A disk's virtio device: `-device` options at start ([`VirtioBlkDevice::to_opts`]),
/// the arguments of QMP `device_add` when hot-plugged (serialized).
#[derive(Clone, Debug, Serialize)]
pub struct VirtioBlkDevice {
    pub driver: &'static str,
    pub drive: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    #[serde(rename = "write-cache", skip_serializing_if = "Option::is_none")]
    pub write_cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootindex: Option<u32>,
}

impl VirtioBlkDevice {
    pub fn new(disk: &DiskAttachment, boot_index: Option<u32>) -> Self {
        let write_through = matches!(disk.cache, DiskCache::Writethrough | DiskCache::Directsync);
        VirtioBlkDevice {
            driver: "virtio-blk-pci",
            drive: disk.id.clone(),
            id: disk.id.clone(),
            bus: disk.hotplug_port.map(hotplug_port_id),
            write_cache: write_through.then_some("off"),
            bootindex: boot_index,
        }
    }

    /// `driver,key=value,…` for `-device`.
    pub fn to_opts(&self) -> String {
        let mut opts = format!("{},drive={},id={}", self.driver, self.drive, self.id);
        if let Some(bus) = &self.bus {
            opts.push_str(&format!(",bus={bus}"));
        }
        if let Some(write_cache) = self.write_cache {
            opts.push_str(&format!(",write-cache={write_cache}"));
        }
        if let Some(index) = self.bootindex {
            opts.push_str(&format!(",bootindex={index}"));
        }
        opts
    }
}

/// The two `-blockdev` nodes of a disk (also what QMP `blockdev-add` takes).
pub fn blockdev_nodes(disk: &DiskAttachment) -> (FileNode, FormatNode) {
    let cache = CacheFlags {
        direct: matches!(disk.cache, DiskCache::None | DiskCache::Directsync),
        no_flush: disk.cache == DiskCache::Unsafe,
    };
    let file = FileNode {
        driver: "file",
        filename: path_arg(&disk.path),
        node_name: format!("{}-file", disk.id),
        read_only: disk.readonly,
        cache,
        aio: match disk.aio {
            DiskAio::Threads => "threads",
            DiskAio::Native => "native",
            DiskAio::IoUring => "io_uring",
        },
    };
    let format = FormatNode {
        driver: disk.format.as_str(),
        file: file.node_name.clone(),
        node_name: disk.id.clone(),
        read_only: disk.readonly,
        cache,
    };
    (file, format)
}

// Structs rather than `json!` so the key order is fixed whatever serde_json features
// other crates enable (the golden files depend on it).
#[derive(Clone, Debug, Serialize)]
pub struct FileNode {
    pub driver: &'static str,
    pub filename: String,
    #[serde(rename = "node-name")]
    pub node_name: String,
    #[serde(rename = "read-only")]
    pub read_only: bool,
    pub cache: CacheFlags,
    pub aio: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct FormatNode {
    pub driver: &'static str,
    pub file: String,
    #[serde(rename = "node-name")]
    pub node_name: String,
    #[serde(rename = "read-only")]
    pub read_only: bool,
    pub cache: CacheFlags,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct CacheFlags {
    pub direct: bool,
    #[serde(rename = "no-flush")]
    pub no_flush: bool,
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

    fn argv_of(spec: &VmSpec, accel: Accel, paths: &RuntimePaths) -> Vec<String> {
        let launch = Launch::with_path_disks(spec, accel, &QemuCaps::default());
        build_argv(&LaunchConfig {
            launch: &launch,
            paths,
            qmp_fd: 3,
            console_fd: 4,
            incoming_fd: None,
            nic_fds: vec![],
        })
    }

    fn spec() -> VmSpec {
        serde_json::from_str(r#"{"name":"a,b","memory":"64MiB","disks":[{"path":"/d/x,y.img"}]}"#).unwrap()
    }

    #[test]
    fn commas_in_names_are_escaped_and_paths_go_into_json() {
        let paths = RuntimePaths::new("/run/vireo/a".into());
        let spec = spec();
        let argv = argv_of(&spec, Accel::Tcg, &paths);
        assert!(argv.contains(&"guest=a,,b,debug-threads=on".to_string()));
        assert!(argv.contains(
            &r#"{"driver":"file","filename":"/d/x,y.img","node-name":"disk0-file","read-only":false,"cache":{"direct":false,"no-flush":false},"aio":"threads"}"#.to_string()
        ));
        assert!(argv.contains(&"virtio-blk-pci,drive=disk0,id=disk0,bootindex=1".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_auto_falls_back_to_tcg() {
        let paths = RuntimePaths::new("/r".into());
        let mut spec = spec();
        spec.memory = ByteSize::mib(2048);
        spec.disks = vec![DiskSpec { path: Some("/d/a.qcow2".into()), readonly: true, ..DiskSpec::default() }];
        let kvm = argv_of(&spec, Accel::Kvm, &paths);
        assert!(kvm.windows(2).any(|w| w == ["-machine", "q35,accel=kvm"]));
        assert!(kvm.windows(2).any(|w| w == ["-cpu", "host"]));
        assert!(kvm.windows(2).any(|w| w == ["-m", "2048"]));
        let auto = argv_of(&spec, Accel::Auto, &paths);
        assert!(auto.windows(2).any(|w| w == ["-machine", "q35,accel=tcg"]));
        assert!(!auto.contains(&"-cpu".to_string()));
    }

    fn devices(argv: &[String]) -> Vec<&str> {
        argv.windows(2).filter(|w| w[0] == "-device").map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn the_spec_sets_how_many_hot_plug_ports_there_are() {
        let paths = RuntimePaths::new("/r".into());
        let ports = |count: Option<u32>| {
            let mut spec = spec();
            spec.machine.hotplug_ports = count;
            let argv = argv_of(&spec, Accel::Tcg, &paths);
            devices(&argv)
                .iter()
                .filter(|d| d.starts_with("pcie-root-port,"))
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ports(None).len(), 4);
        assert!(ports(Some(0)).is_empty());
        let eight = ports(Some(8));
        assert!(eight[0].starts_with("pcie-root-port,id=hp0,bus=pcie.0,addr=0x1c.0,multifunction=on,"));
        assert!(eight[7].starts_with("pcie-root-port,id=hp7,bus=pcie.0,addr=0x1c.7,chassis=1,slot=8"));
    }

    #[test]
    fn a_headless_vm_has_no_display_devices_and_no_vnc() {
        let argv = argv_of(&spec(), Accel::Tcg, &RuntimePaths::new("/r".into()));
        assert!(!argv.contains(&"-vnc".to_string()));
        assert!(!devices(&argv).iter().any(|d| d.contains("vga") || d.contains("VGA") || d.starts_with("usb")));
        assert!(argv.windows(2).any(|w| w == ["-vga", "none"]) && argv.windows(2).any(|w| w == ["-display", "none"]));
    }

    #[test]
    fn a_display_adds_one_card_usb_input_and_vnc_on_a_unix_socket() {
        let paths = RuntimePaths::new("/var/lib/vireo/vms/a".into());
        for (vga, card) in [
            (Vga::Std, "VGA,id=video0,bus=pcie.0,addr=0x1b"),
            (Vga::Virtio, "virtio-vga,id=video0,bus=pcie.0,addr=0x1b"),
        ] {
            let mut spec = spec();
            spec.display.vga = vga;
            let argv = argv_of(&spec, Accel::Tcg, &paths);
            let devices = devices(&argv);
            assert_eq!(devices.iter().filter(|d| d.contains("vga") || d.contains("VGA")).count(), 1, "{argv:?}");
            assert!(devices.contains(&card), "{argv:?}");
            let usb =
                ["qemu-xhci,id=usb,bus=pcie.0,addr=0x1a", "usb-kbd,id=kbd,bus=usb.0", "usb-tablet,id=tablet,bus=usb.0"];
            for input in usb {
                assert!(devices.contains(&input), "{input} missing from {argv:?}");
            }
            // No second card from QEMU's default, and never a TCP listener.
            assert!(argv.windows(2).any(|w| w == ["-vga", "none"]));
            let vnc: Vec<_> = argv.windows(2).filter(|w| w[0] == "-vnc").map(|w| w[1].as_str()).collect();
            assert_eq!(vnc, ["unix:/var/lib/vireo/vms/a/vnc.sock"]);
            // The disk keeps the address it has without a display: display devices come after it.
            let disk = devices.iter().position(|d| d.starts_with("virtio-blk-pci")).unwrap();
            let card = devices.iter().position(|d| d.starts_with(card)).unwrap();
            assert!(disk < card, "{argv:?}");
        }
    }

    #[test]
    fn commas_in_the_vnc_socket_path_are_escaped() {
        let mut spec = spec();
        spec.display.vga = Vga::Std;
        let argv = argv_of(&spec, Accel::Tcg, &RuntimePaths::new("/data,1/vms/a".into()));
        assert!(argv.windows(2).any(|w| w == ["-vnc", "unix:/data,,1/vms/a/vnc.sock"]), "{argv:?}");
    }
}
