//! Disk and NIC hot-plug: adding a disk or NIC to a running VM and removing it again.
//!
//! A hot-plugged disk gets the same two block nodes as a cold-plugged one
//! (`argv::blockdev_nodes`) and its virtio device goes on a free hot-plug port.
//! Which ports are free, and which disks exist, is always asked of QEMU, so it
//! holds after a daemon restart. Operations on one VM must not run concurrently
//! (two attaches could pick the same port); the daemon serialises them.
//!
//! QEMU 7.2's q35 hot-plugs behind `pcie-root-port` through ACPI (not native
//! PCIe hot-plug, which would add pciehp's 5 s attention-button delay): under TCG
//! the test guest sees a new disk within ~0.1 s and releases one within ~0.1 s
//! of `device_del`. A guest that does not run (paused) or does not cooperate
//! never releases it; the request stays pending in QEMU and is honoured when the
//! guest gets to it, which then shows as a late
//! [`QemuEvent::DeviceDeleted`](crate::QemuEvent::DeviceDeleted).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use vireo_api::MAX_HOTPLUG_PORTS;

use crate::argv::{
    DiskAttachment, NicAttachment, NicBackend, VirtioBlkDevice, VirtioNetDevice, blockdev_nodes, hotplug_port_id,
};
use crate::error::QemuError;
use crate::qmp::{NextEvent, QmpClient, QmpCommand, qmp_command};

/// A disk attached to the VM, as QEMU reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedDisk {
    /// The device id (`DiskAttachment::id`).
    pub id: String,
    /// The image file.
    pub path: PathBuf,
    /// The format node (the top of the device's block graph).
    pub node: String,
    /// `Some(n)` when the device sits on hot-plug port `hp<n>`.
    pub hotplug_port: Option<u32>,
}

impl QmpClient {
    /// Hot-plugs a disk: its file and format nodes, then its virtio device on the
    /// hot-plug port `disk.hotplug_port` or else the first free one, with id `disk.id`.
    /// Whatever it added is removed again when a later step fails.
    pub async fn attach_disk(&self, disk: &DiskAttachment) -> Result<(), QemuError> {
        let layout = self.pci_layout().await?;
        if layout.has_device(&disk.id) {
            return Err(QemuError::DeviceExists { id: disk.id.clone() });
        }
        let port = layout.pick_port(&disk.id, disk.hotplug_port)?;
        let (file, format) = blockdev_nodes(disk);
        self.execute(&BlockdevAdd(&file)).await?;
        if let Err(err) = self.execute(&BlockdevAdd(&format)).await {
            self.roll_back(&[&file.node_name]).await;
            return Err(err);
        }
        let device = VirtioBlkDevice { bus: Some(port), ..VirtioBlkDevice::new(disk, None) };
        if let Err(err) = self.execute(&DeviceAdd(&device)).await {
            self.roll_back(&[&format.node_name, &file.node_name]).await;
            return Err(err);
        }
        Ok(())
    }

    /// Hot-unplugs disk `id`: asks the guest to release the device, waits (at most
    /// `timeout`) until QEMU reports it deleted, then removes its block nodes.
    /// On `DetachTimeout` the device is still attached. Calling it again is safe:
    /// for a device that is already gone it only removes the nodes that are left.
    /// A disk on the root bus (cold-plugged, `hotplug_port: None` at start) cannot
    /// be unplugged: `NotHotUnpluggable`.
    pub async fn detach_disk(&self, id: &str, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        let layout = self.pci_layout().await?;
        if layout.has_device(id) && layout.port_of(id).is_none() {
            return Err(QemuError::NotHotUnpluggable { id: id.to_string() });
        }
        self.unplug_device(id, deadline, timeout).await?;
        self.remove_nodes(id).await
    }

