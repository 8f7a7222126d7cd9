//! In-process tests of the router: bad input gets a clear JSON error and changes nothing.
//! (Behaviour that needs a running guest lives in the end-to-end tests of `vireo-e2e`.)

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vireo_core::HostAccelFacts;
use vireo_server::VmManager;
use vireo_server::api::{AppState, MAX_BODY_BYTES, router};
use vireo_store::SqliteStore;

struct Harness {
    app: Router,
    dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("vireo.db")).unwrap();
    std::fs::write(dir.path().join("kernel"), b"not really a kernel").unwrap();
    let manager = VmManager::new(Arc::new(store), "/nonexistent/qemu".into(), HostAccelFacts::default(), dir.path());
    Harness { app: router(AppState::new(manager)), dir }
}

impl Harness {
    fn kernel(&self) -> String {
        self.dir.path().join("kernel").display().to_string()
    }

    fn good_spec(&self, name: &str) -> Value {
        json!({"name": name, "memory": "64MiB", "boot": {"kernel": self.kernel()}})
    }

    async fn call(&self, method: Method, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(path).body(body.into()).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn post_json(&self, path: &str, value: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, value.to_string()).await
    }

    async fn vm_names(&self) -> Vec<String> {
        let (status, list) = self.call(Method::GET, "/v1/vms", Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        list.as_array().unwrap().iter().map(|vm| vm["name"].as_str().unwrap().to_string()).collect()
    }
}

fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "body: {}", response.1);
    assert_eq!(response.1["code"], code, "body: {}", response.1);
    assert!(!response.1["message"].as_str().unwrap_or_default().is_empty());
}

#[tokio::test]
async fn create_show_list_delete_a_stopped_vm() {
    let h = harness();
    let (status, vm) = h.post_json("/v1/vms", &h.good_spec("alpha")).await;
    assert_eq!(status, StatusCode::CREATED, "{vm}");
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["spec"]["memory"], "64MiB");
    let (status, shown) = h.call(Method::GET, "/v1/vms/alpha", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["name"], "alpha");
    assert_eq!(h.vm_names().await, ["alpha"]);
    let (status, _) = h.call(Method::DELETE, "/v1/vms/alpha", Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.vm_names().await.is_empty());
}

#[tokio::test]
async fn each_invalid_field_is_named_and_nothing_is_stored() {
    let h = harness();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "bad/name"}), "name"),
        (json!({"name": "../../etc"}), "name"),
        (json!({"vcpus": 0}), "vcpus"),
        (json!({"vcpus": 100000}), "vcpus"),
        (json!({"memory": "0"}), "memory"),
        (json!({"memory": "5TiB"}), "memory"),
        (json!({"memory": "lots"}), "memory"),
        (json!({"accel": "hyperv"}), "accel"),
        (json!({"boot": {"kernel": "/no/such/kernel"}}), "boot.kernel"),
        (json!({"boot": {"kernel": "relative/kernel"}}), "boot.kernel"),
        (json!({"disks": [{"path": "/no/such/disk.img"}]}), "disks[0].path"),
        (json!({"console": {"log_size": 1}}), "console.log_size"),
        (json!({"colour": "blue"}), "colour"),
    ];
    for (patch, field) in cases {
        let mut spec = h.good_spec("ok");
        for (key, value) in patch.as_object().unwrap() {
            spec[key] = value.clone();
        }
        let response = h.post_json("/v1/vms", &spec).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec");
        assert_eq!(response.1["field"], field, "patch {patch}: {}", response.1);
    }
    assert!(h.vm_names().await.is_empty(), "no invalid spec may be stored");
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_are_refused() {
    let h = harness();
    let response = h.call(Method::POST, "/v1/vms", "{not json").await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec");
    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let response = h.call(Method::POST, "/v1/vms", huge).await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let response = h.call(Method::POST, "/v1/vms/none/stop", "{\"force\": \"yes\"}").await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(h.vm_names().await.is_empty());
}

#[tokio::test]
async fn unknown_vms_and_routes_are_404_json() {
    let h = harness();
    for (method, path) in [
        (Method::GET, "/v1/vms/ghost"),
        (Method::DELETE, "/v1/vms/ghost"),
        (Method::POST, "/v1/vms/ghost/start"),
        (Method::POST, "/v1/vms/ghost/stop"),
        (Method::GET, "/v1/vms/ghost/logs"),
        (Method::GET, "/v1/vms/ghost/console"),
    ] {
        let response = h.call(method.clone(), path, Body::empty()).await;
        assert_error(&response, StatusCode::NOT_FOUND, "vm_not_found");
    }
    let response = h.call(Method::GET, "/v2/whatever", Body::empty()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn duplicate_names_and_wrong_states_are_409() {
    let h = harness();
    assert_eq!(h.post_json("/v1/vms", &h.good_spec("dup")).await.0, StatusCode::CREATED);
    let mut changed = h.good_spec("dup");
    changed["memory"] = json!("128MiB");
    assert_error(&h.post_json("/v1/vms", &changed).await, StatusCode::CONFLICT, "vm_exists");
    for action in ["stop", "pause", "resume", "restart"] {
        let response = h.call(Method::POST, &format!("/v1/vms/dup/{action}"), Body::empty()).await;
        assert_error(&response, StatusCode::CONFLICT, "invalid_state");
        assert!(response.1["message"].as_str().unwrap().contains("stopped"), "{}", response.1);
    }
    let (_, vm) = h.call(Method::GET, "/v1/vms/dup", Body::empty()).await;
    assert_eq!(vm["spec"]["memory"], "64MiB", "the refused create changed nothing");
    assert_eq!(vm["state"], "stopped");
}

#[tokio::test]
async fn forcing_kvm_where_it_cannot_work_is_refused_with_the_reason() {
    let h = harness();
    let mut spec = h.good_spec("needs-kvm");
    spec["accel"] = json!("kvm");
    assert_eq!(h.post_json("/v1/vms", &spec).await.0, StatusCode::CREATED);
    let response = h.call(Method::POST, "/v1/vms/needs-kvm/start", Body::empty()).await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "accel_unavailable");
    assert!(response.1["message"].as_str().unwrap().contains("kvm_intel"), "{}", response.1);
    let (_, vm) = h.call(Method::GET, "/v1/vms/needs-kvm", Body::empty()).await;
    assert_eq!(vm["state"], "stopped");
}

#[tokio::test]
async fn committed_openapi_document_matches_the_code() {
    let generated = serde_json::to_string_pretty(&<vireo_server::api::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("VIREO_UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed, format!("{generated}\n")).unwrap();
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert_eq!(
        on_disk.trim_end(),
        generated,
        "docs/openapi.json is stale: run `VIREO_UPDATE_OPENAPI=1 cargo test -p vireo-server --test router` and commit it"
    );
}
