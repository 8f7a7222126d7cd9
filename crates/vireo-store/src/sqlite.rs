//! The single-host store: one SQLite database, WAL mode, full fsync on commit.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use vireo_api::VmState;
use vireo_core::{
    Change, EventRecord, NetworkRecord, ObjectKind, PoolRecord, RuntimeRecord, SnapshotRecord, Store, StoreError,
    VmRecord, VmWrite, VolumeRecord,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE vms (
        name                TEXT PRIMARY KEY NOT NULL,
        spec                TEXT NOT NULL,
        state               TEXT NOT NULL,
        runtime             TEXT,
        created_at_ms       INTEGER NOT NULL,
        state_changed_at_ms INTEGER NOT NULL,
        last_error          TEXT,
        revision            INTEGER NOT NULL
    ) STRICT;
"#,
    r#"
    CREATE TABLE pools (
        name          TEXT PRIMARY KEY NOT NULL,
        type          TEXT NOT NULL,
        path          TEXT NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE volumes (
        pool           TEXT NOT NULL REFERENCES pools(name),
        name           TEXT NOT NULL,
        format         TEXT NOT NULL,
        capacity_bytes INTEGER NOT NULL,
        backing_pool   TEXT,
        backing_name   TEXT,
        created_at_ms  INTEGER NOT NULL,
        PRIMARY KEY (pool, name),
        FOREIGN KEY (backing_pool, backing_name) REFERENCES volumes(pool, name)
    ) STRICT;
    CREATE TABLE snapshots (
        vm            TEXT NOT NULL REFERENCES vms(name) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        vm_state      TEXT NOT NULL,
        spec          TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (vm, name)
    ) STRICT;
"#,
    r#"
    ALTER TABLE vms ADD COLUMN disk_ports TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE snapshots ADD COLUMN disk_ports TEXT NOT NULL DEFAULT '{}';
"#,
    r#"
    CREATE TABLE networks (
        name          TEXT PRIMARY KEY NOT NULL,
        mode          TEXT NOT NULL,
        bridge        TEXT NOT NULL,
        subnet        TEXT,
        vlan          INTEGER,
        created_at_ms INTEGER NOT NULL
    ) STRICT;
"#,
    // AUTOINCREMENT: an id is never handed out twice, even once retention has deleted it.
    r#"
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms   INTEGER NOT NULL,
        vm      TEXT,
        kind    TEXT NOT NULL,
        details TEXT NOT NULL
    ) STRICT;
"#,
];