    /// `device_del`, then waits until `deadline` for QEMU to report the device
    /// deleted. A device that does not exist (any more) counts as deleted.
    async fn unplug_device(&self, id: &str, deadline: Instant, timeout: Duration) -> Result<(), QemuError> {
        let mut events = self.subscribe()?;
        match self.execute(&DeviceDel { id }).await {
            Ok(_) => {}
            Err(QemuError::QmpCommand { class, .. }) if class == "DeviceNotFound" => return Ok(()),
            Err(err) => return Err(err),
        }
        loop {
            match events.next(deadline).await? {
                NextEvent::Event(event) if event.name == "DEVICE_DELETED" && event.data_str("device") == Some(id) => {
                    break;
                }
                NextEvent::Event(_) => {}
                NextEvent::Missed if !self.pci_layout().await?.has_device(id) => break,
                NextEvent::Missed => {}
                NextEvent::TimedOut => return Err(QemuError::DetachTimeout { id: id.to_string(), timeout }),
            }
        }
        Ok(())
    }

    /// The VM's disks: (device id, image file), e.g. to find the device that holds a file.
    pub async fn disk_ids(&self) -> Result<Vec<(String, PathBuf)>, QemuError> {
        Ok(self.attached_disks().await?.into_iter().map(|disk| (disk.id, disk.path)).collect())
    }

    /// The VM's disks with their nodes and hot-plug ports.
    pub async fn attached_disks(&self) -> Result<Vec<AttachedDisk>, QemuError> {
        let blocks = self.execute(&QueryBlock {}).await?;
        let layout = self.pci_layout().await?;
        let disks = blocks
            .into_iter()
            .filter_map(|block| {
                let id = device_id(block.qdev.as_deref()?)?.to_string();
                let inserted = block.inserted?;
                let hotplug_port = layout.port_of(&id);
                Some(AttachedDisk { id, path: PathBuf::from(inserted.file), node: inserted.node_name, hotplug_port })
            })
            .collect();
        Ok(disks)
    }

    /// Hot-plugs a NIC: its netdev (for a TAP, the descriptors go to QEMU first with
    /// `getfd` as `<id>-tap` and `<id>-vhost`), then its virtio-net device on the
    /// hot-plug port `nic.hotplug_port` or else the first free one. Whatever it
    /// added is removed again when a later step fails. QEMU holds its own copies
    /// of the descriptors once this returns; `nic`'s are closed when it is dropped.
    pub async fn attach_nic(&self, nic: NicAttachment) -> Result<(), QemuError> {
        let layout = self.pci_layout().await?;
        if layout.has_device(&nic.id) {
            return Err(QemuError::DeviceExists { id: nic.id.clone() });
        }
        let port = layout.pick_port(&nic.id, nic.hotplug_port)?;
        let (tap_name, vhost_name) = (tap_fdname(&nic.id), vhost_fdname(&nic.id));
        let netdev = match &nic.backend {
            NicBackend::Tap { tap, vhost } => {
                self.execute_with_fd(&GetFd { fdname: &tap_name }, Some(tap.as_fd())).await?;
                if let Some(vhost) = vhost
                    && let Err(err) = self.execute_with_fd(&GetFd { fdname: &vhost_name }, Some(vhost.as_fd())).await
                {
                    self.close_fds(&[&tap_name]).await;
                    return Err(err);
                }
                NetdevAdd {
                    kind: "tap",
                    id: &nic.id,
                    fd: Some(&tap_name),
                    vhost: vhost.is_some().then_some(true),
                    vhostfd: vhost.is_some().then_some(vhost_name.as_str()),
                    restrict: None,
                }
            }
            NicBackend::User => {
                NetdevAdd { kind: "user", id: &nic.id, fd: None, vhost: None, vhostfd: None, restrict: Some(false) }
            }
        };
        if let Err(err) = self.execute(&netdev).await {
            // netdev_add takes the named descriptors; any it did not get to are closed here.
            self.close_fds(&[&tap_name, &vhost_name]).await;
            return Err(err);
        }
        let device = VirtioNetDevice { bus: Some(port), ..VirtioNetDevice::new(&nic, None) };
        if let Err(err) = self.execute(&DeviceAdd(&device)).await {
            if let Err(del) = self.execute(&NetdevDel { id: &nic.id }).await {
                tracing::warn!(id = nic.id, error = %del, "cannot remove netdev after a failed hot-plug");
            }
            return Err(err);
        }
        Ok(())
    }

