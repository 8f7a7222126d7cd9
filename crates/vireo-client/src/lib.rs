//! Typed async client of Vireo's REST API (`/v1`), used by the `vireo` CLI and
//! for daemon-to-daemon calls.
//!
//! It speaks HTTP/1.1 over the daemon's Unix socket (trusted by file
//! permissions, no token) or over TCP with a bearer token, sends and receives
//! the wire types of `vireo-api`, and turns every non-2xx answer into
//! [`ClientError::Api`] carrying the daemon's error code and message. The VM
//! console is a WebSocket whose binary messages carry raw serial bytes; a long
//! storage operation (import) answers with an NDJSON stream of progress lines,
//! read as it arrives; the event log is followed as Server-Sent Events. This
//! crate must not know about the daemon's internals, QEMU or the terminal: it
//! only moves API types over the wire.

mod console;
mod error;
mod events;
mod ndjson;
mod routes;
mod transport;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vireo_api::{
    API_PREFIX, DiskSpec, Event, HostCheck, IncomingMigration, IncomingReady, MigrateRequest, MigrationStatus, Network,
    NetworkSpec, NicSpec, Pool, PoolSpec, Snapshot, SnapshotCreate, StopRequest, Vm, VmHistory, VmSpec, Volume,
    VolumeClone, VolumeCreate, VolumeImport, VolumeResize,
};

