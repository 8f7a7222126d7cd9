//! Bridges, addresses and bridge ports over rtnetlink (no `ip` binary).
//!
//! A [`Netlink`] talks to the network namespace of the thread that called
//! [`Netlink::connect`]: the socket is bound to it for its whole life.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeStpState, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkBridge, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec};
use tokio::task::JoinHandle;

use crate::error::{NetError, netlink_errno, netlink_io_error};
use crate::mac::{MacAddr, QEMU_OUI};
use crate::names::{fnv1a64, validate_link_name};
use crate::subnet::Ipv4Subnet;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const ENOENT: i32 = 2;
const EOPNOTSUPP: i32 = 95;

/// An rtnetlink connection. Dropping it closes the socket.
pub struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `tun`, `veth`, …; None for a plain device (a physical NIC, `lo`).
    pub kind: Option<String>,
    /// Administratively up (IFF_UP); says nothing about carrier.
    pub up: bool,
    pub mac: Option<MacAddr>,
    /// Index of the bridge (or bond) this link is a port of.
    pub master: Option<u32>,
}

/// An IPv4 address configured on a host interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddress {
    pub link: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl HostAddress {
    /// Whether `subnet` shares addresses with the network this address is on:
    /// such a subnet would make the host route the same range two ways.
    pub fn overlaps(&self, subnet: &Ipv4Subnet) -> bool {
        let mask = crate::subnet::mask(self.prefix.min(32));
        let ours = u32::from(self.address) & mask;
        let theirs = u32::from(subnet.network());
        subnet.contains(Ipv4Addr::from(ours)) || (theirs & mask) == ours
    }
}

/// A VLAN a bridge port carries (`bridge vlan show`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    /// Untagged frames arriving on the port belong to this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port without a tag.
    pub untagged: bool,
}

