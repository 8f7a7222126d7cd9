//! Managed networks: the store says which exist; `vireo-net` makes the host
//! match (bridge, gateway address, dnsmasq, nftables table) and opens the TAP
//! device of every NIC a starting VM has.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, UNIX_EPOCH};

use vireo_api::{EventKind, NetworkMode, NetworkSpec, NicSpec, VmSpec};
use vireo_core::mac::MacAddr;
use vireo_core::spec::{validate_name, validate_nics};
use vireo_core::{Action, Change, DiskPorts, NetworkRecord, ObjectKind, SpecError, VmRecord, VmWrite};
use vireo_net::{
    DefaultRoute, Dnsmasq, DnsmasqConfig, Forwarding, Ipv4Subnet, Lease, Netlink, NetworkRules, VnetHdr, bridge_name,
    tap_name,
};
use vireo_qemu::NicAttachment;

use super::{VmManager, ensure, now_ms};
use crate::error::ServerError;

/// The network every root daemon has, like libvirt's `default`.
pub const DEFAULT_NETWORK: &str = "default";
/// Where subnets of networks created without one are taken from.
const AUTO_SUBNET_POOL: &str = "10.77.0.0/16";

/// A network with its leases and users.
pub struct NetworkStatus {
    pub record: NetworkRecord,
    pub leases: Vec<Lease>,
    pub used_by: Vec<String>,
}

fn field_error(field: &str, reason: impl Into<String>) -> ServerError {
    ServerError::InvalidSpec(SpecError { field: field.to_string(), reason: reason.into() })
}

fn net_error(action: String) -> impl FnOnce(vireo_net::NetError) -> ServerError {
    move |source| ServerError::Network { action, source }
}

fn subnet_of(record: &NetworkRecord) -> Option<Ipv4Subnet> {
    record.subnet.as_deref().and_then(|s| s.parse().ok())
}

/// Who has a NIC on each network.
fn network_users<'a>(vms: impl Iterator<Item = (&'a str, &'a VmSpec)>) -> HashMap<String, Vec<String>> {
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for (vm, spec) in vms {
        for nic in &spec.nics {
            let list = users.entry(nic.network.clone()).or_default();
            if !list.iter().any(|u| u == vm) {
                list.push(vm.to_string());
            }
        }
    }
    users
}

impl VmManager {
    fn dnsmasq_config(&self, record: &NetworkRecord, subnet: Ipv4Subnet) -> DnsmasqConfig {
        let mut config = DnsmasqConfig::new(&record.bridge, subnet, self.networks_dir.join(&record.name));
        if record.mode == NetworkMode::Isolated {
            config.default_route = DefaultRoute::None;
        }
        config
    }

    /// Makes the host match a network record; safe to repeat (daemon start re-runs it).
    async fn realize_network(&self, record: &NetworkRecord) -> Result<(), ServerError> {
        let netlink = Netlink::connect().map_err(net_error("connect to netlink".into()))?;
        let Some(subnet) = subnet_of(record) else {
            // A bridge-mode network lives on a host bridge someone else manages.
            return Ok(());
        };
        let what = |step: &str| format!("{step} for network {}", record.name);
        netlink.create_bridge(&record.bridge).await.map_err(net_error(what("create bridge")))?;
        netlink
            .add_address(&record.bridge, subnet.gateway(), subnet.prefix())
            .await
            .map_err(net_error(what("add gateway")))?;
        netlink.set_up(&record.bridge).await.map_err(net_error(what("bring up bridge")))?;
        let forwarding = if record.mode == NetworkMode::Nat { Forwarding::Nat } else { Forwarding::Isolated };
        let rules = NetworkRules { network: record.name.clone(), bridge: record.bridge.clone(), subnet, forwarding };
        rules.apply().await.map_err(net_error(what("install nftables rules")))?;
        if forwarding == Forwarding::Nat {
            vireo_net::enable_ip_forward().map_err(net_error(what("enable IPv4 forwarding")))?;
        }
        let config = self.dnsmasq_config(record, subnet);
        let running = Dnsmasq::adopt(&config).map_err(net_error(what("find dnsmasq")))?;
        let dnsmasq = match running {
            Some(dnsmasq) if dnsmasq.matches(&config) => dnsmasq,
            _ => Dnsmasq::spawn(&config).await.map_err(net_error(what("start dnsmasq")))?,
        };
        self.dnsmasqs.lock().unwrap_or_else(|p| p.into_inner()).insert(record.name.clone(), dnsmasq);
        Ok(())
    }

