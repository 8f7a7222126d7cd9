//! Starting QEMU, finding it again after a daemon restart, and noticing when it ends.
//!
//! A QEMU process is identified by its pid plus its start time in clock ticks
//! (`/proc/PID/stat` field 22), so a reused pid is never mistaken for it. Its
//! end is noticed without polling: through the tokio `Child` for a QEMU this
//! daemon started (which also reaps it), through a pidfd for one it re-attached
//! to. A zombie counts as ended: PID 1 may take a while to reap it.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::argv::{Incoming, Launch, LaunchConfig, NicAttachment, NicFds, build_argv};
use crate::error::QemuError;
use crate::paths::RuntimePaths;
use crate::qmp::{COMMAND_TIMEOUT, QemuEvent, QmpClient, QmpLog, QueryChardev};

/// How long QEMU may take from exec to a finished QMP handshake.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// After the process ended, how long the QMP reader may take to deliver the last events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of qemu.log a start-up error quotes.
const LOG_TAIL_BYTES: usize = 2048;

/// A QEMU process with its QMP connection, console and event stream.
/// Dropping it closes the connections; QEMU itself keeps running.
#[derive(Debug)]
pub struct VmProcess {
    pub pid: u32,
    /// Start time of the process (/proc/PID/stat field 22); with `pid` it identifies the process.
    pub pid_start_ticks: u64,
    pub qmp: QmpClient,
    /// Connected to the guest's serial console. Keep reading it: when nobody
    /// does, the guest blocks on console output once the socket buffer is full.
    pub console: UnixStream,
    /// QEMU's events; `Exited` comes last, once the process is gone.
    pub events: mpsc::UnboundedReceiver<QemuEvent>,
}

/// Spawns QEMU (`binary`: the path of qemu-system-x86_64) for a VM whose runtime
/// directory is `paths` (created 0700 if missing). Returns once the QMP handshake
/// (`qmp_capabilities`) is done and the console is connected; the guest is still
/// paused (`-S`) until `qmp.cont()`. If QEMU exits during start-up, the error
/// quotes the end of qemu.log (QEMU's own message).
///
/// With `launch.incoming`, QEMU is receiving the saved state when this returns:
/// see [`QmpClient::wait_incoming`].
pub async fn spawn(binary: &Path, launch: &Launch<'_>, paths: &RuntimePaths) -> Result<VmProcess, QemuError> {
    let spec = launch.spec;
    create_runtime_dir(paths.dir())?;
    let state_file = match &launch.incoming {
        Some(Incoming::StateFile(path)) => Some(path.as_path()),
        _ => None,
    };
    let incoming = state_file.map(open_state_file).transpose()?;
    let sockets = Sockets::open(paths).await?;
    let qmp_log = QmpLog::open(&paths.qmp_log())?;
    let (qmp_fd, console_fd) = (sockets.qmp_listener.as_raw_fd(), sockets.console_listener.as_raw_fd());
    let incoming_fd = incoming.as_ref().map(AsRawFd::as_raw_fd);
    let nic_fds: Vec<Option<NicFds>> = launch.nics.iter().map(NicAttachment::fds).collect();
    let argv = build_argv(&LaunchConfig { launch, paths, qmp_fd, console_fd, incoming_fd, nic_fds: nic_fds.clone() });
    let nic_inherit = nic_fds.iter().flatten().flat_map(|fds| std::iter::once(fds.tap).chain(fds.vhost));
    let inherit: Vec<i32> = [qmp_fd, console_fd].into_iter().chain(incoming_fd).chain(nic_inherit).collect();
    let child = start_qemu(binary, &argv, paths, &inherit)?;
    // Should this future be dropped half-way, the paused QEMU must not stay behind.
    let mut qemu = SpawnedQemu { child, kill_on_drop: true };
    // QEMU holds the listeners now. Closing ours means that if QEMU dies, our
    // connections see EOF instead of waiting in a backlog nobody serves.
    drop(sockets.qmp_listener);
    drop(sockets.console_listener);
    drop(incoming);

    let child = &mut qemu.child;
    let identity = child.id().and_then(|pid| Some((pid, process_start_ticks(pid)?)));
    let Some((pid, pid_start_ticks)) = identity else {
        return Err(start_failure(child, paths).await);
    };
    tracing::debug!(pid, vm = %spec.name, "QEMU started");
    let (events_tx, events) = mpsc::unbounded_channel();
    let (qmp, reader) = handshake(child, paths, sockets.qmp_stream, qmp_log, &events_tx).await?;
    warn_if_console_not_accepted(&qmp).await;
    qemu.kill_on_drop = false;
    tokio::spawn(supervise(ExitWatch::Child(qemu), reader, events_tx));
    let console = sockets.console;
    Ok(VmProcess { pid, pid_start_ticks, qmp, console, events })
}

