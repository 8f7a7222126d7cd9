//! End-to-end: the event log of a real daemon, through the API and the CLI.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use vireo_api::{Event, EventKind, PoolSpec, PoolType, StopRequest, VmState};
use vireo_client::EventStream;

/// Generous: under TCG a start or a crash report can take a while on a busy machine.
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

async fn next_event(stream: &mut EventStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(other) => panic!("the event stream ended: {other:?}"),
        Err(_) => panic!("no event within {EVENT_TIMEOUT:?}"),
    }
}

/// Events from `stream` up to and including the first that `last` matches.
async fn events_until(stream: &mut EventStream, last: impl Fn(&EventKind) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        let done = last(&event.kind);
        events.push(event);
        if done {
            return events;
        }
    }
}

fn kinds(events: &[Event]) -> Vec<String> {
    events.iter().map(|event| event.kind.name()).collect()
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.id).collect()
}

async fn create_pool(daemon: &Daemon, name: &str) {
    let spec = PoolSpec { name: name.into(), pool_type: PoolType::Dir, path: daemon.dir.path().join(name) };
    daemon.client().create_pool(&spec).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vms_lifecycle_streams_in_order_and_a_killed_qemu_is_a_crash() {
    let daemon = Daemon::start();
    let client = daemon.client();
    // Opened before the VM exists: after id 0 and filtered by name, it gets all of the VM's events.
    let mut stream = client.follow_events(Some(0), Some("life")).await.unwrap();
    client.create_vm(&guest_spec("life")).await.unwrap();
    client.start_vm("life").await.unwrap();
    client.stop_vm("life", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    client.start_vm("life").await.unwrap();
    let pid = daemon.qemu_pid("life").expect("QEMU pid");
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());

    let events = events_until(&mut stream, |kind| matches!(kind, EventKind::VmCrashed { .. })).await;
    assert_eq!(
        kinds(&events),
        [
            "vm.created",
            "vm.state_changed",
            "vm.state_changed",
            "vm.started",
            "vm.state_changed",
            "vm.state_changed",
            "vm.stopped",
            "vm.state_changed",
            "vm.state_changed",
            "vm.started",
            "vm.state_changed",
            "vm.crashed",
        ]
    );
    assert!(ids(&events).windows(2).all(|w| w[0] < w[1]), "ids increase: {:?}", ids(&events));
    assert!(events.iter().all(|event| event.vm.as_deref() == Some("life")));
    let changes: Vec<(VmState, VmState)> = events
        .iter()
        .filter_map(|event| match event.kind {
            EventKind::VmStateChanged { from, to } => Some((from, to)),
            _ => None,
        })
        .collect();
    use VmState::*;
    assert_eq!(
        changes,
        [
            (Stopped, Starting),
            (Starting, Running),
            (Running, Stopping),
            (Stopping, Stopped),
            (Stopped, Starting),
            (Starting, Running),
            (Running, Crashed)
        ]
    );
    let Some(EventKind::VmCrashed { reason }) = events.last().map(|e| &e.kind) else { unreachable!() };
    assert!(reason.contains("unexpectedly"), "{reason}");
    assert_eq!(client.get_vm("life").await.unwrap().state, VmState::Crashed);

    // The stored log says the same as the stream did.
    let stored = client.list_events(Some(0), Some("life"), None).await.unwrap();
    assert_eq!(stored, events);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_resumes_exactly_after_the_last_event_id_even_across_a_restart() {
    let mut daemon = Daemon::start();
    let client = daemon.client();
    for name in ["p1", "p2", "p3", "p4"] {
        create_pool(&daemon, name).await;
    }
    let stored = client.list_events(Some(0), None, None).await.unwrap();
    let middle = stored[stored.len() / 2].id;

    let mut stream = client.follow_events(Some(middle), None).await.unwrap();
    let expected: Vec<Event> = stored.iter().filter(|event| event.id > middle).cloned().collect();
    let mut received = Vec::new();
    for _ in 0..expected.len() {
        received.push(next_event(&mut stream).await);
    }
    assert_eq!(received, expected, "the stored events right after Last-Event-ID, once each");

    create_pool(&daemon, "p5").await;
    let live = next_event(&mut stream).await;
    assert_eq!(live.kind, EventKind::PoolCreated { pool: "p5".into() });
    assert_eq!(stream.last_id(), Some(live.id));

    // The connection dies with the daemon; meanwhile nothing is lost, and the new
    // daemon's stream takes up right after the last event received.
    daemon.kill9();
    let ended = tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await.expect("the stream notices");
    assert!(!matches!(ended, Some(Ok(_))), "no event from a dead daemon: {ended:?}");
    daemon.spawn();
    let client = daemon.client();
    create_pool(&daemon, "p6").await;
    let mut resumed = client.follow_events(stream.last_id(), None).await.unwrap();
    let next = next_event(&mut resumed).await;
    assert_eq!(next.kind, EventKind::PoolCreated { pool: "p6".into() });
    let all = client.list_events(Some(0), None, None).await.unwrap();
    let position = all.iter().position(|event| event.id == live.id).expect("p5's event is stored");
    assert_eq!(all[position + 1], next, "no gap and no repeat across the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_lists_events_as_json_and_a_table() {
    let daemon = Daemon::start();
    create_pool(&daemon, "fast").await;
    daemon.client().create_vm(&guest_spec("web1")).await.unwrap();

    let all = json_list(&daemon.cli_ok(&["events", "-o", "json"]));
    let kinds: Vec<&str> = all.iter().map(|event| event["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pool.created", "pool.created", "vm.created"], "the default pool, then ours");
    assert_eq!(all[1]["details"]["pool"], "fast");
    assert_eq!(all[2]["vm"], "web1");
    let events: Vec<Event> = serde_json::from_value(serde_json::Value::Array(all.clone())).expect("events");
    assert_eq!(events[2].kind, EventKind::VmCreated {});

    let first = all[0]["id"].as_u64().unwrap().to_string();
    let after = json_list(&daemon.cli_ok(&["events", "-o", "json", "--after", &first, "--limit", "1"]));
    assert_eq!(after, all[1..2]);
    let of_web1 = json_list(&daemon.cli_ok(&["events", "-o", "json", "--vm", "web1"]));
    assert_eq!(of_web1, all[2..]);

    let table = daemon.cli_ok(&["events"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("TIME") && lines[0].ends_with("DETAILS"), "{table}");
    assert!(lines[3].contains("web1") && lines[3].contains("vm.created"), "{table}");

    let output = daemon.cli(&["events", "--limit", "0"]);
    assert!(!output.status.success(), "a limit of 0 is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_is_reported_by_both_daemons() {
    let (source, destination) = Daemon::pair_in_netns();
    let _logs = LogsOnPanic::new(&[&source, &destination]);
    let (from, to) = (source.client(), destination.client());
    from.create_vm(&guest_spec("mover")).await.unwrap();
    from.start_vm("mover").await.unwrap();
    wait_for_log(&from, "mover", MARKER, BOOT_TIMEOUT).await;
    let mut sent = from.follow_events(None, Some("mover")).await.unwrap();
    let mut received = to.follow_events(Some(0), Some("mover")).await.unwrap();

    let (url, token) = (destination.url(), destination.token());
    source.cli_ok(&["vm", "migrate", "mover", "--to", &url, "--to-token", &token]);
    let there = events_until(&mut received, |kind| *kind == EventKind::VmMigratedIn {}).await;
    let here = events_until(&mut sent, |kind| matches!(kind, EventKind::MigrationCompleted { .. })).await;

    assert_eq!(
        here.iter().map(|event| &event.kind).collect::<Vec<_>>(),
        [
            &EventKind::VmStateChanged { from: VmState::Running, to: VmState::Migrating },
            &EventKind::MigrationStarted { destination: destination.url(), copy_storage: false },
            &EventKind::MigrationCompleted { destination: destination.url() },
        ]
    );
    assert_eq!(
        there.last().map(|event| &event.kind),
        Some(&EventKind::VmMigratedIn {}),
        "the destination reports the VM it received: {there:?}"
    );
    assert!(
        there
            .iter()
            .any(|event| event.kind == EventKind::VmStateChanged { from: VmState::Incoming, to: VmState::Running }),
        "{there:?}"
    );
}

/// `vireo events --follow -o json` as a child process, its stdout lines arriving on a channel.
struct Follower {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(daemon: &Daemon) -> Follower {
        let mut child = Command::new(vireo_bin())
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["events", "--follow", "-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vireo events --follow");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// Lines until one is the creation of `vm`, each parsed as an event.
    fn until_created(&self, vm: &str) -> Vec<Event> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no vm.created of {vm}: {events:?}"));
            let event: Event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not an event: {line}: {e}"));
            let done = event.vm.as_deref() == Some(vm) && event.kind == EventKind::VmCreated {};
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_follow_prints_json_lines_and_resumes_after_a_daemon_restart() {
    let mut daemon = Daemon::start();
    let follower = Follower::start(&daemon);
    daemon.client().create_vm(&guest_spec("before")).await.unwrap();
    let mut seen = follower.until_created("before");

    daemon.kill9();
    // Made while the follower is cut off: it must still print it, once.
    daemon.spawn();
    daemon.client().create_vm(&guest_spec("meanwhile")).await.unwrap();
    seen.extend(follower.until_created("meanwhile"));
    daemon.client().create_vm(&guest_spec("after")).await.unwrap();
    seen.extend(follower.until_created("after"));

    let stored = daemon.client().list_events(Some(0), None, None).await.unwrap();
    assert_eq!(seen, stored, "every event once, in order, across the restart");
}

/// The command line of process `pid`, split into its arguments; empty once it has exited.
fn cmdline(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The pid of the daemon's `vireo serve`, found by its data directory on its command line.
fn serve_pid(daemon: &Daemon) -> u32 {
    let dir = daemon.dir.path().to_string_lossy().into_owned();
    let entries = std::fs::read_dir("/proc").expect("/proc");
    let mut pids = entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    pids.find(|pid| {
        let args = cmdline(*pid);
        args.iter().any(|arg| arg == "serve") && args.contains(&dir)
    })
    .expect("vireo serve runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_being_followed_still_stops_on_sigterm() {
    let daemon = Daemon::start();
    let mut stream = daemon.client().follow_events(None, None).await.unwrap();
    let pid = serve_pid(&daemon);
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let ended = tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await.expect("the stream ends");
    assert!(ended.is_none(), "the daemon ends the stream cleanly: {ended:?}");
    // Graceful shutdown waits for open responses: it is over only because the stream ended.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !cmdline(pid).is_empty() {
        assert!(Instant::now() < deadline, "vireo serve still runs after SIGTERM: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.log().contains("stopped; VMs keep running"), "{}", daemon.log());
}