    /// Removes what `realize_network` made; each step tolerates what is already gone.
    async fn unrealize_network(&self, record: &NetworkRecord) -> Result<(), ServerError> {
        if record.subnet.is_none() {
            return Ok(());
        }
        let dnsmasq = self.dnsmasqs.lock().unwrap_or_else(|p| p.into_inner()).remove(&record.name);
        let config = subnet_of(record).map(|subnet| self.dnsmasq_config(record, subnet));
        let dnsmasq = match (dnsmasq, config) {
            (Some(dnsmasq), _) => Some(dnsmasq),
            (None, Some(config)) => Dnsmasq::adopt(&config).ok().flatten(),
            (None, None) => None,
        };
        let what = |step: &str| format!("{step} of network {}", record.name);
        if let Some(dnsmasq) = dnsmasq {
            dnsmasq.stop().await.map_err(net_error(what("stop dnsmasq")))?;
        }
        vireo_net::remove_table(&record.name).await.map_err(net_error(what("remove nftables table")))?;
        let netlink = Netlink::connect().map_err(net_error("connect to netlink".into()))?;
        netlink.delete_link(&record.bridge).await.map_err(net_error(what("delete bridge")))?;
        Ok(())
    }

    /// Re-creates every network's host side on daemon start (re-adopting running dnsmasqs).
    pub async fn restore_networks(&self) -> Result<(), ServerError> {
        for record in self.store.list_networks().await? {
            if let Err(err) = self.realize_network(&record).await {
                tracing::error!(network = %record.name, error = %err.message(), "cannot restore network");
            }
        }
        Ok(())
    }

    /// Creates the `default` NAT network on a daemon's first start.
    pub async fn ensure_default_network(&self) -> Result<(), ServerError> {
        if self.store.get_network(DEFAULT_NETWORK).await?.is_some() {
            return Ok(());
        }
        let spec = NetworkSpec {
            name: DEFAULT_NETWORK.into(),
            mode: NetworkMode::Nat,
            subnet: None,
            bridge: None,
            vlan: None,
        };
        self.create_network(spec).await.map(|_| ())
    }

    pub async fn create_network(&self, spec: NetworkSpec) -> Result<NetworkStatus, ServerError> {
        validate_name(&spec.name).map_err(|reason| field_error("name", reason))?;
        let _networks = self.network_lock.lock().await;
        if self.store.get_network(&spec.name).await?.is_some() {
            return Err(ServerError::Exists { kind: ObjectKind::Network, name: spec.name });
        }
        let record = match spec.mode {
            NetworkMode::Nat | NetworkMode::Isolated => self.plan_managed_network(&spec).await?,
            NetworkMode::Bridge => self.plan_bridge_network(&spec).await?,
        };
        if let Err(err) = self.realize_network(&record).await {
            if let Err(cleanup) = self.unrealize_network(&record).await {
                tracing::warn!(network = %record.name, error = %cleanup.message(), "cannot clean up after a failed create");
            }
            return Err(err);
        }
        let created = EventKind::NetworkCreated { network: record.name.clone() };
        if let Err(err) = self.events.apply(Change::InsertNetwork(&record), None, created).await {
            self.unrealize_network(&record).await.ok();
            return Err(err.into());
        }
        tracing::info!(network = %record.name, bridge = %record.bridge, "network created");
        Ok(NetworkStatus { record, leases: Vec::new(), used_by: Vec::new() })
    }

