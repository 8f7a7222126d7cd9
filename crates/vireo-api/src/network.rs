//! Managed virtual networks and the NICs that join them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a network reaches the world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A bridge of its own with DHCP, and NAT to the host's uplinks.
    #[default]
    Nat,
    /// A bridge of its own with DHCP and no way out.
    Isolated,
    /// NICs join an existing host bridge (optionally on a VLAN); addresses come from that network.
    Bridge,
}

/// Body of `POST /v1/networks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    #[serde(default)]
    pub mode: NetworkMode,
    /// IPv4 subnet of a nat or isolated network, e.g. `10.77.1.0/24` (prefix 8 to 30); chosen free if omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The existing host bridge of a `bridge` network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// VLAN tag (1-4094) for the NICs of a `bridge` network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// A DHCP lease handed out on a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub mac: String,
    pub ip: String,
    /// The VM whose NIC has this MAC, if it is one of ours.
    pub vm: Option<String>,
    pub hostname: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
}

/// A network with its host-side parts and leases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    pub name: String,
    pub mode: NetworkMode,
    /// The Linux bridge NICs are attached to.
    pub bridge: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub dhcp_start: Option<String>,
    pub dhcp_end: Option<String>,
    pub vlan: Option<u16>,
    pub leases: Vec<Lease>,
    /// VMs with a NIC on this network.
    pub used_by: Vec<String>,
}

/// The device model of a NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    #[default]
    Virtio,
}

/// A NIC of a VM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The network's name.
    pub network: String,
    /// `52:54:00:xx:xx:xx` style unicast MAC; generated once (and kept in the spec) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub model: NicModel,
}

/// A NIC as `vm show` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NicStatus {
    pub network: String,
    pub mac: String,
    /// From the network's DHCP lease, when there is one.
    pub ip: Option<String>,
}
