//! The VM manager: the orchestrator between the API and QEMU.
//!
//! Every operation on a VM first takes that VM's job lock, so operations on
//! one VM run one at a time while different VMs proceed concurrently; reads
//! (list, show, logs) never take it. Every state change is written to the
//! store while the job lock is held, so the store is the single truth the
//! daemon recovers from after a restart (see `recover`).

mod boot;
mod disks;
mod history;
mod host;
mod incoming;
mod lifecycle;
mod live;
mod migration;
mod network;
mod recover;
mod snapshots;
mod stats;
mod storage;

pub use network::{NetworkStatus, lease_expiry};
pub use stats::{NicCounters, VmSample};
pub use storage::{DEFAULT_POOL, PoolStatus, VolumeStatus};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use vireo_api::{EventKind, NicSpec, VmSpec, VmState};
use vireo_core::mac::MacAddr;
use vireo_core::state::check_action;
use vireo_core::{
    Action, Change, DiskPorts, HostAccelFacts, SpecError, Store, StoreError, VmRecord, VmWrite, validate_spec,
};

use crate::console::{ConsoleHub, read_console_log};
use crate::error::ServerError;
use crate::events::EventLog;
use live::Live;

pub struct VmManager {
    store: Arc<dyn Store>,
    qemu_binary: PathBuf,
    accel_facts: HostAccelFacts,
    /// `data_dir/vms`: one directory per VM with its sockets, pid file and logs.
    vms_dir: PathBuf,
    /// `data_dir/networks`: one directory per network with its dnsmasq files.
    networks_dir: PathBuf,
    /// The dnsmasq of each nat or isolated network.
    dnsmasqs: Mutex<HashMap<String, vireo_net::Dnsmasq>>,
    /// Serialises network changes with the checks that guard them.
    network_lock: tokio::sync::Mutex<()>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Serialises volume changes with the checks that guard them (is it in use? is the name free?).
    storage: tokio::sync::Mutex<()>,
    /// What the QEMU binary can do (its version, machine properties, firmware).
    probe: boot::QemuProbe,
    /// `data_dir/kernels`: kernels unpacked for their PVH entry.
    kernels: Arc<vireo_kernel::KernelCache>,
    /// The latest outgoing migration of each VM.
    migrations: migration::Migrations,
    /// Every state change and operation, stored and streamed.
    events: Arc<EventLog>,
    /// The last hour of every VM's samples, for charts.
    history: Mutex<history::History>,
}

/// Per-VM coordination. Slots are never removed, so a name always maps to the same lock.
#[derive(Default)]
struct Slot {
    /// Held for the whole of an operation on the VM.
    job: tokio::sync::Mutex<()>,
    /// The attached QEMU, while one exists.
    live: Mutex<Option<Arc<Live>>>,
}

impl Slot {
    fn live(&self) -> Option<Arc<Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_live(&self, live: Option<Arc<Live>>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
}

impl VmManager {
    /// A manager keeping its per-VM and per-network files under `data_dir`.
    pub fn new(store: Arc<dyn Store>, qemu_binary: PathBuf, accel_facts: HostAccelFacts, data_dir: &Path) -> Arc<Self> {
        Arc::new(VmManager {
            events: Arc::new(EventLog::new(store.clone())),
            store,
            probe: boot::QemuProbe::new(qemu_binary.clone(), data_dir),
            kernels: boot::kernel_cache(data_dir),
            qemu_binary,
            accel_facts,
            vms_dir: data_dir.join("vms"),
            networks_dir: data_dir.join("networks"),
            dnsmasqs: Mutex::default(),
            network_lock: tokio::sync::Mutex::default(),
            slots: Mutex::default(),
            storage: tokio::sync::Mutex::default(),
            migrations: migration::Migrations::default(),
            history: Mutex::new(history::History::new(history::DEFAULT_INTERVAL)),
        })
    }

    fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(name.to_string()).or_default().clone()
    }

    fn vm_dir(&self, name: &str) -> PathBuf {
        self.vms_dir.join(name)
    }

    async fn load(&self, name: &str) -> Result<VmRecord, ServerError> {
        self.store.get_vm(name).await?.ok_or_else(|| ServerError::VmNotFound(name.to_string()))
    }

    /// Writes the record with a new state; the caller holds the VM's job lock.
    async fn save_state(&self, record: &mut VmRecord, state: VmState) -> Result<(), ServerError> {
        self.save_state_reporting(record, state, None).await
    }

    /// [`Self::save_state`], with `also`, the event of the operation that brought
    /// the state, stored in the same transaction.
    async fn save_state_reporting(
        &self,
        record: &mut VmRecord,
        state: VmState,
        also: Option<EventKind>,
    ) -> Result<(), ServerError> {
        let from = record.state;
        if record.state != state {
            record.state_changed_at_ms = now_ms();
        }
        record.state = state;
        record.revision = self.events.save_vm_state(record, from, also).await?;
        tracing::info!(vm = %record.name, state = %state, "state changed");
        Ok(())
    }

