//! VM snapshots (internal qcow2 snapshots) and disk hot-plug.
//!
//! A running VM's snapshots go through QMP jobs (memory and disks, or disks
//! only); a stopped VM's through qemu-img on each disk. The record is
//! written only after the snapshot exists, and removed before the snapshot
//! is, so the list never shows a snapshot that cannot be reverted.

use std::sync::Arc;
use std::time::Duration;

use vireo_api::{DiskFormat, DiskSpec, EventKind, SnapshotCreate, SnapshotKind, VmState};
use vireo_core::spec::{disk_source, validate_disk, validate_disks, validate_name};
use vireo_core::state::has_process;
use vireo_core::{Action, Change, ObjectKind, SnapshotRecord, SpecError, VmRecord, VmWrite};
use vireo_qemu::DiskAttachment;
use vireo_storage::qemu_img;

use super::lifecycle::StartMode;
use super::live::Live;
use super::{Slot, VmManager, ensure, now_ms};
use crate::error::ServerError;

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the guest gets to let go of a disk being unplugged.
const DETACH_TIMEOUT: Duration = Duration::from_secs(30);

/// The disks a snapshot covers: every writable one, all of which must be qcow2.
fn snapshot_disks(disks: Vec<DiskAttachment>) -> Result<Vec<DiskAttachment>, ServerError> {
    let writable: Vec<DiskAttachment> = disks.into_iter().filter(|d| !d.readonly).collect();
    if let Some(raw) = writable.iter().find(|d| d.format == DiskFormat::Raw) {
        return Err(ServerError::Unsupported(format!(
            "snapshots need qcow2 disks, and {} is raw (convert it with `vireo volume import`, or attach it read-only)",
            raw.path.display()
        )));
    }
    if writable.is_empty() {
        return Err(ServerError::Unsupported(
            "a VM without a writable qcow2 disk cannot be snapshotted: the snapshot is kept inside its disks".into(),
        ));
    }
    Ok(writable)
}

impl VmManager {
    pub async fn list_snapshots(&self, vm: &str) -> Result<Vec<SnapshotRecord>, ServerError> {
        self.load(vm).await?;
        Ok(self.store.list_snapshots(vm).await?)
    }

