//! The one error type of the networking primitives.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid subnet '{input}': {reason}")]
    InvalidSubnet { input: String, reason: String },
    #[error("invalid interface name '{name}': {reason}")]
    InvalidLinkName { name: String, reason: String },
    #[error("network name '{name}' {reason}")]
    InvalidNetworkName { name: String, reason: String },
    #[error("VLAN {vid} is out of range 1-4094")]
    InvalidVlan { vid: u16 },
    #[error("this kernel cannot filter VLANs on bridge {bridge} (it lacks CONFIG_BRIDGE_VLAN_FILTERING)")]
    VlanFilteringUnsupported { bridge: String },
    #[error("cannot open a netlink socket")]
    NetlinkSocket(#[source] io::Error),
    /// A netlink request failed; `source` carries the kernel's errno where it gave one.
    #[error("cannot {action} {link}")]
    Netlink {
        action: &'static str,
        link: String,
        #[source]
        source: io::Error,
    },
    #[error("network interface {link} does not exist")]
    LinkNotFound { link: String },
    #[error("network interface {link} exists and is not a bridge (it is {kind})")]
    NotABridge { link: String, kind: String },
    #[error("cannot create TAP device {name}")]
    Tap {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{binary} not found ({reason}); apt-get install {package}")]
    BinaryNotFound { binary: &'static str, package: &'static str, reason: String },
    #[error("cannot run {}", .binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid dnsmasq configuration for {interface}: {reason}")]
    DnsmasqConfig { interface: String, reason: String },
    /// dnsmasq's launcher exited with an error; `message` is what it said (or its exit status).
    #[error("dnsmasq for {interface} did not start: {message}")]
    DnsmasqStart { interface: String, message: String },
    #[error("pid file {} of dnsmasq is unusable: {reason}", .path.display())]
    PidFile { path: PathBuf, reason: String },
    #[error("cannot signal dnsmasq (pid {pid})")]
    Signal {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch dnsmasq (pid {pid})")]
    Watch {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("dnsmasq (pid {pid}) did not exit after SIGKILL")]
    StillRunning { pid: u32 },
    /// nft ran and failed; `stderr` is what it said (or its exit status when it said nothing).
    #[error("nft could not {action}: {stderr}")]
    Nft { action: String, stderr: String },
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl NetError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> NetError {
        let path = path.into();
        move |source| NetError::Io { action, path, source }
    }

    pub(crate) fn netlink(action: &'static str, link: &str) -> impl FnOnce(rtnetlink::Error) -> NetError {
        let link = link.to_owned();
        move |err| NetError::Netlink { action, link, source: netlink_io_error(err) }
    }
}

/// The kernel's errno of a failed netlink request as an `io::Error` (`File exists (os error 17)`),
/// so the message says what went wrong instead of dumping the netlink message.
pub(crate) fn netlink_io_error(err: rtnetlink::Error) -> io::Error {
    match netlink_errno(&err) {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::other(err.to_string()),
    }
}

/// The positive errno of a netlink error reply, if that is what `err` is.
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}
