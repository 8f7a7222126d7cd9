//! The client against a scripted daemon: routes, headers, bodies and error mapping.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vireo_api::{
    ByteSize, DiskFormat, DiskSpec, ErrorCode, NetworkMode, NetworkSpec, PoolSpec, PoolType, SnapshotCreate,
    SnapshotKind, StopRequest, VmState, VolumeClone, VolumeCreate, VolumeImport, VolumeResize,
};
use vireo_client::{Client, ClientError, Endpoint};

/// One request as the fake daemon received it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

const VM_JSON: &str = r#"{"name":"web1","state":"running","spec":{"name":"web1","vcpus":2,"memory":"256MiB",
    "accel":"auto","boot":{"kernel":"/k","initrd":null,"cmdline":null},"disks":[],"console":{"log_size":"1MiB"}},
    "accel":"tcg","pid":42,"created_at":"2025-01-01T00:00:00Z","state_changed_at":"2025-01-01T00:00:01Z",
    "last_error":null}"#;

async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: S) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_string();
    let path = parts.next().unwrap().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length =
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    Seen { method, path, headers, body }
}

fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A Unix-socket daemon answering every request with `(status, body)`, reporting what it saw.
fn unix_daemon(status: u16, body: &'static [u8]) -> (tempfile::TempDir, PathBuf, mpsc::UnboundedReceiver<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vireo.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = read_request(&mut stream).await;
            tx.send(seen).unwrap();
            stream.write_all(&response(status, body)).await.unwrap();
        }
    });
    (dir, socket, rx)
}

#[tokio::test]
async fn lists_and_parses_vms() {
    let list = format!("[{VM_JSON}]").leak().as_bytes();
    let (_dir, socket, mut seen) = unix_daemon(200, list);
    let vms = Client::new(Endpoint::Unix(socket)).list_vms().await.unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].state, VmState::Running);
    assert_eq!(vms[0].pid, Some(42));
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/v1/vms"));
    assert_eq!(request.header("host"), Some("localhost"));
    assert_eq!(request.header("authorization"), None);
}

#[tokio::test]
async fn stop_sends_its_options_to_an_encoded_path() {
    let (_dir, socket, mut seen) = unix_daemon(200, VM_JSON.as_bytes());
    let client = Client::new(Endpoint::Unix(socket));
    let request = StopRequest { force: true, timeout_secs: Some(5) };
    client.stop_vm("we b/1", &request).await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/vms/we%20b%2F1/stop"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, serde_json::json!({"force": true, "timeout_secs": 5}));
}

#[tokio::test]
async fn logs_are_raw_bytes_with_a_tail_query() {
    let (_dir, socket, mut seen) = unix_daemon(200, b"boot\xff\r\nlogin: ");
    let logs = Client::new(Endpoint::Unix(socket)).vm_logs("web1", Some(64)).await.unwrap();
    assert_eq!(logs, b"boot\xff\r\nlogin: ");
    assert_eq!(seen.recv().await.unwrap().path, "/v1/vms/web1/logs?tail_bytes=64");
}

#[tokio::test]
async fn delete_accepts_no_content() {
    let (_dir, socket, mut seen) = unix_daemon(204, b"");
    Client::new(Endpoint::Unix(socket)).delete_vm("web1").await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("DELETE", "/v1/vms/web1"));
}

#[tokio::test]
async fn api_errors_come_back_typed() {
    let body = br#"{"code":"invalid_spec","message":"must be between 16MiB and 1TiB, got 1MiB","field":"memory"}"#;
    let (_dir, socket, _seen) = unix_daemon(422, body);
    let err = Client::new(Endpoint::Unix(socket)).start_vm("web1").await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::InvalidSpec));
    assert_eq!(err.to_string(), "memory: must be between 16MiB and 1TiB, got 1MiB");
}

#[tokio::test]
async fn garbage_on_success_is_a_protocol_error() {
    let (_dir, socket, _seen) = unix_daemon(200, b"not json");
    let err = Client::new(Endpoint::Unix(socket)).get_vm("web1").await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn tcp_sends_the_bearer_token() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let seen = read_request(&mut stream).await;
        let body = br#"{"accel":"tcg","accel_reason":"no /dev/kvm","items":[]}"#;
        stream.write_all(&response(200, body)).await.unwrap();
        seen
    });
    let endpoint = Endpoint::Tcp { url: format!("http://{address}"), token: "t0ken".into() };
    let check = Client::new(endpoint).host_check().await.unwrap();
    assert_eq!(check.accel, "tcg");
    let request = server.await.unwrap();
    assert_eq!(request.path, "/v1/host/check");
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("host"), Some(address.to_string().as_str()));
}

