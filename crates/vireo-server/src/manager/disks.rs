//! From a spec's disks to the files QEMU opens: volumes are looked up in the
//! store and resolved to their path in the pool.

use std::collections::HashSet;
use std::path::Path;

use vireo_api::DiskSpec;
use vireo_core::spec::{disk_source, parse_volume_ref, path_disk_format};
use vireo_core::{DiskPorts, SpecContext};
use vireo_qemu::DiskAttachment;

use super::{VmManager, is_regular_file};
use crate::error::ServerError;

/// The host as spec validation sees it: files on disk, volumes in the store.
pub struct HostView {
    volumes: HashSet<(String, String)>,
    networks: HashSet<String>,
}

impl SpecContext for HostView {
    fn file_exists(&self, path: &Path) -> bool {
        is_regular_file(path)
    }

    fn volume_exists(&self, pool: &str, name: &str) -> bool {
        self.volumes.contains(&(pool.to_string(), name.to_string()))
    }

    fn network_exists(&self, name: &str) -> bool {
        self.networks.contains(name)
    }
}

impl HostView {
    /// Counts a volume that is about to be created as existing.
    pub fn add_volume(&mut self, pool: &str, name: &str) {
        self.volumes.insert((pool.to_string(), name.to_string()));
    }
}

impl VmManager {
    pub(super) async fn host_view(&self) -> Result<HostView, ServerError> {
        let volumes = self.store.list_volumes(None).await?;
        let networks = self.store.list_networks().await?;
        Ok(HostView {
            volumes: volumes.into_iter().map(|v| (v.pool, v.name)).collect(),
            networks: networks.into_iter().map(|n| n.name).collect(),
        })
    }

    /// The attachment of one disk; `id` is its QEMU device id, `hotplug_port` where it was hot-plugged.
    pub(super) async fn resolve_disk(
        &self,
        disk: &DiskSpec,
        id: String,
        hotplug_port: Option<u32>,
    ) -> Result<DiskAttachment, ServerError> {
        let (path, format) = match (&disk.volume, &disk.path) {
            (Some(volume), _) => {
                let (pool, name) = parse_volume_ref(volume).map_err(ServerError::BadRequest)?;
                self.volume_file(pool, name).await?
            }
            (None, Some(path)) => (path.clone(), path_disk_format(path, disk.format)),
            (None, None) => return Err(ServerError::BadRequest("a disk needs a volume or a path".into())),
        };
        Ok(DiskAttachment {
            id,
            path,
            format,
            readonly: disk.readonly,
            cache: disk.cache,
            aio: disk.aio,
            boot_index: disk.boot_order,
            hotplug_port,
        })
    }

    /// All disks of a spec, with ids `disk0`, `disk1`, ... in spec order; disks
    /// named in `ports` go back on the hot-plug port they had.
    pub(super) async fn resolve_disks(
        &self,
        disks: &[DiskSpec],
        ports: &DiskPorts,
    ) -> Result<Vec<DiskAttachment>, ServerError> {
        let mut attachments = Vec::with_capacity(disks.len());
        for (index, disk) in disks.iter().enumerate() {
            let port = ports.get(&disk_source(disk)).copied();
            attachments.push(self.resolve_disk(disk, format!("disk{index}"), port).await?);
        }
        Ok(attachments)
    }
}
