//! A small typed QMP client.
//!
//! One reader task owns the read half of the socket: it hands replies to the
//! waiting command by `id` and turns events into [`QemuEvent`]s on an
//! unbounded channel, so it never waits on a slow consumer. Events it does not
//! know are logged and skipped, never fatal. Client methods that wait for an
//! event (a device deleted, a job or migration finished) subscribe to a
//! broadcast of every raw event *before* sending their command, so the event
//! cannot slip past; the broadcast never blocks the reader either (a lagging
//! subscriber is told it missed events and asks QEMU for the state instead).
//! Every message in either direction is appended to the VM's QMP log. A closed socket fails the pending commands
//! at once; a command without a reply fails after a timeout.
//!
//! (The `qapi` crate was tried first; with 0.15 an unknown event ends the whole
//! connection and a timed-out command makes the next one panic.)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::QemuError;

/// How long a command may wait for its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What QEMU reports about a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuEvent {
    /// The vCPUs stopped (`STOP`).
    Paused,
    /// The vCPUs run again (`RESUME`).
    Resumed,
    /// QEMU is shutting down (`SHUTDOWN`); `guest_initiated` when the guest powered off.
    Shutdown { guest_initiated: bool },
    /// The guest reset (`RESET`), e.g. a reboot.
    Reset,
    /// A device is gone (`DEVICE_DELETED`), e.g. after the guest released a hot-plugged
    /// disk. Comes also when the guest does so after `detach_disk` gave up waiting:
    /// the disk's block nodes are then still there, and `detach_disk` removes them.
    DeviceDeleted { id: String },
    /// The QEMU process is gone. Always the last event.
    Exited,
}

/// Reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunStatus {
    /// Whether the vCPUs are running.
    pub running: bool,
    /// QEMU's run state, e.g. `prelaunch`, `running`, `paused`, `shutdown`.
    pub status: String,
}

/// Told the duration of every QMP exchange (command sent → reply, or timeout).
pub type RoundTripObserver = fn(command: &'static str, took: Duration);

static ROUND_TRIP_OBSERVER: std::sync::OnceLock<RoundTripObserver> = std::sync::OnceLock::new();

/// Installs the process-wide observer of QMP round trips (e.g. for metrics); the first one stays.
pub fn observe_round_trips(observer: RoundTripObserver) {
    let _ = ROUND_TRIP_OBSERVER.set(observer);
}

fn observe_round_trip(command: &'static str, took: Duration) {
    if let Some(observer) = ROUND_TRIP_OBSERVER.get() {
        observer(command, took);
    }
}

/// A typed QMP command: its name, its arguments (the serialized struct) and its reply.
pub trait QmpCommand: Serialize {
    const NAME: &'static str;
    type Reply: DeserializeOwned;
}

/// Declares a typed QMP command: a struct whose fields are the command's
/// arguments, then `=> "command-name" -> ReplyType`.
macro_rules! qmp_command {
    ($(#[$attr:meta])* $vis:vis struct $ty:ident $(<$lt:lifetime>)? { $($field:tt)* } => $name:literal -> $reply:ty) => {
        #[derive(serde::Serialize)]
        $(#[$attr])*
        $vis struct $ty $(<$lt>)? { $($field)* }

        impl $(<$lt>)? $crate::qmp::QmpCommand for $ty $(<$lt>)? {
            const NAME: &'static str = $name;
            type Reply = $reply;
        }
    };
}
pub(crate) use qmp_command;

macro_rules! simple_command {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $reply:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, Serialize)]
        pub struct $ty {}

        impl QmpCommand for $ty {
            const NAME: &'static str = $name;
            type Reply = $reply;
        }
    };
}

simple_command!(
    /// Leaves capability negotiation mode; required before any other command.
    QmpCapabilities, "qmp_capabilities", IgnoredAny);
simple_command!(
    /// Runs the vCPUs.
    Cont, "cont", IgnoredAny);
simple_command!(
    /// Pauses the vCPUs.
    Stop, "stop", IgnoredAny);
