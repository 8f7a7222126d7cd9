//! The event log: every state change and operation, stored and streamed.
//!
//! An event is stored with the change it reports, in one transaction, so a
//! crash never leaves a change unreported nor reports one that was not made:
//! `EventLog::save_vm_state` (a VM's new state), `EventLog::write_vm` and
//! `EventLog::apply` (any other stored change). `EventLog::emit` appends an
//! event alone, for the outcome of an operation of several steps (a revert,
//! a migration). The store keeps the latest [`RETAINED_EVENTS`]. The events
//! then go to the live subscribers through a broadcast channel. A [`Follower`]
//! reads the stored events after a given id, then the live ones, so a stream
//! resumed after an id has no gap and no duplicate. A follower that falls
//! behind the channel is never waited for: it reads what it missed from the store.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Mutex, broadcast, watch};
use vireo_api::{EventKind, VmState};
use vireo_core::events::transition_events;
use vireo_core::{Change, EventRecord, Store, StoreError, VmRecord, VmWrite};

/// How many events the store keeps; older ones are deleted as new ones come.
pub const RETAINED_EVENTS: u64 = 10_000;
/// Live events a follower may fall behind by before it reads from the store instead.
const LIVE_BACKLOG: usize = 1024;
/// Stored events read at a time while a follower catches up.
const PAGE: usize = 500;

/// An event not stored yet (its id comes from the store).
fn unsaved(vm: Option<&str>, kind: EventKind) -> EventRecord {
    EventRecord {
        id: 0,
        at_ms: crate::manager::now_ms(),
        vm: vm.map(str::to_string),
        kind: kind.name(),
        details: kind.details().into(),
    }
}

pub struct EventLog {
    store: Arc<dyn Store>,
    live: broadcast::Sender<Arc<EventRecord>>,
    /// Held from storing an event to broadcasting it, so live events go out in id order.
    order: Mutex<()>,
    /// Set when the daemon shuts down: followers end, so their connections can close.
    closed: watch::Sender<bool>,
}

impl EventLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_live_backlog(store, LIVE_BACKLOG)
    }

    fn with_live_backlog(store: Arc<dyn Store>, live_backlog: usize) -> Self {
        let live = broadcast::channel(live_backlog).0;
        EventLog { store, live, order: Mutex::new(()), closed: watch::channel(false).0 }
    }

    /// Records that `kind` happened (to `vm`, if it is about one): for the outcome
    /// of an operation of several steps (a revert, a migration, a take-over),
    /// whose stored changes went with their own events. What it reports has
    /// happened already, so a store failure is logged, not returned.
    pub async fn emit(&self, vm: Option<&str>, kind: EventKind) {
        let record = unsaved(vm, kind);
        let _order = self.order.lock().await;
        match self.store.append_event(&record, RETAINED_EVENTS).await {
            Ok(id) => self.broadcast(record, id),
            Err(err) => tracing::warn!(vm, kind = %record.kind, error = %err, "cannot record event"),
        }
    }

    /// Stores `vm`, whose state was `from`, together with the events that report
    /// its change (see `transition_events`): both or neither. Returns the new revision.
    /// `also`, the event of the operation that brought the change (a restore), is stored with them.
    pub async fn save_vm_state(
        &self,
        vm: &VmRecord,
        from: VmState,
        also: Option<EventKind>,
    ) -> Result<u64, StoreError> {
        let events: Vec<EventRecord> = transition_events(from, vm.state, vm.last_error.as_deref())
            .into_iter()
            .chain(also)
            .map(|kind| unsaved(Some(&vm.name), kind))
            .collect();
        self.write_vm_with(VmWrite::Update(vm), events).await
    }

    /// Inserts or updates a VM together with `kind`, the event that reports it:
    /// both or neither. Returns the VM's new revision.
    pub async fn write_vm(&self, write: VmWrite<'_>, kind: EventKind) -> Result<u64, StoreError> {
        let (VmWrite::Insert(vm) | VmWrite::Update(vm)) = write;
        self.write_vm_with(write, vec![unsaved(Some(&vm.name), kind)]).await
    }

    async fn write_vm_with(&self, write: VmWrite<'_>, events: Vec<EventRecord>) -> Result<u64, StoreError> {
        let _order = self.order.lock().await;
        let (revision, ids) = self.store.write_vm(write, &events, RETAINED_EVENTS).await?;
        self.broadcast_all(events, ids);
        Ok(revision)
    }

    /// Applies `change` together with `kind`, the event that reports it (about
    /// `vm`, if it is about one): both or neither.
    pub async fn apply(&self, change: Change<'_>, vm: Option<&str>, kind: EventKind) -> Result<(), StoreError> {
        let events = vec![unsaved(vm, kind)];
        let _order = self.order.lock().await;
        let ids = self.store.apply(change, &events, RETAINED_EVENTS).await?;
        self.broadcast_all(events, ids);
        Ok(())
    }

    fn broadcast_all(&self, events: Vec<EventRecord>, ids: Vec<u64>) {
        for (event, id) in events.into_iter().zip(ids) {
            self.broadcast(event, id);
        }
    }

    /// Hands a stored event to the live subscribers; called under `order`.
    fn broadcast(&self, mut event: EventRecord, id: u64) {
        event.id = id;
        // Fails only when nobody follows, which is fine.
        let _ = self.live.send(Arc::new(event));
    }

    /// Stored events, oldest first: after `after`, or the latest ones.
    pub async fn list(
        &self,
        after: Option<u64>,
        vm: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.store.list_events(after, vm, limit).await
    }

    /// Follows the log from after `after` (or from now), only `vm`'s events if given.
    pub async fn follow(self: &Arc<Self>, after: Option<u64>, vm: Option<String>) -> Result<Follower, StoreError> {
        // Subscribed before reading the store: whatever is stored from now on also arrives live.
        let live = self.live.subscribe();
        let cursor = match after {
            Some(id) => id,
            None => self.store.list_events(None, None, 1).await?.last().map_or(0, |event| event.id),
        };
        Ok(Follower {
            log: self.clone(),
            live,
            closed: self.closed.subscribe(),
            vm,
            cursor,
            stored: VecDeque::new(),
            caught_up: after.is_none(),
        })
    }

    /// Ends every follower (the daemon is shutting down).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// One reader of the log: stored events first, then live ones.