#[tokio::test]
async fn a_missing_socket_is_a_connect_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vireo.sock");
    let err = Client::new(Endpoint::Unix(socket.clone())).list_vms().await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    assert!(!message.contains("os error"), "{message}");
}

#[tokio::test]
#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn console_carries_bytes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vireo.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut path = String::new();
        let mut ws = tokio_tungstenite::accept_hdr_async(
            stream,
            |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                path = req.uri().path().to_string();
                Ok(resp)
            },
        )
        .await
        .unwrap();
        ws.send(Message::binary(b"Welcome\r\nlog".to_vec())).await.unwrap();
        ws.send(Message::binary(b"in: rest".to_vec())).await.unwrap();
        // Echo what is typed, as a tty would.
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(bytes) = message {
                ws.send(Message::Binary(bytes)).await.unwrap();
            }
        }
        path
    });

    let mut console = Client::new(Endpoint::Unix(socket)).console("web1").await.unwrap();
    let upto = console.read_until(b"login: ", Duration::from_secs(5)).await.unwrap();
    assert_eq!(upto, b"Welcome\r\nlogin: ");
    assert_eq!(console.recv().await.unwrap().unwrap(), b"rest");
    console.send_line("root").await.unwrap();
    assert_eq!(console.read_until(b"root\n", Duration::from_secs(5)).await.unwrap(), b"root\n");
    let err = console.read_until(b"never", Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, ClientError::ConsoleTimeout { .. }), "{err:?}");
    console.close().await.unwrap();
    assert_eq!(server.await.unwrap(), "/v1/vms/web1/console");
}

#[tokio::test]
async fn console_of_a_missing_vm_is_an_api_error() {
    let (_dir, socket, _seen) = unix_daemon(404, br#"{"code":"vm_not_found","message":"no VM named nope"}"#);
    let err = Client::new(Endpoint::Unix(socket)).console("nope").await.err().unwrap();
    assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::VmNotFound));
}

const VOLUME_JSON: &str = r#"{"pool":"default","name":"root.qcow2","format":"qcow2","capacity_bytes":10737418240,
    "allocation_bytes":196608,"path":"/pools/default/root.qcow2","backing":null,"used_by":[]}"#;

const POOL_JSON: &str = r#"{"name":"default","type":"dir","path":"/pools/default","capacity_bytes":100,
    "allocation_bytes":10,"available_bytes":90,"volume_count":1}"#;

const SNAPSHOT_JSON: &str =
    r#"{"vm":"web1","name":"s1","kind":"full","vm_state":"running","created_at":"2025-01-01T00:00:00Z"}"#;

/// A Unix-socket daemon that answers each request as `answer` says, reporting what it saw.
fn routing_daemon(answer: fn(&Seen) -> (u16, String)) -> (tempfile::TempDir, PathBuf, mpsc::UnboundedReceiver<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vireo.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = read_request(&mut stream).await;
            let (status, body) = answer(&seen);
            tx.send(seen).unwrap();
            stream.write_all(&response(status, body.as_bytes())).await.unwrap();
        }
    });
    (dir, socket, rx)
}