    /// Checks (or picks) the subnet of a nat or isolated network.
    async fn plan_managed_network(&self, spec: &NetworkSpec) -> Result<NetworkRecord, ServerError> {
        if spec.bridge.is_some() {
            return Err(field_error("bridge", "only a bridge-mode network names a host bridge"));
        }
        if spec.vlan.is_some() {
            return Err(field_error("vlan", "only a bridge-mode network takes a VLAN"));
        }
        let others: Vec<Ipv4Subnet> = self.store.list_networks().await?.iter().filter_map(subnet_of).collect();
        let netlink = Netlink::connect().map_err(net_error("connect to netlink".into()))?;
        let host = netlink.all_ipv4_addresses().await.map_err(net_error("list host addresses".into()))?;
        let taken = |subnet: &Ipv4Subnet| {
            others.iter().any(|other| other.overlaps(subnet)) || host.iter().any(|address| address.overlaps(subnet))
        };
        let subnet = match &spec.subnet {
            Some(text) => {
                let subnet: Ipv4Subnet =
                    text.parse().map_err(|e: vireo_net::NetError| field_error("subnet", e.to_string()))?;
                if taken(&subnet) {
                    return Err(field_error("subnet", format!("{subnet} overlaps another network or a host address")));
                }
                subnet
            }
            None => {
                let pool: Ipv4Subnet =
                    AUTO_SUBNET_POOL.parse().map_err(|e: vireo_net::NetError| ServerError::Internal(e.to_string()))?;
                Ipv4Subnet::first_free(pool, 24, taken)
                    .ok_or_else(|| field_error("subnet", format!("no free /24 left in {AUTO_SUBNET_POOL}; give one")))?
            }
        };
        Ok(NetworkRecord {
            name: spec.name.clone(),
            mode: spec.mode,
            bridge: bridge_name(&spec.name),
            subnet: Some(subnet.to_string()),
            vlan: None,
            created_at_ms: now_ms(),
        })
    }

    async fn plan_bridge_network(&self, spec: &NetworkSpec) -> Result<NetworkRecord, ServerError> {
        let bridge = spec
            .bridge
            .clone()
            .ok_or_else(|| field_error("bridge", "a bridge-mode network needs an existing host bridge"))?;
        if spec.subnet.is_some() {
            return Err(field_error("subnet", "a bridge-mode network's addresses come from the host's network"));
        }
        if let Some(vlan) = spec.vlan
            && !(1..=4094).contains(&vlan)
        {
            return Err(field_error("vlan", format!("must be between 1 and 4094, got {vlan}")));
        }
        let netlink = Netlink::connect().map_err(net_error("connect to netlink".into()))?;
        let link = netlink.link(&bridge).await.map_err(net_error(format!("look up {bridge}")))?;
        if link.is_none_or(|l| l.kind.as_deref() != Some("bridge")) {
            return Err(field_error("bridge", format!("{bridge} is not an existing bridge on this host")));
        }
        Ok(NetworkRecord {
            name: spec.name.clone(),
            mode: NetworkMode::Bridge,
            bridge,
            subnet: None,
            vlan: spec.vlan,
            created_at_ms: now_ms(),
        })
    }

    async fn load_network(&self, name: &str) -> Result<NetworkRecord, ServerError> {
        self.store
            .get_network(name)
            .await?
            .ok_or_else(|| ServerError::NotFound { kind: ObjectKind::Network, name: name.into() })
    }

    async fn network_status(&self, record: NetworkRecord, users: &HashMap<String, Vec<String>>) -> NetworkStatus {
        let leases = match subnet_of(&record) {
            Some(subnet) => vireo_net::read_leases(&self.dnsmasq_config(&record, subnet)).unwrap_or_default(),
            None => Vec::new(),
        };
        let used_by = users.get(&record.name).cloned().unwrap_or_default();
        NetworkStatus { record, leases, used_by }
    }

    async fn all_network_users(&self) -> Result<HashMap<String, Vec<String>>, ServerError> {
        let vms = self.store.list_vms().await?;
        Ok(network_users(vms.iter().map(|vm| (vm.name.as_str(), &vm.spec))))
    }

    pub async fn get_network(&self, name: &str) -> Result<NetworkStatus, ServerError> {
        let record = self.load_network(name).await?;
        Ok(self.network_status(record, &self.all_network_users().await?).await)
    }

    pub async fn list_networks(&self) -> Result<Vec<NetworkStatus>, ServerError> {
        let users = self.all_network_users().await?;
        let mut networks = Vec::new();
        for record in self.store.list_networks().await? {
            networks.push(self.network_status(record, &users).await);
        }
        Ok(networks)
    }