/// Both listening sockets, and our connections to them. Connecting before QEMU
/// even runs is fine: the listen backlog holds the connections until QEMU
/// accepts them, so there is no waiting for QEMU to create anything.
struct Sockets {
    qmp_listener: UnixListener,
    console_listener: UnixListener,
    qmp_stream: UnixStream,
    console: UnixStream,
}

impl Sockets {
    async fn open(paths: &RuntimePaths) -> Result<Sockets, QemuError> {
        let qmp_listener = listen(&paths.qmp_socket())?;
        let console_listener = listen(&paths.console_socket())?;
        let qmp_stream = connect(&paths.qmp_socket()).await?;
        let console = connect(&paths.console_socket()).await?;
        Ok(Sockets { qmp_listener, console_listener, qmp_stream, console })
    }
}

/// Waits for QEMU's QMP greeting and negotiates; QEMU exiting first is a start-up failure.
async fn handshake(
    child: &mut Child,
    paths: &RuntimePaths,
    qmp_stream: UnixStream,
    qmp_log: QmpLog,
    events: &mpsc::UnboundedSender<QemuEvent>,
) -> Result<(QmpClient, JoinHandle<()>), QemuError> {
    let connect = QmpClient::connect(qmp_stream, qmp_log, events.clone(), COMMAND_TIMEOUT);
    let connected = tokio::select! {
        result = tokio::time::timeout(START_TIMEOUT, connect) => result,
        _ = child.wait() => Ok(Err(QemuError::QmpClosed)),
    };
    match connected {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(QemuError::QmpClosed | QemuError::QmpIo(_))) => Err(start_failure(child, paths).await),
        Ok(Err(err)) => {
            stop_child(child).await;
            Err(err)
        }
        Err(_) => {
            stop_child(child).await;
            Err(QemuError::HandshakeTimeout { timeout: START_TIMEOUT })
        }
    }
}

/// Re-attaches to a QEMU started by an earlier daemon: checks that `pid` still is
/// that process (`pid_start_ticks`) and is this VM's QEMU (its command line names
/// `paths`' pid file), then connects QMP (handshake) and the console again.
pub async fn reattach(pid: u32, pid_start_ticks: u64, paths: &RuntimePaths) -> Result<VmProcess, QemuError> {
    // Open the pidfd first: from then on the pid cannot be reused behind our back,
    // and the checks below are about the process the pidfd holds.
    let pidfd = open_pidfd(pid)?.ok_or(QemuError::NotRunning { pid })?;
    match identify(pid, pid_start_ticks) {
        Identity::Same => {}
        Identity::Gone => return Err(QemuError::NotRunning { pid }),
        Identity::Other => {
            return Err(QemuError::NotOurProcess { pid, reason: "the pid now belongs to another process".into() });
        }
    }
    check_is_vm_qemu(pid, paths)?;
    // SAFETY: the OwnedFd owns its descriptor and never swaps it for another.
    let watch = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|err| QemuError::Watch { pid, source: err.into_parts().1 })?;

    let qmp_stream = connect(&paths.qmp_socket()).await?;
    let console = connect(&paths.console_socket()).await?;
    let qmp_log = QmpLog::open(&paths.qmp_log())?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let (qmp, reader) = tokio::time::timeout(
        START_TIMEOUT,
        QmpClient::connect(qmp_stream, qmp_log, events_tx.clone(), COMMAND_TIMEOUT),
    )
    .await
    .map_err(|_| QemuError::HandshakeTimeout { timeout: START_TIMEOUT })??;
    tokio::spawn(supervise(ExitWatch::Pidfd(watch), reader, events_tx));
    Ok(VmProcess { pid, pid_start_ticks, qmp, console, events })
}