pub use console::{ConsoleReceiver, ConsoleSender, ConsoleStream};
pub use error::ClientError;
pub use events::EventStream;
use ndjson::ProgressReader;
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
        self.call(Method::GET, &routes::vm(name, "")?, None::<&()>).await
    }

    /// `GET /v1/vms/{name}/history`
    pub async fn vm_history(&self, name: &str) -> Result<VmHistory, ClientError> {
        self.call(Method::GET, &routes::vm(name, "/history")?, None::<&()>).await
    }

    /// `DELETE /v1/vms/{name}`
    pub async fn delete_vm(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &routes::vm(name, "")?).await
    }

    /// `POST /v1/vms/{name}/start`
    pub async fn start_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "start").await
    }

    /// `POST /v1/vms/{name}/stop`: graceful unless `req.force`.
    pub async fn stop_vm(&self, name: &str, req: &StopRequest) -> Result<Vm, ClientError> {
        self.call(Method::POST, &routes::vm(name, "/stop")?, Some(req)).await
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
        let mut path = routes::vm(name, "/logs")?;
        if let Some(tail) = tail_bytes {
            path.push_str(&format!("?tail_bytes={tail}"));
        }
        Ok(self.target()?.send(Method::GET, &path, None).await?.into())
    }

    /// `POST /v1/vms/{name}/save`: writes the VM's memory to disk and stops it (state `saved`).
    pub async fn save_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "save").await
    }

    /// `POST /v1/vms/{name}/restore`: resumes a saved VM where it was.
    pub async fn restore_vm(&self, name: &str) -> Result<Vm, ClientError> {
        self.action(name, "restore").await
    }

    /// `POST /v1/vms/{name}/disks`: adds a disk to the VM's spec, hot-plugged if it runs.
    pub async fn attach_disk(&self, name: &str, disk: &DiskSpec) -> Result<Vm, ClientError> {
        self.call(Method::POST, &routes::vm(name, "/disks")?, Some(disk)).await
    }

    /// `DELETE /v1/vms/{name}/disks/{pool}/{volume}`: removes the disk of `volume` (`POOL/NAME`) from the VM.
    pub async fn detach_disk(&self, name: &str, volume: &str) -> Result<Vm, ClientError> {
        let (pool, volume) =
            volume.split_once('/').ok_or_else(|| ClientError::NotAVolume { text: volume.to_string() })?;
        self.call(Method::DELETE, &routes::vm_disk(name, pool, volume)?, None::<&()>).await
    }

    /// `POST /v1/vms/{name}/nics`: adds a NIC to the VM's spec, hot-plugged if it runs.
    pub async fn attach_nic(&self, name: &str, nic: &NicSpec) -> Result<Vm, ClientError> {
        self.call(Method::POST, &routes::vm(name, "/nics")?, Some(nic)).await
    }

    /// `DELETE /v1/vms/{name}/nics/{mac}`: removes the NIC with `mac` from the VM.
    pub async fn detach_nic(&self, name: &str, mac: &str) -> Result<Vm, ClientError> {
        self.call(Method::DELETE, &routes::vm_nic(name, mac)?, None::<&()>).await
    }

    /// `GET /v1/vms/{name}/snapshots`
    pub async fn list_snapshots(&self, vm: &str) -> Result<Vec<Snapshot>, ClientError> {
        self.call(Method::GET, &routes::vm(vm, "/snapshots")?, None::<&()>).await
    }

    /// `POST /v1/vms/{name}/snapshots`
    pub async fn create_snapshot(&self, vm: &str, snapshot: &SnapshotCreate) -> Result<Snapshot, ClientError> {
        self.call(Method::POST, &routes::vm(vm, "/snapshots")?, Some(snapshot)).await
    }

    /// `DELETE /v1/vms/{name}/snapshots/{snapshot}`
    pub async fn delete_snapshot(&self, vm: &str, snapshot: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &routes::snapshot(vm, snapshot, "")?).await
    }

    /// `POST /v1/vms/{name}/snapshots/{snapshot}/revert`
    pub async fn revert_snapshot(&self, vm: &str, snapshot: &str) -> Result<Vm, ClientError> {
        self.call(Method::POST, &routes::snapshot(vm, snapshot, "/revert")?, None::<&()>).await
    }

    /// `GET /v1/pools`
    pub async fn list_pools(&self) -> Result<Vec<Pool>, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/pools"), None::<&()>).await
    }

    /// `POST /v1/pools`
    pub async fn create_pool(&self, spec: &PoolSpec) -> Result<Pool, ClientError> {
        self.call(Method::POST, &format!("{API_PREFIX}/pools"), Some(spec)).await
    }

    /// `GET /v1/pools/{pool}`
    pub async fn get_pool(&self, name: &str) -> Result<Pool, ClientError> {
        self.call(Method::GET, &routes::pool(name, "")?, None::<&()>).await
    }

    /// `DELETE /v1/pools/{pool}`: refused (`in_use`) while the pool holds volumes.
    pub async fn delete_pool(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &routes::pool(name, "")?).await
    }

    /// `GET /v1/pools/{pool}/volumes` for one pool, `GET /v1/volumes` for all of them.
    pub async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<Volume>, ClientError> {
        let path = match pool {
            Some(pool) => routes::pool(pool, "/volumes")?,
            None => format!("{API_PREFIX}/volumes"),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/pools/{pool}/volumes`: a new empty volume.
    pub async fn create_volume(&self, pool: &str, volume: &VolumeCreate) -> Result<Volume, ClientError> {
        self.call(Method::POST, &routes::pool(pool, "/volumes")?, Some(volume)).await
    }

    /// `GET /v1/pools/{pool}/volumes/{volume}`, with the backing chain.
    pub async fn get_volume(&self, pool: &str, name: &str) -> Result<Volume, ClientError> {
        self.call(Method::GET, &routes::volume(pool, name, "")?, None::<&()>).await
    }

    /// `DELETE /v1/pools/{pool}/volumes/{volume}`
    pub async fn delete_volume(&self, pool: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &routes::volume(pool, name, "")?).await
    }

    /// `POST /v1/pools/{pool}/volumes/{volume}/clone`: a copy, or a linked clone, at `clone.target`.
    pub async fn clone_volume(&self, pool: &str, name: &str, clone: &VolumeClone) -> Result<Volume, ClientError> {
        self.call(Method::POST, &routes::volume(pool, name, "/clone")?, Some(clone)).await
    }

    /// `POST /v1/pools/{pool}/volumes/{volume}/resize`
    pub async fn resize_volume(&self, pool: &str, name: &str, resize: &VolumeResize) -> Result<Volume, ClientError> {
        self.call(Method::POST, &routes::volume(pool, name, "/resize")?, Some(resize)).await
    }

    /// `POST /v1/pools/{pool}/import`: copies an image file on the daemon's host into the pool.
    ///
    /// The daemon streams NDJSON while it copies; `on_progress` gets each fraction done (0.0 to 1.0)
    /// as it arrives. A refusal before the copy starts is an ordinary error answer; a failure during
    /// the copy arrives as the stream's `error` line. Both become [`ClientError::Api`].
    pub async fn import_volume(
        &self,
        pool: &str,
        import: &VolumeImport,
        on_progress: impl FnMut(f64),
    ) -> Result<Volume, ClientError> {
        let path = routes::pool(pool, "/import")?;
        let body = encode(&path, import)?;
        let target = self.target()?;
        let request = target.request(Method::POST, &path, Some(body), "application/x-ndjson, application/json")?;
        let mut stream = target.open_stream(request).await?;
        let mut reader = ProgressReader::new(on_progress);
        while let Some(chunk) = stream.next_chunk().await {
            if let Some(volume) = reader.feed(&chunk?)? {
                return Ok(volume);
            }
        }
        reader.finish()
    }

    /// `GET /v1/networks`
    pub async fn list_networks(&self) -> Result<Vec<Network>, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/networks"), None::<&()>).await
    }

    /// `POST /v1/networks`: defines a network and sets up its host side (bridge, DHCP, NAT).
    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<Network, ClientError> {
        self.call(Method::POST, &format!("{API_PREFIX}/networks"), Some(spec)).await
    }

    /// `GET /v1/networks/{network}`, with its leases.
    pub async fn get_network(&self, name: &str) -> Result<Network, ClientError> {
        self.call(Method::GET, &routes::network(name, "")?, None::<&()>).await
    }

    /// `DELETE /v1/networks/{network}`: refused (`in_use`) while a VM has a NIC on it.
    pub async fn delete_network(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &routes::network(name, "")?).await
    }

    /// `GET /v1/host`: this host's facts and load.
    pub async fn host_info(&self) -> Result<vireo_api::HostInfo, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/host"), None::<&()>).await
    }

    /// `GET /v1/host/check`: can this host run VMs, and with which accelerator.
    pub async fn host_check(&self) -> Result<HostCheck, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/host/check"), None::<&()>).await
    }

    /// `POST /v1/vms/{name}/migrate`: starts a live migration; it runs on in the
    /// source daemon, whose status [`Client::migration_status`] reports.
    pub async fn migrate_vm(&self, name: &str, request: &MigrateRequest) -> Result<MigrationStatus, ClientError> {
        self.call(Method::POST, &routes::vm(name, "/migrate")?, Some(request)).await
    }

    /// `GET /v1/vms/{name}/migration`: the latest migration of the VM, also once
    /// it has completed and the VM is gone from this daemon.
    pub async fn migration_status(&self, name: &str) -> Result<MigrationStatus, ClientError> {
        self.call(Method::GET, &routes::vm(name, "/migration")?, None::<&()>).await
    }

    /// `POST /v1/vms/{name}/migration/cancel`
    pub async fn cancel_migration(&self, name: &str) -> Result<MigrationStatus, ClientError> {
        self.call(Method::POST, &routes::vm(name, "/migration/cancel")?, None::<&()>).await
    }

    /// `POST /v1/migrations/incoming` (daemon to daemon): get ready to receive a VM.
    pub async fn prepare_incoming(&self, request: &IncomingMigration) -> Result<IncomingReady, ClientError> {
        self.call(Method::POST, &format!("{API_PREFIX}/migrations/incoming"), Some(request)).await
    }

    /// `POST /v1/migrations/incoming/{name}/finish` (daemon to daemon): the state is
    /// complete, run the VM here.
    pub async fn finish_incoming(&self, name: &str) -> Result<Vm, ClientError> {
        let path = format!("{API_PREFIX}/migrations/incoming/{}/finish", routes::vm_segment(name)?);
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `DELETE /v1/migrations/incoming/{name}` (daemon to daemon): give up, remove what was prepared.
    pub async fn abort_incoming(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("{API_PREFIX}/migrations/incoming/{}", routes::vm_segment(name)?);
        self.send(Method::DELETE, &path).await
    }

    /// `GET /v1/events`: up to `limit` events (the daemon's default without it) after
    /// `after`, or without `after` the latest ones; oldest first, only `vm`'s if given.
    pub async fn list_events(
        &self,
        after: Option<u64>,
        vm: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Event>, ClientError> {
        self.call(Method::GET, &routes::events(after, vm, limit)?, None::<&()>).await
    }

    /// `GET /v1/events` as Server-Sent Events: the events after `after` (sent as
    /// `Last-Event-ID`), or without it only new ones, then each as it happens; only
    /// `vm`'s if given. A stream that broke resumes where it was with
    /// `follow_events(stream.last_id(), vm)`.
    pub async fn follow_events(&self, after: Option<u64>, vm: Option<&str>) -> Result<EventStream, ClientError> {
        let target = self.target()?;
        let mut request = target.request(Method::GET, &routes::events(None, vm, None)?, None, "text/event-stream")?;
        if let Some(id) = after {
            request.headers_mut().insert("last-event-id", hyper::header::HeaderValue::from(id));
        }
        Ok(EventStream::new(target.open_stream(request).await?, after))
    }

    /// `GET /v1/openapi.json`
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, &format!("{API_PREFIX}/openapi.json"), None::<&()>).await
    }

    /// `GET /v1/vms/{name}/console`, upgraded to a WebSocket.
    pub async fn console(&self, name: &str) -> Result<ConsoleStream, ClientError> {
        console::open(&self.target()?, &routes::vm(name, "/console")?).await
    }

    fn target(&self) -> Result<Target, ClientError> {
        Target::from_endpoint(&self.endpoint)
    }

    async fn action(&self, name: &str, action: &str) -> Result<Vm, ClientError> {
        self.call(Method::POST, &routes::vm(name, &format!("/{action}"))?, None::<&()>).await
    }

    /// Sends `body` as JSON (if any) and decodes the JSON answer.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let json = body.map(|body| encode(path, body)).transpose()?;
        let answer = self.target()?.send(method.clone(), path, json).await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(format!("{method} {path}: {e}")))
    }

    /// Sends a request without a body whose answer carries nothing (`204 No Content`).
    async fn send(&self, method: Method, path: &str) -> Result<(), ClientError> {
        self.target()?.send(method, path, None).await?;
        Ok(())
    }
}

fn encode<B: Serialize>(path: &str, body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::Protocol(format!("cannot encode the request to {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
