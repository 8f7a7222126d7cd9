//! Saving a VM's state to a file and starting from it again (suspend to disk).
//!
//! QEMU 7.2 has no `file:` migration URI (8.2 added one), and `exec:` would need
//! a shell, which `-sandbox spawn=deny` forbids. So the driver receives the
//! migration stream itself: QEMU migrates to a Unix socket in the runtime
//! directory and the driver writes what arrives to the file. Restoring needs no
//! such help: QEMU 7.2 reads a regular file as `-incoming fd:N` (see `spawn`).
//!
//! The save is a live migration: the guest keeps running while its RAM is
//! copied and is stopped for the last pass only, so a failed save leaves it
//! running as before. A saved VM is paused (`postmigrate`, with its disks
//! flushed and released); the daemon then quits it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::QemuError;
use crate::migration::{Migrate, MigrateCancel, MigrateSetParameters, MigrationEvents, QueryMigrate};
use crate::paths::RuntimePaths;
use crate::process::listen;
use crate::qmp::QmpClient;

/// Migration bandwidth while saving, in bytes per second: 8 GiB/s, i.e. no limit
/// in practice. QEMU 7.2's default of 128 MiB/s would make a save of a large
/// guest take seconds per GiB for nothing: the stream goes to a local file.
const SAVE_BANDWIDTH: u64 = 8 << 30;
/// After a cancelled save, how long QEMU may take to resume the guest.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
const COPY_BUFFER: usize = 1 << 20;

impl QmpClient {
    /// Saves the VM's state (RAM and devices, not the disks) to `file` (mode 0600).
    /// The file appears complete or not at all: it is written under a temporary
    /// name and renamed once QEMU reports the migration `completed`. Afterwards the
    /// VM is paused (`postmigrate`); on failure or timeout it runs as before.
    pub async fn save_to_file(&self, paths: &RuntimePaths, file: &Path, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        let state_error = |source| QemuError::StateFile { path: file.to_path_buf(), source };
        let socket = SocketFile::bind(&paths.migrate_socket())?;
        let listener = socket.listener().map_err(|source| QemuError::Listen { path: socket.path.clone(), source })?;
        let partial = PartialFile::create(file)?;
        let target = partial.file.try_clone().map_err(state_error)?;
        let mut events = self.migration_events()?;
        self.start_migration(&socket.path).await?;
        events.outgoing_started();
        // From here on, giving up (an error, or this future dropped) cancels the
        // migration, and QEMU resumes the guest.
        let mut cancel = CancelOnDrop { qmp: Some(self.clone()) };
        let mut receiving = AbortOnDrop(receive(listener, target));

        if let Err(err) = self.wait_completed(&mut events, deadline, timeout).await {
            cancel.qmp = None;
            if let Err(err) = self.cancel_migration(CANCEL_GRACE).await {
                tracing::warn!(error = %err, "cannot cancel the save");
            }
            // A write error (a full disk) makes QEMU's migration fail: report the cause.
            return match tokio::time::timeout(Duration::from_millis(500), &mut receiving.0).await {
                Ok(Ok(Err(copy_error))) => Err(state_error(copy_error)),
                _ => Err(err),
            };
        }
        cancel.qmp = None;
        // QEMU closes the socket right after completing, which ends the copy.
        let drain = deadline.max(Instant::now() + CANCEL_GRACE);
        match tokio::time::timeout_at(drain, &mut receiving.0).await {
            Ok(Ok(Ok(bytes))) => tracing::debug!(bytes, file = %file.display(), "VM state saved"),
            Ok(Ok(Err(err))) => return Err(state_error(err)),
            Ok(Err(join)) => return Err(state_error(io::Error::other(join))),
            Err(_) => return Err(QemuError::MigrationTimeout { timeout }),
        }
        let target = file.to_path_buf();
        tokio::task::spawn_blocking(move || partial.persist(&target))
            .await
            .map_err(io::Error::other)
            .and_then(|persisted| persisted)
            .map_err(state_error)
    }

