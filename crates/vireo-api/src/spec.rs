//! The declarative VM spec: what a user writes in `spec.toml` or POSTs as JSON.
//!
//! Unknown keys are refused (`deny_unknown_fields`) so a typo never silently
//! falls back to a default. Semantic checks live in `vireo-core`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::size::ByteSize;

/// A virtual machine as the user declares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Unique name: 1-63 characters, letters, digits, `-` and `_`, starting with a letter or digit.
    #[schema(example = "web1")]
    pub name: String,
    /// Number of virtual CPUs (1-255).
    #[serde(default = "default_vcpus")]
    #[schema(default = 1, minimum = 1, maximum = 255)]
    pub vcpus: u32,
    /// Guest memory (16MiB to 1TiB, a whole number of MiB).
    pub memory: ByteSize,
    /// Which accelerator runs the guest.
    #[serde(default)]
    pub accel: Accel,
    /// How the guest boots: a kernel given directly, or firmware booting the first disk.
    #[serde(default)]
    pub boot: BootSpec,
    /// Disk images attached as virtio block devices, in order.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// Network interfaces, in order (the guest's eth0, eth1, ...).
    #[serde(default)]
    pub nics: Vec<crate::network::NicSpec>,
    /// The serial console.
    #[serde(default)]
    pub console: ConsoleSpec,
    /// The virtual hardware around the guest: firmware and legacy devices.
    #[serde(default, skip_serializing_if = "MachineSpec::is_default")]
    pub machine: MachineSpec,
    /// A graphical display: a video card, USB keyboard and tablet, and a VNC server
    /// reached through `GET /v1/vms/{name}/vnc`. None by default (serial console only).
    #[serde(default, skip_serializing_if = "DisplaySpec::is_none")]
    pub display: DisplaySpec,
}

fn default_vcpus() -> u32 {
    1
}

/// `auto` picks KVM where the host has hardware KVM able to run ordinary guests, TCG otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Direct kernel boot when `kernel` is set; otherwise the default firmware boots the first disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Absolute path of a kernel image (bzImage) on the host.
    #[schema(value_type = Option<String>)]
    pub kernel: Option<PathBuf>,
    /// Absolute path of an initramfs; needs `kernel`.
    #[schema(value_type = Option<String>)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line; needs `kernel`.
    pub cmdline: Option<String>,
    /// Boot the kernel through its PVH entry when it has one: a bzImage whose payload is
    /// an ELF with a PVH note is unpacked once (cached by content hash) and QEMU loads the
    /// ELF, skipping the kernel's self-decompression. `false` boots the kernel as given.
    /// A VM with a display boots the kernel as given anyway: the PVH entry tells the
    /// kernel nothing about the screen, so its console could not show there.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[schema(default = true)]
    pub pvh: bool,
}

impl Default for BootSpec {
    fn default() -> Self {
        BootSpec { kernel: None, initrd: None, cmdline: None, pvh: true }
    }
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Hot-plug ports a VM gets unless its spec says otherwise.
pub const DEFAULT_HOTPLUG_PORTS: u32 = 4;
/// At most this many hot-plug ports: the functions of one PCI slot.
pub const MAX_HOTPLUG_PORTS: u32 = 8;

/// Firmware, legacy hardware and hot-plug ports. The defaults are lean: no
/// legacy device a modern Linux guest does not use, and the fastest firmware for
/// the boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// Which firmware starts the guest.
    #[serde(default)]
    pub firmware: Firmware,
    /// Legacy hardware to give the guest after all (none by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy: Vec<LegacyHardware>,
    /// Empty PCIe root ports for disks and NICs attached while the VM runs, 0 to 8
    /// (default 4). A VM that never gets a device hot-plugged can do without them:
    /// fewer devices for the guest to reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 8)]
    pub hotplug_ports: Option<u32>,
}

impl MachineSpec {
    pub fn is_default(&self) -> bool {
        *self == MachineSpec::default()
    }

    /// The hot-plug ports the VM gets.
    pub fn hotplug_ports(&self) -> u32 {
        self.hotplug_ports.unwrap_or(DEFAULT_HOTPLUG_PORTS)
    }

    pub fn has_legacy(&self, hardware: LegacyHardware) -> bool {
        self.legacy.contains(&hardware)
    }
}

