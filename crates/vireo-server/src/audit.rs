//! The audit log, `DATA_DIR/audit.log`: one JSON line per mutating API call
//! (who, what, on which object, with what result), appended after the call
//! is answered. The format is documented in docs/observability.md.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use vireo_api::ErrorCode;

pub const AUDIT_FILE: &str = "audit.log";

/// The open audit log; lines from concurrent requests never interleave.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens `data_dir/audit.log` for appending, creating it 0600 if missing
    /// (and taking away any access a previous owner granted to others).
    pub fn open(data_dir: &Path) -> anyhow::Result<AuditLog> {
        let path = data_dir.join(AUDIT_FILE);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mode = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
        Ok(AuditLog { path, file: Mutex::new(file) })
    }

    /// Appends one line. A failure is logged, not returned: the call it
    /// records has already been answered.
    pub fn append(&self, record: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(err) => return tracing::warn!(error = %err, "cannot encode an audit record"),
        };
        line.push(b'\n');
        // One write(2) of the whole line on an O_APPEND file; the lock keeps
        // a short write's remainder from being overtaken by another line.
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(err) = file.write_all(&line) {
            tracing::warn!(error = %err, path = %self.path.display(), "cannot append to the audit log");
        }
    }
}

/// Who made a call, as the listener it came through knows them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum AuditClient {
    /// The Unix socket: the calling process's credentials (SO_PEERCRED).
    Unix {
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
    },
    /// TCP: the client's address and the fingerprint of the token it was
    /// admitted with (none when it was refused).
    Tcp {
        addr: SocketAddr,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When the call arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    pub request_id: &'a str,
    /// `None` when the connection's origin is not known (in-process callers).
    pub client: Option<AuditClient>,
    pub method: &'a str,
    /// The matched route template (`/v1/vms/{name}/start`); `None` for no route.
    pub route: Option<&'a str>,
    /// The concrete path that was called.
    pub path: &'a str,
    /// The object the route names: its path parameters joined by `/`
    /// (`web1`, `default/web1.qcow2`, `web1/before-upgrade`).
    pub target: Option<String>,
    pub status: u16,
    /// The API error code when the call failed with one.
    pub error: Option<ErrorCode>,
    pub duration_ms: f64,
}

/// The object a route names: its path parameters in route order, joined by
/// `/` as the CLI writes them. Names never contain `/`, so this is unambiguous.
pub fn target<'a>(params: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let joined = params.into_iter().collect::<Vec<_>>().join("/");
    (!joined.is_empty()).then_some(joined)
}

/// Milliseconds with microsecond precision, as written in logs and the audit log.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client: Option<AuditClient>, error: Option<ErrorCode>) -> AuditRecord<'static> {
        AuditRecord {
            time: "2026-01-02T03:04:05.678Z".to_string(),
            request_id: "abc-123",
            client,
            method: "POST",
            route: Some("/v1/vms/{name}/start"),
            path: "/v1/vms/web1/start",
            target: target(["web1"]),
            status: 409,
            error,
            duration_ms: millis(Duration::from_micros(12_345)),
        }
    }

    #[test]
    fn a_record_is_one_json_object_with_every_field() {
        let client = AuditClient::Unix { uid: Some(0), pid: Some(42) };
        let json = serde_json::to_value(record(Some(client), Some(ErrorCode::InvalidState))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time": "2026-01-02T03:04:05.678Z",
                "request_id": "abc-123",
                "client": {"transport": "unix", "uid": 0, "pid": 42},
                "method": "POST",
                "route": "/v1/vms/{name}/start",
                "path": "/v1/vms/web1/start",
                "target": "web1",
                "status": 409,
                "error": "invalid_state",
                "duration_ms": 12.345,
            })
        );
    }

    #[test]
    fn a_tcp_client_shows_its_address_and_token_fingerprint_only_when_admitted() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let admitted = AuditClient::Tcp { addr, token: Some("2bb80d53".to_string()) };
        assert_eq!(
            serde_json::to_value(&admitted).unwrap(),
            serde_json::json!({"transport": "tcp", "addr": "127.0.0.1:5000", "token": "2bb80d53"})
        );
        let refused = AuditClient::Tcp { addr, token: None };
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({"transport": "tcp", "addr": "127.0.0.1:5000"})
        );
    }

    #[test]
    fn target_joins_the_route_parameters() {
        assert_eq!(target(["default", "web1.qcow2"]).as_deref(), Some("default/web1.qcow2"));
        assert_eq!(target(["web1", "before-upgrade"]).as_deref(), Some("web1/before-upgrade"));
        assert_eq!(target([]), None);
    }

    #[test]
    fn the_file_is_private_appended_to_and_tightened_if_others_could_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        std::fs::write(&path, "earlier line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(&record(None, None));
        log.append(&record(None, Some(ErrorCode::VmNotFound)));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "earlier line");
        let last: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(last["error"], "vm_not_found");
        assert_eq!(last["client"], serde_json::Value::Null);
    }
}