    async fn load_snapshot(&self, vm: &str, name: &str) -> Result<SnapshotRecord, ServerError> {
        let snapshots = self.store.list_snapshots(vm).await?;
        snapshots
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ServerError::NotFound { kind: ObjectKind::Snapshot, name: format!("{vm}/{name}") })
    }

    /// The QEMU node names of the given disks in a running VM (found by file, so hot-plugged disks count too).
    async fn live_nodes(&self, vm: &str, live: &Live, disks: &[DiskAttachment]) -> Result<Vec<String>, ServerError> {
        let attached = live.qmp.disk_ids().await.map_err(|source| ServerError::Qemu {
            name: vm.to_string(),
            action: "list disks",
            source,
        })?;
        disks
            .iter()
            .map(|disk| {
                attached.iter().find(|(_, path)| *path == disk.path).map(|(id, _)| id.clone()).ok_or_else(|| {
                    ServerError::Unsupported(format!("disk {} is not attached to the running VM", disk.path.display()))
                })
            })
            .collect()
    }

    pub async fn create_snapshot(&self, vm: &str, request: SnapshotCreate) -> Result<SnapshotRecord, ServerError> {
        validate_name(&request.name)
            .map_err(|reason| ServerError::InvalidSpec(SpecError { field: "name".into(), reason }))?;
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let record = self.load(vm).await?;
        ensure(&record, Action::Snapshot)?;
        if self.store.list_snapshots(vm).await?.iter().any(|s| s.name == request.name) {
            return Err(ServerError::Exists { kind: ObjectKind::Snapshot, name: format!("{vm}/{}", request.name) });
        }
        let disks = snapshot_disks(self.resolve_disks(&record.spec.disks, &record.disk_ports).await?)?;
        let tag = &request.name;
        let kind = match slot.live() {
            Some(live) => {
                let nodes = self.live_nodes(vm, &live, &disks).await?;
                let qemu = |source| ServerError::Qemu { name: vm.to_string(), action: "take a snapshot", source };
                if request.disk_only {
                    live.qmp.disk_snapshot(tag, &nodes).await.map_err(qemu)?;
                    SnapshotKind::Disk
                } else {
                    live.qmp.snapshot_save(tag, &nodes[0], &nodes, SNAPSHOT_TIMEOUT).await.map_err(qemu)?;
                    SnapshotKind::Full
                }
            }
            None => {
                offline_snapshot_create(&disks, tag).await?;
                SnapshotKind::Disk
            }
        };
        let snapshot = SnapshotRecord {
            vm: vm.to_string(),
            name: request.name.clone(),
            kind,
            vm_state: record.state,
            spec: record.spec.clone(),
            disk_ports: record.disk_ports.clone(),
            created_at_ms: now_ms(),
        };
        let created = EventKind::SnapshotCreated { snapshot: snapshot.name.clone(), snapshot_kind: kind };
        self.events.apply(Change::InsertSnapshot(&snapshot), Some(vm), created).await?;
        tracing::info!(vm, snapshot = %snapshot.name, kind = ?kind, "snapshot taken");
        Ok(snapshot)
    }

    pub async fn revert_snapshot(self: &Arc<Self>, vm: &str, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let mut record = self.load(vm).await?;
        ensure(&record, Action::RevertSnapshot)?;
        let snapshot = self.load_snapshot(vm, name).await?;
        let running = has_process(record.state);
        if running && (snapshot.spec.disks != record.spec.disks || snapshot.disk_ports != record.disk_ports) {
            return Err(ServerError::Unsupported(format!(
                "VM '{vm}' has had disks attached or detached since snapshot '{name}'; stop it to revert"
            )));
        }
        match (snapshot.kind, running) {
            (SnapshotKind::Full, true) => self.load_live_snapshot(&slot, &mut record, &snapshot).await?,
            (SnapshotKind::Full, false) => {
                record.spec.disks = snapshot.spec.disks.clone();
                record.disk_ports = snapshot.disk_ports.clone();
                self.start_locked(&slot, &mut record, StartMode::LoadSnapshot(name.to_string())).await?;
                self.match_run_state(&slot, &mut record, snapshot.vm_state).await?;
            }
            (SnapshotKind::Disk, true) => {
                return Err(ServerError::Unsupported(format!(
                    "'{name}' is a disk-only snapshot: stop VM '{vm}' to revert its disks"
                )));
            }
            (SnapshotKind::Disk, false) => {
                let disks = snapshot_disks(self.resolve_disks(&snapshot.spec.disks, &snapshot.disk_ports).await?)?;
                for disk in &disks {
                    qemu_img::snapshot_apply(&disk.path, name).await.map_err(|source| ServerError::Storage {
                        action: format!("revert {} to snapshot {name}", disk.path.display()),
                        source,
                    })?;
                }
                record.spec.disks = snapshot.spec.disks.clone();
                record.revision = self.store.update_vm(&record).await?;
            }
        }
        tracing::info!(vm, snapshot = name, "reverted");
        self.events.emit(Some(vm), EventKind::SnapshotReverted { snapshot: name.to_string() }).await;
        Ok(record)
    }

    /// Loads a full snapshot into the running QEMU and leaves the VM running or paused as it was then.
    async fn load_live_snapshot(
        &self,
        slot: &Slot,
        record: &mut VmRecord,
        snapshot: &SnapshotRecord,
    ) -> Result<(), ServerError> {
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(record.name.clone()))?;
        let disks = snapshot_disks(self.resolve_disks(&record.spec.disks, &record.disk_ports).await?)?;
        let nodes = self.live_nodes(&record.name, &live, &disks).await?;
        let qemu = |source| ServerError::Qemu { name: record.name.clone(), action: "revert to a snapshot", source };
        live.qmp.snapshot_load(&snapshot.name, &nodes[0], &nodes, SNAPSHOT_TIMEOUT).await.map_err(qemu)?;
        self.match_run_state(slot, record, snapshot.vm_state).await
    }

    /// Runs or pauses the VM as it was when the snapshot was taken.
    async fn match_run_state(&self, slot: &Slot, record: &mut VmRecord, wanted: VmState) -> Result<(), ServerError> {
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(record.name.clone()))?;
        let qemu = |source| ServerError::Qemu { name: record.name.clone(), action: "resume after the revert", source };
        let state = if wanted == VmState::Paused {
            live.qmp.stop().await.map_err(qemu)?;
            VmState::Paused
        } else {
            live.qmp.cont().await.map_err(qemu)?;
            VmState::Running
        };
        self.save_state(record, state).await
    }

    pub async fn delete_snapshot(&self, vm: &str, name: &str) -> Result<(), ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let record = self.load(vm).await?;
        ensure(&record, Action::Snapshot)?;
        let snapshot = self.load_snapshot(vm, name).await?;
        let disks = snapshot_disks(self.resolve_disks(&snapshot.spec.disks, &snapshot.disk_ports).await?)?;
        let deleted = EventKind::SnapshotDeleted { snapshot: name.to_string() };
        self.events.apply(Change::DeleteSnapshot { vm, name }, Some(vm), deleted).await?;
        let result = match slot.live() {
            Some(live) => {
                let nodes = self.live_nodes(vm, &live, &disks).await?;
                let qemu = |source| ServerError::Qemu { name: vm.to_string(), action: "delete a snapshot", source };
                live.qmp.snapshot_delete(name, &nodes, SNAPSHOT_TIMEOUT).await.map_err(qemu)
            }
            None => offline_snapshot_delete(&disks, name).await,
        };
        if let Err(err) = result {
            // The record is gone, so the snapshot is no longer offered; what stays is some unused space.
            tracing::warn!(vm, snapshot = name, error = %err.message(), "snapshot data left in the images");
        }
        tracing::info!(vm, snapshot = name, "snapshot deleted");
        Ok(())
    }

    /// Attaches a disk: hot-plugged into a running VM, and kept in the spec.
    pub async fn attach_disk(&self, vm: &str, disk: DiskSpec) -> Result<VmRecord, ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let _storage = self.storage.lock().await;
        let mut record = self.load(vm).await?;
        ensure(&record, Action::ChangeDisks)?;
        let host = self.host_view().await?;
        validate_disk("disk", &disk, &host)?;
        let mut disks = record.spec.disks.clone();
        disks.push(disk.clone());
        validate_disks(&disks, &host)?;
        if let Some(live) = slot.live() {
            let used = live.qmp.disk_ids().await.map_err(|source| ServerError::Qemu {
                name: vm.to_string(),
                action: "list disks",
                source,
            })?;
            let id = (0..)
                .map(|n| format!("disk{n}"))
                .find(|id| used.iter().all(|(used, _)| used != id))
                .unwrap_or_default();
            let attachment = self.resolve_disk(&disk, id.clone(), None).await?;
            let qemu = |action| move |source| ServerError::Qemu { name: vm.to_string(), action, source };
            live.qmp.attach_disk(&attachment).await.map_err(qemu("hot-plug the disk"))?;
            let plugged = live.qmp.attached_disks().await.map_err(qemu("list disks"))?;
            if let Some(port) = plugged.iter().find(|d| d.id == id).and_then(|d| d.hotplug_port) {
                record.disk_ports.insert(disk_source(&disk), port);
            }
        }
        record.spec.disks = disks;
        let attached = EventKind::DiskAttached { disk: disk_source(&disk) };
        record.revision = self.events.write_vm(VmWrite::Update(&record), attached).await?;
        tracing::info!(vm, disk = %disk_source(&disk), "disk attached");
        Ok(record)
    }

    /// Detaches a volume disk: unplugged from a running VM (the guest must let go), and dropped from the spec.
    pub async fn detach_disk(&self, vm: &str, volume: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(vm);
        let _job = slot.job.lock().await;
        let mut record = self.load(vm).await?;
        ensure(&record, Action::ChangeDisks)?;
        let Some(index) = record.spec.disks.iter().position(|d| d.volume.as_deref() == Some(volume)) else {
            return Err(ServerError::NotFound { kind: ObjectKind::Volume, name: format!("{volume} (on VM {vm})") });
        };
        if let Some(live) = slot.live() {
            let source = disk_source(&record.spec.disks[index]);
            if !record.disk_ports.contains_key(&source) {
                // Disks present at boot sit on the root bus, which cannot unplug.
                return Err(ServerError::Unsupported(format!(
                    "{source} was plugged in when VM '{vm}' started and cannot be unplugged while it runs; \
                     stop the VM to detach it"
                )));
            }
            let attachment = self.resolve_disk(&record.spec.disks[index], String::new(), None).await?;
            let nodes = self.live_nodes(vm, &live, std::slice::from_ref(&attachment)).await?;
            live.qmp.detach_disk(&nodes[0], DETACH_TIMEOUT).await.map_err(|source| ServerError::Qemu {
                name: vm.to_string(),
                action: "unplug the disk",
                source,
            })?;
        }
        let removed = record.spec.disks.remove(index);
        record.disk_ports.remove(&disk_source(&removed));
        let detached = EventKind::DiskDetached { disk: disk_source(&removed) };
        record.revision = self.events.write_vm(VmWrite::Update(&record), detached).await?;
        tracing::info!(vm, volume, "disk detached");
        Ok(record)
    }
}

async fn offline_snapshot_create(disks: &[DiskAttachment], tag: &str) -> Result<(), ServerError> {
    for (done, disk) in disks.iter().enumerate() {
        if let Err(source) = qemu_img::snapshot_create(&disk.path, tag).await {
            // All disks or none: take back the ones already done.
            offline_snapshot_delete(&disks[..done], tag).await.ok();
            return Err(ServerError::Storage { action: format!("snapshot {}", disk.path.display()), source });
        }
    }
    Ok(())
}

async fn offline_snapshot_delete(disks: &[DiskAttachment], tag: &str) -> Result<(), ServerError> {
    for disk in disks {
        qemu_img::snapshot_delete(&disk.path, tag).await.map_err(|source| ServerError::Storage {
            action: format!("delete snapshot {tag} of {}", disk.path.display()),
            source,
        })?;
    }
    Ok(())
}