    pub async fn delete_network(&self, name: &str) -> Result<(), ServerError> {
        let _networks = self.network_lock.lock().await;
        let record = self.load_network(name).await?;
        if let Some(users) = self.all_network_users().await?.remove(name) {
            return Err(ServerError::InUse {
                what: format!("network {name}"),
                by: format!("NICs of {}", users.join(", ")),
            });
        }
        let deleted = EventKind::NetworkDeleted { network: name.to_string() };
        self.events.apply(Change::DeleteNetwork(name), None, deleted).await?;
        self.unrealize_network(&record).await?;
        tracing::info!(network = name, "network deleted");
        Ok(())
    }

    /// The VM owning each MAC.
    pub async fn vm_macs(&self) -> Result<HashMap<String, String>, ServerError> {
        let mut macs = HashMap::new();
        for vm in self.store.list_vms().await? {
            for mac in vm.spec.nics.iter().filter_map(|nic| nic.mac.clone()) {
                macs.insert(mac, vm.name.clone());
            }
        }
        Ok(macs)
    }

    /// The IPv4 address each MAC leased, over all networks (for `vm show`).
    pub async fn leased_addresses(&self) -> Result<HashMap<String, Ipv4Addr>, ServerError> {
        let mut addresses = HashMap::new();
        for record in self.store.list_networks().await? {
            if let Some(subnet) = subnet_of(&record) {
                for lease in vireo_net::read_leases(&self.dnsmasq_config(&record, subnet)).unwrap_or_default() {
                    addresses.insert(lease.mac.to_string(), lease.ip);
                }
            }
        }
        Ok(addresses)
    }

    /// Opens a TAP on the right bridge for each NIC of a starting VM (back on
    /// its recorded hot-plug port, if it had one). The daemon's copies of the
    /// descriptors close once QEMU has them, so a TAP lives exactly as long as
    /// its QEMU. A daemon that is not root cannot make TAPs: its NICs fall back
    /// to QEMU's user-mode networking.
    pub(super) async fn open_nics(
        &self,
        vm: &str,
        nics: &[NicSpec],
        ports: &DiskPorts,
    ) -> Result<Vec<NicAttachment>, ServerError> {
        if nics.is_empty() {
            return Ok(Vec::new());
        }
        let root = nix::unistd::geteuid().is_root();
        let netlink =
            if root { Some(Netlink::connect().map_err(net_error("connect to netlink".into()))?) } else { None };
        let mut attachments = Vec::with_capacity(nics.len());
        for (index, nic) in nics.iter().enumerate() {
            let network = self.load_network(&nic.network).await?;
            let mac =
                nic.mac.clone().ok_or_else(|| ServerError::Internal(format!("NIC {index} of VM {vm} has no MAC")))?;
            let id = format!("net{index}");
            let mut attachment = match &netlink {
                Some(netlink) => {
                    let tap = tap_name(vm, index);
                    let what = |step: &str| format!("{step} {tap} of VM {vm} on network {}", network.name);
                    // Without vnet headers the kernel hands the guest complete checksums: DHCP
                    // clients that read raw packets (udhcpc, dhclient) drop replies whose UDP
                    // checksum is left for offload, which libvirt papers over with an iptables
                    // CHECKSUM rule that nftables has no equivalent of. vhost-net needs the
                    // headers, so it goes too; guest throughput pays, leases arrive.
                    let fd = vireo_net::open_tap(&tap, VnetHdr::Off).map_err(net_error(what("open TAP")))?;
                    netlink.attach_port(&tap, &network.bridge).await.map_err(net_error(what("attach TAP")))?;
                    if let Some(vlan) = network.vlan {
                        netlink.set_access_vlan(&tap, vlan).await.map_err(net_error(what("tag TAP")))?;
                    }
                    NicAttachment::tap(id, mac.clone(), fd, None)
                }
                None => {
                    tracing::warn!(vm, network = %network.name, "not root: NIC uses QEMU user-mode networking instead");
                    NicAttachment::user(id, mac.clone())
                }
            };
            attachment.hotplug_port = ports.get(&nic_port_key(&mac)).copied();
            attachments.push(attachment);
        }
        Ok(attachments)
    }
}

/// Hot-plug ports of NICs share the map of disks' ports, under this key.
pub(super) fn nic_port_key(mac: &str) -> String {
    format!("nic {mac}")
}

