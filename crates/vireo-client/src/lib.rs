//! Typed async client of Vireo's REST API (`/v1`), used by the `vireo` CLI and
//! for daemon-to-daemon calls.
//!
//! It speaks HTTP/1.1 over the daemon's Unix socket (trusted by file
//! permissions, no token) or over TCP with a bearer token, sends and receives
//! the wire types of `vireo-api`, and turns every non-2xx answer into
//! [`ClientError::Api`] carrying the daemon's error code and message. The VM
//! console is a WebSocket whose binary messages carry raw serial bytes. This
//! crate must not know about the daemon's internals, QEMU or the terminal:
//! it only moves API types over the wire.

mod console;
mod error;
mod transport;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vireo_api::{API_PREFIX, HostCheck, StopRequest, Vm, VmSpec};

pub use console::{ConsoleReceiver, ConsoleSender, ConsoleStream};
pub use error::ClientError;
use transport::Target;

/// Where the daemon listens.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The daemon's Unix socket; access is guarded by the socket's permissions.
    Unix(PathBuf),
    /// The daemon's TCP listener, `http://HOST:PORT`, with its API token.
    Tcp { url: String, token: String },
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => f.debug_tuple("Unix").field(path).finish(),
            Endpoint::Tcp { url, .. } => f.debug_struct("Tcp").field("url", url).field("token", &"<redacted>").finish(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp { url, .. } => f.write_str(url),
        }
    }
}

/// The daemon's data directory: `/var/lib/vireo` for root, else
/// `$XDG_DATA_HOME/vireo` or `~/.local/share/vireo`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/vireo");
    }
    user_data_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// The XDG rule: `$XDG_DATA_HOME` counts only when absolute.
fn user_data_dir(xdg_data_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(dir) = xdg_data_home.map(PathBuf::from).filter(|dir| dir.is_absolute()) {
        return dir.join("vireo");
    }
    match home.filter(|home| !home.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/vireo"),
        // No home to speak of (a bare service environment): fall back to the system location.
        None => PathBuf::from("/var/lib/vireo"),
    }
}

/// The daemon's Unix socket inside `data_dir`.
pub fn default_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("vireo.sock")
}

/// A client of one daemon. Cheap to clone; every call opens its own connection.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /v1/vms`
    pub async fn list_vms(&self) -> Result<Vec<Vm>, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/vms"), None::<&()>).await
    }

    /// `POST /v1/vms`: defines a VM; it starts out stopped.
    pub async fn create_vm(&self, spec: &VmSpec) -> Result<Vm, ClientError> {
        self.call(Method::POST, &format!("{API_PREFIX}/vms"), Some(spec)).await
    }

    /// `GET /v1/vms/{name}`
    pub async fn get_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.call(Method::GET, &vm_path(name, "")?, None::<&()>).await
    }

    /// `DELETE /v1/vms/{name}`
    pub async fn delete_vm(&self, name: &str) -> Result<(), ClientError> {
        self.target()?.send(Method::DELETE, &vm_path(name, "")?, None).await?;
        Ok(())
    }

    /// `POST /v1/vms/{name}/start`
    pub async fn start_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "start").await
    }

    /// `POST /v1/vms/{name}/stop`: graceful unless `req.force`.
    pub async fn stop_vm(&self, name: &str, req: &StopRequest) -> Result<Vm, ClientError> {
        self.call(Method::POST, &vm_path(name, "/stop")?, Some(req)).await
    }

    /// `POST /v1/vms/{name}/pause`
    pub async fn pause_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "pause").await
    }

    /// `POST /v1/vms/{name}/resume`
    pub async fn resume_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "resume").await
    }

    /// `POST /v1/vms/{name}/restart`
    pub async fn restart_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "restart").await
    }

    /// `GET /v1/vms/{name}/logs`: the kept console output, or its last `tail_bytes` bytes.
    pub async fn vm_logs(&self, name: &str, tail_bytes: Option<u64>) -> Result<Vec<u8>, ClientError> {
        let mut path = vm_path(name, "/logs")?;
        if let Some(tail) = tail_bytes {
            path.push_str(&format!("?tail_bytes={tail}"));
        }
        Ok(self.target()?.send(Method::GET, &path, None).await?.into())
    }

    /// `GET /v1/host/check`
    pub async fn host_check(&self) -> Result<HostCheck, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/host/check"), None::<&()>).await
    }

    /// `GET /v1/openapi.json`
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/openapi.json"), None::<&()>).await
    }

    /// `GET /v1/vms/{name}/console`, upgraded to a WebSocket.
    pub async fn console(&self, name: &str) -> Result<ConsoleStream, ClientError> {
        console::open(&self.target()?, &vm_path(name, "/console")?).await
    }

    fn target(&self) -> Result<Target, ClientError> {
        Target::from_endpoint(&self.endpoint)
    }

    async fn action(&self, name: &str, action: &str) -> Result<Vm, ClientError> {
        self.call(Method::POST, &vm_path(name, &format!("/{action}"))?, None::<&()>).await
    }

    /// Sends `body` as JSON (if any) and decodes the JSON answer.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("cannot encode the request to {path}: {e}")))?;
        let answer = self.target()?.send(method.clone(), path, json).await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(format!("{method} {path}: {e}")))
    }
}

/// `/v1/vms/{name}{suffix}` with the name percent-encoded, so no name can reach another route.
fn vm_path(name: &str, suffix: &str) -> Result<String, ClientError> {
    if name.is_empty() {
        return Err(ClientError::EmptyName);
    }
    Ok(format!("{API_PREFIX}/vms/{}{suffix}", encode_segment(name)))
}

/// Keeps `[A-Za-z0-9_-]` (the whole alphabet of valid names) and percent-encodes every other byte,
/// `.` included so that `..` stays a name rather than a step up.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_route() {
        assert_eq!(vm_path("web-1_a", "/start").unwrap(), "/v1/vms/web-1_a/start");
        assert_eq!(vm_path("../host/check", "").unwrap(), "/v1/vms/%2E%2E%2Fhost%2Fcheck");
        assert_eq!(vm_path("a?b#c d", "/logs").unwrap(), "/v1/vms/a%3Fb%23c%20d/logs");
        assert_eq!(vm_path("é", "").unwrap(), "/v1/vms/%C3%A9");
        assert!(matches!(vm_path("", "/start"), Err(ClientError::EmptyName)));
    }

    #[test]
    fn data_dir_follows_xdg() {
        let dir = user_data_dir(Some("/x/data".into()), Some("/home/u".into()));
        assert_eq!(dir, PathBuf::from("/x/data/vireo"));
        let dir = user_data_dir(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(dir, PathBuf::from("/home/u/.local/share/vireo"));
        assert_eq!(user_data_dir(None, None), PathBuf::from("/var/lib/vireo"));
        assert_eq!(default_socket(Path::new("/d")), PathBuf::from("/d/vireo.sock"));
    }

    #[test]
    fn endpoint_debug_hides_the_token() {
        let endpoint = Endpoint::Tcp { url: "http://h:1".into(), token: "s3cret".into() };
        assert!(!format!("{endpoint:?}").contains("s3cret"));
    }
}
