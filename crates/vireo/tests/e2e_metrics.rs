//! End-to-end metrics: a real Prometheus server scrapes a real daemon running
//! real TCG guests; the exposition is parsed with a parser crate; a frozen
//! QEMU makes only its own VM's figures stale.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use vireo_api::{ByteSize, DiskSpec, VolumeCreate};
use vireo_client::Client;

/// `GET path` on `addr` over plain HTTP/1.0; the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    http_exchange(stream, path)
}

fn http_exchange(mut stream: impl Read + Write, path: &str) -> (u16, String) {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: vireo\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// A daemon that also serves its metrics, token-free, on a TCP port.
fn daemon_with_metrics() -> (Daemon, SocketAddr) {
    let metrics = free_tcp_port();
    let daemon = Daemon::start_with(false, &["--metrics-listen", &metrics.to_string()]);
    (daemon, metrics)
}

/// Boots `name` with an empty 32 MiB qcow2 volume as /dev/vda.
async fn boot_with_disk(client: &Client, name: &str) {
    let volume = VolumeCreate { name: format!("{name}.qcow2"), size: ByteSize::mib(32), format: None };
    client.create_volume("default", &volume).await.expect("create volume");
    let mut spec = guest_spec(name);
    spec.disks = vec![DiskSpec { volume: Some(format!("default/{name}.qcow2")), ..DiskSpec::default() }];
    client.create_vm(&spec).await.expect("create vm");
    client.start_vm(name).await.expect("start vm");
    wait_for_log(client, name, MARKER, BOOT_TIMEOUT).await;
}

/// Every sample of a scrape, parsed by prometheus-parse.
fn scrape(metrics: SocketAddr) -> prometheus_parse::Scrape {
    parse(&scrape_text(metrics))
}

fn scrape_text(metrics: SocketAddr) -> String {
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("the exposition parses")
}

/// The metric families and their types, from the `# TYPE` lines. (OpenMetrics
/// names a counter family without its samples' `_total`, which prometheus-parse
/// does not follow, so counters are checked here.)
fn family_types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The value of `name` for VM `vm` (and the extra label, if given).
fn value_of(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// A Prometheus server on loopback scraping `target` every second, killed on drop.
struct Prometheus {
    child: Child,
    api: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::Builder::new().prefix("vireo-prometheus-").tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        let text = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vireo\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, text).expect("write prometheus.yml");
        let api = free_tcp_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={api}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.path().join("prometheus.log")))
            .spawn()
            .expect("start prometheus (Debian package `prometheus`, installed by scripts/install-deps.sh)");
        Prometheus { child, api, _dir: dir }
    }

    /// The result vector of an instant PromQL query.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        // Prometheus takes a moment to open its port: until then there is no answer yet.
        let Ok(stream) = TcpStream::connect(self.api) else { return Vec::new() };
        let (status, body) = http_exchange(stream, &format!("/api/v1/query?query={encoded}"));
        if status != 200 {
            return Vec::new();
        }
        let reply: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        reply["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `promql` until `done` holds for its result (Prometheus needs a few scrapes).
    fn wait_for(
        &self,
        promql: &str,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let result = self.query(promql);
            if done(&result) {
                return result;
            }
            assert!(Instant::now() < deadline, "Prometheus never showed {what}; last result of {promql}: {result:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).expect("log file")
}

/// `{vm: value}` of an instant-query result.
fn by_vm(result: &[serde_json::Value]) -> HashMap<String, f64> {
    result
        .iter()
        .filter_map(|series| {
            let vm = series["metric"]["vm"].as_str()?.to_string();
            let value = series["value"][1].as_str()?.parse().ok()?;
            Some((vm, value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_sees_both_guests_cpu_and_the_disk_counters_grow() {
    let (daemon, metrics) = daemon_with_metrics();
    let client = daemon.client();
    tokio::join!(boot_with_disk(&client, "alpha"), boot_with_disk(&client, "beta"));
    let prometheus = Prometheus::start(metrics);

    let cpu = prometheus.wait_for("vireo_vm_cpu_seconds_total", "CPU series of both VMs", |r| {
        let vms = by_vm(r);
        vms.contains_key("alpha") && vms.contains_key("beta")
    });
    assert!(by_vm(&cpu).values().all(|seconds| *seconds > 0.0), "a booted guest has used CPU: {cpu:?}");
    prometheus.wait_for("vireo_vm_vcpu_seconds_total{vm=\"alpha\",vcpu=\"0\"}", "alpha's vCPU 0", |r| !r.is_empty());
    prometheus.wait_for("vireo_vm_state{vm=\"beta\",state=\"running\"} == 1", "beta running", |r| r.len() == 1);

    let query = "vireo_vm_disk_written_bytes_total{vm=\"alpha\",disk=\"disk0\"}";
    let before = by_vm(&prometheus.wait_for(query, "alpha's disk counter", |r| r.len() == 1))["alpha"];
    run_in_guest(&client, "alpha", "dd if=/dev/zero of=/dev/vda bs=64k count=64 conv=fsync 2>/dev/null").await;
    let after = prometheus.wait_for(query, "alpha's written bytes grow", |r| by_vm(r).get("alpha") > Some(&before));
    assert!(by_vm(&after)["alpha"] >= before + (4 << 20) as f64, "4 MiB written: {before} → {after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exposition_follows_prometheus_conventions() {
    let (daemon, metrics) = daemon_with_metrics();
    let client = daemon.client();
    boot_with_disk(&client, "gamma").await;
    // One API request of each kind of result, so the daemon's own series exist.
    client.list_vms().await.expect("list vms");
    assert!(client.get_vm("nope").await.is_err());
    let text = scrape_text(metrics);
    let parsed = parse(&text);

    let families = family_types(&text);
    for (family, kind) in &families {
        assert!(family.starts_with("vireo_"), "{family} is not in the vireo_ namespace");
        assert!(!family.ends_with("_total"), "{family}: a family is named without _total");
        for unit in ["_seconds", "_bytes"] {
            if family.contains(unit) {
                assert!(family.ends_with(unit), "{family}: the unit comes last");
            }
        }
        let counter = kind == "counter";
        let samples = parsed.samples.iter().filter(|s| s.metric.starts_with(family.as_str()));
        for sample in samples.filter(|s| families.get(&s.metric).is_none_or(|k| k == kind)) {
            let suffix = &sample.metric[family.len()..];
            if counter {
                assert_eq!(suffix, "_total", "counter {family} sampled as {}", sample.metric);
            } else {
                assert!(!suffix.ends_with("_total"), "{} is a {kind} but ends in _total", sample.metric);
            }
        }
    }
    for sample in &parsed.samples {
        assert!(sample.metric.starts_with("vireo_"), "{} is not in the vireo_ namespace", sample.metric);
        if sample.metric.starts_with("vireo_vm_") {
            assert!(sample.labels.get("vm").is_some(), "{} has no vm label", sample.metric);
        }
    }
    assert_eq!(families.get("vireo_vm_cpu_seconds").map(String::as_str), Some("counter"));
    assert_eq!(families.get("vireo_vm_rss_bytes").map(String::as_str), Some("gauge"));
    assert_eq!(families.get("vireo_api_request_duration_seconds").map(String::as_str), Some("histogram"));
    for (name, labels) in [
        ("vireo_vm_cpu_seconds_total", vec![("vm", "gamma")]),
        ("vireo_vm_vcpu_seconds_total", vec![("vm", "gamma"), ("vcpu", "0")]),
        ("vireo_vm_rss_bytes", vec![("vm", "gamma")]),
        ("vireo_vm_memory_bytes", vec![("vm", "gamma")]),
        ("vireo_vm_uptime_seconds", vec![("vm", "gamma")]),
        ("vireo_vm_disk_read_bytes_total", vec![("vm", "gamma"), ("disk", "disk0")]),
        ("vireo_vm_disk_write_operations_total", vec![("vm", "gamma"), ("disk", "disk0")]),
        ("vireo_vm_disk_read_time_seconds_total", vec![("vm", "gamma"), ("disk", "disk0")]),
        ("vireo_vm_state", vec![("vm", "gamma"), ("state", "running")]),
        ("vireo_vm_stats_stale", vec![("vm", "gamma")]),
        ("vireo_host_memory_total_bytes", vec![]),
        ("vireo_vms_running", vec![]),
        ("vireo_pool_capacity_bytes", vec![("pool", "default")]),
        ("vireo_api_requests_total", vec![("route", "/v1/vms"), ("status", "200")]),
        ("vireo_qmp_round_trip_seconds_count", vec![("command", "query-blockstats")]),
    ] {
        assert!(value_of(&parsed, name, &labels).is_some(), "no {name} with {labels:?}");
    }
    assert_eq!(value_of(&parsed, "vireo_vm_memory_bytes", &[("vm", "gamma")]), Some((128u64 << 20) as f64));
    assert_eq!(value_of(&parsed, "vireo_vm_state", &[("vm", "gamma"), ("state", "stopped")]), Some(0.0));
    assert_eq!(value_of(&parsed, "vireo_vms_running", &[]), Some(1.0));
    // prometheus-parse does not read braces inside label values; route templates have them.
    assert!(text.contains(r#"vireo_api_requests_total{method="GET",route="/v1/vms/{name}",status="404"} 1"#), "{text}");
    let histogram = parsed.samples.iter().find(|s| s.metric == "vireo_api_request_duration_seconds");
    assert!(
        matches!(histogram.map(|s| &s.value), Some(prometheus_parse::Value::Histogram(_))),
        "request durations are a histogram"
    );
    // The API listener serves the same document (the Unix socket needs no token).
    let socket = std::os::unix::net::UnixStream::connect(&daemon.socket).expect("API socket");
    let (status, text) = http_exchange(socket, "/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("vireo_vm_cpu_seconds_total{vm=\"gamma\"}"), "metrics over the API socket: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_qemu_makes_only_its_own_figures_stale() {
    let (daemon, metrics) = daemon_with_metrics();
    let client = daemon.client();
    tokio::join!(boot_with_disk(&client, "frozen"), boot_with_disk(&client, "lively"));
    let pid = daemon.qemu_pid("frozen").expect("frozen's QEMU");
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    let parsed = scrape(metrics);
    signal("-CONT");
    assert_eq!(value_of(&parsed, "vireo_vm_stats_stale", &[("vm", "frozen")]), Some(1.0));
    assert_eq!(value_of(&parsed, "vireo_vm_stats_stale", &[("vm", "lively")]), Some(0.0));
    assert!(value_of(&parsed, "vireo_vm_disk_read_bytes_total", &[("vm", "frozen")]).is_none(), "no stale figures");
    assert!(value_of(&parsed, "vireo_vm_disk_read_bytes_total", &[("vm", "lively")]).is_some());
    // What /proc knows is still there, and the state is still right.
    assert!(value_of(&parsed, "vireo_vm_rss_bytes", &[("vm", "frozen")]).is_some());
    assert_eq!(value_of(&parsed, "vireo_vm_state", &[("vm", "frozen"), ("state", "running")]), Some(1.0));
    // Thawed, it answers again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while value_of(&scrape(metrics), "vireo_vm_stats_stale", &[("vm", "frozen")]) != Some(0.0) {
        assert!(Instant::now() < deadline, "frozen stays stale after SIGCONT");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