simple_command!(
    /// Presses the ACPI power button.
    SystemPowerdown, "system_powerdown", IgnoredAny);
simple_command!(
    /// Ends QEMU at once.
    Quit, "quit", IgnoredAny);
simple_command!(
    /// Asks for the run state.
    QueryStatus, "query-status", RunStatus);

/// One QEMU character device, as `query-chardev` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChardevInfo {
    pub label: String,
    pub filename: String,
}

simple_command!(
    /// Lists the character devices.
    QueryChardev, "query-chardev", Vec<ChardevInfo>);

/// A connection to one QEMU's QMP monitor. Clones share the connection; it
/// closes when the last clone is dropped.
#[derive(Clone)]
pub struct QmpClient {
    inner: Arc<Inner>,
}

struct Inner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    next_id: AtomicU64,
    pending: Arc<Mutex<Pending>>,
    log: QmpLog,
    timeout: Duration,
    /// Dropping it stops the reader task, which closes the connection.
    _stop_reader: oneshot::Sender<()>,
}

/// QMP's `{"error": {"class": …, "desc": …}}`.
struct ReplyError {
    class: String,
    desc: String,
}

type Reply = Result<Value, ReplyError>;
type ReplySender = oneshot::Sender<Reply>;

struct Pending {
    waiting: HashMap<u64, ReplySender>,
    closed: bool,
    /// Every event, for client methods waiting for one. Dropped when the connection
    /// closes, which ends every subscription.
    raw_events: Option<broadcast::Sender<Arc<RawEvent>>>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending { waiting: HashMap::new(), closed: false, raw_events: Some(broadcast::channel(RAW_EVENT_BUFFER).0) }
    }
}

/// Events a subscriber may fall behind by before it is told it missed some.
const RAW_EVENT_BUFFER: usize = 256;

/// A QMP event as QEMU sent it.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub(crate) name: String,
    pub(crate) data: Value,
}

impl RawEvent {
    /// A string member of the event's data.
    pub(crate) fn data_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// The events of one connection, from the moment of subscription on.
pub(crate) struct EventSubscription {
    receiver: broadcast::Receiver<Arc<RawEvent>>,
}

/// What waiting for the next event brought.
pub(crate) enum NextEvent {
    Event(Arc<RawEvent>),
    /// Some events were lost (the subscriber lagged): ask QEMU for the state.
    Missed,
    /// The deadline passed.
    TimedOut,
}

impl EventSubscription {
    /// The next event before `deadline`. Fails with `QmpClosed` once the connection is gone.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Result<NextEvent, QemuError> {
        match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
            Err(_) => Ok(NextEvent::TimedOut),
            Ok(Ok(event)) => Ok(NextEvent::Event(event)),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => Ok(NextEvent::Missed),
            Ok(Err(broadcast::error::RecvError::Closed)) => Err(QemuError::QmpClosed),
        }
    }

    /// An event that has already arrived, without waiting; `None` if there is none.
    pub(crate) fn try_next(&mut self) -> Option<NextEvent> {
        match self.receiver.try_recv() {
            Ok(event) => Some(NextEvent::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(NextEvent::Missed),
            Err(_) => None,
        }
    }
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient").field("timeout", &self.inner.timeout).finish_non_exhaustive()
    }
}

