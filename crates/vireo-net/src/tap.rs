//! TAP devices and vhost-net descriptors for QEMU.
//!
//! The daemon opens the TAP itself (`/dev/net/tun`, TUNSETIFF) and hands the
//! descriptor to QEMU (`-netdev tap,fd=N`). The TAP is not persistent: it
//! exists while a descriptor of it is open, so when QEMU (the last holder)
//! exits or crashes the kernel removes it and no stale TAP is left behind.

use std::ffi::c_int;
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Opcode, Updater, opcode};

use crate::error::NetError;
use crate::names::validate_link_name;

const TUN_DEVICE: &str = "/dev/net/tun";
const VHOST_NET_DEVICE: &str = "/dev/vhost-net";

/// `_IOW('T', 202, int)`; the kernel reads (and writes back) a `struct ifreq`.
const TUNSETIFF: Opcode = opcode::write::<c_int>(b'T', 202);
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;

/// Whether frames on the TAP carry a virtio-net header, which lets QEMU pass
/// checksum and segmentation offloads through (and is needed for vhost-net).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetHdr {
    On,
    Off,
}

/// `struct ifreq` as TUNSETIFF uses it: the name, the flags, and the rest of
/// the 40-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _union_rest: [u8; 22],
}

/// Creates TAP device `name` (IFF_TAP | IFF_NO_PI, plus IFF_VNET_HDR when asked)
/// in the calling thread's network namespace and returns its descriptor
/// (close-on-exec: the QEMU spawner clears that on the descriptors it passes).
/// The TAP is down and has no bridge yet: see [`crate::Netlink::attach_port`].
/// A name already used by another TAP that is open fails with EBUSY.
pub fn open_tap(name: &str, vnet_hdr: VnetHdr) -> Result<OwnedFd, NetError> {
    validate_link_name(name)?;
    if name.contains('%') {
        // The kernel would pick a number for %d; we want exactly this name.
        return Err(NetError::InvalidLinkName { name: name.into(), reason: "must not contain '%'".into() });
    }
    let tap_error = |source: io::Error| NetError::Tap { name: name.to_owned(), source };
    let fd = rustix::fs::open(TUN_DEVICE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|errno| tap_error(io::Error::new(errno.kind(), format!("cannot open {TUN_DEVICE}: {errno}"))))?;
    let mut request = IfReq { name: [0; 16], flags: IFF_TAP | IFF_NO_PI, _union_rest: [0; 22] };
    if vnet_hdr == VnetHdr::On {
        request.flags |= IFF_VNET_HDR;
    }
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF takes a pointer to a `struct ifreq`, which IfReq mirrors
    // (16-byte NUL-terminated name — at most 15 bytes were copied — then the
    // flags, 40 bytes in all); the kernel writes back within those 40 bytes.
    unsafe { rustix::ioctl::ioctl(&fd, Updater::<TUNSETIFF, IfReq>::new(&mut request)) }
        .map_err(|errno| tap_error(errno.into()))?;
    Ok(fd)
}

/// A descriptor of `/dev/vhost-net` for QEMU's `vhostfd=`, or None when the
/// host has none (module `vhost_net` not loaded, or a container without the
/// device): QEMU then moves packets itself, slower but correct.
pub fn open_vhost_net() -> Option<OwnedFd> {
    match rustix::fs::open(VHOST_NET_DEVICE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NODEV | rustix::io::Errno::NXIO) => None,
        Err(errno) => {
            tracing::warn!(error = %errno, "cannot open {VHOST_NET_DEVICE}; NICs run without vhost-net");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_constants_match_the_kernel_headers() {
        assert_eq!(TUNSETIFF, 0x4004_54ca);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn bad_names_fail_before_any_device_is_touched() {
        assert!(matches!(open_tap("vt%d", VnetHdr::On), Err(NetError::InvalidLinkName { .. })));
        assert!(matches!(open_tap("a-name-that-is-too-long", VnetHdr::On), Err(NetError::InvalidLinkName { .. })));
    }
}