#[derive(Debug, thiserror::Error)]
pub enum SqliteStoreError {
    #[error("cannot open database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot migrate database schema to version {version}")]
    Migrate {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this vireo understands ({known})")]
    TooNew { path: String, found: usize, known: usize },
    #[error("stored record of VM '{name}' is unreadable: {reason}")]
    Corrupt { name: String, reason: String },
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, SqliteStoreError> {
        let open_err = |source| SqliteStoreError::Open { path: path.display().to_string(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction: SQLite rolls it back.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), SqliteStoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| SqliteStoreError::Migrate { version: 0, source })?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(SqliteStoreError::TooNew {
            path: path.display().to_string(),
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let migrate_err = |source| SqliteStoreError::Migrate { version, source };
        let tx = conn.transaction().map_err(migrate_err)?;
        tx.execute_batch(sql).map_err(migrate_err)?;
        tx.pragma_update(None, "user_version", version as i64).map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
    }
    Ok(())
}

fn insert_vm_in(conn: &Connection, record: &VmRecord) -> Result<u64, StoreError> {
    let encoded = encode(record)?;
    let inserted = conn
        .execute(
            "INSERT INTO vms (name, spec, state, runtime, created_at_ms, state_changed_at_ms, last_error, revision, disk_ports)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8) ON CONFLICT(name) DO NOTHING",
            params![
                record.name,
                encoded.spec,
                state_to_text(record.state),
                encoded.runtime,
                record.created_at_ms,
                record.state_changed_at_ms,
                record.last_error,
                encoded.disk_ports,
            ],
        )
        .map_err(backend)?;
    if inserted == 0 {
        return Err(StoreError::Exists(record.name.clone()));
    }
    Ok(1)
}

/// Every change but a VM's insert or update, inside the caller's transaction.
fn apply_in(conn: &Connection, change: Change<'_>) -> Result<(), StoreError> {
    match change {
        Change::DeleteVm(name) => {
            let deleted = conn.execute("DELETE FROM vms WHERE name = ?1", [name]).map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(name.to_string()));
            }
            Ok(())
        }
        Change::InsertPool(pool) => {
            let path = pool.path.to_string_lossy().into_owned();
            conn.execute(
                "INSERT INTO pools (name, type, path, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![pool.name, enum_to_text(&pool.pool_type)?, path, pool.created_at_ms],
            )
            .map_err(exists_or_backend(ObjectKind::Pool, pool.name.clone()))?;
            Ok(())
        }
        Change::DeletePool(name) => {
            let deleted = conn.execute("DELETE FROM pools WHERE name = ?1", [name]).map_err(backend)?;
            not_found_unless_one(deleted, ObjectKind::Pool, name.to_string())
        }
        Change::InsertVolume(volume) => {
            let (backing_pool, backing_name) = volume.backing.clone().unzip();
            conn.execute(
                "INSERT INTO volumes (pool, name, format, capacity_bytes, backing_pool, backing_name, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    volume.pool,
                    volume.name,
                    enum_to_text(&volume.format)?,
                    to_sql_u64(volume.capacity_bytes)?,
                    backing_pool,
                    backing_name,
                    volume.created_at_ms,
                ],
            )
            .map_err(exists_or_backend(ObjectKind::Volume, format!("{}/{}", volume.pool, volume.name)))?;
            Ok(())
        }
        Change::DeleteVolume { pool, name } => {
            let deleted =
                conn.execute("DELETE FROM volumes WHERE pool = ?1 AND name = ?2", [pool, name]).map_err(backend)?;
            not_found_unless_one(deleted, ObjectKind::Volume, format!("{pool}/{name}"))
        }
        Change::InsertSnapshot(snapshot) => {
            let spec = serde_json::to_string(&snapshot.spec).map_err(backend)?;
            conn.execute(
                "INSERT INTO snapshots (vm, name, kind, vm_state, spec, created_at_ms, disk_ports)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    snapshot.vm,
                    snapshot.name,
                    enum_to_text(&snapshot.kind)?,
                    state_to_text(snapshot.vm_state),
                    spec,
                    snapshot.created_at_ms,
                    serde_json::to_string(&snapshot.disk_ports).map_err(backend)?,
                ],
            )
            .map_err(exists_or_backend(ObjectKind::Snapshot, format!("{}/{}", snapshot.vm, snapshot.name)))?;
            Ok(())
        }
        Change::DeleteSnapshot { vm, name } => {
            let deleted =
                conn.execute("DELETE FROM snapshots WHERE vm = ?1 AND name = ?2", [vm, name]).map_err(backend)?;
            not_found_unless_one(deleted, ObjectKind::Snapshot, format!("{vm}/{name}"))
        }
        Change::InsertNetwork(network) => {
            conn.execute(
                "INSERT INTO networks (name, mode, bridge, subnet, vlan, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    network.name,
                    enum_to_text(&network.mode)?,
                    network.bridge,
                    network.subnet,
                    network.vlan.map(i64::from),
                    network.created_at_ms,
                ],
            )
            .map_err(exists_or_backend(ObjectKind::Network, network.name.clone()))?;
            Ok(())
        }
        Change::DeleteNetwork(name) => {
            let deleted = conn.execute("DELETE FROM networks WHERE name = ?1", [name]).map_err(backend)?;
            not_found_unless_one(deleted, ObjectKind::Network, name.to_string())
        }
    }
}

fn append_events_in(conn: &Connection, events: &[EventRecord], retain: u64) -> Result<Vec<u64>, StoreError> {
    events.iter().map(|event| append_event_in(conn, event, retain)).collect()
}