impl QmpClient {
    /// Reads the greeting, starts the reader task and negotiates capabilities.
    /// Returns the client and the reader task, which ends when the socket closes.
    pub(crate) async fn connect(
        stream: UnixStream,
        log: QmpLog,
        events: mpsc::UnboundedSender<QemuEvent>,
        timeout: Duration,
    ) -> Result<(QmpClient, JoinHandle<()>), QemuError> {
        let (read, write) = stream.into_split();
        let mut read = BufReader::new(read);
        let greeting = read_message(&mut read).await?.ok_or(QemuError::QmpClosed)?;
        log.record(Direction::In, &greeting);
        if greeting.get("QMP").is_none() {
            return Err(QemuError::QmpProtocol(format!("expected the QMP greeting, got {greeting}")));
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        let reader = tokio::spawn(read_loop(read, pending.clone(), log.clone(), events, stop_rx));
        let client = QmpClient {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(write),
                next_id: AtomicU64::new(1),
                pending,
                log,
                timeout,
                _stop_reader: stop_tx,
            }),
        };
        client.execute(&QmpCapabilities {}).await?;
        Ok((client, reader))
    }

    /// Sends one command and waits (at most the command timeout) for its reply.
    pub async fn execute<C: QmpCommand>(&self, command: &C) -> Result<C::Reply, QemuError> {
        self.execute_with_fd(command, None).await
    }

    /// Sends one command and waits at most `limit` for its reply: for callers
    /// that must not wait on a hung QEMU as long as an operation would.
    pub async fn execute_within<C: QmpCommand>(&self, command: &C, limit: Duration) -> Result<C::Reply, QemuError> {
        self.exchange(command, None, limit).await
    }

    /// Sends one command with a descriptor attached (SCM_RIGHTS on the command's
    /// first byte), as `getfd` and `add-fd` expect; otherwise as [`Self::execute`].
    pub(crate) async fn execute_with_fd<C: QmpCommand>(
        &self,
        command: &C,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<C::Reply, QemuError> {
        self.exchange(command, fd, self.inner.timeout).await
    }

    async fn exchange<C: QmpCommand>(
        &self,
        command: &C,
        fd: Option<BorrowedFd<'_>>,
        limit: Duration,
    ) -> Result<C::Reply, QemuError> {
        let started = Instant::now();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({ "execute": C::NAME, "arguments": command, "id": id });
        let reply = self.register(id)?;
        let exchange = async {
            self.send(&request, fd).await?;
            // The reader drops the sender when the connection closes.
            reply.await.map_err(|_| QemuError::QmpClosed)
        };
        let outcome = tokio::time::timeout(limit, exchange).await;
        self.forget(id);
        observe_round_trip(C::NAME, started.elapsed());
        let reply = match outcome {
            Ok(reply) => reply?,
            Err(_) => return Err(QemuError::QmpTimeout { command: C::NAME, timeout: limit }),
        };
        let value =
            reply.map_err(|ReplyError { class, desc }| QemuError::QmpCommand { command: C::NAME, class, desc })?;
        serde_json::from_value(value)
            .map_err(|err| QemuError::QmpProtocol(format!("reply to {} does not parse: {err}", C::NAME)))
    }

    pub async fn cont(&self) -> Result<(), QemuError> {
        self.execute(&Cont {}).await.map(drop)
    }

    /// Pauses the vCPUs.
    pub async fn stop(&self) -> Result<(), QemuError> {
        self.execute(&Stop {}).await.map(drop)
    }

    /// Presses the ACPI power button; the guest decides what to do.
    pub async fn system_powerdown(&self) -> Result<(), QemuError> {
        self.execute(&SystemPowerdown {}).await.map(drop)
    }

    /// Ends QEMU. QEMU may close the socket before its reply arrives; that counts as done.
    pub async fn quit(&self) -> Result<(), QemuError> {
        match self.execute(&Quit {}).await {
            Ok(_) | Err(QemuError::QmpClosed) => Ok(()),
            Err(err) => Err(err),
        }
    }

    pub async fn query_status(&self) -> Result<RunStatus, QemuError> {
        self.execute(&QueryStatus {}).await
    }

    /// Every event from now on. Subscribe before sending the command whose event
    /// you wait for.
    pub(crate) fn subscribe(&self) -> Result<EventSubscription, QemuError> {
        let pending = lock(&self.inner.pending);
        let sender = pending.raw_events.as_ref().ok_or(QemuError::QmpClosed)?;
        Ok(EventSubscription { receiver: sender.subscribe() })
    }

    fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, QemuError> {
        let (tx, rx) = oneshot::channel();
        let mut pending = lock(&self.inner.pending);
        if pending.closed {
            return Err(QemuError::QmpClosed);
        }
        pending.waiting.insert(id, tx);
        Ok(rx)
    }

    fn forget(&self, id: u64) {
        lock(&self.inner.pending).waiting.remove(&id);
    }

    /// Writes one command line. The writer lock keeps messages whole: a command
    /// with a descriptor goes out under the same lock as every other.
    async fn send(&self, request: &Value, fd: Option<BorrowedFd<'_>>) -> Result<(), QemuError> {
        let mut line = request.to_string();
        line.push('\n');
        let mut writer = self.inner.writer.lock().await;
        self.inner.log.record(Direction::Out, request);
        let mut bytes = line.as_bytes();
        if let Some(fd) = fd {
            let sent = send_with_fd(writer.as_ref(), bytes, fd).await.map_err(io_error)?;
            bytes = &bytes[sent..];
        }
        writer.write_all(bytes).await.map_err(io_error)
    }
}