impl VmManager {
    /// Adds a NIC: hot-plugged into a running VM (the guest sees a new ethN), and kept in the spec.
    pub async fn attach_nic(&self, vm: &str, mut nic: NicSpec) -> Result<VmRecord, ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let _networks = self.network_lock.lock().await;
        let mut record = self.load(vm).await?;
        ensure(&record, Action::ChangeNics)?;
        let index = record.spec.nics.len();
        self.assign_macs(std::slice::from_mut(&mut nic), index, vm).await?;
        let mut nics = record.spec.nics.clone();
        nics.push(nic.clone());
        validate_nics(&nics, &self.host_view().await?)?;
        if let Some(live) = slot.live() {
            let qemu = |action| move |source| ServerError::Qemu { name: vm.to_string(), action, source };
            let plugged = live.qmp.attached_nics().await.map_err(qemu("list NICs"))?;
            let id = (0..)
                .map(|n| format!("net{n}"))
                .find(|id| plugged.iter().all(|(used, _, _)| used != id))
                .unwrap_or_default();
            let mut attachment = self.open_nics(vm, std::slice::from_ref(&nic), &DiskPorts::new()).await?.remove(0);
            attachment.id = id.clone();
            live.qmp.attach_nic(attachment).await.map_err(qemu("hot-plug the NIC"))?;
            let plugged = live.qmp.attached_nics().await.map_err(qemu("list NICs"))?;
            if let (Some(port), Some(mac)) = (plugged.iter().find(|(i, _, _)| *i == id).and_then(|p| p.2), &nic.mac) {
                record.disk_ports.insert(nic_port_key(mac), port);
            }
        }
        record.spec.nics = nics;
        let attached =
            EventKind::NicAttached { mac: nic.mac.clone().unwrap_or_default(), network: nic.network.clone() };
        record.revision = self.events.write_vm(VmWrite::Update(&record), attached).await?;
        tracing::info!(vm, network = %nic.network, "NIC attached");
        Ok(record)
    }

    /// Removes the NIC with `mac`: unplugged from a running VM (the guest must let go), and dropped from the spec.
    pub async fn detach_nic(&self, vm: &str, mac: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let mut record = self.load(vm).await?;
        ensure(&record, Action::ChangeNics)?;
        let wanted =
            MacAddr::parse_nic(mac).map(|mac| mac.to_string()).map_err(|err| field_error("mac", err.reason))?;
        let Some(index) = record.spec.nics.iter().position(|n| n.mac.as_deref() == Some(wanted.as_str())) else {
            return Err(ServerError::NotFound { kind: ObjectKind::Nic, name: format!("{wanted} (on VM {vm})") });
        };
        if let Some(live) = slot.live() {
            if !record.disk_ports.contains_key(&nic_port_key(&wanted)) {
                return Err(ServerError::Unsupported(format!(
                    "NIC {wanted} was plugged in when VM '{vm}' started and cannot be unplugged while it runs; \
                     stop the VM to detach it"
                )));
            }
            let qemu = |action| move |source| ServerError::Qemu { name: vm.to_string(), action, source };
            let plugged = live.qmp.attached_nics().await.map_err(qemu("list NICs"))?;
            let id = plugged.iter().find(|(_, m, _)| m.eq_ignore_ascii_case(&wanted)).map(|(id, _, _)| id.clone());
            let id =
                id.ok_or_else(|| ServerError::Unsupported(format!("NIC {wanted} is not attached to the running VM")))?;
            live.qmp.detach_nic(&id, NIC_DETACH_TIMEOUT).await.map_err(qemu("unplug the NIC"))?;
        }
        record.spec.nics.remove(index);
        record.disk_ports.remove(&nic_port_key(&wanted));
        record.revision =
            self.events.write_vm(VmWrite::Update(&record), EventKind::NicDetached { mac: wanted.clone() }).await?;
        tracing::info!(vm, mac = %wanted, "NIC detached");
        Ok(record)
    }
}

/// How long the guest gets to let go of a NIC being unplugged.
const NIC_DETACH_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 3339 of a lease's expiry; infinite leases have none.
pub fn lease_expiry(lease: &Lease) -> String {
    lease
        .expires
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map(|since| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(since.as_secs())).to_string())
        .unwrap_or_else(|| "never".to_string())
}
