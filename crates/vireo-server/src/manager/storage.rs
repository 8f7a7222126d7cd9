//! Storage pools and volumes: the store keeps what exists, a pool driver
//! (`vireo-storage`) does the work on disk. Volume changes take the storage
//! lock so that "is it used?" checks and the change they guard cannot
//! interleave with another change.

use std::collections::HashMap;
use std::path::PathBuf;

use vireo_api::{DiskFormat, EventKind, PoolSpec, PoolType, VmSpec, VolumeClone, VolumeCreate, VolumeImport};
use vireo_core::spec::{parse_volume_ref, validate_name, validate_volume_name};
use vireo_core::{Change, ObjectKind, PoolRecord, SpecError, VolumeRecord};
use vireo_storage::{DirPool, PoolDriver, PoolUsage, StorageError, VolumeInfo, VolumeSource};

use super::{VmManager, now_ms};
use crate::error::ServerError;

/// The name of the pool every daemon has.
pub const DEFAULT_POOL: &str = "default";
/// Largest volume accepted: far beyond any real disk, small enough to catch unit mistakes.
const MAX_VOLUME_SIZE: u64 = 64 << 40;

/// A pool with its current usage.
pub struct PoolStatus {
    pub record: PoolRecord,
    pub usage: PoolUsage,
    pub volume_count: u64,
}

/// A volume with what the pool driver reports and who uses it.
pub struct VolumeStatus {
    pub record: VolumeRecord,
    pub info: VolumeInfo,
    pub used_by: Vec<String>,
}

pub(super) fn driver(pool: &PoolRecord) -> Box<dyn PoolDriver> {
    match pool.pool_type {
        PoolType::Dir => Box::new(DirPool::new(pool.path.clone())),
    }
}

fn storage_error(action: String) -> impl FnOnce(StorageError) -> ServerError {
    move |source| ServerError::Storage { action, source }
}

fn spec_error(field: &str, reason: impl Into<String>) -> ServerError {
    ServerError::InvalidSpec(SpecError { field: field.to_string(), reason: reason.into() })
}

fn check_size(size: u64) -> Result<(), ServerError> {
    if size == 0 || size > MAX_VOLUME_SIZE {
        return Err(spec_error("size", format!("must be between 512 bytes and 64TiB, got {size} bytes")));
    }
    // qemu-img rounds some odd sizes and refuses others; keep to whole sectors.
    if !size.is_multiple_of(512) {
        return Err(spec_error("size", format!("must be a multiple of 512 bytes, got {size}")));
    }
    Ok(())
}

/// Who refers to each volume: VMs through their disks, and snapshots through the specs they keep.
fn volume_users<'a>(specs: impl Iterator<Item = (String, &'a VmSpec)>) -> HashMap<String, Vec<String>> {
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for (user, spec) in specs {
        for volume in spec.disks.iter().filter_map(|d| d.volume.as_ref()) {
            let list = users.entry(volume.clone()).or_default();
            if !list.contains(&user) {
                list.push(user.clone());
            }
        }
    }
    users
}

impl VmManager {
    /// Clears what creating operations left half-done when an earlier daemon died; start-up only.
    pub async fn remove_storage_leftovers(&self) -> Result<(), ServerError> {
        for pool in self.store.list_pools().await? {
            match driver(&pool).remove_leftovers().await {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(pool = %pool.name, count = removed.len(), "removed leftovers of interrupted volume operations")
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(pool = %pool.name, error = %err, "cannot clean up the pool"),
            }
        }
        Ok(())
    }

    /// Every daemon has a `default` pool in its data directory.
    pub async fn ensure_default_pool(&self, path: PathBuf) -> Result<(), ServerError> {
        if self.store.get_pool(DEFAULT_POOL).await?.is_some() {
            return Ok(());
        }
        let spec = PoolSpec { name: DEFAULT_POOL.into(), pool_type: PoolType::Dir, path };
        self.create_pool(spec).await.map(|_| ())
    }

    pub async fn create_pool(&self, spec: PoolSpec) -> Result<PoolStatus, ServerError> {
        validate_name(&spec.name).map_err(|reason| spec_error("name", reason))?;
        if !spec.path.is_absolute() {
            return Err(spec_error("path", format!("must be an absolute path, got '{}'", spec.path.display())));
        }
        let _storage = self.storage.lock().await;
        if let Some(other) = self.store.list_pools().await?.into_iter().find(|p| p.path == spec.path) {
            return Err(ServerError::InUse {
                what: spec.path.display().to_string(),
                by: format!("pool {}", other.name),
            });
        }
        let record =
            PoolRecord { name: spec.name, pool_type: spec.pool_type, path: spec.path, created_at_ms: now_ms() };
        driver(&record).prepare().await.map_err(storage_error(format!("prepare pool {}", record.name)))?;
        let created = EventKind::PoolCreated { pool: record.name.clone() };
        self.events.apply(Change::InsertPool(&record), None, created).await?;
        tracing::info!(pool = %record.name, path = %record.path.display(), "pool created");
        self.pool_status(record).await
    }

