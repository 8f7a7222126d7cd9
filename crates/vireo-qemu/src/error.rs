//! The one error type of the QEMU driver.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot create runtime directory {path}")]
    RuntimeDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on socket {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open log file {path}")]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {binary}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    /// QEMU exited before it was ready; `log_tail` is the end of its stderr.
    #[error("QEMU exited during start-up ({status}): {log_tail}")]
    StartFailed { status: String, log_tail: String },
    /// No QMP greeting and negotiation in time: QEMU hangs, or another client holds QMP.
    #[error("QEMU did not complete the QMP handshake within {}s", .timeout.as_secs())]
    HandshakeTimeout { timeout: Duration },
    #[error("QMP connection failed")]
    QmpIo(#[source] io::Error),
    #[error("QMP connection is closed (QEMU exited or the connection was dropped)")]
    QmpClosed,
    #[error("QMP command {command} got no reply within {}s", .timeout.as_secs())]
    QmpTimeout { command: &'static str, timeout: Duration },
    #[error("QMP command {command} failed: {desc} ({class})")]
    QmpCommand { command: &'static str, class: String, desc: String },
    #[error("unexpected QMP message: {0}")]
    QmpProtocol(String),
    #[error("process {pid} is not running")]
    NotRunning { pid: u32 },
    #[error("process {pid} is not this VM's QEMU: {reason}")]
    NotOurProcess { pid: u32, reason: String },
    #[error("cannot watch process {pid}")]
    Watch {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot kill process {pid}")]
    Kill {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot find the QEMU binary: {reason}")]
    QemuNotFound { reason: String },
    #[error("cannot learn what {} can do: {reason}", .binary.display())]
    Probe { binary: PathBuf, reason: String },
    #[error("a device with id {id} is already attached")]
    DeviceExists { id: String },
    /// All hot-plug ports are taken (or QEMU was started without them).
    #[error("no free hot-plug port for device {id}: the VM has {ports} (machine.hotplug_ports), all in use")]
    NoFreeHotplugPort { id: String, ports: usize },
    /// The device sits on the root bus, which cannot hot-unplug (a disk the VM was started with).
    #[error("device {id} cannot be hot-unplugged: it was not plugged into a hot-plug port")]
    NotHotUnpluggable { id: String },
    #[error("hot-plug port {port} is in use or does not exist")]
    HotplugPortUnavailable { port: String },
    /// The guest did not release the device in time; it is still attached, and QEMU
    /// still asks the guest to let go (a later `DeviceDeleted` event may follow).
    #[error("the guest did not release device {id} within {}s", .timeout.as_secs())]
    DetachTimeout { id: String, timeout: Duration },
    /// A QEMU job (snapshot-save, snapshot-load, snapshot-delete) failed; `error` is QEMU's message.
    #[error("QEMU job {job} failed: {error}")]
    Job { job: String, error: String },
    /// The job may still finish later; it is dismissed by the next snapshot command.
    #[error("QEMU job {job} did not finish within {}s", .timeout.as_secs())]
    JobTimeout { job: String, timeout: Duration },
    /// A migration (save to file, or the incoming state) ended in `status` (`failed`, `cancelled`).
    #[error("migration {status}: {error}")]
    Migration { status: String, error: String },
    #[error("migration did not complete within {}s", .timeout.as_secs())]
    MigrationTimeout { timeout: Duration },
    #[error("cannot use state file {path}")]
    StateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
