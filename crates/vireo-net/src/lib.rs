//! Vireo's host-side networking for VM networks, in the manner of libvirt's
//! default NAT network or Incus's managed bridges.
//!
//! This crate owns the pieces a managed network is made of on the host: the
//! Linux bridge and its address (over rtnetlink, [`Netlink`]), the TAP device
//! of each NIC that QEMU gets as a file descriptor ([`open_tap`],
//! [`open_vhost_net`]), the network's dnsmasq for DHCP and DNS ([`Dnsmasq`]),
//! and its nftables table for NAT and forwarding ([`NetworkRules`]); plus the
//! pure helpers they need (subnets, MACs, interface names). It must not touch
//! the store or serve HTTP: the daemon decides which networks exist and calls
//! in here to make the host match.
//!
//! Everything acts on the network namespace of the calling thread, which is
//! how the tests run each case in a namespace of its own.

pub mod dnsmasq;
mod error;
pub mod mac;
pub mod names;
pub mod netlink;
pub mod nft;
pub mod subnet;
pub mod tap;
mod tools;

pub use dnsmasq::{DefaultRoute, Dns, Dnsmasq, DnsmasqConfig, Lease, StaticLease, parse_leases, read_leases};
pub use error::NetError;
pub use mac::{MacAddr, random_mac};
pub use names::{bridge_name, tap_name};
pub use netlink::{HostAddress, Link, Netlink, PortVlan};
pub use nft::{Forwarding, NetworkRules, enable_ip_forward, remove_table, table_exists};
pub use subnet::{DhcpRange, Ipv4Subnet};
pub use tap::{VnetHdr, open_tap, open_vhost_net};
