//! End-to-end observability of a real daemon: request ids, the audit log and
//! JSON logs. Calls are raw HTTP, so the tests see the `x-request-id` header
//! and choose their own ids.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn request_id(&self) -> &str {
        let (_, value) = self.headers.iter().find(|(name, _)| name == "x-request-id").expect("x-request-id header");
        value
    }
}

/// One HTTP/1.1 request; reads the status and headers, and the body if it has a length.
fn call(mut stream: impl Read + Write, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: vireo\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).and_then(|()| stream.write_all(body)).expect("send request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers.iter().find(|(name, _)| name == "content-length").and_then(|(_, v)| v.parse().ok());
    reader.read_exact(&mut vec![0; length.unwrap_or(0)]).expect("body");
    Reply { status, headers }
}

fn over_socket(daemon: &Daemon) -> UnixStream {
    let stream = UnixStream::connect(&daemon.socket).expect("connect to the socket");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    stream
}

fn over_tcp(daemon: &Daemon) -> TcpStream {
    let stream = TcpStream::connect(daemon.tcp.expect("TCP listener")).expect("connect over TCP");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    stream
}

fn spec_json(name: &str) -> Vec<u8> {
    serde_json::to_vec(&guest_spec(name)).expect("spec JSON")
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn audit_lines(daemon: &Daemon) -> Vec<Value> {
    let text = std::fs::read_to_string(daemon.dir.path().join("audit.log")).expect("audit.log");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// `line` has every field of `expected`, with the same value.
fn assert_fields(line: &Value, expected: &Value) {
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(&line[key], value, "{key} in {line}");
    }
}

/// The first 8 hex digits of the token's SHA-256, computed apart from the daemon.
fn fingerprint(token: &str) -> String {
    let mut sha = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    sha.stdin.take().expect("stdin").write_all(token.as_bytes()).expect("write token");
    let output = sha.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&output.stdout)[..8].to_string()
}