    pub(super) async fn load_pool(&self, name: &str) -> Result<PoolRecord, ServerError> {
        self.store
            .get_pool(name)
            .await?
            .ok_or_else(|| ServerError::NotFound { kind: ObjectKind::Pool, name: name.into() })
    }

    async fn pool_status(&self, record: PoolRecord) -> Result<PoolStatus, ServerError> {
        let names: Vec<String> =
            self.store.list_volumes(Some(&record.name)).await?.into_iter().map(|v| v.name).collect();
        let usage = driver(&record)
            .usage(&names)
            .await
            .map_err(storage_error(format!("read usage of pool {}", record.name)))?;
        Ok(PoolStatus { volume_count: names.len() as u64, record, usage })
    }

    pub async fn get_pool(&self, name: &str) -> Result<PoolStatus, ServerError> {
        let record = self.load_pool(name).await?;
        self.pool_status(record).await
    }

    pub async fn list_pools(&self) -> Result<Vec<PoolStatus>, ServerError> {
        let mut pools = Vec::new();
        for record in self.store.list_pools().await? {
            pools.push(self.pool_status(record).await?);
        }
        Ok(pools)
    }

    /// Forgets a pool that holds no volumes; its directory stays on disk.
    pub async fn delete_pool(&self, name: &str) -> Result<(), ServerError> {
        let _storage = self.storage.lock().await;
        self.load_pool(name).await?;
        let volumes = self.store.list_volumes(Some(name)).await?;
        if let Some(first) = volumes.first() {
            let by = format!("{} volume(s), e.g. {}", volumes.len(), first.name);
            return Err(ServerError::InUse { what: format!("pool {name}"), by });
        }
        self.events.apply(Change::DeletePool(name), None, EventKind::PoolDeleted { pool: name.to_string() }).await?;
        tracing::info!(pool = name, "pool deleted");
        Ok(())
    }

    pub(super) async fn load_volume(&self, pool: &str, name: &str) -> Result<VolumeRecord, ServerError> {
        self.store
            .get_volume(pool, name)
            .await?
            .ok_or_else(|| ServerError::NotFound { kind: ObjectKind::Volume, name: format!("{pool}/{name}") })
    }

    async fn all_volume_users(&self) -> Result<HashMap<String, Vec<String>>, ServerError> {
        let vms = self.store.list_vms().await?;
        let mut snapshots = Vec::new();
        for vm in &vms {
            snapshots.extend(self.store.list_snapshots(&vm.name).await?);
        }
        let vm_specs = vms.iter().map(|vm| (vm.name.clone(), &vm.spec));
        let snapshot_specs = snapshots.iter().map(|s| (format!("snapshot {}/{}", s.vm, s.name), &s.spec));
        Ok(volume_users(vm_specs.chain(snapshot_specs)))
    }

    async fn volume_status(
        &self,
        record: VolumeRecord,
        users: &HashMap<String, Vec<String>>,
    ) -> Result<VolumeStatus, ServerError> {
        let pool = self.load_pool(&record.pool).await?;
        let info = driver(&pool)
            .volume_info(&record.name, record.format)
            .await
            .map_err(storage_error(format!("inspect volume {}/{}", record.pool, record.name)))?;
        let used_by = users.get(&format!("{}/{}", record.pool, record.name)).cloned().unwrap_or_default();
        Ok(VolumeStatus { record, info, used_by })
    }

    pub async fn get_volume(&self, pool: &str, name: &str) -> Result<VolumeStatus, ServerError> {
        let record = self.load_volume(pool, name).await?;
        self.volume_status(record, &self.all_volume_users().await?).await
    }

    pub async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeStatus>, ServerError> {
        if let Some(pool) = pool {
            self.load_pool(pool).await?;
        }
        let users = self.all_volume_users().await?;
        let mut volumes = Vec::new();
        for record in self.store.list_volumes(pool).await? {
            volumes.push(self.volume_status(record, &users).await?);
        }
        Ok(volumes)
    }

