//! What every `Store` backend must do. Each backend's tests call `run`.

use std::path::PathBuf;

use vireo_api::{
    Accel, BootEntry, BootStatus, ByteSize, DiskFormat, Firmware, NetworkMode, PoolType, SnapshotKind, VmSpec, VmState,
};
use vireo_core::{
    Change, EventRecord, NetworkRecord, ObjectKind, PoolRecord, RuntimeRecord, SnapshotRecord, Store, StoreError,
    VmRecord, VmWrite, VolumeRecord,
};

pub fn sample(name: &str) -> VmRecord {
    let spec: VmSpec = serde_json::from_value(serde_json::json!({
        "name": name, "memory": "64MiB", "boot": {"kernel": "/k"}
    }))
    .expect("sample spec");
    VmRecord {
        name: name.to_string(),
        spec,
        state: VmState::Stopped,
        runtime: None,
        created_at_ms: 1_000,
        state_changed_at_ms: 1_000,
        last_error: None,
        disk_ports: [("volume p/v".to_string(), 2)].into(),
        revision: 0,
    }
}

pub async fn run(store: &dyn Store) {
    insert_then_get(store).await;
    duplicate_insert_is_refused(store).await;
    update_is_compare_and_swap(store).await;
    list_is_sorted(store).await;
    delete_removes(store).await;
    pools_and_volumes(store).await;
    snapshots_go_with_their_vm(store).await;
    networks(store).await;
    events_keep_their_order_and_only_the_latest(store).await;
    a_state_change_and_its_events_are_stored_together(store).await;
    a_change_and_its_events_are_stored_together(store).await;
    events_filter_by_vm_and_page_after_an_id(store).await;
}

fn event(vm: Option<&str>, kind: &str) -> EventRecord {
    EventRecord {
        id: 0,
        at_ms: 42,
        vm: vm.map(str::to_string),
        kind: kind.into(),
        details: serde_json::json!({"from": "stopped", "to": "starting", "nested": {"n": [1, 2]}}),
    }
}