    /// Waits until the state given as `Launch::incoming` is loaded (at most `timeout`);
    /// the VM is then paused and `cont` runs it. If the state cannot be loaded,
    /// QEMU 7.2 exits (its message is in qemu.log): this returns `QmpClosed`, or
    /// `spawn` already failed with `StartFailed` when that happened first.
    pub async fn wait_incoming(&self, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        let mut events = self.migration_events()?;
        // Before the stream is opened, query-migrate has no status yet; a VM that
        // is not `inmigrate` either was not started with `incoming` at all.
        if self.execute(&QueryMigrate {}).await?.status.is_none() && self.query_status().await?.status != "inmigrate" {
            let error = "QEMU is not receiving a saved state".to_string();
            return Err(QemuError::Migration { status: "none".into(), error });
        }
        self.wait_completed(&mut events, deadline, timeout).await
    }

    /// Until the migration is `completed` (Ok), `failed` or `cancelled` (Err), or `deadline`
    /// passes (`MigrationTimeout` naming the whole `timeout`).
    async fn wait_completed(
        &self,
        events: &mut MigrationEvents,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), QemuError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.wait_migration_status(events, left, |status| status == "completed").await {
            Err(QemuError::MigrationTimeout { .. }) => Err(QemuError::MigrationTimeout { timeout }),
            other => other.map(drop),
        }
    }

    /// Migration to the socket at full speed, with MIGRATION events.
    async fn start_migration(&self, socket: &Path) -> Result<(), QemuError> {
        self.set_capabilities(&[("events", true)]).await?;
        self.execute(&MigrateSetParameters { max_bandwidth: Some(SAVE_BANDWIDTH), downtime_limit: None }).await?;
        let uri = format!("unix:{}", socket.to_string_lossy());
        self.execute(&Migrate { uri }).await.map(drop)
    }
}

/// Cancels the migration when dropped while armed (`qmp` set): a save that is
/// given up half-way must not end with the guest paused.
struct CancelOnDrop {
    qmp: Option<QmpClient>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let (Some(qmp), Ok(runtime)) = (self.qmp.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        runtime.spawn(async move {
            if let Err(err) = qmp.execute(&MigrateCancel {}).await {
                tracing::warn!(error = %err, "cannot cancel an abandoned save");
            }
        });
    }
}

/// The copying task; aborted when dropped (a blocking copy already under way
/// ends by itself when QEMU closes the connection).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts QEMU's connection and copies the stream into `file` until QEMU closes it.
fn receive(listener: tokio::net::UnixListener, file: File) -> JoinHandle<io::Result<u64>> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        drop(listener);
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        tokio::task::spawn_blocking(move || copy_to_file(stream, file)).await.map_err(io::Error::other)?
    })
}

/// Large reads and writes: a 256 MiB guest's state passes in a fraction of a second.
fn copy_to_file(mut stream: std::os::unix::net::UnixStream, mut file: File) -> io::Result<u64> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        file.write_all(&buffer[..n])?;
        total += n as u64;
    }
    file.sync_all()?;
    Ok(total)
}

/// The migration socket; its file is removed when done.
struct SocketFile {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl SocketFile {
    fn bind(path: &Path) -> Result<SocketFile, QemuError> {
        let listener = listen(path)?;
        Ok(SocketFile { path: path.to_path_buf(), listener: Some(listener) })
    }

    fn listener(&self) -> io::Result<tokio::net::UnixListener> {
        let listener = self.listener.as_ref().ok_or_else(|| io::Error::other("listener taken"))?.try_clone()?;
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.listener = None;
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %err, "cannot remove the migration socket");
        }
    }
}

/// The state file while it is written: `<file>.partial`, removed unless persisted.
struct PartialFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl PartialFile {
    fn create(target: &Path) -> Result<PartialFile, QemuError> {
        let mut name = target.as_os_str().to_owned();
        name.push(".partial");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| QemuError::StateFile { path: path.clone(), source })?;
        Ok(PartialFile { path, file, persisted: false })
    }

    /// Renames it to `target` and makes the rename durable.
    fn persist(mut self, target: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.persisted = true;
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