fn io_error(err: std::io::Error) -> QemuError {
    match err.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => QemuError::QmpClosed,
        _ => QemuError::QmpIo(err),
    }
}

/// One `sendmsg` of (a first part of) `bytes` with `fd` as SCM_RIGHTS; returns how
/// many bytes went out (at least one, which carries the descriptor).
async fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    let fds = [fd];
    stream
        .async_io(Interest::WRITABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            sendmsg(stream, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL).map_err(std::io::Error::from)
        })
        .await
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // The lock is never held across a panic-prone call; recover from poisoning anyway.
    pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads one JSON line; `None` at end of stream.
async fn read_message(read: &mut BufReader<OwnedReadHalf>) -> Result<Option<Value>, QemuError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = read.read_until(b'\n', &mut line).await.map_err(|err| match err.kind() {
            std::io::ErrorKind::ConnectionReset => QemuError::QmpClosed,
            _ => QemuError::QmpIo(err),
        })?;
        if n == 0 {
            return Ok(None);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return serde_json::from_slice(&line)
            .map(Some)
            .map_err(|err| QemuError::QmpProtocol(format!("not JSON ({err}): {}", String::from_utf8_lossy(&line))));
    }
}

async fn read_loop(
    mut read: BufReader<OwnedReadHalf>,
    pending: Arc<Mutex<Pending>>,
    log: QmpLog,
    events: mpsc::UnboundedSender<QemuEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut stop => break,
            message = read_message(&mut read) => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(QemuError::QmpProtocol(detail)) => {
                // One garbled line must not cost the connection.
                tracing::warn!(%detail, "skipping unreadable QMP message");
                continue;
            }
            Err(err) => {
                tracing::debug!(error = %err, "QMP connection ended");
                break;
            }
        };
        log.record(Direction::In, &message);
        dispatch(message, &pending, &events);
    }
    let mut pending = lock(&pending);
    pending.closed = true;
    // Dropping the senders fails every waiting command with QmpClosed, and
    // every event subscription.
    pending.waiting.clear();
    pending.raw_events = None;
}

fn dispatch(message: Value, pending: &Mutex<Pending>, events: &mpsc::UnboundedSender<QemuEvent>) {
    if let Some(name) = message.get("event").and_then(Value::as_str) {
        if let Some(event) = event_from(name, message.get("data")) {
            // A dropped receiver only means nobody listens any more.
            let _ = events.send(event);
        }
        if let Some(raw_events) = &lock(pending).raw_events {
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            // Fails only when nobody is subscribed.
            let _ = raw_events.send(Arc::new(RawEvent { name: name.to_string(), data }));
        }
        return;
    }
    let Some(id) = message.get("id").and_then(Value::as_u64) else {
        tracing::warn!(%message, "QMP reply without a known id");
        return;
    };
    let Some(waiter) = lock(pending).waiting.remove(&id) else {
        // The command timed out; its late reply is in the QMP log.
        return;
    };
    let text = |error: &Value, key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
    let result = match (message.get("return"), message.get("error")) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(error)) => Err(ReplyError {
            class: text(error, "class").unwrap_or_else(|| "GenericError".into()),
            desc: text(error, "desc").unwrap_or_else(|| "no description".into()),
        }),
        (None, None) => {
            Err(ReplyError { class: "InvalidReply".into(), desc: format!("reply without return or error: {message}") })
        }
    };
    let _ = waiter.send(result);
}