#[test]
fn mutating_calls_over_the_socket_are_audited_and_logged_with_their_request_id() {
    let daemon = Daemon::start();
    let created = call(over_socket(&daemon), "POST", "/v1/vms", &[JSON], &spec_json("audited"));
    assert_eq!(created.status, 201);
    let generated = created.request_id().to_string();
    assert_eq!(generated.len(), 32, "a fresh id: {generated}");
    let listed = call(over_socket(&daemon), "GET", "/v1/vms", &[("x-request-id", "read-1")], b"");
    assert_eq!((listed.status, listed.request_id()), (200, "read-1"));
    let failed = call(over_socket(&daemon), "POST", "/v1/vms/missing/start", &[("x-request-id", "no such vm")], b"");
    assert_eq!(failed.status, 404);
    assert_ne!(failed.request_id(), "no such vm", "an unsafe client id is replaced");
    let deleted = call(over_socket(&daemon), "DELETE", "/v1/vms/audited", &[("x-request-id", "trace-42")], b"");
    assert_eq!((deleted.status, deleted.request_id()), (204, "trace-42"));

    let lines = audit_lines(&daemon);
    assert_eq!(lines.len(), 3, "reads are not audited: {lines:#?}");
    let me = json!({
        "transport": "unix",
        "uid": std::fs::metadata(daemon.dir.path()).expect("data dir").uid(),
        "pid": std::process::id(),
    });
    let expected = [
        json!({"request_id": generated, "method": "POST", "route": "/v1/vms", "path": "/v1/vms",
            "target": null, "status": 201, "error": null}),
        json!({"request_id": failed.request_id(), "method": "POST", "route": "/v1/vms/{name}/start",
            "path": "/v1/vms/missing/start", "target": "missing", "status": 404, "error": "vm_not_found"}),
        json!({"request_id": "trace-42", "method": "DELETE", "route": "/v1/vms/{name}", "path": "/v1/vms/audited",
            "target": "audited", "status": 204, "error": null}),
    ];
    for (line, expected) in lines.iter().zip(expected) {
        assert_fields(line, &expected);
        assert_eq!(line["client"], me, "{line}");
        let time = line["time"].as_str().expect("time");
        assert!(time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'), "RFC 3339: {time}");
        assert!(line["duration_ms"].is_f64(), "{line}");
    }
    let mode = std::fs::metadata(daemon.dir.path().join("audit.log")).expect("audit.log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let log = daemon.log();
    let finished: Vec<&str> = log.lines().filter(|line| line.contains("request finished")).collect();
    for (id, route, status) in [
        (generated.as_str(), "/v1/vms", 201),
        (failed.request_id(), "/v1/vms/{name}/start", 404),
        ("trace-42", "/v1/vms/{name}", 204),
    ] {
        assert!(
            finished
                .iter()
                .any(|line| line.contains(id) && line.contains(route) && line.contains(&format!("status={status}"))),
            "no 'request finished' line for {id} in:\n{log}"
        );
    }
}

#[test]
fn tcp_calls_are_audited_with_the_peer_and_a_token_fingerprint_and_refusals_too() {
    let daemon = Daemon::start_with_tcp(true);
    let token = daemon.token();
    let bearer = format!("Bearer {token}");
    let created = call(over_tcp(&daemon), "POST", "/v1/vms", &[JSON, ("authorization", &bearer)], &spec_json("remote"));
    assert_eq!(created.status, 201);
    let wrong = "Bearer wrong-secret-0123456789";
    let refused = call(over_tcp(&daemon), "DELETE", "/v1/vms/remote", &[("authorization", wrong)], b"");
    assert_eq!(refused.status, 401);
    let anonymous = call(over_tcp(&daemon), "GET", "/v1/vms", &[("x-request-id", "probe-1")], b"");
    assert_eq!((anonymous.status, anonymous.request_id()), (401, "probe-1"));

    let lines = audit_lines(&daemon);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let peer = |line: &Value| line["client"]["addr"].as_str().unwrap_or_default().starts_with("127.0.0.1:");
    assert!(lines.iter().all(|line| line["client"]["transport"] == "tcp" && peer(line)), "{lines:#?}");
    assert_eq!(lines[0]["request_id"], created.request_id());
    assert_eq!(lines[0]["client"]["token"], fingerprint(&token).as_str());
    assert_eq!(lines[0]["status"], 201);
    let refusals = [
        json!({"request_id": refused.request_id(), "method": "DELETE", "route": "/v1/vms/{name}", "target": "remote"}),
        json!({"request_id": "probe-1", "method": "GET", "route": "/v1/vms", "target": null}),
    ];
    for (line, expected) in lines[1..].iter().zip(refusals) {
        assert_fields(line, &expected);
        assert_fields(line, &json!({"status": 401, "error": "unauthorized"}));
        assert!(line["client"].get("token").is_none(), "no fingerprint for a refused token: {line}");
    }

    let audit = std::fs::read_to_string(daemon.dir.path().join("audit.log")).expect("audit.log");
    for secret in [token.as_str(), "wrong-secret"] {
        assert!(!audit.contains(secret), "token material in audit.log:\n{audit}");
        assert!(!daemon.log().contains(secret), "token material in the daemon log");
    }
}

#[test]
fn the_console_websocket_gets_a_request_id_and_the_daemon_goes_on_serving() {
    let daemon = Daemon::start();
    assert_eq!(call(over_socket(&daemon), "POST", "/v1/vms", &[JSON], &spec_json("ws1")).status, 201);
    daemon.cli_ok(&["vm", "start", "ws1"]);
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("x-request-id", "console-7"),
    ];
    let session = over_socket(&daemon);
    let upgraded = call(session.try_clone().expect("clone"), "GET", "/v1/vms/ws1/console", &upgrade, b"");
    assert_eq!((upgraded.status, upgraded.request_id()), (101, "console-7"));
    // While the session stays open, other calls are answered and audited.
    daemon.cli_ok(&["vm", "stop", "ws1", "--force"]);
    drop(session);
    daemon.cli_ok(&["vm", "delete", "ws1"]);
    let routes: Vec<String> = audit_lines(&daemon).iter().map(|line| line["route"].to_string()).collect();
    assert_eq!(
        routes,
        ["\"/v1/vms\"", "\"/v1/vms/{name}/start\"", "\"/v1/vms/{name}/stop\"", "\"/v1/vms/{name}\""],
        "the console (a read) is not audited"
    );
}

#[test]
fn with_log_format_json_every_log_line_is_a_json_object_carrying_the_request_id() {
    let daemon = Daemon::start_with(false, &["--log-format", "json"]);
    let headers = [JSON, ("x-request-id", "json-trace-7")];
    assert_eq!(call(over_socket(&daemon), "POST", "/v1/vms", &headers, &spec_json("jsonlog")).status, 201);
    let failed = call(over_socket(&daemon), "POST", "/v1/vms/jsonlog/resume", &[("x-request-id", "json-trace-8")], b"");
    assert_eq!(failed.status, 409);

    let log = daemon.log();
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(events.iter().all(Value::is_object), "{log}");
    assert!(events.iter().any(|e| e["message"] == "serving"), "{log}");
    let finished =
        |id: &str| events.iter().find(|e| e["message"] == "request finished" && e["span"]["request_id"] == id).cloned();
    let created = finished("json-trace-7").unwrap_or_else(|| panic!("no finished event for json-trace-7:\n{log}"));
    assert_fields(&created, &json!({"status": 201, "level": "INFO"}));
    assert_fields(&created["span"], &json!({"method": "POST", "route": "/v1/vms"}));
    let refused = finished("json-trace-8").unwrap_or_else(|| panic!("no finished event for json-trace-8:\n{log}"));
    assert_fields(&refused, &json!({"status": 409, "error": "invalid_state"}));
    assert_fields(&refused["span"], &json!({"method": "POST", "route": "/v1/vms/{name}/resume"}));
}
