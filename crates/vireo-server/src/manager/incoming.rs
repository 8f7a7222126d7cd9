//! Live migration, destination side: another daemon (the source, see
//! `migration`) sends this one a running VM.
//!
//! `prepare` checks that the VM fits this host (same QEMU, enough memory, its
//! networks and pools exist, its name and MACs are free, storage is really
//! shared or its volumes can be created), records the VM as `incoming`,
//! creates or adopts its volumes and starts its QEMU waiting for the stream.
//! `finish` runs it once the stream is complete; `abort` removes all of it.
//! What was created is listed in a ledger file in the VM's directory before
//! it is created, so the clean-up is complete even after a crash: when the
//! incoming QEMU dies (the source gave up, the stream broke) and when the
//! daemon restarts with a VM still `incoming`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vireo_api::{EventKind, IncomingMigration, IncomingReady, NbdServer, StorageProbe, VmState};
use vireo_core::spec::validate_volume_name;
use vireo_core::{Action, DiskPorts, PoolRecord, VmRecord, VolumeRecord, validate_spec};

use super::lifecycle::{KILL_GRACE, StartMode};
use super::storage::driver;
use super::{Slot, VmManager, ensure, now_ms};
use crate::error::ServerError;

const LEDGER_FILE: &str = "incoming.json";
/// The source says the stream is complete a moment before this QEMU has loaded it.
const LOAD_WAIT: Duration = Duration::from_secs(60);
/// Probe files are named by the source; anything else is not looked at.
const PROBE_PREFIX: &str = ".vireo-migration-probe-";

/// What `prepare` created for an incoming VM, so that giving up removes exactly that.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// Volumes created empty for the disk copy: deleted with their files.
    created: Vec<(String, String)>,
    /// Shared volumes this daemon did not know: only their records are removed.
    adopted: Vec<(String, String)>,
    /// An NBD server receives the disk copy.
    nbd: bool,
}

impl Ledger {
    fn path(vm_dir: &Path) -> PathBuf {
        vm_dir.join(LEDGER_FILE)
    }