/// The compare-and-swap update of a VM, inside the caller's connection or transaction.
fn update_vm_in(conn: &Connection, record: &VmRecord) -> Result<u64, StoreError> {
    let encoded = encode(record)?;
    let expected = to_sql_revision(record.revision)?;
    let updated = conn
        .execute(
            "UPDATE vms SET spec = ?2, state = ?3, runtime = ?4, state_changed_at_ms = ?5,
                    last_error = ?6, disk_ports = ?8, revision = revision + 1
             WHERE name = ?1 AND revision = ?7",
            params![
                record.name,
                encoded.spec,
                state_to_text(record.state),
                encoded.runtime,
                record.state_changed_at_ms,
                record.last_error,
                expected,
                encoded.disk_ports,
            ],
        )
        .map_err(backend)?;
    if updated == 1 {
        return Ok(record.revision + 1);
    }
    let exists: bool = conn
        .query_row("SELECT EXISTS(SELECT 1 FROM vms WHERE name = ?1)", [&record.name], |row| row.get(0))
        .map_err(backend)?;
    Err(if exists {
        StoreError::Conflict { name: record.name.clone(), expected: record.revision }
    } else {
        StoreError::NotFound(record.name.clone())
    })
}

/// Appends an event and drops the oldest beyond `retain`, inside the caller's transaction.
fn append_event_in(conn: &Connection, event: &EventRecord, retain: u64) -> Result<u64, StoreError> {
    let details = serde_json::to_string(&event.details).map_err(backend)?;
    let retain = to_sql_u64(retain)?;
    conn.execute(
        "INSERT INTO events (at_ms, vm, kind, details) VALUES (?1, ?2, ?3, ?4)",
        params![event.at_ms, event.vm, event.kind, details],
    )
    .map_err(backend)?;
    let id = conn.last_insert_rowid();
    conn.execute("DELETE FROM events WHERE id <= ?1", [id.saturating_sub(retain)]).map_err(backend)?;
    from_sql_u64("event", id)
}

fn backend(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(err))
}

fn corrupt(name: &str, reason: impl ToString) -> StoreError {
    backend(SqliteStoreError::Corrupt { name: name.to_string(), reason: reason.to_string() })
}

fn state_to_text(state: VmState) -> &'static str {
    state.as_str()
}

fn state_from_text(name: &str, text: &str) -> Result<VmState, StoreError> {
    enum_from_text(name, text)
}

/// Our enums are stored as their wire names (`"qcow2"`, `"dir"`, `"full"`).
fn enum_to_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value).map_err(backend)? {
        serde_json::Value::String(text) => Ok(text),
        other => {
            Err(backend(SqliteStoreError::Corrupt { name: String::new(), reason: format!("{other} is not a name") }))
        }
    }
}

fn enum_from_text<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| corrupt(name, e))
}

fn is_constraint_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn exists_or_backend(kind: ObjectKind, name: String) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |err| if is_constraint_violation(&err) { StoreError::ObjectExists { kind, name } } else { backend(err) }
}

fn not_found_unless_one(changed: usize, kind: ObjectKind, name: String) -> Result<(), StoreError> {
    if changed == 0 { Err(StoreError::ObjectNotFound { kind, name }) } else { Ok(()) }
}

fn to_sql_u64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(backend)
}

fn from_sql_u64(name: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|e| corrupt(name, e))
}

/// The columns of a row, read before decoding so rusqlite errors and our decoding errors stay apart.
struct RawRow {
    name: String,
    spec: String,
    state: String,
    runtime: Option<String>,
    created_at_ms: i64,
    state_changed_at_ms: i64,
    last_error: Option<String>,
    revision: i64,
    disk_ports: String,
}

const SELECT_COLUMNS: &str =
    "SELECT name, spec, state, runtime, created_at_ms, state_changed_at_ms, last_error, revision, disk_ports FROM vms";

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            name: row.get(0)?,
            spec: row.get(1)?,
            state: row.get(2)?,
            runtime: row.get(3)?,
            created_at_ms: row.get(4)?,
            state_changed_at_ms: row.get(5)?,
            last_error: row.get(6)?,
            revision: row.get(7)?,
            disk_ports: row.get(8)?,
        })
    }

    fn decode(self) -> Result<VmRecord, StoreError> {
        let name = self.name;
        let spec = serde_json::from_str(&self.spec).map_err(|e| corrupt(&name, e))?;
        let state = state_from_text(&name, &self.state)?;
        let runtime: Option<RuntimeRecord> = match self.runtime {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| corrupt(&name, e))?),
            None => None,
        };
        let revision = u64::try_from(self.revision).map_err(|e| corrupt(&name, e))?;
        let disk_ports = serde_json::from_str(&self.disk_ports).map_err(|e| corrupt(&name, e))?;
        Ok(VmRecord {
            name,
            spec,
            state,
            runtime,
            created_at_ms: self.created_at_ms,
            state_changed_at_ms: self.state_changed_at_ms,
            last_error: self.last_error,
            disk_ports,
            revision,
        })
    }
}

