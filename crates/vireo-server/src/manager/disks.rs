//! From a spec's disks to the files QEMU opens: volumes are looked up in the
//! store and resolved to their path in the pool.

use std::collections::HashSet;
use std::path::Path;

use vireo_api::DiskSpec;
use vireo_core::spec::{parse_volume_ref, path_disk_format};
use vireo_core::{ObjectKind, SpecContext, StoreError};
use vireo_qemu::DiskAttachment;

use super::{VmManager, is_regular_file};
use crate::error::ServerError;

/// The host as spec validation sees it: files on disk, volumes in the store.
pub struct HostView {
    volumes: HashSet<(String, String)>,
}

impl SpecContext for HostView {
    fn file_exists(&self, path: &Path) -> bool {
        is_regular_file(path)
    }

    fn volume_exists(&self, pool: &str, name: &str) -> bool {
        self.volumes.contains(&(pool.to_string(), name.to_string()))
    }
}

impl VmManager {
    pub(super) async fn host_view(&self) -> Result<HostView, ServerError> {
        let volumes = self.store.list_volumes(None).await?;
        Ok(HostView { volumes: volumes.into_iter().map(|v| (v.pool, v.name)).collect() })
    }

    /// The attachment of one disk; `id` is its QEMU device id.
    pub(super) async fn resolve_disk(&self, disk: &DiskSpec, id: String) -> Result<DiskAttachment, ServerError> {
        let (path, format) = match (&disk.volume, &disk.path) {
            (Some(volume), _) => {
                let (pool, name) = parse_volume_ref(volume).map_err(ServerError::BadRequest)?;
                let not_found = || StoreError::ObjectNotFound { kind: ObjectKind::Volume, name: volume.clone() };
                let record = self.store.get_volume(pool, name).await?.ok_or_else(not_found)?;
                let pool = self.store.get_pool(pool).await?.ok_or_else(not_found)?;
                (pool.path.join(&record.name), record.format)
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
        })
    }

    /// All disks of a spec, with ids `disk0`, `disk1`, ... in spec order.
    pub(super) async fn resolve_disks(&self, disks: &[DiskSpec]) -> Result<Vec<DiskAttachment>, ServerError> {
        let mut attachments = Vec::with_capacity(disks.len());
        for (index, disk) in disks.iter().enumerate() {
            attachments.push(self.resolve_disk(disk, format!("disk{index}")).await?);
        }
        Ok(attachments)
    }
}