    pub async fn create(&self, mut spec: VmSpec) -> Result<VmRecord, ServerError> {
        // Held until the VM is stored, so none of its volumes can be deleted in between
        // and no other create can take the MACs given out here.
        let _storage = self.storage.lock().await;
        validate_spec(&spec, &self.host_view().await?)?;
        let name = spec.name.clone();
        self.assign_macs(&mut spec.nics, 0, &name).await?;
        let now = now_ms();
        let mut record = VmRecord {
            name: spec.name.clone(),
            spec,
            state: VmState::Stopped,
            runtime: None,
            created_at_ms: now,
            state_changed_at_ms: now,
            last_error: None,
            disk_ports: DiskPorts::new(),
            revision: 0,
        };
        let created = self.events.write_vm(VmWrite::Insert(&record), EventKind::VmCreated {}).await;
        record.revision = created.map_err(|err| match err {
            StoreError::Exists(name) => ServerError::VmExists(name),
            other => other.into(),
        })?;
        tracing::info!(vm = %record.name, "created");
        Ok(record)
    }

    /// The daemon's event log.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    pub async fn get(&self, name: &str) -> Result<VmRecord, ServerError> {
        self.load(name).await
    }

    pub async fn list(&self) -> Result<Vec<VmRecord>, ServerError> {
        Ok(self.store.list_vms().await?)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ServerError> {
        let slot = self.slot(name);
        let _job = slot.job.lock().await;
        let record = self.load(name).await?;
        ensure(&record, Action::Delete)?;
        self.events.apply(Change::DeleteVm(name), Some(name), EventKind::VmDeleted {}).await?;
        let dir = self.vm_dir(name);
        if let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(vm = name, error = %err, "cannot remove the VM's directory");
        }
        tracing::info!(vm = name, "deleted");
        Ok(())
    }

    /// The console log of a VM, running or not.
    pub async fn logs(&self, name: &str, tail: Option<u64>) -> Result<Vec<u8>, ServerError> {
        self.load(name).await?;
        let dir = self.vm_dir(name);
        read_console_log(&dir, tail).map_err(|source| ServerError::Io { path: dir.display().to_string(), source })
    }

    /// The console hub of a VM that has a QEMU process.
    pub async fn console(&self, name: &str) -> Result<Arc<ConsoleHub>, ServerError> {
        let record = self.load(name).await?;
        ensure(&record, Action::AttachConsole)?;
        let live = self.slot(name).live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        Ok(live.console.clone())
    }

    /// The VNC socket of a VM that has a display and a QEMU process (QEMU listens on it;
    /// the path is the VM's runtime directory, never anything a request spelled).
    pub async fn vnc_socket(&self, name: &str) -> Result<PathBuf, ServerError> {
        let record = self.load(name).await?;
        if record.spec.display.is_none() {
            return Err(ServerError::NoDisplay(name.to_string()));
        }
        ensure(&record, Action::AttachDisplay)?;
        self.slot(name).live().ok_or_else(|| ServerError::NotAttached(name.to_string()))?;
        Ok(vireo_qemu::RuntimePaths::new(self.vm_dir(name)).vnc_socket())
    }
}

impl VmManager {
    /// Gives every NIC without a MAC a fresh one, and checks given ones are unique on this host.
    /// `nics` are new NICs of VM `vm`, the first being its NIC number `first_index`.
    pub(super) async fn assign_macs(
        &self,
        nics: &mut [NicSpec],
        first_index: usize,
        vm: &str,
    ) -> Result<(), ServerError> {
        if nics.is_empty() {
            // Reading every VM costs O(VMs); a VM without NICs has nothing to check.
            return Ok(());
        }
        let mut taken: HashMap<MacAddr, String> = HashMap::new();
        for vm in self.store.list_vms().await? {
            for nic in &vm.spec.nics {
                if let Some(mac) = nic.mac.as_deref().and_then(|m| MacAddr::parse_nic(m).ok()) {
                    taken.insert(mac, vm.name.clone());
                }
            }
        }
        for (offset, nic) in nics.iter_mut().enumerate() {
            let index = first_index + offset;
            match nic.mac.as_deref().map(MacAddr::parse_nic) {
                Some(Ok(mac)) => {
                    if let Some(owner) = taken.get(&mac) {
                        let reason = format!("{mac} is already used by VM {owner}");
                        return Err(ServerError::InvalidSpec(SpecError {
                            field: format!("nics[{index}].mac"),
                            reason,
                        }));
                    }
                    nic.mac = Some(mac.to_string());
                }
                Some(Err(err)) => {
                    let field = format!("nics[{index}].mac");
                    return Err(ServerError::InvalidSpec(SpecError { field, reason: err.reason }));
                }
                None => {
                    let mac = fresh_mac(&taken)?;
                    taken.insert(mac, vm.to_string());
                    nic.mac = Some(mac.to_string());
                }
            }
        }
        Ok(())
    }
}

/// A random MAC in QEMU's locally administered 52:54:00 range, not yet used on this host.
fn fresh_mac(taken: &HashMap<MacAddr, String>) -> Result<MacAddr, ServerError> {
    loop {
        let mac = vireo_net::random_mac().map_err(|e| ServerError::Internal(format!("no MAC: {e}")))?;
        if !taken.contains_key(&mac) {
            return Ok(mac);
        }
    }
}

fn ensure(record: &VmRecord, action: Action) -> Result<(), ServerError> {
    check_action(record.state, action).map_err(|source| ServerError::InvalidState { name: record.name.clone(), source })
}
