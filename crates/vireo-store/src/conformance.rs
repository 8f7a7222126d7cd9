//! What every `Store` backend must do. Each backend's tests call `run`.

use std::path::PathBuf;

use vireo_api::{Accel, ByteSize, VmSpec, VmState};
use vireo_core::{RuntimeRecord, Store, StoreError, VmRecord};

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
        revision: 0,
    }
}

pub async fn run(store: &dyn Store) {
    insert_then_get(store).await;
    duplicate_insert_is_refused(store).await;
    update_is_compare_and_swap(store).await;
    list_is_sorted(store).await;
    delete_removes(store).await;
}

async fn insert_then_get(store: &dyn Store) {
    let record = sample("a1");
    let revision = store.insert_vm(&record).await.unwrap();
    let got = store.get_vm("a1").await.unwrap().expect("inserted VM is found");
    assert_eq!(got.revision, revision);
    assert_eq!(got.spec, record.spec);
    assert_eq!(got.state, VmState::Stopped);
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
    record.runtime =
        Some(RuntimeRecord { pid: 42, pid_start_ticks: 7, accel: Accel::Tcg, runtime_dir: PathBuf::from("/run/x") });
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