fn ids(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

async fn events_keep_their_order_and_only_the_latest(store: &dyn Store) {
    let mut appended = Vec::new();
    for n in 0..5 {
        appended.push(store.append_event(&event(Some("r1"), &format!("k{n}")), 3).await.unwrap());
    }
    assert!(appended.windows(2).all(|w| w[0] < w[1]), "ids increase: {appended:?}");
    let kept = store.list_events(Some(0), None, 100).await.unwrap();
    assert_eq!(ids(&kept), appended[2..], "the oldest go, at most 3 stay");
    assert_eq!(kept[0].kind, "k2");
    assert_eq!(kept[0].vm.as_deref(), Some("r1"));
    assert_eq!(kept[0].at_ms, 42);
    assert_eq!(kept[0].details, event(None, "").details, "details come back as stored");

    // Retention never makes an id come back.
    let next = store.append_event(&event(None, "k5"), 1).await.unwrap();
    assert!(next > appended[4]);
    assert_eq!(ids(&store.list_events(None, None, 100).await.unwrap()), [next]);
    assert!(store.list_events(Some(next), None, 100).await.unwrap().is_empty());
}

async fn a_state_change_and_its_events_are_stored_together(store: &dyn Store) {
    store.insert_vm(&sample("t1")).await.unwrap();
    let mut record = store.get_vm("t1").await.unwrap().unwrap();
    let stale = record.clone();
    let before = store.list_events(None, None, 1).await.unwrap().last().map_or(0, |e| e.id);
    record.state = VmState::Starting;
    let events = [event(Some("t1"), "vm_state_changed"), event(Some("t1"), "vm_starting")];
    let (revision, appended) = store.write_vm(VmWrite::Update(&record), &events, 100).await.unwrap();
    assert_eq!(revision, record.revision + 1);
    assert_eq!(store.get_vm("t1").await.unwrap().unwrap().state, VmState::Starting);
    let stored = store.list_events(Some(before), None, 100).await.unwrap();
    assert_eq!(ids(&stored), appended, "both events, in order, with the ids returned");
    assert_eq!(stored.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["vm_state_changed", "vm_starting"]);

    // A refused update appends nothing.
    let mut stale_write = stale;
    stale_write.state = VmState::Crashed;
    let refused = store.write_vm(VmWrite::Update(&stale_write), &[event(Some("t1"), "vm_crashed")], 100).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{refused:?}");
    assert_eq!(ids(&store.list_events(Some(before), None, 100).await.unwrap()), appended);
    assert_eq!(store.get_vm("t1").await.unwrap().unwrap().state, VmState::Starting);
    store.delete_vm("t1").await.unwrap();
}

async fn a_change_and_its_events_are_stored_together(store: &dyn Store) {
    let before = store.list_events(None, None, 1).await.unwrap().last().map_or(0, |e| e.id);
    let (_, created) =
        store.write_vm(VmWrite::Insert(&sample("t2")), &[event(Some("t2"), "vm_created")], 100).await.unwrap();
    let refused = store.write_vm(VmWrite::Insert(&sample("t2")), &[event(Some("t2"), "vm_created")], 100).await;
    assert!(matches!(refused, Err(StoreError::Exists(_))), "{refused:?}");

    let pool =
        PoolRecord { name: "ev".into(), pool_type: PoolType::Dir, path: PathBuf::from("/srv/ev"), created_at_ms: 1 };
    let added = store.apply(Change::InsertPool(&pool), &[event(None, "pool_created")], 100).await.unwrap();
    assert_eq!(store.get_pool("ev").await.unwrap(), Some(pool.clone()));
    // A refused change appends nothing.
    let refused = store.apply(Change::InsertPool(&pool), &[event(None, "pool_created")], 100).await;
    assert!(matches!(refused, Err(StoreError::ObjectExists { kind: ObjectKind::Pool, .. })), "{refused:?}");
    let refused = store.apply(Change::DeleteNetwork("none"), &[event(None, "network_deleted")], 100).await;
    assert!(matches!(refused, Err(StoreError::ObjectNotFound { kind: ObjectKind::Network, .. })), "{refused:?}");
    let removed = store.apply(Change::DeletePool("ev"), &[event(None, "pool_deleted")], 100).await.unwrap();
    store.apply(Change::DeleteVm("t2"), &[], 100).await.unwrap();

    let stored = store.list_events(Some(before), None, 100).await.unwrap();
    assert_eq!(ids(&stored), [created, added, removed].concat());
    assert_eq!(
        stored.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["vm_created", "pool_created", "pool_deleted"]
    );
    assert_eq!(store.get_pool("ev").await.unwrap(), None);
    assert_eq!(store.get_vm("t2").await.unwrap(), None);
}

async fn events_filter_by_vm_and_page_after_an_id(store: &dyn Store) {
    let start = store.list_events(None, None, 1).await.unwrap().last().map_or(0, |e| e.id);
    let mut of_a = Vec::new();
    for (vm, kind) in [(Some("a"), "a1"), (Some("b"), "b1"), (None, "pool"), (Some("a"), "a2"), (Some("a"), "a3")] {
        let id = store.append_event(&event(vm, kind), 100).await.unwrap();
        if vm == Some("a") {
            of_a.push(id);
        }
    }
    let all = store.list_events(Some(start), None, 100).await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["a1", "b1", "pool", "a2", "a3"], "oldest first");
    assert_eq!(ids(&store.list_events(Some(start), Some("a"), 100).await.unwrap()), of_a);
    assert_eq!(ids(&store.list_events(Some(start), Some("a"), 2).await.unwrap()), of_a[..2], "limit counts from after");
    assert_eq!(ids(&store.list_events(Some(of_a[0]), Some("a"), 100).await.unwrap()), of_a[1..], "after is exclusive");
    assert_eq!(ids(&store.list_events(None, Some("a"), 2).await.unwrap()), of_a[1..], "no after: the latest, in order");
    assert_eq!(ids(&store.list_events(None, None, 2).await.unwrap()), ids(&all[3..]));
    assert!(store.list_events(Some(start), Some("nobody"), 100).await.unwrap().is_empty());
    let none_vm = store.list_events(Some(start), None, 100).await.unwrap();
    assert_eq!(none_vm[2].vm, None);
}