pub struct Follower {
    log: Arc<EventLog>,
    live: broadcast::Receiver<Arc<EventRecord>>,
    closed: watch::Receiver<bool>,
    vm: Option<String>,
    /// The id of the last event handed out: nothing at or before it is handed out again.
    cursor: u64,
    /// Read from the store, not handed out yet.
    stored: VecDeque<EventRecord>,
    /// Whether the store holds nothing after the cursor that the live channel will not bring.
    caught_up: bool,
}

impl Follower {
    /// The next event; `None` once the daemon shuts down.
    pub async fn next(&mut self) -> Option<Result<EventRecord, StoreError>> {
        loop {
            if let Some(event) = self.stored.pop_front() {
                self.cursor = event.id;
                return Some(Ok(event));
            }
            if !self.caught_up {
                match self.log.store.list_events(Some(self.cursor), self.vm.as_deref(), PAGE).await {
                    Ok(page) => {
                        self.caught_up = page.len() < PAGE;
                        self.stored.extend(page);
                        continue;
                    }
                    Err(err) => return Some(Err(err)),
                }
            }
            tokio::select! {
                _ = self.closed.wait_for(|closed| *closed) => return None,
                received = self.live.recv() => match received {
                    Ok(event) if event.id > self.cursor && is_about(&event, self.vm.as_deref()) => {
                        self.cursor = event.id;
                        return Some(Ok(EventRecord::clone(&event)));
                    }
                    Ok(_) => {}
                    // What the channel dropped is in the store.
                    Err(RecvError::Lagged(_)) => self.caught_up = false,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Whether `event` passes a filter on `vm` (no filter passes all).
fn is_about(event: &EventRecord, vm: Option<&str>) -> bool {
    vm.is_none_or(|vm| event.vm.as_deref() == Some(vm))
}

#[cfg(test)]
mod tests {
    use vireo_store::SqliteStore;

    use super::*;

    fn log(live_backlog: usize) -> (tempfile::TempDir, Arc<EventLog>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("vireo.db")).unwrap();
        (dir, Arc::new(EventLog::with_live_backlog(Arc::new(store), live_backlog)))
    }

    fn pool_event(n: usize) -> EventKind {
        EventKind::PoolCreated { pool: format!("p{n}") }
    }

    async fn next_id(follower: &mut Follower) -> u64 {
        follower.next().await.expect("an event").expect("readable").id
    }

    #[tokio::test]
    async fn a_follower_gets_stored_then_live_events_once_each() {
        let (_dir, log) = log(16);
        log.emit(None, pool_event(1)).await;
        log.emit(None, pool_event(2)).await;
        let mut follower = log.follow(Some(0), None).await.unwrap();
        log.emit(None, pool_event(3)).await;
        let ids = [next_id(&mut follower).await, next_id(&mut follower).await, next_id(&mut follower).await];
        assert_eq!(ids, [1, 2, 3], "event 3 was both stored and broadcast, and comes once");
        log.emit(None, pool_event(4)).await;
        assert_eq!(next_id(&mut follower).await, 4);
    }

    #[tokio::test]
    async fn a_lagging_follower_catches_up_from_the_store() {
        let (_dir, log) = log(4);
        let mut follower = log.follow(None, None).await.unwrap();
        // Far more than the channel holds, none read meanwhile; the emitter never waits.
        for n in 0..50 {
            log.emit(None, pool_event(n)).await;
        }
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids.push(next_id(&mut follower).await);
        }
        assert_eq!(ids, (1..=50).collect::<Vec<u64>>(), "no gap, no duplicate");
    }

    #[tokio::test]
    async fn a_follower_from_now_skips_the_past_and_filters_by_vm() {
        let (_dir, log) = log(16);
        log.emit(Some("web1"), EventKind::VmCreated {}).await;
        let mut follower = log.follow(None, Some("web1".into())).await.unwrap();
        log.emit(Some("db1"), EventKind::VmCreated {}).await;
        log.emit(None, pool_event(1)).await;
        log.emit(Some("web1"), EventKind::VmDeleted {}).await;
        let event = follower.next().await.unwrap().unwrap();
        assert_eq!((event.id, event.kind.as_str()), (4, "vm.deleted"));
    }

    #[tokio::test]
    async fn closing_ends_every_follower() {
        let (_dir, log) = log(16);
        let mut follower = log.follow(None, None).await.unwrap();
        let waiting = tokio::spawn(async move { follower.next().await.is_none() });
        log.close();
        assert!(waiting.await.unwrap(), "the follower ended instead of waiting for events");
    }
}