/// The answer of the real daemon's storage routes, by method and path.
fn storage_answer(seen: &Seen) -> (u16, String) {
    let path = seen.path.as_str();
    match seen.method.as_str() {
        "DELETE" if path.contains("/disks/") => (200, VM_JSON.into()),
        "DELETE" => (204, String::new()),
        "GET" if path == "/v1/pools" => (200, format!("[{POOL_JSON}]")),
        "GET" if path.starts_with("/v1/pools/") && !path.contains("/volumes") => (200, POOL_JSON.into()),
        "GET" if path.ends_with("/snapshots") => (200, format!("[{SNAPSHOT_JSON}]")),
        "GET" if path.ends_with("/volumes") => (200, format!("[{VOLUME_JSON}]")),
        "GET" => (200, VOLUME_JSON.into()),
        "POST" if path == "/v1/pools" => (201, POOL_JSON.into()),
        "POST" if path.ends_with("/snapshots") => (201, SNAPSHOT_JSON.into()),
        "POST" if path.starts_with("/v1/vms/") => (200, VM_JSON.into()),
        "POST" => (201, VOLUME_JSON.into()),
        _ => (404, r#"{"code":"not_found","message":"no such route"}"#.into()),
    }
}

fn json_body(seen: &Seen) -> serde_json::Value {
    serde_json::from_slice(&seen.body).unwrap()
}

#[tokio::test]
async fn pools_use_their_routes() {
    let (_dir, socket, mut seen) = routing_daemon(storage_answer);
    let client = Client::new(Endpoint::Unix(socket));
    let spec = PoolSpec { name: "default".into(), pool_type: PoolType::Dir, path: "/pools/default".into() };
    assert_eq!(client.create_pool(&spec).await.unwrap().volume_count, 1);
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/pools"));
    assert_eq!(json_body(&request), serde_json::json!({"name": "default", "type": "dir", "path": "/pools/default"}));

    assert_eq!(client.list_pools().await.unwrap()[0].name, "default");
    assert_eq!(seen.recv().await.unwrap().path, "/v1/pools");
    assert_eq!(client.get_pool("default").await.unwrap().available_bytes, 90);
    assert_eq!(seen.recv().await.unwrap().path, "/v1/pools/default");
    client.delete_pool("a/../b").await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("DELETE", "/v1/pools/a%2F%2E%2E%2Fb"));
}

#[tokio::test]
async fn volumes_use_their_routes() {
    let (_dir, socket, mut seen) = routing_daemon(storage_answer);
    let client = Client::new(Endpoint::Unix(socket));
    let mut next = async || {
        let request = seen.recv().await.unwrap();
        (request.method.clone(), request.path.clone(), request.body.clone())
    };

    assert_eq!(client.list_volumes(None).await.unwrap().len(), 1);
    assert_eq!(next().await.1, "/v1/volumes");
    client.list_volumes(Some("default")).await.unwrap();
    assert_eq!(next().await.1, "/v1/pools/default/volumes");

    let create = VolumeCreate { name: "root.qcow2".into(), size: ByteSize(10 << 30), format: Some(DiskFormat::Raw) };
    assert_eq!(client.create_volume("default", &create).await.unwrap().name, "root.qcow2");
    let (method, path, body) = next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/pools/default/volumes"));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, serde_json::json!({"name": "root.qcow2", "size": "10GiB", "format": "raw"}));

    client.get_volume("default", "root.qcow2").await.unwrap();
    assert_eq!(next().await.1, "/v1/pools/default/volumes/root.qcow2");
    client.delete_volume("default", "..").await.unwrap();
    assert_eq!(next().await, ("DELETE".into(), "/v1/pools/default/volumes/%2E.".into(), Vec::new()));

    let clone = VolumeClone { target: "other/web.qcow2".into(), linked: true };
    client.clone_volume("default", "root.qcow2", &clone).await.unwrap();
    let (method, path, body) = next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/v1/pools/default/volumes/root.qcow2/clone"));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, serde_json::json!({"target": "other/web.qcow2", "linked": true}));

    let resize = VolumeResize { size: ByteSize(20 << 30), allow_shrink: false };
    client.resize_volume("default", "root.qcow2", &resize).await.unwrap();
    let (_, path, body) = next().await;
    assert_eq!(path, "/v1/pools/default/volumes/root.qcow2/resize");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, serde_json::json!({"size": "20GiB", "allow_shrink": false}));

    let err = client.get_volume("default", "").await.unwrap_err();
    assert_eq!(err.to_string(), "a volume name must not be empty");
}