/// SIGKILL to the process if it still is the one identified by (pid, start_ticks).
/// A process that is already gone (or a zombie) is not an error.
pub fn kill(pid: u32, pid_start_ticks: u64) -> Result<(), QemuError> {
    let Some(pidfd) = open_pidfd(pid)? else {
        return Ok(());
    };
    if identify(pid, pid_start_ticks) != Identity::Same {
        return Ok(());
    }
    match rustix::process::pidfd_send_signal(&pidfd, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(QemuError::Kill { pid, source: errno.into() }),
    }
}

/// Start time of a process in clock ticks since boot (/proc/PID/stat field 22).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    read_proc_stat(pid).map(|stat| stat.start_ticks)
}

/// Whether `pid` is a QEMU started for the VM of `paths`: its command line names
/// that runtime directory's pid file. (The sockets are passed as fds, so they do
/// not appear on the command line.)
pub fn is_vm_qemu(pid: u32, paths: &RuntimePaths) -> bool {
    check_is_vm_qemu(pid, paths).is_ok()
}

/// Whether the process identified by (pid, start_ticks) still runs (a zombie does not).
pub fn process_alive(pid: u32, pid_start_ticks: u64) -> bool {
    identify(pid, pid_start_ticks) == Identity::Same
}

fn create_runtime_dir(dir: &Path) -> Result<(), QemuError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| QemuError::RuntimeDir { path: dir.to_path_buf(), source })
}

/// Binds a fresh listening socket (mode 0600) at `path`, replacing a stale one.
pub(crate) fn listen(path: &Path) -> Result<UnixListener, QemuError> {
    let fail = |source| QemuError::Listen { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(err)),
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(listener)
}

async fn connect(path: &Path) -> Result<UnixStream, QemuError> {
    UnixStream::connect(path).await.map_err(|source| QemuError::Connect { path: path.to_path_buf(), source })
}

/// A saved state file for `-incoming fd:N`. QEMU 7.2 reads a regular file through
/// `fd:` just like a pipe or socket (no `file:` URI before 8.2).
fn open_state_file(path: &Path) -> Result<std::fs::File, QemuError> {
    std::fs::File::open(path).map_err(|source| QemuError::StateFile { path: path.to_path_buf(), source })
}

fn start_qemu(binary: &Path, argv: &[String], paths: &RuntimePaths, inherit: &[i32]) -> Result<Child, QemuError> {
    let log_path = paths.qemu_log();
    let stderr = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|source| QemuError::LogFile { path: log_path.clone(), source })?;
    let mut command = Command::new(binary);
    command.args(argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, fcntl); the fds are the listeners and
    // the state file, which stay open in the parent until the child has started.
    let inherit = inherit.to_vec();
    unsafe {
        command.pre_exec(move || {
            // Own session: no signals from the daemon's terminal, and QEMU outlives the daemon.
            rustix::process::setsid()?;
            for &fd in &inherit {
                rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| QemuError::Spawn { binary: binary.to_path_buf(), source })
}

/// QEMU did not come up: make sure it is gone, then explain with the end of its log.
async fn start_failure(child: &mut Child, paths: &RuntimePaths) -> QemuError {
    let status = match tokio::time::timeout(DRAIN_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(err)) => format!("exit status unknown: {err}"),
        Err(_) => {
            stop_child(child).await;
            "killed: it closed QMP but did not exit".to_string()
        }
    };
    QemuError::StartFailed { status, log_tail: log_tail(&paths.qemu_log()) }
}

async fn stop_child(child: &mut Child) {
    if let Err(err) = child.start_kill() {
        tracing::debug!(error = %err, "QEMU already gone");
    }
    let _ = child.wait().await;
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("(no {})", path.display());
    };
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&bytes[start..]);
    let tail = tail.trim();
    if tail.is_empty() { "(QEMU printed nothing)".to_string() } else { tail.to_string() }
}