    /// Hot-unplugs NIC `id`: asks the guest to release the device, waits (at most
    /// `timeout`) until QEMU reports it deleted, then removes its netdev (which
    /// closes QEMU's TAP descriptor: a non-persistent TAP then disappears). On
    /// `DetachTimeout` the device is still attached. Calling it again is safe. A NIC
    /// on the root bus (one the VM was started with, `hotplug_port: None`) cannot be
    /// unplugged: `NotHotUnpluggable`.
    pub async fn detach_nic(&self, id: &str, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        let layout = self.pci_layout().await?;
        if layout.has_device(id) && layout.port_of(id).is_none() {
            return Err(QemuError::NotHotUnpluggable { id: id.to_string() });
        }
        self.unplug_device(id, deadline, timeout).await?;
        match self.execute(&NetdevDel { id }).await {
            Ok(_) => Ok(()),
            // Already gone (an earlier call got this far).
            Err(QemuError::QmpCommand { class, .. }) if class == "DeviceNotFound" => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The VM's NICs as QEMU has them: (device id, MAC, hot-plug port), in PCI order.
    /// Only devices with an id (every NIC Vireo adds has one).
    pub async fn attached_nics(&self) -> Result<Vec<(String, String, Option<u32>)>, QemuError> {
        let layout = self.pci_layout().await?;
        let mut nics = Vec::with_capacity(layout.nics.len());
        for id in &layout.nics {
            let path = format!("/machine/peripheral/{id}");
            let mac = self.execute(&QomGet { path: &path, property: "mac" }).await?;
            nics.push((id.clone(), mac, layout.port_of(id)));
        }
        Ok(nics)
    }

    /// Best effort: closes descriptors passed with `getfd` that nothing took.
    async fn close_fds(&self, names: &[&str]) {
        for name in names {
            if let Err(err) = self.execute(&CloseFd { fdname: name }).await {
                tracing::debug!(fdname = name, error = %err, "closefd after a failed hot-plug");
            }
        }
    }

    /// Deletes the format node `id` and the file node `id-file`, those that exist.
    async fn remove_nodes(&self, id: &str) -> Result<(), QemuError> {
        let existing = self.execute(&QueryNamedBlockNodes { flat: true }).await?;
        let file_node = format!("{id}-file");
        for node in [id, file_node.as_str()] {
            if existing.iter().any(|n| n.node_name == node) {
                self.execute(&BlockdevDel { node_name: node }).await?;
            }
        }
        Ok(())
    }

    /// Best effort: the error that made us roll back is the one to report.
    async fn roll_back(&self, nodes: &[&str]) {
        for node in nodes {
            if let Err(err) = self.execute(&BlockdevDel { node_name: node }).await {
                tracing::warn!(node, error = %err, "cannot remove block node after a failed hot-plug");
            }
        }
    }

    async fn pci_layout(&self) -> Result<PciLayout, QemuError> {
        Ok(PciLayout::new(&self.execute(&QueryPci {}).await?))
    }
}

/// QEMU ids of a NIC's descriptors passed with `getfd`.
fn tap_fdname(id: &str) -> String {
    format!("{id}-tap")
}

fn vhost_fdname(id: &str) -> String {
    format!("{id}-vhost")
}

/// `/machine/peripheral/<id>/virtio-backend` → `<id>`; devices without an id live
/// under `/machine/peripheral-anon` and have none.
pub(crate) fn device_id(qdev: &str) -> Option<&str> {
    let Some(rest) = qdev.strip_prefix('/') else {
        return (!qdev.is_empty()).then_some(qdev);
    };
    let id = rest.strip_prefix("machine/peripheral/")?.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Which device ids exist, and what sits on each hot-plug port.
struct PciLayout {
    ids: Vec<String>,
    /// Ids of the network controllers (PCI class 0x0200).
    nics: Vec<String>,
    /// (port id, ids of the devices on it), for the hot-plug ports QEMU has.
    ports: Vec<(String, Vec<String>)>,
}

impl PciLayout {
    fn new(buses: &[PciBusInfo]) -> Self {
        let mut layout = PciLayout { ids: Vec::new(), nics: Vec::new(), ports: Vec::new() };
        for bus in buses {
            layout.add(&bus.devices);
        }
        let order = |port: &str| (0..MAX_HOTPLUG_PORTS).position(|i| hotplug_port_id(i) == port);
        layout.ports.retain(|(port, _)| order(port).is_some());
        layout.ports.sort_by_key(|(port, _)| order(port));
        layout
    }

    fn add(&mut self, devices: &[PciDeviceInfo]) {
        for device in devices {
            if !device.qdev_id.is_empty() {
                self.ids.push(device.qdev_id.clone());
                if device.class_info.as_ref().is_some_and(|info| info.class == PCI_CLASS_ETHERNET) {
                    self.nics.push(device.qdev_id.clone());
                }
            }
            if let Some(bridge) = &device.pci_bridge {
                let children = bridge.devices.iter().map(|d| d.qdev_id.clone()).collect();
                self.ports.push((device.qdev_id.clone(), children));
                self.add(&bridge.devices);
            }
        }
    }

    fn has_device(&self, id: &str) -> bool {
        self.ids.iter().any(|known| known == id)
    }

    fn free_ports(&self) -> Vec<String> {
        self.ports.iter().filter(|(_, devices)| devices.is_empty()).map(|(port, _)| port.clone()).collect()
    }

    /// Hot-plug port `wanted` if it is free, else the first free one. Disks and NICs
    /// both pick here, from what QEMU reports, so they never share a port.
    fn pick_port(&self, id: &str, wanted: Option<u32>) -> Result<String, QemuError> {
        match wanted {
            Some(index) => {
                let port = hotplug_port_id(index);
                if !self.free_ports().contains(&port) {
                    return Err(QemuError::HotplugPortUnavailable { port });
                }
                Ok(port)
            }
            None => self
                .free_ports()
                .into_iter()
                .next()
                .ok_or_else(|| QemuError::NoFreeHotplugPort { id: id.to_string(), ports: self.ports.len() }),
        }
    }

    fn port_of(&self, id: &str) -> Option<u32> {
        let (port, _) = self.ports.iter().find(|(_, devices)| devices.iter().any(|d| d == id))?;
        (0..MAX_HOTPLUG_PORTS).find(|&i| hotplug_port_id(i) == *port)
    }
}

/// `blockdev-add` of a node from `argv::blockdev_nodes`: the same JSON as `-blockdev`.
#[derive(Serialize)]
#[serde(transparent)]
struct BlockdevAdd<'a, T: Serialize>(&'a T);

impl<T: Serialize> QmpCommand for BlockdevAdd<'_, T> {
    const NAME: &'static str = "blockdev-add";
    type Reply = IgnoredAny;
}

qmp_command! {
    pub(crate) struct BlockdevDel<'a> {
        #[serde(rename = "node-name")]
        pub(crate) node_name: &'a str,
    } => "blockdev-del" -> IgnoredAny
}