    /// Checks a new volume's name and that it is free; returns the pool.
    async fn check_new_volume(&self, pool: &str, name: &str) -> Result<PoolRecord, ServerError> {
        validate_volume_name(name).map_err(|reason| spec_error("name", reason))?;
        let pool = self.load_pool(pool).await?;
        if self.store.get_volume(&pool.name, name).await?.is_some() {
            return Err(ServerError::Exists { kind: ObjectKind::Volume, name: format!("{}/{name}", pool.name) });
        }
        Ok(pool)
    }

    /// Records a volume the driver made; if that fails, the file goes again so nothing half-made stays.
    pub(super) async fn record_volume(
        &self,
        pool: &PoolRecord,
        info: VolumeInfo,
        name: &str,
        backing: Option<(String, String)>,
    ) -> Result<VolumeStatus, ServerError> {
        let record = VolumeRecord {
            pool: pool.name.clone(),
            name: name.to_string(),
            format: info.format,
            capacity_bytes: info.capacity_bytes,
            backing,
            created_at_ms: now_ms(),
        };
        let created = EventKind::VolumeCreated { pool: pool.name.clone(), volume: name.to_string() };
        if let Err(err) = self.events.apply(Change::InsertVolume(&record), None, created).await {
            if let Err(cleanup) = driver(pool).delete_volume(name).await {
                tracing::error!(volume = name, error = %cleanup, "cannot remove volume after a failed insert");
            }
            return Err(err.into());
        }
        tracing::info!(pool = %pool.name, volume = name, "volume created");
        Ok(VolumeStatus { record, info, used_by: Vec::new() })
    }

    pub async fn create_volume(&self, pool: &str, request: VolumeCreate) -> Result<VolumeStatus, ServerError> {
        check_size(request.size.bytes())?;
        let _storage = self.storage.lock().await;
        let pool = self.check_new_volume(pool, &request.name).await?;
        let format = request.format.unwrap_or(DiskFormat::Qcow2);
        let info = driver(&pool)
            .create_volume(&request.name, request.size.bytes(), format)
            .await
            .map_err(storage_error(format!("create volume {}/{}", pool.name, request.name)))?;
        self.record_volume(&pool, info, &request.name, None).await
    }

    /// Checks an import before its (long) copy starts, so errors are plain 4xx answers.
    pub async fn check_import(&self, pool: &str, request: &VolumeImport) -> Result<(), ServerError> {
        if !request.source.is_absolute() {
            let shown = request.source.display();
            return Err(spec_error("source", format!("must be an absolute path, got '{shown}'")));
        }
        if !super::is_regular_file(&request.source) {
            let shown = request.source.display();
            return Err(spec_error("source", format!("{shown} does not exist or is not a regular file")));
        }
        self.check_new_volume(pool, &request.name).await.map(|_| ())
    }

    /// Copies an image into a new volume, reporting progress. The copy runs
    /// without the storage lock (it may take minutes); the name is checked
    /// again under the lock before the volume is recorded.
    pub async fn import_volume(
        &self,
        pool: &str,
        request: VolumeImport,
        progress: &(dyn Fn(f64) + Send + Sync),
    ) -> Result<VolumeStatus, ServerError> {
        self.check_import(pool, &request).await?;
        let pool = self.load_pool(pool).await?;
        let format = request.format.unwrap_or(DiskFormat::Qcow2);
        let info = driver(&pool).import_volume(&request.name, &request.source, format, progress).await.map_err(
            storage_error(format!("import {} into {}/{}", request.source.display(), pool.name, request.name)),
        )?;
        let _storage = self.storage.lock().await;
        self.record_volume(&pool, info, &request.name, None).await
    }

    pub async fn clone_volume(
        &self,
        pool: &str,
        name: &str,
        request: VolumeClone,
    ) -> Result<VolumeStatus, ServerError> {
        let (target_pool, target_name) =
            parse_volume_ref(&request.target).map_err(|reason| spec_error("target", reason))?;
        let _storage = self.storage.lock().await;
        let source = self.load_volume(pool, name).await?;
        let source_pool = self.load_pool(pool).await?;
        let target = self.check_new_volume(target_pool, target_name).await?;
        let source_file = VolumeSource { path: source_pool.path.join(&source.name), format: source.format };
        let info = driver(&target)
            .clone_volume(target_name, &source_file, request.linked)
            .await
            .map_err(storage_error(format!("clone {pool}/{name} to {}", request.target)))?;
        let backing = request.linked.then(|| (source.pool.clone(), source.name.clone()));
        self.record_volume(&target, info, target_name, backing).await
    }