/// The MAC a managed bridge gets: fixed, so it never changes as TAPs come and go
/// (a bridge with a kernel-chosen MAC takes the lowest of its ports', and every
/// guest's ARP entry for the gateway would go stale).
pub fn bridge_mac(bridge: &str) -> MacAddr {
    let [_, _, _, _, _, a, b, c] = fnv1a64(bridge.as_bytes()).to_be_bytes();
    let [x, y, z] = QEMU_OUI;
    MacAddr([x, y, z, a, b, c])
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace. Must be called
    /// inside a tokio runtime: the connection runs as a task of it.
    pub fn connect() -> Result<Netlink, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::NetlinkSocket)?;
        let connection = tokio::spawn(connection);
        Ok(Netlink { handle, connection })
    }

    /// Creates a bridge (down, STP off, forward delay 0, fixed MAC [`bridge_mac`]).
    /// An existing bridge of that name is fine and left as it is, so a restarted
    /// daemon re-adopts its bridges; an existing link of another kind is an error.
    pub async fn create_bridge(&self, name: &str) -> Result<(), NetError> {
        validate_link_name(name)?;
        let message = LinkMessageBuilder::<LinkBridge>::new(name)
            .stp_state(BridgeStpState::Disabled)
            .forward_delay(0)
            .address(bridge_mac(name).0.to_vec())
            .build();
        match self.handle.link().add(message).execute().await {
            Ok(()) => Ok(()),
            Err(err) if netlink_errno(&err) == Some(EEXIST) => self.require_bridge(name).await.map(drop),
            Err(err) => Err(NetError::netlink("create bridge", name)(err)),
        }
    }

    /// Sets the link administratively up.
    pub async fn set_up(&self, name: &str) -> Result<(), NetError> {
        validate_link_name(name)?;
        let message = LinkUnspec::new_with_name(name).up().build();
        self.set_link(name, "set up", message).await
    }

    /// Adds `address/prefix` to the link; already having exactly it is fine.
    pub async fn add_address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let link = self.require_link(name).await?;
        match self.handle.address().add(link.index, IpAddr::V4(address), prefix).execute().await {
            Ok(()) => Ok(()),
            Err(err) if netlink_errno(&err) == Some(EEXIST) => {
                let present = self.ipv4_addresses(name).await?;
                if present.iter().any(|a| a.address == address && a.prefix == prefix) {
                    Ok(())
                } else {
                    Err(NetError::netlink("add an address to", name)(err))
                }
            }
            Err(err) => Err(NetError::netlink("add an address to", name)(err)),
        }
    }

    /// Deletes the link; one that does not exist is fine (deletion is idempotent).
    pub async fn delete_link(&self, name: &str) -> Result<(), NetError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(()),
            Err(err) if netlink_errno(&err) == Some(ENODEV) => Ok(()),
            Err(err) => Err(NetError::netlink("delete", name)(err)),
        }
    }

    pub async fn link_exists(&self, name: &str) -> Result<bool, NetError> {
        Ok(self.link(name).await?.is_some())
    }

    /// The link called `name`, or None.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetError> {
        validate_link_name(name)?;
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(message) => Ok(message.map(to_link)),
            Err(err) if netlink_errno(&err) == Some(ENODEV) => Ok(None),
            Err(err) => Err(NetError::netlink("look up", name)(err)),
        }
    }

    /// Makes `port` a port of `bridge` (which must be a bridge). Does not set it up.
    pub async fn set_master(&self, port: &str, bridge: &str) -> Result<(), NetError> {
        validate_link_name(port)?;
        let bridge = self.require_bridge(bridge).await?;
        let message = LinkUnspec::new_with_name(port).controller(bridge.index).build();
        self.set_link(port, "attach to a bridge", message).await
    }

    /// Makes `port` (a TAP from [`crate::open_tap`]) a port of `bridge` and sets it up.
    pub async fn attach_port(&self, port: &str, bridge: &str) -> Result<(), NetError> {
        self.set_master(port, bridge).await?;
        self.set_up(port).await
    }

    /// Names of the ports of `bridge`, sorted.
    pub async fn bridge_ports(&self, bridge: &str) -> Result<Vec<String>, NetError> {
        let bridge = self.require_bridge(bridge).await?;
        let links = self.all_links().await?;
        let mut ports: Vec<String> =
            links.into_iter().filter(|link| link.master == Some(bridge.index)).map(|link| link.name).collect();
        ports.sort();
        Ok(ports)
    }

    /// The IPv4 addresses of one link.
    pub async fn ipv4_addresses(&self, name: &str) -> Result<Vec<HostAddress>, NetError> {
        let link = self.require_link(name).await?;
        let all = self.all_ipv4_addresses().await?;
        Ok(all.into_iter().filter(|address| address.link == link.name).collect())
    }

    /// Every IPv4 address on every link of the namespace: what a new network's
    /// subnet must not overlap ([`HostAddress::overlaps`]).
    pub async fn all_ipv4_addresses(&self) -> Result<Vec<HostAddress>, NetError> {
        let names: std::collections::HashMap<u32, String> =
            self.all_links().await?.into_iter().map(|link| (link.index, link.name)).collect();
        let mut messages = self.handle.address().get().execute();
        let mut addresses = Vec::new();
        while let Some(message) =
            messages.try_next().await.map_err(NetError::netlink("list the addresses of", "all links"))?
        {
            let address = message.attributes.iter().find_map(|attribute| match attribute {
                AddressAttribute::Local(IpAddr::V4(address)) => Some(*address),
                _ => None,
            });
            let address = address.or_else(|| {
                message.attributes.iter().find_map(|attribute| match attribute {
                    AddressAttribute::Address(IpAddr::V4(address)) => Some(*address),
                    _ => None,
                })
            });
            if let Some(address) = address {
                let link = names.get(&message.header.index).cloned().unwrap_or_default();
                addresses.push(HostAddress { link, address, prefix: message.header.prefix_len });
            }
        }
        Ok(addresses)
    }

    /// Turns VLAN filtering on for a bridge: from then on each port carries only
    /// the VLANs configured on it (by default VLAN 1, untagged).
    pub async fn enable_vlan_filtering(&self, bridge: &str) -> Result<(), NetError> {
        self.require_bridge(bridge).await?;
        let message = LinkMessageBuilder::<LinkBridge>::new(bridge).vlan_filtering(true).build();
        match self.handle.link().change(message).execute().await {
            Ok(()) => Ok(()),
            Err(err) if netlink_errno(&err) == Some(EOPNOTSUPP) => {
                Err(NetError::VlanFilteringUnsupported { bridge: bridge.to_owned() })
            }
            Err(err) => Err(NetError::netlink("turn on VLAN filtering of", bridge)(err)),
        }
    }

    /// Makes `port` an access port of VLAN `vid` (`bridge vlan add dev PORT vid VID
    /// pvid untagged`, every other VLAN removed): the guest sends and receives
    /// untagged frames, the bridge tags them. The bridge must filter VLANs
    /// ([`Netlink::enable_vlan_filtering`]) and the port must already be attached.
    pub async fn set_access_vlan(&self, port: &str, vid: u16) -> Result<(), NetError> {
        if !(1..=4094).contains(&vid) {
            return Err(NetError::InvalidVlan { vid });
        }
        let link = self.require_link(port).await?;
        let add = LinkBridgeVlan::new(link.index).vlan(vid, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged);
        self.handle.link().set(add.build()).execute().await.map_err(NetError::netlink("set the VLAN of", port))?;
        for other in self.port_vlans(port).await?.into_iter().filter(|vlan| vlan.vid != vid) {
            let remove = LinkBridgeVlan::new(link.index).vlan(other.vid, BridgeVlanInfoFlags::empty());
            match self.handle.link().del_with_message(remove.build()).execute().await {
                Ok(()) => {}
                Err(err) if netlink_errno(&err) == Some(ENOENT) => {}
                Err(err) => return Err(NetError::netlink("remove a VLAN from", port)(err)),
            }
        }
        Ok(())
    }

    /// The VLANs a bridge port carries (empty for a bridge that does not filter VLANs).
    pub async fn port_vlans(&self, port: &str) -> Result<Vec<PortVlan>, NetError> {
        let link = self.require_link(port).await?;
        // The kernel ignores a name filter on this dump: list every port, keep ours.
        let mut messages =
            self.handle.link().get().set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan]).execute();
        let mut vlans = Vec::new();
        while let Some(message) = messages.try_next().await.map_err(NetError::netlink("list the VLANs of", port))? {
            if message.header.index != link.index {
                continue;
            }
            for attribute in &message.attributes {
                let LinkAttribute::AfSpecBridge(specs) = attribute else { continue };
                vlans.extend(specs.iter().filter_map(|spec| match spec {
                    AfSpecBridge::VlanInfo(info) => Some(PortVlan {
                        vid: info.vid,
                        pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                        untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                    }),
                    _ => None,
                }));
            }
        }
        Ok(vlans)
    }

    async fn all_links(&self) -> Result<Vec<Link>, NetError> {
        let messages = self.handle.link().get().execute();
        let messages: Vec<LinkMessage> =
            messages.try_collect().await.map_err(NetError::netlink("list", "the network interfaces"))?;
        Ok(messages.into_iter().map(to_link).collect())
    }

    async fn require_link(&self, name: &str) -> Result<Link, NetError> {
        self.link(name).await?.ok_or_else(|| NetError::LinkNotFound { link: name.to_owned() })
    }

    async fn require_bridge(&self, name: &str) -> Result<Link, NetError> {
        let link = self.require_link(name).await?;
        match link.kind.as_deref() {
            Some("bridge") => Ok(link),
            kind => Err(NetError::NotABridge { link: name.to_owned(), kind: kind.unwrap_or("a plain device").into() }),
        }
    }

    async fn set_link(&self, name: &str, action: &'static str, message: LinkMessage) -> Result<(), NetError> {
        match self.handle.link().set(message).execute().await {
            Ok(()) => Ok(()),
            Err(err) if netlink_errno(&err) == Some(ENODEV) => Err(NetError::LinkNotFound { link: name.to_owned() }),
            Err(err) => Err(NetError::Netlink { action, link: name.to_owned(), source: netlink_io_error(err) }),
        }
    }
}