#[derive(Serialize)]
#[serde(transparent)]
struct DeviceAdd<'a, T: Serialize>(&'a T);

impl<T: Serialize> QmpCommand for DeviceAdd<'_, T> {
    const NAME: &'static str = "device_add";
    type Reply = IgnoredAny;
}

qmp_command! {
    /// `getfd`: the descriptor comes with the command (SCM_RIGHTS).
    pub(crate) struct GetFd<'a> {
        pub(crate) fdname: &'a str,
    } => "getfd" -> IgnoredAny
}

qmp_command! {
    struct CloseFd<'a> {
        fdname: &'a str,
    } => "closefd" -> IgnoredAny
}

qmp_command! {
    struct NetdevAdd<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vhost: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vhostfd: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        restrict: Option<bool>,
    } => "netdev_add" -> IgnoredAny
}

qmp_command! {
    struct NetdevDel<'a> {
        id: &'a str,
    } => "netdev_del" -> IgnoredAny
}

qmp_command! {
    struct QomGet<'a> {
        path: &'a str,
        property: &'a str,
    } => "qom-get" -> String
}

qmp_command! {
    struct DeviceDel<'a> {
        id: &'a str,
    } => "device_del" -> IgnoredAny
}

qmp_command! {
    struct QueryPci {} => "query-pci" -> Vec<PciBusInfo>
}