    fn read(vm_dir: &Path) -> Ledger {
        std::fs::read(Ledger::path(vm_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write(&self, vm_dir: &Path) -> Result<(), ServerError> {
        let io = |source| ServerError::Io { path: vm_dir.display().to_string(), source };
        std::fs::create_dir_all(vm_dir).map_err(io)?;
        let bytes = serde_json::to_vec(self).map_err(|e| ServerError::Internal(e.to_string()))?;
        std::fs::write(Ledger::path(vm_dir), bytes).map_err(io)
    }
}

fn refuse(reason: String) -> ServerError {
    ServerError::Unsupported(reason)
}

/// Whether `probe` shows that `pool` here is the very directory the source wrote into.
fn sees_probe(pool: &PoolRecord, probe: &StorageProbe) -> bool {
    let name_ok = probe.file.starts_with(PROBE_PREFIX) && !probe.file.contains('/');
    name_ok
        && pool.path == probe.path
        && std::fs::read_to_string(pool.path.join(&probe.file)).is_ok_and(|content| content == probe.content)
}

impl VmManager {
    /// Gets ready to receive a VM: returns where its QEMU listens. Refuses
    /// (changing nothing) if the VM does not fit this host.
    pub async fn prepare_incoming(
        self: &Arc<Self>,
        request: IncomingMigration,
        listen: IpAddr,
    ) -> Result<IncomingReady, ServerError> {
        let ours = self.qemu_version().await;
        if request.qemu_version != ours {
            return Err(refuse(format!(
                "QEMU differs: the source has '{}', this host '{ours}'; both need the same QEMU",
                request.qemu_version
            )));
        }
        let memory = request.spec.memory.bytes();
        if vireo_qemu::memory_available_bytes().is_some_and(|available| available < memory) {
            return Err(refuse(format!("this host has less than the VM's {} MiB of memory available", memory >> 20)));
        }
        let name = request.spec.name.clone();
        let slot = self.slot(&name);
        let _job = slot.job.lock().await;
        let mut record = self.reserve_incoming(&request).await?;
        let ready = self.start_incoming(&slot, &mut record, &request, listen).await;
        if ready.is_err() {
            self.discard_incoming(&slot, &record).await;
        }
        ready
    }

    /// Checks the VM against this host and records it as `incoming` with its volumes.
    async fn reserve_incoming(&self, request: &IncomingMigration) -> Result<VmRecord, ServerError> {
        let _storage = self.storage.lock().await;
        let mut ledger = Ledger { nbd: request.copy_storage, ..Ledger::default() };
        let mut view = self.host_view().await?;
        let mut pools = Vec::new();
        for volume in &request.volumes {
            validate_volume_name(&volume.name).map_err(|reason| refuse(format!("volume {}: {reason}", volume.name)))?;
            let pool = self.load_pool(&volume.pool).await?;
            let known = self.store.get_volume(&pool.name, &volume.name).await?.is_some();
            let reference = format!("{}/{}", pool.name, volume.name);
            if request.copy_storage {
                if known {
                    return Err(ServerError::Exists { kind: vireo_core::ObjectKind::Volume, name: reference });
                }
                ledger.created.push((pool.name.clone(), volume.name.clone()));
                view.add_volume(&pool.name, &volume.name);
            } else {
                let probe = request.probes.iter().find(|p| p.pool == pool.name);
                if !probe.is_some_and(|probe| sees_probe(&pool, probe)) {
                    return Err(refuse(format!(
                        "storage is not shared: pool '{}' here ({}) is not the directory the source uses; \
                         migrate with --copy-storage",
                        pool.name,
                        pool.path.display()
                    )));
                }
                if !known {
                    ledger.adopted.push((pool.name.clone(), volume.name.clone()));
                    view.add_volume(&pool.name, &volume.name);
                }
            }
            pools.push((pool, volume));
        }
        let mut spec = request.spec.clone();
        validate_spec(&spec, &view)?;
        let name = spec.name.clone();
        self.assign_macs(&mut spec.nics, 0, &name).await?;
        let now = now_ms();
        let mut record = VmRecord {
            name: name.clone(),
            spec,
            state: VmState::Incoming,
            runtime: None,
            created_at_ms: now,
            state_changed_at_ms: now,
            last_error: None,
            disk_ports: request.disk_ports.clone().into_iter().collect::<DiskPorts>(),
            revision: 0,
        };
        record.revision = self.store.insert_vm(&record).await.map_err(|err| match err {
            vireo_core::StoreError::Exists(name) => ServerError::VmExists(name),
            other => other.into(),
        })?;
        // From here on a failure must undo what the ledger lists.
        let stored = async {
            ledger.write(&self.vm_dir(&name))?;
            for (pool, volume) in &pools {
                if request.copy_storage {
                    let info = driver(pool)
                        .create_volume(&volume.name, volume.capacity_bytes, volume.format)
                        .await
                        .map_err(|source| ServerError::Storage {
                            action: format!("create volume {}/{}", pool.name, volume.name),
                            source,
                        })?;
                    self.record_volume(pool, info, &volume.name, None).await?;
                } else if ledger.adopted.contains(&(pool.name.clone(), volume.name.clone())) {
                    self.store
                        .insert_volume(&VolumeRecord {
                            pool: pool.name.clone(),
                            name: volume.name.clone(),
                            format: volume.format,
                            capacity_bytes: volume.capacity_bytes,
                            backing: None,
                            created_at_ms: now,
                        })
                        .await?;
                }
            }
            Ok::<(), ServerError>(())
        };
        if let Err(err) = stored.await {
            drop(_storage);
            self.remove_incoming_leftovers(&record).await;
            return Err(err);
        }
        tracing::info!(vm = %name, copy_storage = request.copy_storage, "incoming migration reserved");
        Ok(record)
    }

    /// Starts the VM's QEMU waiting for the migration stream (and the disk copy).
    async fn start_incoming(
        self: &Arc<Self>,
        slot: &Slot,
        record: &mut VmRecord,
        request: &IncomingMigration,
        listen: IpAddr,
    ) -> Result<IncomingReady, ServerError> {
        let name = record.name.clone();
        self.start_locked(slot, record, StartMode::Incoming).await?;
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(name.clone()))?;
        let qemu = |action| {
            let name = name.clone();
            move |source| ServerError::Qemu { name, action, source }
        };
        let migration_uri =
            live.qmp.listen_incoming(listen, request.postcopy).await.map_err(qemu("listen for the migration"))?;
        let nbd = if request.copy_storage {
            let listener = std::net::TcpListener::bind((listen, 0))
                .map_err(|source| ServerError::Io { path: format!("{listen}:0"), source })?;
            let port = listener.local_addr().map_err(|source| ServerError::Io { path: listen.to_string(), source })?;
            let exports: Vec<String> = record
                .spec
                .disks
                .iter()
                .enumerate()
                .filter(|(_, disk)| disk.volume.is_some())
                .map(|(index, _)| format!("disk{index}"))
                .collect();
            live.qmp.start_nbd_server(&listener, &exports).await.map_err(qemu("export the disks"))?;
            Some(NbdServer { host: listen.to_string(), port: port.port() })
        } else {
            None
        };
        tracing::info!(vm = %name, %migration_uri, "waiting for the incoming migration");
        Ok(IncomingReady { migration_uri, nbd })
    }

    /// The stream is complete: runs the VM here. Until this returns Ok the
    /// source keeps the guest (and may take it back).
    pub async fn finish_incoming(&self, name: &str) -> Result<VmRecord, ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let mut record = self.load(name).await?;
        ensure(&record, Action::TakeOver)?;
        let live = slot.live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        let qemu = |action| move |source| ServerError::Qemu { name: name.to_string(), action, source };
        let mut events = live.qmp.migration_events().map_err(qemu("receive the migration"))?;
        live.qmp
            .wait_migration_status(&mut events, LOAD_WAIT, |status| matches!(status, "completed" | "postcopy-active"))
            .await
            .map_err(qemu("receive the migration"))?;
        let vm_dir = self.vm_dir(name);
        if Ledger::read(&vm_dir).nbd {
            live.qmp.stop_nbd_server().await.map_err(qemu("end the disk copy"))?;
        }
        // Recorded before the guest runs: a daemon that dies in between finds a
        // paused VM to re-attach to, never a running guest it would discard.
        self.save_state(&mut record, VmState::Running).await?;
        if let Err(err) = live.qmp.cont().await {
            // Back to `incoming`, so that the source's abort discards it.
            if let Err(save) = self.save_state(&mut record, VmState::Incoming).await {
                tracing::error!(vm = name, error = %save, "cannot record the failed take-over");
            }
            return Err(qemu("run")(err));
        }
        if let Err(err) = std::fs::remove_file(Ledger::path(&vm_dir)) {
            tracing::warn!(vm = name, error = %err, "cannot remove the incoming ledger");
        }
        tracing::info!(vm = name, "migrated in");
        self.events.emit(Some(name), EventKind::VmMigratedIn {}).await;
        Ok(record)
    }

    /// Gives an incoming VM up: its QEMU, volumes and record go.
    pub async fn abort_incoming(&self, name: &str) -> Result<(), ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let record = self.load(name).await?;
        ensure(&record, Action::TakeOver)?;
        self.discard_incoming(&slot, &record).await;
        Ok(())
    }