fn to_link(message: LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: None,
        up: message.header.flags.contains(LinkFlags::Up),
        mac: None,
        master: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Controller(index) => link.master = Some(index),
            LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_mac_is_fixed_local_unicast() {
        let mac = bridge_mac("vbr-0123456789");
        assert_eq!(mac, bridge_mac("vbr-0123456789"));
        assert_ne!(mac, bridge_mac("vbr-0123456788"));
        assert_eq!(mac.0[..3], QEMU_OUI);
        assert!(mac.is_locally_administered() && !mac.is_multicast());
    }

    #[test]
    fn host_address_overlap() {
        let address = |text: &str, prefix| HostAddress { link: "eth0".into(), address: text.parse().unwrap(), prefix };
        let subnet = |text: &str| text.parse::<Ipv4Subnet>().unwrap();
        assert!(address("10.77.1.5", 24).overlaps(&subnet("10.77.1.0/24")));
        assert!(address("10.77.1.5", 16).overlaps(&subnet("10.77.9.0/24")));
        assert!(address("10.77.1.5", 32).overlaps(&subnet("10.77.0.0/16")));
        assert!(!address("10.77.1.5", 24).overlaps(&subnet("10.77.2.0/24")));
        assert!(!address("192.168.1.10", 24).overlaps(&subnet("10.0.0.0/8")));
        assert!(address("10.1.2.3", 0).overlaps(&subnet("192.168.0.0/16")));
    }
}
