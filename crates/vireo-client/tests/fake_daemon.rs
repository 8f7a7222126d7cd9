//! The client against a scripted daemon: routes, headers, bodies and error mapping.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vireo_api::{ErrorCode, StopRequest, VmState};
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