#[tokio::test]
async fn vm_disks_snapshots_and_save_use_their_routes() {
    let (_dir, socket, mut seen) = routing_daemon(storage_answer);
    let client = Client::new(Endpoint::Unix(socket));

    let disk = DiskSpec { volume: Some("default/data.img".into()), readonly: true, ..DiskSpec::default() };
    assert_eq!(client.attach_disk("web1", &disk).await.unwrap().name, "web1");
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/vms/web1/disks"));
    assert_eq!(json_body(&request)["volume"], "default/data.img");
    client.detach_disk("web1", "default/data.img").await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("DELETE", "/v1/vms/web1/disks/default/data.img"));
    let err = client.detach_disk("web1", "data.img").await.unwrap_err();
    assert!(matches!(err, ClientError::NotAVolume { .. }), "{err:?}");

    let create = SnapshotCreate { name: "s1".into(), disk_only: true };
    assert_eq!(client.create_snapshot("web1", &create).await.unwrap().kind, SnapshotKind::Full);
    let request = seen.recv().await.unwrap();
    assert_eq!(request.path, "/v1/vms/web1/snapshots");
    assert_eq!(json_body(&request), serde_json::json!({"name": "s1", "disk_only": true}));
    assert_eq!(client.list_snapshots("web1").await.unwrap()[0].vm_state, VmState::Running);
    assert_eq!(seen.recv().await.unwrap().path, "/v1/vms/web1/snapshots");
    client.revert_snapshot("web1", "s 1").await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/v1/vms/web1/snapshots/s%201/revert");
    client.delete_snapshot("web1", "s1").await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("DELETE", "/v1/vms/web1/snapshots/s1"));

    client.save_vm("web1").await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/v1/vms/web1/save");
    client.restore_vm("web1").await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/v1/vms/web1/restore");
}

const NETWORK_JSON: &str = r#"{"name":"lan","mode":"nat","bridge":"vireo-lan","subnet":"10.77.1.0/24",
    "gateway":"10.77.1.1","dhcp_start":"10.77.1.10","dhcp_end":"10.77.1.254","vlan":null,
    "leases":[{"mac":"52:54:00:00:00:01","ip":"10.77.1.10","vm":"web1","hostname":"web1",
    "expires_at":"2025-01-01T01:00:00Z"}],"used_by":["web1"]}"#;

/// The answer of the real daemon's network routes, by method and path.
fn network_answer(seen: &Seen) -> (u16, String) {
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/v1/networks") => (200, format!("[{NETWORK_JSON}]")),
        ("POST", "/v1/networks") => (201, NETWORK_JSON.into()),
        ("GET", "/v1/networks/lan") => (200, NETWORK_JSON.into()),
        ("DELETE", "/v1/networks/busy") => {
            (409, r#"{"code":"in_use","message":"network busy is used by VM web1"}"#.into())
        }
        ("DELETE", _) => (204, String::new()),
        _ => (404, r#"{"code":"not_found","message":"no such route"}"#.into()),
    }
}

#[tokio::test]
async fn networks_use_their_routes() {
    let (_dir, socket, mut seen) = routing_daemon(network_answer);
    let client = Client::new(Endpoint::Unix(socket));

    let spec = NetworkSpec {
        name: "lan".into(),
        mode: NetworkMode::Nat,
        subnet: Some("10.77.1.0/24".into()),
        bridge: None,
        vlan: None,
    };
    let network = client.create_network(&spec).await.unwrap();
    assert_eq!((network.bridge.as_str(), network.gateway.as_deref()), ("vireo-lan", Some("10.77.1.1")));
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/networks"));
    assert_eq!(json_body(&request), serde_json::json!({"name": "lan", "mode": "nat", "subnet": "10.77.1.0/24"}));

    let networks = client.list_networks().await.unwrap();
    assert_eq!(networks[0].leases[0].vm.as_deref(), Some("web1"));
    assert_eq!(seen.recv().await.unwrap().path, "/v1/networks");
    assert_eq!(client.get_network("lan").await.unwrap().used_by, ["web1"]);
    assert_eq!(seen.recv().await.unwrap().path, "/v1/networks/lan");

    client.delete_network("a/../b").await.unwrap();
    let request = seen.recv().await.unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("DELETE", "/v1/networks/a%2F%2E%2E%2Fb"));
    let err = client.delete_network("busy").await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::InUse));
    assert_eq!(err.to_string(), "network busy is used by VM web1");

    let err = client.get_network("").await.unwrap_err();
    assert_eq!(err.to_string(), "a network name must not be empty");
}

/// How a scripted NDJSON answer is framed.
#[derive(Clone, Copy)]
enum Framing {
    /// `transfer-encoding: chunked`, ended properly.
    Chunked,
    /// Chunked, but the connection drops before the final empty chunk.
    ChunkedCutOff,
    /// No length: the body ends when the connection closes.
    UntilClose,
}