#[derive(Deserialize)]
struct PciBusInfo {
    #[serde(default)]
    devices: Vec<PciDeviceInfo>,
}

#[derive(Deserialize)]
struct PciDeviceInfo {
    #[serde(default)]
    qdev_id: String,
    class_info: Option<PciClassInfo>,
    pci_bridge: Option<PciBridgeInfo>,
}

/// PCI class code (base class and subclass) of an Ethernet controller.
const PCI_CLASS_ETHERNET: u32 = 0x0200;

#[derive(Deserialize)]
struct PciClassInfo {
    class: u32,
}

#[derive(Deserialize)]
struct PciBridgeInfo {
    #[serde(default)]
    devices: Vec<PciDeviceInfo>,
}

qmp_command! {
    struct QueryBlock {} => "query-block" -> Vec<BlockInfo>
}

#[derive(Deserialize)]
struct BlockInfo {
    qdev: Option<String>,
    inserted: Option<BlockDeviceInfo>,
}

#[derive(Deserialize)]
struct BlockDeviceInfo {
    #[serde(rename = "node-name")]
    node_name: String,
    file: String,
}

qmp_command! {
    struct QueryNamedBlockNodes {
        flat: bool,
    } => "query-named-block-nodes" -> Vec<NamedBlockNode>
}

#[derive(Deserialize)]
struct NamedBlockNode {
    #[serde(rename = "node-name")]
    node_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_come_from_peripheral_paths() {
        assert_eq!(device_id("/machine/peripheral/disk1/virtio-backend"), Some("disk1"));
        assert_eq!(device_id("/machine/peripheral-anon/device[0]/virtio-backend"), None);
        assert_eq!(device_id("disk2"), Some("disk2"));
        assert_eq!(device_id(""), None);
    }

    #[test]
    fn ports_are_free_until_a_device_sits_on_them() {
        let buses: Vec<PciBusInfo> = serde_json::from_value(serde_json::json!([{"bus": 0, "devices": [
            {"qdev_id": "", "slot": 0},
            {"qdev_id": "disk0", "slot": 1},
            {"qdev_id": "hp1", "pci_bridge": {"bus": {}, "devices": [{"qdev_id": "disk2"}]}},
            {"qdev_id": "hp0", "pci_bridge": {"bus": {}, "devices": []}},
            {"qdev_id": "hp2", "pci_bridge": {"bus": {}}},
            {"qdev_id": "other-bridge", "pci_bridge": {"bus": {}, "devices": [{"qdev_id": "nic0"}]}},
            {"qdev_id": "hp3", "pci_bridge": {"bus": {}, "devices": [
                {"qdev_id": "net1", "class_info": {"class": 512, "desc": "Ethernet controller"}}]}},
        ]}]))
        .unwrap();
        let layout = PciLayout::new(&buses);
        assert_eq!(layout.free_ports(), ["hp0", "hp2"]);
        assert!(layout.has_device("disk2") && layout.has_device("nic0") && layout.has_device("disk0"));
        assert!(!layout.has_device(""));
        assert_eq!(layout.port_of("disk2"), Some(1));
        assert_eq!(layout.port_of("disk0"), None);
        assert_eq!(layout.port_of("nic0"), None);
        assert_eq!(layout.nics, ["net1"]);
        assert_eq!(layout.port_of("net1"), Some(3));
        assert_eq!(layout.pick_port("x", None).unwrap(), "hp0");
        assert_eq!(layout.pick_port("x", Some(2)).unwrap(), "hp2");
        assert!(matches!(layout.pick_port("x", Some(3)), Err(QemuError::HotplugPortUnavailable { .. })));
    }
}