/// The record's columns as SQL values, in table order after `name`.
struct EncodedRecord {
    spec: String,
    runtime: Option<String>,
    disk_ports: String,
}

fn encode(record: &VmRecord) -> Result<EncodedRecord, StoreError> {
    let spec = serde_json::to_string(&record.spec).map_err(backend)?;
    let runtime = record.runtime.as_ref().map(serde_json::to_string).transpose().map_err(backend)?;
    let disk_ports = serde_json::to_string(&record.disk_ports).map_err(backend)?;
    Ok(EncodedRecord { spec, runtime, disk_ports })
}

fn to_sql_revision(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(backend)
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_vm(
        &self,
        write: VmWrite<'_>,
        events: &[EventRecord],
        retain: u64,
    ) -> Result<(u64, Vec<u64>), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let revision = match write {
            VmWrite::Insert(record) => insert_vm_in(&tx, record)?,
            VmWrite::Update(record) => update_vm_in(&tx, record)?,
        };
        let ids = append_events_in(&tx, events, retain)?;
        tx.commit().map_err(backend)?;
        Ok((revision, ids))
    }

    async fn apply(&self, change: Change<'_>, events: &[EventRecord], retain: u64) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        apply_in(&tx, change)?;
        let ids = append_events_in(&tx, events, retain)?;
        tx.commit().map_err(backend)?;
        Ok(ids)
    }

    async fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        let conn = self.conn();
        let raw = conn
            .query_row(&format!("{SELECT_COLUMNS} WHERE name = ?1"), [name], RawRow::read)
            .optional()
            .map_err(backend)?;
        raw.map(RawRow::decode).transpose()
    }

    async fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        self.query(&format!("{SELECT_COLUMNS} ORDER BY name"), [], RawRow::read, RawRow::decode)
    }

    async fn get_pool(&self, name: &str) -> Result<Option<PoolRecord>, StoreError> {
        let pools = self.query_pools("WHERE name = ?1", [name])?;
        Ok(pools.into_iter().next())
    }

    async fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        self.query_pools("", [])
    }

    async fn get_volume(&self, pool: &str, name: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let volumes = self.query_volumes("WHERE pool = ?1 AND name = ?2", [pool, name])?;
        Ok(volumes.into_iter().next())
    }

    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeRecord>, StoreError> {
        match pool {
            Some(pool) => self.query_volumes("WHERE pool = ?1", [pool]),
            None => self.query_volumes("", []),
        }
    }

    async fn set_volume_capacity(&self, pool: &str, name: &str, capacity_bytes: u64) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE volumes SET capacity_bytes = ?3 WHERE pool = ?1 AND name = ?2",
                params![pool, name, to_sql_u64(capacity_bytes)?],
            )
            .map_err(backend)?;
        not_found_unless_one(changed, ObjectKind::Volume, format!("{pool}/{name}"))
    }

    async fn list_snapshots(&self, vm: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        let sql = "SELECT vm, name, kind, vm_state, spec, created_at_ms, disk_ports FROM snapshots
                   WHERE vm = ?1 ORDER BY created_at_ms, name";
        let read = |row: &Row<'_>| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, String>(6)?,
            ))
        };
        self.query(sql, [vm], read, |(vm, name, kind, vm_state, spec, created_at_ms, disk_ports)| {
            Ok(SnapshotRecord {
                disk_ports: serde_json::from_str(&disk_ports).map_err(|e| corrupt(&name, e))?,
                kind: enum_from_text(&name, &kind)?,
                vm_state: state_from_text(&name, &vm_state)?,
                spec: serde_json::from_str(&spec).map_err(|e| corrupt(&name, e))?,
                vm,
                name,
                created_at_ms,
            })
        })
    }

    async fn get_network(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError> {
        Ok(self.query_networks("WHERE name = ?1", [name])?.into_iter().next())
    }

    async fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        self.query_networks("", [])
    }

    async fn append_event(&self, event: &EventRecord, retain: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let id = append_event_in(&tx, event, retain)?;
        tx.commit().map_err(backend)?;
        Ok(id)
    }

    async fn list_events(
        &self,
        after: Option<u64>,
        vm: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // Without `after`, the latest: read newest first, then put them in order.
        let (order, after_id) = match after {
            Some(id) => ("ASC", to_sql_u64(id)?),
            None => ("DESC", -1),
        };
        let sql = format!(
            "SELECT id, at_ms, vm, kind, details FROM events
             WHERE id > ?1 AND (?2 IS NULL OR vm = ?2) ORDER BY id {order} LIMIT ?3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let read = |row: &Row<'_>| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
            ))
        };
        let mut events = self.query(&sql, params![after_id, vm, limit], read, |(id, at_ms, vm, kind, details)| {
            let name = format!("event {id}");
            Ok(EventRecord {
                id: from_sql_u64(&name, id)?,
                details: serde_json::from_str(&details).map_err(|e| corrupt(&name, e))?,
                at_ms,
                vm,
                kind,
            })
        })?;
        if after.is_none() {
            events.reverse();
        }
        Ok(events)
    }
}

