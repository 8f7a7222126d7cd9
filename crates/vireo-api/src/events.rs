//! The daemon's event log: every state change and operation, as `GET /v1/events`
//! lists and streams it (docs/events.md describes each kind).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::snapshot::SnapshotKind;
use crate::vm::VmState;

/// One thing that happened on the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Position in the daemon's log: every event has a larger id than the ones before it.
    pub id: u64,
    /// When it happened (RFC 3339, milliseconds).
    pub time: String,
    /// The VM it is about; absent for pool, volume and network events, whose details name their object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// `kind` (e.g. `vm.started`) and its `details`.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened: `kind` names it (`object.verb`), `details` holds its facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "details")]
pub enum EventKind {
    /// The VM was defined.
    #[serde(rename = "vm.created")]
    VmCreated {},
    /// The VM's definition was deleted.
    #[serde(rename = "vm.deleted")]
    VmDeleted {},
    /// Every change of lifecycle state, whatever caused it.
    #[serde(rename = "vm.state_changed")]
    VmStateChanged { from: VmState, to: VmState },
    /// The guest runs: booted, restored, or started from a snapshot.
    #[serde(rename = "vm.started")]
    VmStarted {},
    /// A start failed; the VM is back where it was (stopped or saved).
    #[serde(rename = "vm.start_failed")]
    VmStartFailed { reason: String },
    /// QEMU exited because the guest powered off or the VM was stopped.
    #[serde(rename = "vm.stopped")]
    VmStopped {},
    /// QEMU exited unexpectedly (killed, crashed, or gone while the daemon was down).
    #[serde(rename = "vm.crashed")]
    VmCrashed { reason: String },
    #[serde(rename = "vm.paused")]
    VmPaused {},
    #[serde(rename = "vm.resumed")]
    VmResumed {},
    /// The VM's memory went to disk and QEMU exited (state `saved`).
    #[serde(rename = "vm.saved")]
    VmSaved {},
    /// A saved VM runs again where it was (follows its `vm.started`).
    #[serde(rename = "vm.restored")]
    VmRestored {},
    /// Received from another host by a live migration; it runs here now.
    #[serde(rename = "vm.migrated_in")]
    VmMigratedIn {},
    #[serde(rename = "snapshot.created")]
    SnapshotCreated { snapshot: String, snapshot_kind: SnapshotKind },
    #[serde(rename = "snapshot.reverted")]
    SnapshotReverted { snapshot: String },
    #[serde(rename = "snapshot.deleted")]
    SnapshotDeleted { snapshot: String },
    /// `disk` is `volume POOL/NAME`, or the path of an image file.
    #[serde(rename = "disk.attached")]
    DiskAttached { disk: String },
    #[serde(rename = "disk.detached")]
    DiskDetached { disk: String },
    #[serde(rename = "nic.attached")]
    NicAttached { mac: String, network: String },
    #[serde(rename = "nic.detached")]
    NicDetached { mac: String },
    /// This host started sending the VM to `destination`.
    #[serde(rename = "migration.started")]
    MigrationStarted { destination: String, copy_storage: bool },
    /// The VM runs on `destination` and is gone from this host.
    #[serde(rename = "migration.completed")]
    MigrationCompleted { destination: String },
    /// The VM stays on this host; `reason` says why the migration failed.
    #[serde(rename = "migration.failed")]
    MigrationFailed { destination: String, reason: String },
    /// Cancelled on request; the VM runs on here as before.
    #[serde(rename = "migration.cancelled")]
    MigrationCancelled { destination: String },
    #[serde(rename = "pool.created")]
    PoolCreated { pool: String },
    #[serde(rename = "pool.deleted")]
    PoolDeleted { pool: String },
    #[serde(rename = "volume.created")]
    VolumeCreated { pool: String, volume: String },
    /// Deleted, or (after a migration) handed over to another host.
    #[serde(rename = "volume.deleted")]
    VolumeDeleted { pool: String, volume: String },
    #[serde(rename = "network.created")]
    NetworkCreated { network: String },
    #[serde(rename = "network.deleted")]
    NetworkDeleted { network: String },
}

impl EventKind {
    /// The `kind` as it goes on the wire, e.g. `vm.started`.
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut fields)) => match fields.remove("kind") {
                Some(serde_json::Value::String(name)) => name,
                _ => String::new(),
            },
            _ => String::new(),
        }
    }

    /// The `details` object as it goes on the wire.
    pub fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut fields)) => match fields.remove("details") {
                Some(serde_json::Value::Object(details)) => details,
                _ => serde_json::Map::new(),
            },
            _ => serde_json::Map::new(),
        }
    }

    /// Rebuilds an event kind from its wire name and details.
    pub fn from_parts(name: &str, details: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "kind": name, "details": details }))
    }
}

/// Query of `GET /v1/events`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger id. Without it, a list gives the latest `limit`
    /// events and a stream starts with the next event.
    pub after: Option<u64>,
    /// Only the events of this VM.
    pub vm: Option<String>,
    /// At most this many events in a list (1 to 10000, default 100); a stream is not limited.
    pub limit: Option<u32>,
}

/// `limit` of a list when the query gives none.
pub const DEFAULT_EVENT_LIMIT: u32 = 100;
/// The largest `limit` a list accepts.
pub const MAX_EVENT_LIMIT: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_kind_and_details() {
        let event = Event {
            id: 7,
            time: "2025-01-01T00:00:00.000Z".into(),
            vm: Some("web1".into()),
            kind: EventKind::VmStateChanged { from: VmState::Stopped, to: VmState::Starting },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "time": "2025-01-01T00:00:00.000Z", "vm": "web1",
                "kind": "vm.state_changed", "details": {"from": "stopped", "to": "starting"}})
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    #[test]
    fn kinds_without_facts_still_have_details() {
        let json = serde_json::to_value(EventKind::VmStarted {}).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "vm.started", "details": {}}));
    }

    #[test]
    fn name_and_details_round_trip() {
        let kind = EventKind::VolumeCreated { pool: "default".into(), volume: "root.qcow2".into() };
        assert_eq!(kind.name(), "volume.created");
        let details = kind.details();
        assert_eq!(details["volume"], "root.qcow2");
        assert_eq!(EventKind::from_parts("volume.created", details.into()).unwrap(), kind);
        assert!(EventKind::from_parts("vm.exploded", serde_json::json!({})).is_err());
        assert!(EventKind::from_parts("vm.crashed", serde_json::json!({})).is_err(), "a reason is required");
    }
}