/// The console connection was queued before QEMU started, so QEMU accepts it in
/// the same main-loop pass as QMP's. Check it, as a lost console is hard to debug.
async fn warn_if_console_not_accepted(qmp: &QmpClient) {
    match qmp.execute(&QueryChardev {}).await {
        Ok(chardevs) => {
            let console = chardevs.iter().find(|c| c.label == "console");
            if console.is_some_and(|c| c.filename.starts_with("disconnected:")) {
                tracing::warn!("QEMU has not accepted the console connection yet; early output may be lost");
            }
        }
        Err(err) => tracing::debug!(error = %err, "query-chardev failed"),
    }
}

/// A QEMU this daemon started. Killed when dropped during start-up (`spawn`
/// abandoned half-way); once running it must outlive the daemon, so never after.
struct SpawnedQemu {
    child: Child,
    kill_on_drop: bool,
}

impl Drop for SpawnedQemu {
    fn drop(&mut self) {
        if self.kill_on_drop {
            // A no-op when it was reaped already; tokio reaps it otherwise.
            let _ = self.child.start_kill();
        }
    }
}

enum ExitWatch {
    /// A QEMU this daemon started: waiting also reaps it.
    Child(SpawnedQemu),
    /// A QEMU started by an earlier daemon: its pidfd turns readable when it ends.
    Pidfd(AsyncFd<OwnedFd>),
}

impl ExitWatch {
    async fn wait(&mut self) {
        match self {
            ExitWatch::Child(qemu) => {
                if let Err(err) = qemu.child.wait().await {
                    tracing::warn!(error = %err, "cannot wait for QEMU");
                }
            }
            ExitWatch::Pidfd(pidfd) => {
                if let Err(err) = pidfd.readable().await {
                    tracing::warn!(error = %err, "cannot watch QEMU's pidfd");
                }
            }
        }
    }
}

/// Sends `Exited` once the process is gone, after the reader delivered QEMU's last events.
/// Gives up silently when nobody listens to the events any more.
async fn supervise(mut exit: ExitWatch, reader: JoinHandle<()>, events: mpsc::UnboundedSender<QemuEvent>) {
    tokio::select! {
        _ = exit.wait() => {}
        _ = events.closed() => return,
    }
    let abort = reader.abort_handle();
    if tokio::time::timeout(DRAIN_TIMEOUT, reader).await.is_err() {
        abort.abort();
    }
    let _ = events.send(QemuEvent::Exited);
}

/// `Ok(None)` when there is no such process.
fn open_pidfd(pid: u32) -> Result<Option<OwnedFd>, QemuError> {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    match rustix::process::pidfd_open(raw, PidfdFlags::NONBLOCK) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::SRCH) => Ok(None),
        Err(errno) => Err(QemuError::Watch { pid, source: errno.into() }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Same,
    /// No such process, or only its zombie.
    Gone,
    /// The pid belongs to a different process now.
    Other,
}

fn identify(pid: u32, start_ticks: u64) -> Identity {
    match read_proc_stat(pid) {
        None => Identity::Gone,
        Some(stat) if stat.start_ticks != start_ticks => Identity::Other,
        Some(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Identity::Gone,
        Some(_) => Identity::Same,
    }
}

/// A re-attached QEMU must be the one started for this VM: its command line
/// names this runtime directory's pid file (see `build_argv`).
fn check_is_vm_qemu(pid: u32, paths: &RuntimePaths) -> Result<(), QemuError> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|_| QemuError::NotRunning { pid })?;
    let pid_file = paths.pid_file();
    if cmdline_has_pidfile(&cmdline, &pid_file) {
        Ok(())
    } else {
        Err(QemuError::NotOurProcess {
            pid,
            reason: format!("its command line has no -pidfile {}", pid_file.display()),
        })
    }
}

