//! `GET /v1/events` in process: what the manager records is listed, filtered and
//! streamed; bad queries get a clear 400. (Events of real guests are tested end
//! to end in `crates/vireo/tests/e2e_events.rs`.)

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vireo_core::HostAccelFacts;
use vireo_server::VmManager;
use vireo_server::api::{AppState, router};
use vireo_store::SqliteStore;

struct Daemon {
    app: Router,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn new() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("vireo.db")).unwrap();
        std::fs::write(dir.path().join("kernel"), b"not really a kernel").unwrap();
        let manager =
            VmManager::new(Arc::new(store), "/nonexistent/qemu".into(), HostAccelFacts::default(), dir.path());
        Daemon { app: router(AppState::new(manager)), dir }
    }

    async fn request(&self, request: Request<Body>) -> axum::response::Response {
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
        let response = self.request(request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn events(&self, query: &str) -> Vec<Value> {
        let (status, list) = self.json("GET", &format!("/v1/events{query}"), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list.as_array().unwrap().clone()
    }

    async fn create_vm(&self, name: &str) {
        let kernel = self.dir.path().join("kernel");
        let spec = json!({"name": name, "memory": "64MiB", "boot": {"kernel": kernel}});
        assert_eq!(self.json("POST", "/v1/vms", spec).await.0, StatusCode::CREATED);
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn operations_are_listed_in_order_and_filtered() {
    let daemon = Daemon::new();
    let pool = json!({"name": "fast", "path": daemon.dir.path().join("fast")});
    assert_eq!(daemon.json("POST", "/v1/pools", pool).await.0, StatusCode::CREATED);
    daemon.create_vm("alpha").await;
    daemon.create_vm("beta").await;
    assert_eq!(daemon.json("DELETE", "/v1/vms/alpha", Value::Null).await.0, StatusCode::NO_CONTENT);

    let all = daemon.events("").await;
    assert_eq!(kinds(&all), ["pool.created", "vm.created", "vm.created", "vm.deleted"]);
    assert!(ids(&all).windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(all[0]["details"], json!({"pool": "fast"}));
    assert!(all[0].get("vm").is_none(), "a pool event is about no VM");
    assert_eq!(all[1]["vm"], "alpha");
    assert!(all[1]["time"].as_str().unwrap().ends_with('Z'), "{}", all[1]);

    let alpha = daemon.events("?vm=alpha").await;
    assert_eq!(kinds(&alpha), ["vm.created", "vm.deleted"]);
    let after = daemon.events(&format!("?after={}", ids(&all)[1])).await;
    assert_eq!(ids(&after), ids(&all)[2..]);
    let latest = daemon.events("?limit=1").await;
    assert_eq!(ids(&latest), ids(&all)[3..], "without after: the latest");
    assert_eq!(ids(&daemon.events(&format!("?after={}&limit=1", ids(&all)[0])).await), ids(&all)[1..2]);
}

#[tokio::test]
async fn bad_queries_are_400_and_name_the_problem() {
    let daemon = Daemon::new();
    for query in ["?after=abc", "?after=-1", "?limit=0", "?limit=10001", "?vm=", "?colour=blue"] {
        let (status, error) = daemon.json("GET", &format!("/v1/events{query}"), Value::Null).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(error["code"], "invalid_request", "{query}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let request = Request::get("/v1/events")
        .header("accept", "text/event-stream")
        .header("last-event-id", "yesterday")
        .body(Body::empty())
        .unwrap();
    let response = daemon.request(request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(error["message"].as_str().unwrap().contains("Last-Event-ID"), "{error}");
}

/// Reads SSE messages off `body` until `count` have arrived: each as (id, event, data).
async fn read_messages(body: &mut Body, count: usize) -> Vec<(String, String, Value)> {
    let mut text = String::new();
    let mut messages = Vec::new();
    while messages.len() < count {
        let frame = body.frame().await.expect("the stream goes on").unwrap();
        text.push_str(std::str::from_utf8(&frame.into_data().unwrap_or_default()).unwrap());
        while let Some((message, rest)) = text.split_once("\n\n") {
            let field = |name: &str| {
                message.lines().find_map(|line| line.strip_prefix(name)).unwrap_or_default().trim().to_string()
            };
            if !field("data:").is_empty() {
                let data = serde_json::from_str(&field("data:")).unwrap();
                messages.push((field("id:"), field("event:"), data));
            }
            text = rest.to_string();
        }
    }
    messages
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id_then_follows() {
    let daemon = Daemon::new();
    for name in ["one", "two", "three"] {
        daemon.create_vm(name).await;
    }
    let first = ids(&daemon.events("").await)[0];
    let request = Request::get("/v1/events")
        .header("accept", "text/event-stream")
        .header("last-event-id", first.to_string())
        .body(Body::empty())
        .unwrap();
    let response = daemon.request(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let stored = read_messages(&mut body, 2).await;
    assert_eq!(stored[0].0, (first + 1).to_string(), "the stream starts right after Last-Event-ID");
    assert_eq!(stored[0].1, "vm.created");
    assert_eq!(stored[0].2["vm"], "two");
    assert_eq!(stored[1].2["vm"], "three");

    daemon.create_vm("four").await;
    let live = read_messages(&mut body, 1).await;
    assert_eq!(live[0].0, (first + 3).to_string());
    assert_eq!(live[0].2["vm"], "four");
    assert_eq!(live[0].2["kind"], "vm.created");
}