impl SqliteStore {
    /// Runs a SELECT: `read` takes the columns as SQLite gives them, `decode`
    /// turns them into a record, so SQLite errors and decoding errors stay apart.
    fn query<R, T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<R>,
        decode: impl Fn(R) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let rows = stmt.query_map(params, read).map_err(backend)?;
        rows.map(|row| row.map_err(backend).and_then(&decode)).collect()
    }

    fn query_networks<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<NetworkRecord>, StoreError> {
        let sql =
            format!("SELECT name, mode, bridge, subnet, vlan, created_at_ms FROM networks {filter} ORDER BY name");
        let read = |row: &Row<'_>| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, i64>(5)?,
            ))
        };
        self.query(&sql, params, read, |(name, mode, bridge, subnet, vlan, created_at_ms)| {
            let vlan = vlan.map(|v| u16::try_from(v).map_err(|e| corrupt(&name, e))).transpose()?;
            Ok(NetworkRecord { mode: enum_from_text(&name, &mode)?, name, bridge, subnet, vlan, created_at_ms })
        })
    }

    fn query_pools<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<PoolRecord>, StoreError> {
        let sql = format!("SELECT name, type, path, created_at_ms FROM pools {filter} ORDER BY name");
        let read = |row: &Row<'_>| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, i64>(3)?))
        };
        self.query(&sql, params, read, |(name, pool_type, path, created_at_ms)| {
            Ok(PoolRecord { pool_type: enum_from_text(&name, &pool_type)?, path: path.into(), name, created_at_ms })
        })
    }

    fn query_volumes<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<VolumeRecord>, StoreError> {
        let sql = format!(
            "SELECT pool, name, format, capacity_bytes, backing_pool, backing_name, created_at_ms
             FROM volumes {filter} ORDER BY pool, name"
        );
        let read = |row: &Row<'_>| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, i64>(6)?,
            ))
        };
        self.query(&sql, params, read, |(pool, name, format, capacity, backing_pool, backing_name, created_at_ms)| {
            Ok(VolumeRecord {
                format: enum_from_text(&name, &format)?,
                capacity_bytes: from_sql_u64(&name, capacity)?,
                backing: backing_pool.zip(backing_name),
                pool,
                name,
                created_at_ms,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("vireo.db")).unwrap();
        crate::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vireo.db");
        let record = crate::conformance::sample("keep");
        SqliteStore::open(&path).unwrap().insert_vm(&record).await.unwrap();
        let reopened = SqliteStore::open(&path).unwrap();
        let got = reopened.get_vm("keep").await.unwrap().unwrap();
        assert_eq!(got.spec, record.spec);
        assert_eq!(got.revision, 1);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vireo.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(SqliteStore::open(&path), Err(SqliteStoreError::TooNew { found: 99, .. })));
    }
}