fn event_from(name: &str, data: Option<&Value>) -> Option<QemuEvent> {
    match name {
        "STOP" => Some(QemuEvent::Paused),
        "RESUME" => Some(QemuEvent::Resumed),
        "RESET" => Some(QemuEvent::Reset),
        // Devices without an id (e.g. a virtio device's backend) are of no interest.
        "DEVICE_DELETED" => {
            let id = data.and_then(|d| d.get("device")).and_then(Value::as_str)?;
            Some(QemuEvent::DeviceDeleted { id: id.to_string() })
        }
        "SHUTDOWN" => {
            let guest = data.and_then(|d| d.get("guest")).and_then(Value::as_bool).unwrap_or(false);
            Some(QemuEvent::Shutdown { guest_initiated: guest })
        }
        _ => None,
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Direction {
    In,
    Out,
}

/// The VM's QMP log: one JSON line per message, `{"ts_ms":…,"dir":"in"|"out","msg":…}`.
#[derive(Clone)]
pub(crate) struct QmpLog {
    file: Option<Arc<Mutex<File>>>,
}

impl QmpLog {
    pub(crate) fn open(path: &Path) -> Result<QmpLog, QemuError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| QemuError::LogFile { path: path.to_path_buf(), source })?;
        Ok(QmpLog { file: Some(Arc::new(Mutex::new(file))) })
    }

    #[cfg(test)]
    pub(crate) fn disabled() -> QmpLog {
        QmpLog { file: None }
    }

    fn record(&self, direction: Direction, message: &Value) {
        let Some(file) = &self.file else { return };
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let dir = match direction {
            Direction::In => "in",
            Direction::Out => "out",
        };
        let mut line = serde_json::json!({ "ts_ms": ts_ms, "dir": dir, "msg": message }).to_string();
        line.push('\n');
        // Small appends to a local file; a failure must not disturb the VM.
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(err) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %err, "cannot write the QMP log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    /// A scripted QMP server on the other end of a socket pair.
    struct FakeQemu {
        lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
        write: OwnedWriteHalf,
    }

    impl FakeQemu {
        async fn send(&mut self, message: Value) {
            self.write.write_all(format!("{message}\n").as_bytes()).await.unwrap();
        }

        async fn next_command(&mut self) -> Value {
            let line = self.lines.next_line().await.unwrap().unwrap();
            serde_json::from_str(&line).unwrap()
        }

        async fn reply(&mut self, command: &Value, result: Value) {
            self.send(serde_json::json!({ "return": result, "id": command["id"] })).await;
        }
    }

    async fn connected(timeout: Duration) -> (QmpClient, JoinHandle<()>, mpsc::UnboundedReceiver<QemuEvent>, FakeQemu) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (read, write) = theirs.into_split();
        let mut fake = FakeQemu { lines: BufReader::new(read).lines(), write };
        fake.send(serde_json::json!({"QMP": {"version": {}, "capabilities": ["oob"]}})).await;
        let (tx, rx) = mpsc::unbounded_channel();
        let connect = tokio::spawn(QmpClient::connect(ours, QmpLog::disabled(), tx, timeout));
        let caps = fake.next_command().await;
        assert_eq!(caps["execute"], "qmp_capabilities");
        fake.reply(&caps, serde_json::json!({})).await;
        let (client, reader) = connect.await.unwrap().unwrap();
        (client, reader, rx, fake)
    }

    #[tokio::test]
    async fn unknown_events_are_skipped_and_known_ones_delivered() {
        let (client, _reader, mut events, mut fake) = connected(COMMAND_TIMEOUT).await;
        let status = tokio::spawn({
            let client = client.clone();
            async move { client.query_status().await }
        });
        let command = fake.next_command().await;
        assert_eq!(command["execute"], "query-status");
        fake.send(serde_json::json!({"event": "SOME_FUTURE_EVENT", "data": {"x": 1}, "timestamp": {}})).await;
        fake.send(serde_json::json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}})).await;
        fake.reply(&command, serde_json::json!({"running": false, "status": "paused", "singlestep": false})).await;
        assert_eq!(status.await.unwrap().unwrap(), RunStatus { running: false, status: "paused".into() });
        assert_eq!(events.recv().await, Some(QemuEvent::Shutdown { guest_initiated: true }));
    }

    #[tokio::test]
    async fn subscribers_see_every_event_until_the_connection_ends() {
        let (client, reader, mut events, mut fake) = connected(COMMAND_TIMEOUT).await;
        let mut subscription = client.subscribe().unwrap();
        let backend = serde_json::json!({"path": "/machine/peripheral/d1/virtio-backend"});
        fake.send(serde_json::json!({"event": "DEVICE_DELETED", "data": backend})).await;
        let device = serde_json::json!({"device": "d1", "path": "/machine/peripheral/d1"});
        fake.send(serde_json::json!({"event": "DEVICE_DELETED", "data": device})).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut devices = Vec::new();
        for _ in 0..2 {
            let NextEvent::Event(event) = subscription.next(deadline).await.unwrap() else {
                panic!("expected an event");
            };
            assert_eq!(event.name, "DEVICE_DELETED");
            devices.push(event.data_str("device").map(str::to_string));
        }
        assert_eq!(devices, [None, Some("d1".to_string())]);
        // The daemon only hears of devices with an id.
        assert_eq!(events.recv().await, Some(QemuEvent::DeviceDeleted { id: "d1".into() }));
        assert!(matches!(subscription.next(Instant::now()).await, Ok(NextEvent::TimedOut)));

        drop(fake);
        reader.await.unwrap();
        assert!(matches!(subscription.next(deadline).await, Err(QemuError::QmpClosed)));
        assert!(matches!(client.subscribe(), Err(QemuError::QmpClosed)));
    }

    #[tokio::test]
    async fn a_timed_out_command_does_not_break_the_next_one() {
        let (client, _reader, _events, mut fake) = connected(Duration::from_millis(200)).await;
        let err = client.stop().await.unwrap_err();
        assert!(matches!(err, QemuError::QmpTimeout { command: "stop", .. }), "{err}");
        let stop = fake.next_command().await;
        let cont = tokio::spawn({
            let client = client.clone();
            async move { client.cont().await }
        });
        let cont_command = fake.next_command().await;
        fake.reply(&stop, serde_json::json!({})).await; // late reply: ignored
        fake.reply(&cont_command, serde_json::json!({})).await;
        cont.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn errors_carry_class_and_description() {
        let (client, _reader, _events, mut fake) = connected(COMMAND_TIMEOUT).await;
        let cont = tokio::spawn({
            let client = client.clone();
            async move { client.cont().await }
        });
        let command = fake.next_command().await;
        let error = serde_json::json!({"error": {"class": "GenericError", "desc": "nope"}, "id": command["id"]});
        fake.send(error).await;
        let err = cont.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "QMP command cont failed: nope (GenericError)");
    }

    #[tokio::test]
    async fn a_closed_socket_fails_pending_commands_and_ends_the_reader() {
        let (client, reader, _events, mut fake) = connected(COMMAND_TIMEOUT).await;
        let status = tokio::spawn({
            let client = client.clone();
            async move { client.query_status().await }
        });
        let _ = fake.next_command().await;
        drop(fake);
        assert!(matches!(status.await.unwrap(), Err(QemuError::QmpClosed)));
        reader.await.unwrap();
        assert!(matches!(client.query_status().await, Err(QemuError::QmpClosed)));
        client.quit().await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_last_client_closes_the_connection() {
        let (client, reader, _events, mut fake) = connected(COMMAND_TIMEOUT).await;
        drop(client);
        reader.await.unwrap();
        assert_eq!(fake.lines.next_line().await.unwrap(), None);
    }
}