    /// Kills the incoming VM's QEMU and removes what `prepare` made. The caller holds the job lock.
    pub(super) async fn discard_incoming(&self, slot: &Slot, record: &VmRecord) {
        if let Some(live) = slot.live() {
            live.kill();
            live.wait_exit(KILL_GRACE).await;
            slot.set_live(None);
        } else if let Some(runtime) = &record.runtime {
            vireo_qemu::kill(runtime.pid, runtime.pid_start_ticks).ok();
        }
        self.remove_incoming_leftovers(record).await;
        tracing::info!(vm = %record.name, "incoming migration discarded");
    }

    async fn remove_incoming_leftovers(&self, record: &VmRecord) {
        let vm_dir = self.vm_dir(&record.name);
        let ledger = Ledger::read(&vm_dir);
        let volumes = ledger.created.iter().map(|v| (v, true)).chain(ledger.adopted.iter().map(|v| (v, false)));
        for ((pool, volume), delete_file) in volumes {
            if let Err(err) = self.forget_volume(pool, volume, delete_file).await {
                tracing::warn!(vm = %record.name, volume = %format!("{pool}/{volume}"), error = %err.message(),
                    "cannot remove a volume of the incoming VM");
            }
        }
        if let Err(err) = self.store.delete_vm(&record.name).await {
            tracing::warn!(vm = %record.name, error = %err, "cannot remove the incoming VM's record");
        }
        if let Err(err) = std::fs::remove_dir_all(&vm_dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(vm = %record.name, error = %err, "cannot remove the incoming VM's directory");
        }
    }
}