async fn networks(store: &dyn Store) {
    let network = NetworkRecord {
        name: "lan".into(),
        mode: NetworkMode::Nat,
        bridge: "vbr-lan".into(),
        subnet: Some("10.77.0.0/24".into()),
        vlan: None,
        created_at_ms: 3,
    };
    store.insert_network(&network).await.unwrap();
    assert!(matches!(
        store.insert_network(&network).await,
        Err(StoreError::ObjectExists { kind: ObjectKind::Network, .. })
    ));
    let tagged =
        NetworkRecord { name: "br".into(), mode: NetworkMode::Bridge, subnet: None, vlan: Some(42), ..network.clone() };
    store.insert_network(&tagged).await.unwrap();
    assert_eq!(store.get_network("lan").await.unwrap(), Some(network));
    let names: Vec<String> = store.list_networks().await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["br", "lan"]);
    assert_eq!(store.get_network("br").await.unwrap().unwrap().vlan, Some(42));
    store.delete_network("lan").await.unwrap();
    assert!(store.delete_network("lan").await.is_err());
}

fn volume(pool: &str, name: &str, backing: Option<(&str, &str)>) -> VolumeRecord {
    VolumeRecord {
        pool: pool.into(),
        name: name.into(),
        format: DiskFormat::Qcow2,
        capacity_bytes: 1 << 30,
        backing: backing.map(|(p, n)| (p.into(), n.into())),
        created_at_ms: 5,
    }
}

async fn pools_and_volumes(store: &dyn Store) {
    let pool =
        PoolRecord { name: "p1".into(), pool_type: PoolType::Dir, path: PathBuf::from("/srv/p1"), created_at_ms: 1 };
    store.insert_pool(&pool).await.unwrap();
    assert!(matches!(store.insert_pool(&pool).await, Err(StoreError::ObjectExists { kind: ObjectKind::Pool, .. })));
    let same_path = PoolRecord { name: "p2".into(), ..pool.clone() };
    assert!(store.insert_pool(&same_path).await.is_err(), "two pools cannot share a directory");
    assert_eq!(store.get_pool("p1").await.unwrap(), Some(pool.clone()));

    store.insert_volume(&volume("p1", "base", None)).await.unwrap();
    store.insert_volume(&volume("p1", "clone", Some(("p1", "base")))).await.unwrap();
    assert!(store.insert_volume(&volume("p1", "base", None)).await.is_err());
    assert!(store.insert_volume(&volume("nopool", "x", None)).await.is_err(), "a volume needs its pool");
    let clone = store.get_volume("p1", "clone").await.unwrap().unwrap();
    assert_eq!(clone.backing, Some(("p1".into(), "base".into())));
    store.set_volume_capacity("p1", "base", 2 << 30).await.unwrap();
    assert_eq!(store.get_volume("p1", "base").await.unwrap().unwrap().capacity_bytes, 2 << 30);
    let names: Vec<String> = store.list_volumes(Some("p1")).await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["base", "clone"]);

    assert!(store.delete_volume("p1", "base").await.is_err(), "a backing volume cannot go before its clone");
    assert!(store.delete_pool("p1").await.is_err(), "a pool with volumes cannot go");
    store.delete_volume("p1", "clone").await.unwrap();
    store.delete_volume("p1", "base").await.unwrap();
    assert!(matches!(
        store.delete_volume("p1", "base").await,
        Err(StoreError::ObjectNotFound { kind: ObjectKind::Volume, .. })
    ));
    store.delete_pool("p1").await.unwrap();
    assert!(store.list_pools().await.unwrap().is_empty());
}