    pub async fn resize_volume(
        &self,
        pool: &str,
        name: &str,
        size: u64,
        allow_shrink: bool,
    ) -> Result<VolumeStatus, ServerError> {
        check_size(size)?;
        let _storage = self.storage.lock().await;
        let record = self.load_volume(pool, name).await?;
        if size < record.capacity_bytes && !allow_shrink {
            let (from, to) = (vireo_api::ByteSize(record.capacity_bytes), vireo_api::ByteSize(size));
            let reason = format!(
                "shrinking from {from} to {to} destroys the data beyond {to}; ask for it with allow_shrink (--allow-shrink)"
            );
            return Err(spec_error("size", reason));
        }
        let users = self.all_volume_users().await?;
        let key = format!("{pool}/{name}");
        self.refuse_if_running_vm_uses(&key, &users).await?;
        let pool_record = self.load_pool(pool).await?;
        let info = driver(&pool_record)
            .resize_volume(name, record.format, size, allow_shrink)
            .await
            .map_err(storage_error(format!("resize volume {key}")))?;
        self.store.set_volume_capacity(pool, name, info.capacity_bytes).await?;
        let record = VolumeRecord { capacity_bytes: info.capacity_bytes, ..record };
        Ok(VolumeStatus { record, info, used_by: users.get(&key).cloned().unwrap_or_default() })
    }

    /// QEMU holds a running VM's images locked; qemu-img must not touch them.
    async fn refuse_if_running_vm_uses(
        &self,
        key: &str,
        users: &HashMap<String, Vec<String>>,
    ) -> Result<(), ServerError> {
        for user in users.get(key).into_iter().flatten() {
            if let Some(vm) = self.store.get_vm(user).await?
                && vireo_core::state::has_process(vm.state)
            {
                return Err(ServerError::InUse { what: format!("volume {key}"), by: format!("running VM {user}") });
            }
        }
        Ok(())
    }

    pub async fn delete_volume(&self, pool: &str, name: &str) -> Result<(), ServerError> {
        let _storage = self.storage.lock().await;
        self.load_volume(pool, name).await?;
        let key = format!("{pool}/{name}");
        if let Some(users) = self.all_volume_users().await?.remove(&key) {
            return Err(ServerError::InUse { what: format!("volume {key}"), by: users.join(", ") });
        }
        let clones: Vec<String> = self
            .store
            .list_volumes(None)
            .await?
            .into_iter()
            .filter(|v| v.backing.as_ref().is_some_and(|(p, n)| p == pool && n == name))
            .map(|v| format!("linked clone {}/{}", v.pool, v.name))
            .collect();
        if !clones.is_empty() {
            return Err(ServerError::InUse { what: format!("volume {key}"), by: clones.join(", ") });
        }
        let pool_record = self.load_pool(pool).await?;
        // The record goes first: a crash between the two steps leaves a stray file, never a record without one.
        let deleted = EventKind::VolumeDeleted { pool: pool.to_string(), volume: name.to_string() };
        self.events.apply(Change::DeleteVolume { pool, name }, None, deleted).await?;
        driver(&pool_record).delete_volume(name).await.map_err(storage_error(format!("delete volume {key}")))?;
        tracing::info!(pool, volume = name, "volume deleted");
        Ok(())
    }

    /// The file behind a volume, for QEMU.
    pub(super) async fn volume_file(&self, pool: &str, name: &str) -> Result<(PathBuf, DiskFormat), ServerError> {
        let record = self.load_volume(pool, name).await?;
        let pool = self.load_pool(pool).await?;
        Ok((pool.path.join(&record.name), record.format))
    }

    /// Drops a volume from the store, deleting its file too when `delete_file`;
    /// no check for users: for volumes that move with a migrating VM.
    pub(super) async fn forget_volume(&self, pool: &str, name: &str, delete_file: bool) -> Result<(), ServerError> {
        let _storage = self.storage.lock().await;
        let pool = self.load_pool(pool).await?;
        if delete_file {
            driver(&pool)
                .delete_volume(name)
                .await
                .map_err(storage_error(format!("delete volume {}/{name}", pool.name)))?;
        }
        let deleted = EventKind::VolumeDeleted { pool: pool.name.clone(), volume: name.to_string() };
        self.events.apply(Change::DeleteVolume { pool: &pool.name, name }, None, deleted).await?;
        tracing::info!(pool = %pool.name, volume = name, file_deleted = delete_file, "volume released");
        Ok(())
    }
}
