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
}
