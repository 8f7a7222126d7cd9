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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