/// Answers one import with `chunks` written one at a time. Before each chunk after the first it waits
/// for a word on `gate`, so the test can prove the client acts on a chunk before the next one exists.
fn streaming_daemon(
    chunks: Vec<&'static str>,
    framing: Framing,
    mut gate: mpsc::UnboundedReceiver<()>,
) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vireo.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let seen = read_request(&mut stream).await;
        let length = match framing {
            Framing::Chunked | Framing::ChunkedCutOff => "transfer-encoding: chunked\r\n",
            Framing::UntilClose => "",
        };
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n{length}connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        for (index, chunk) in chunks.iter().enumerate() {
            if index > 0 {
                gate.recv().await;
            }
            let framed = match framing {
                Framing::Chunked | Framing::ChunkedCutOff => format!("{:x}\r\n{chunk}\r\n", chunk.len()),
                Framing::UntilClose => chunk.to_string(),
            };
            // The client may rightly hang up after an `error` or `done` line.
            let _ = stream.write_all(framed.as_bytes()).await;
            let _ = stream.flush().await;
        }
        if let Framing::Chunked = framing {
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
        let _ = stream.shutdown().await;
        seen
    });
    (dir, socket, server)
}

fn import_request() -> VolumeImport {
    VolumeImport { name: "root.qcow2".into(), source: "/images/golden.raw".into(), format: None }
}

/// Runs an import against `chunks`; each progress report opens the gate for the next chunk.
async fn run_import(
    chunks: Vec<&'static str>,
    framing: Framing,
) -> (Result<vireo_api::Volume, ClientError>, Vec<f64>, Seen) {
    let (open, gate) = mpsc::unbounded_channel();
    let (_dir, socket, server) = streaming_daemon(chunks, framing, gate);
    let mut reported = Vec::new();
    let client = Client::new(Endpoint::Unix(socket));
    let request = import_request();
    let import = client.import_volume("default", &request, |fraction| {
        reported.push(fraction);
        let _ = open.send(());
    });
    let result = tokio::time::timeout(Duration::from_secs(10), import).await.expect("the import must not hang");
    (result, reported, server.await.unwrap())
}

#[tokio::test]
async fn import_reports_progress_as_it_streams() {
    let done: &'static str = format!("{{\"done\":{}}}\n", VOLUME_JSON.replace('\n', "")).leak();
    let (head, tail) = done.split_at(20);
    // A line split across chunks; each chunk is only sent once the previous progress was reported.
    let chunks =
        vec!["{\"progress\":0.0}\n{\"progress\":0.2", "5}\n", "{\"progress\":0.5}\n{\"progress\":1.0}\n", head, tail];
    let (result, reported, seen) = run_import(chunks, Framing::Chunked).await;
    let volume = result.unwrap();
    assert_eq!((volume.pool.as_str(), volume.name.as_str()), ("default", "root.qcow2"));
    assert_eq!(reported, [0.0, 0.25, 0.5, 1.0]);
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/v1/pools/default/import"));
    assert_eq!(
        json_body(&seen),
        serde_json::json!({"name": "root.qcow2", "source": "/images/golden.raw", "format": null})
    );
}

#[tokio::test]
async fn an_import_error_line_is_an_api_error() {
    let chunks = vec![
        "{\"progress\":0.1}\n",
        "{\"error\":{\"code\":\"qemu_failed\",\"message\":\"qemu-img convert failed: No space left on device\"}}\n",
    ];
    let (result, reported, _) = run_import(chunks, Framing::Chunked).await;
    let err = result.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::QemuFailed));
    assert_eq!(err.to_string(), "qemu-img convert failed: No space left on device");
    assert_eq!(reported, [0.1]);
}

#[tokio::test]
async fn a_truncated_import_stream_is_an_error() {
    let chunks = vec!["{\"progress\":0.1}\n", "{\"progress\":0.2}\n{\"don"];
    let (result, _, _) = run_import(chunks.clone(), Framing::UntilClose).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("ended before"), "{err}");

    let (result, reported, _) = run_import(chunks, Framing::ChunkedCutOff).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::Http { .. } | ClientError::Protocol(_)), "{err:?}");
    assert_eq!(reported, [0.1, 0.2]);
}

#[tokio::test]
async fn an_import_refused_up_front_is_an_ordinary_error() {
    let body = br#"{"code":"invalid_request","message":"source: /images/golden.raw does not exist"}"#;
    let (_dir, socket, mut seen) = unix_daemon(400, body);
    let err =
        Client::new(Endpoint::Unix(socket)).import_volume("default", &import_request(), |_| {}).await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::InvalidRequest));
    let request = seen.recv().await.unwrap();
    assert_eq!(request.header("accept"), Some("application/x-ndjson, application/json"));
}