/// `auto`: qboot for a kernel booted directly (it does only what a kernel needs),
/// SeaBIOS when the guest boots from a disk or has a display (qboot sets up no screen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    #[default]
    Auto,
    Seabios,
    /// Only with `boot.kernel`: qboot boots no disks.
    Qboot,
}

impl Firmware {
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Auto => "auto",
            Firmware::Seabios => "seabios",
            Firmware::Qboot => "qboot",
        }
    }
}

/// Legacy PC hardware that Vireo leaves out unless the spec asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LegacyHardware {
    /// The HPET timer (Linux uses the TSC and the ACPI PM timer without it).
    Hpet,
    /// The i8042 PS/2 keyboard and mouse controller.
    Ps2,
    /// VMware's I/O port (the vmmouse backdoor).
    Vmport,
    /// The ICH9 AHCI controller (SATA disks and CD-ROMs; Vireo's disks are virtio).
    Sata,
    /// The ICH9 SMBus controller.
    Smbus,
    /// System management mode (needed only by UEFI firmware with Secure Boot).
    Smm,
}

impl LegacyHardware {
    pub const ALL: [LegacyHardware; 6] = [
        LegacyHardware::Hpet,
        LegacyHardware::Ps2,
        LegacyHardware::Vmport,
        LegacyHardware::Sata,
        LegacyHardware::Smbus,
        LegacyHardware::Smm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LegacyHardware::Hpet => "hpet",
            LegacyHardware::Ps2 => "ps2",
            LegacyHardware::Vmport => "vmport",
            LegacyHardware::Sata => "sata",
            LegacyHardware::Smbus => "smbus",
            LegacyHardware::Smm => "smm",
        }
    }
}

/// The VM's graphical display.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplaySpec {
    /// The video card; `none` leaves the VM headless.
    #[serde(default)]
    pub vga: Vga,
}

impl DisplaySpec {
    /// Whether the VM is headless (no video card, no VNC server).
    pub fn is_none(&self) -> bool {
        self.vga == Vga::None
    }
}

/// The video card: `none` (headless, the default), `std` (the standard VGA card) or
/// `virtio` (virtio-gpu with VGA compatibility). SeaBIOS shows its text screen on
/// either (qboot sets up no display); a Linux guest drives them with `bochs-drm` and
/// `virtio-gpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vga {
    /// No display: the VM has only its serial console.
    #[default]
    None,
    /// The standard VGA card (Bochs VBE).
    Std,
    /// virtio-gpu with VGA compatibility.
    Virtio,
}

impl Vga {
    pub fn as_str(self) -> &'static str {
        match self {
            Vga::None => "none",
            Vga::Std => "std",
            Vga::Virtio => "virtio",
        }
    }
}

/// A disk of the VM: a volume of a storage pool, or an image file given by path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// A volume as `POOL/NAME`; give either this or `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Absolute path of an image file on the host; give either this or `volume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// Image format of a `path` disk; when omitted, `qcow2` for `*.qcow2` files and `raw` otherwise.
    /// A volume's format is the volume's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DiskFormat>,
    /// Attach the disk read-only.
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub bus: DiskBus,
    #[serde(default)]
    pub cache: DiskCache,
    #[serde(default)]
    pub aio: DiskAio,
    /// Firmware boot priority (1 boots first); disks without one come after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_order: Option<u32>,
}

/// How the guest sees the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// virtio-blk: fastest, and hot-pluggable.
    #[default]
    Virtio,
}

/// Host page-cache use, as QEMU and libvirt name the modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    /// Host page cache, flushes honoured (QEMU's default).
    #[default]
    Writeback,
    /// Bypass the host page cache (O_DIRECT); needs a filesystem that supports it.
    None,
    /// Host page cache, every write synchronous.
    Writethrough,
    /// O_DIRECT and every write synchronous.
    Directsync,
    /// Flushes ignored: fast and unsafe on host crash.
    Unsafe,
}

/// How QEMU submits disk I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskAio {
    #[default]
    Threads,
    /// Linux AIO; needs `cache = "none"` or `"directsync"`.
    Native,
    IoUring,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The serial console (the guest's ttyS0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSpec {
    /// How much console output the daemon keeps for `vm logs` (4KiB to 64MiB).
    #[serde(default = "default_console_log_size")]
    pub log_size: ByteSize,
}

fn default_console_log_size() -> ByteSize {
    ByteSize::mib(1)
}

impl Default for ConsoleSpec {
    fn default() -> Self {
        ConsoleSpec { log_size: default_console_log_size() }
    }
}