fn cmdline_has_pidfile(cmdline: &[u8], pid_file: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let want = pid_file.as_os_str().as_bytes();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).any(|pair| pair[0] == b"-pidfile" && pair[1] == want)
}

#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    state: char,
    /// User + system CPU time, in clock ticks.
    cpu_ticks: u64,
    start_ticks: u64,
}

impl From<procfs::process::Stat> for ProcStat {
    fn from(stat: procfs::process::Stat) -> ProcStat {
        ProcStat { state: stat.state, cpu_ticks: stat.utime + stat.stime, start_ticks: stat.starttime }
    }
}

fn proc_process(pid: u32) -> Option<procfs::process::Process> {
    procfs::process::Process::new(i32::try_from(pid).ok()?).ok()
}

fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    proc_process(pid)?.stat().ok().map(ProcStat::from)
}

/// What the host kernel says about a running QEMU (or any process).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessUsage {
    /// CPU time of all its threads so far.
    pub cpu_seconds: f64,
    /// Resident memory (`VmRSS`).
    pub rss_bytes: u64,
    /// Seconds since it started.
    pub uptime_seconds: f64,
}

fn ticks_per_second() -> f64 {
    procfs::ticks_per_second().max(1) as f64
}

/// CPU time, memory and age of process `pid`; `None` once it is gone.
pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    use procfs::Current;
    let process = proc_process(pid)?;
    let stat = ProcStat::from(process.stat().ok()?);
    let rss_kib = process.status().ok()?.vmrss?;
    let boot_uptime = procfs::Uptime::current().ok()?.uptime;
    let per_second = ticks_per_second();
    Some(ProcessUsage {
        cpu_seconds: stat.cpu_ticks as f64 / per_second,
        rss_bytes: rss_kib * 1024,
        uptime_seconds: (boot_uptime - stat.start_ticks as f64 / per_second).max(0.0),
    })
}

/// CPU time of thread `tid` of process `pid` (e.g. a vCPU thread), in seconds.
pub fn thread_cpu_seconds(pid: u32, tid: u32) -> Option<f64> {
    let task = proc_process(pid)?.task_from_tid(i32::try_from(tid).ok()?).ok()?;
    Some(ProcStat::from(task.stat().ok()?).cpu_ticks as f64 / ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_is_visible() {
        let pid = std::process::id();
        let usage = process_usage(pid).expect("usage of this process");
        assert!(usage.rss_bytes > 0 && usage.cpu_seconds >= 0.0 && usage.uptime_seconds >= 0.0);
        assert!(thread_cpu_seconds(pid, pid).is_some());
        assert!(process_usage(u32::MAX).is_none());
    }

    #[test]
    fn own_process_is_alive_and_identified() {
        let pid = std::process::id();
        let ticks = process_start_ticks(pid).unwrap();
        assert!(process_alive(pid, ticks));
        assert_eq!(identify(pid, ticks + 1), Identity::Other);
        assert!(!process_alive(u32::MAX, ticks));
    }

    #[test]
    fn pidfile_must_follow_the_option() {
        let cmdline = b"qemu-system-x86_64\0-S\0-pidfile\0/run/vireo/a/qemu.pid\0-m\x00256\x00";
        assert!(cmdline_has_pidfile(cmdline, Path::new("/run/vireo/a/qemu.pid")));
        assert!(!cmdline_has_pidfile(cmdline, Path::new("/run/vireo/b/qemu.pid")));
        assert!(!cmdline_has_pidfile(b"sleep\0/run/vireo/a/qemu.pid\0", Path::new("/run/vireo/a/qemu.pid")));
    }

    #[test]
    fn killing_a_gone_process_is_fine() {
        assert!(kill(u32::MAX, 1).is_ok());
        let pid = std::process::id();
        // Wrong start time: not our process, so it is left alone.
        assert!(kill(pid, process_start_ticks(pid).unwrap() + 1).is_ok());
    }
}