async fn snapshots_go_with_their_vm(store: &dyn Store) {
    let vm = sample("snappy");
    store.insert_vm(&vm).await.unwrap();
    let snapshot = |name: &str, at: i64| SnapshotRecord {
        vm: "snappy".into(),
        name: name.into(),
        kind: SnapshotKind::Full,
        vm_state: VmState::Running,
        spec: vm.spec.clone(),
        disk_ports: [("volume p/v".to_string(), 1)].into(),
        created_at_ms: at,
    };
    store.insert_snapshot(&snapshot("second", 20)).await.unwrap();
    store.insert_snapshot(&snapshot("first", 10)).await.unwrap();
    assert!(store.insert_snapshot(&snapshot("first", 30)).await.is_err());
    let names: Vec<String> = store.list_snapshots("snappy").await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["first", "second"], "oldest first");
    let kept = &store.list_snapshots("snappy").await.unwrap()[0];
    assert_eq!(kept.disk_ports.get("volume p/v"), Some(&1));
    store.delete_snapshot("snappy", "first").await.unwrap();
    assert!(store.delete_snapshot("snappy", "first").await.is_err());
    store.delete_vm("snappy").await.unwrap();
    assert!(store.list_snapshots("snappy").await.unwrap().is_empty(), "deleting a VM deletes its snapshots");
}

async fn insert_then_get(store: &dyn Store) {
    let record = sample("a1");
    let revision = store.insert_vm(&record).await.unwrap();
    let got = store.get_vm("a1").await.unwrap().expect("inserted VM is found");
    assert_eq!(got.revision, revision);
    assert_eq!(got.spec, record.spec);
    assert_eq!(got.state, VmState::Stopped);
    assert_eq!(got.disk_ports, record.disk_ports);
    assert!(store.get_vm("missing").await.unwrap().is_none());
}

async fn duplicate_insert_is_refused(store: &dyn Store) {
    let mut record = sample("a1");
    record.spec.memory = ByteSize::mib(128);
    assert!(matches!(store.insert_vm(&record).await, Err(StoreError::Exists(name)) if name == "a1"));
    let kept = store.get_vm("a1").await.unwrap().unwrap();
    assert_eq!(kept.spec.memory, ByteSize::mib(64), "a refused insert changes nothing");
}

async fn update_is_compare_and_swap(store: &dyn Store) {
    let mut record = store.get_vm("a1").await.unwrap().unwrap();
    let stale = record.clone();
    record.state = VmState::Running;
    let boot = BootStatus { entry: BootEntry::Pvh, firmware: Firmware::Qboot, kernel: Some("/k/a.vmlinux".into()) };
    record.runtime = Some(RuntimeRecord {
        pid: 42,
        pid_start_ticks: 7,
        accel: Accel::Tcg,
        runtime_dir: PathBuf::from("/run/x"),
        boot: Some(boot),
    });
    let new_revision = store.update_vm(&record).await.unwrap();
    assert_eq!(new_revision, stale.revision + 1);
    let got = store.get_vm("a1").await.unwrap().unwrap();
    assert_eq!(got.state, VmState::Running);
    assert_eq!(got.runtime, record.runtime);

    let mut stale_write = stale;
    stale_write.state = VmState::Crashed;
    assert!(matches!(store.update_vm(&stale_write).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.get_vm("a1").await.unwrap().unwrap().state, VmState::Running);

    let ghost = sample("ghost");
    assert!(matches!(store.update_vm(&ghost).await, Err(StoreError::NotFound(_))));
}

async fn list_is_sorted(store: &dyn Store) {
    store.insert_vm(&sample("c3")).await.unwrap();
    store.insert_vm(&sample("b2")).await.unwrap();
    let names: Vec<String> = store.list_vms().await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["a1", "b2", "c3"]);
}

async fn delete_removes(store: &dyn Store) {
    store.delete_vm("b2").await.unwrap();
    assert!(store.get_vm("b2").await.unwrap().is_none());
    assert!(matches!(store.delete_vm("b2").await, Err(StoreError::NotFound(_))));
}
