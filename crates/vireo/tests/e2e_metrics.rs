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

/// A scrape's text in which `vm`'s QMP figures are fresh: on a loaded machine a live QEMU
/// may now and then answer after the scrape's limit, which marks it stale for that scrape.
fn fresh_scrape_text(metrics: SocketAddr, vm: &str) -> String {
    let fresh = |text: &String| value_of(&parse(text), "vireo_vm_stats_stale", &[("vm", vm)]) == Some(0.0);
    (0..5).map(|_| scrape_text(metrics)).find(fresh).unwrap_or_else(|| scrape_text(metrics))
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

    /// The result vector of an instant PromQL query; empty until Prometheus answers.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        self.try_query(promql).unwrap_or_default()
    }

    /// The result vector of an instant PromQL query, or why there is none: Prometheus
    /// not answering yet, or its error (a query that does not parse or evaluate).
    fn try_query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        // Prometheus takes a moment to open its port: until then there is no answer yet.
        let stream = TcpStream::connect(self.api).map_err(|e| format!("Prometheus does not answer yet: {e}"))?;
        let (status, body) = http_exchange(stream, &format!("/api/v1/query?query={encoded}"));
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        let reply: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        Ok(reply["data"]["result"].as_array().cloned().unwrap_or_default())
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
    let written = before + (4 << 20) as f64;
    let after =
        prometheus.wait_for(query, "alpha's written bytes grow by 4 MiB", |r| by_vm(r).get("alpha") >= Some(&written));
    assert!(by_vm(&after)["alpha"] >= before + (4 << 20) as f64, "4 MiB written: {before} → {after:?}");

    // With two guests running and alpha's disk busy a moment ago, every series the dashboard shows exists.
    every_dashboard_query_evaluates(&prometheus, "alpha");
}

/// contrib/grafana/vireo-dashboard.json.
fn dashboard() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/grafana/vireo-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The PromQL of every panel and template variable of contrib/grafana/vireo-dashboard.json.
fn dashboard_queries() -> Vec<String> {
    fn collect(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                let variable = map.get("type").and_then(|t| t.as_str()) == Some("query");
                for (key, value) in map {
                    match value.as_str() {
                        Some(promql) if key == "expr" || (variable && key == "query") => into.push(promql.to_string()),
                        _ => collect(value, into),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, into)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    collect(&dashboard(), &mut queries);
    queries
}

/// The dashboard imports into any Grafana: every panel, query and variable takes the
/// Prometheus chosen at import (`${DS_PROMETHEUS}`), panel ids are unique, and each
/// selected VM gets a row of its own.
#[test]
fn the_dashboard_asks_for_its_datasource_at_import() {
    let dashboard = dashboard();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let panels = dashboard["panels"].as_array().expect("panels");
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    let mut ids = std::collections::HashSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "panel id twice: {panel}");
        let targets = panel["targets"].as_array().into_iter().flatten();
        for user in std::iter::once(panel).chain(targets).filter(|p| p["type"] != "row") {
            assert_eq!(user["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
        }
    }
    for variable in variables {
        assert_eq!(variable["datasource"]["uid"], "${DS_PROMETHEUS}", "{variable}");
    }
    let vm = variables.iter().find(|v| v["name"] == "vm").expect("a vm variable");
    assert!(vm["query"].as_str().is_some_and(|q| q.starts_with("label_values(vireo_vm_state")), "{vm}");
    assert!(panels.iter().any(|p| p["type"] == "row" && p["repeat"] == "vm"), "a row repeated per VM");
}

/// Asks Prometheus to evaluate each of the dashboard's queries as Grafana would send it
/// for VM `vm` on all hosts: each must evaluate without error, and each must find
/// data unless none can exist here (NICs: the daemon has no network; disk latency:
/// absent while a disk has no requests). A template variable's `label_values(SELECTOR,
/// LABEL)` must find series of SELECTOR with LABEL.
fn every_dashboard_query_evaluates(prometheus: &Prometheus, vm: &str) {
    let queries = dashboard_queries();
    assert!(queries.len() > 30, "the dashboard's queries: {queries:?}");
    for query in queries {
        let promql = query.replace("$__rate_interval", "1m").replace("$instance", ".+").replace("$vm", vm);
        assert!(!promql.contains('$'), "{query}: a variable the test does not know");
        let (promql, label) = match promql.strip_prefix("label_values(").and_then(|args| args.rsplit_once(',')) {
            Some((selector, label)) => (selector.to_string(), Some(label.trim_end_matches(')').trim().to_string())),
            None => (promql, None),
        };
        let mut result = prometheus.try_query(&promql).unwrap_or_else(|err| panic!("{query}: {err}"));
        let may_be_empty = promql.contains("vireo_vm_nic_") || promql.contains("_time_seconds_total");
        if result.is_empty() && !may_be_empty {
            result = prometheus.wait_for(&promql, &format!("data for the dashboard's {query}"), |r| !r.is_empty());
        }
        if let Some(label) = label {
            assert!(result.iter().all(|series| series["metric"][&label].is_string()), "{query}: {result:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exposition_follows_prometheus_conventions() {
    let (daemon, metrics) = daemon_with_metrics();
    let client = daemon.client();
    boot_with_disk(&client, "gamma").await;
    // One API request of each kind of result, so the daemon's own series exist.
    client.list_vms().await.expect("list vms");
    assert!(client.get_vm("nope").await.is_err());
    let text = fresh_scrape_text(metrics, "gamma");
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
    // What must hold is that a scrape comes where the frozen one alone is stale.
    let parsed = parse(&fresh_scrape_text(metrics, "lively"));
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

/// The daemon's own recent samples (for the web console's charts): CPU while the guest
/// boots, its memory, and the disk write rate while it writes.
#[tokio::test(flavor = "multi_thread")]
async fn the_history_has_cpu_memory_and_disk_rates_of_a_running_guest() {
    let daemon = Daemon::start_with(false, &["--history-interval", "1"]);
    let client = daemon.client();
    let err = client.vm_history("nobody").await.unwrap_err();
    assert_eq!(code(err), vireo_api::ErrorCode::VmNotFound);
    boot_with_disk(&client, "charted").await;
    run_in_guest(&client, "charted", "{ dd if=/dev/zero of=/dev/vda bs=1M count=24 oflag=direct 2>/dev/null & }").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let history = loop {
        let history = client.vm_history("charted").await.expect("history");
        let busy = history.points.iter().any(|p| p.cpu_percent.is_some_and(|cpu| cpu > 0.0));
        let wrote = history.points.iter().any(|p| p.disk_write_bytes_per_sec.is_some_and(|rate| rate > 0.0));
        if busy && wrote {
            break history;
        }
        assert!(Instant::now() < deadline, "no CPU or disk write rate in the history: {history:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(history.interval_secs, 1);
    let last = history.points.last().expect("points");
    assert_eq!(last.state, vireo_api::VmState::Running);
    assert!(last.memory_rss_bytes.is_some_and(|rss| rss > 16 << 20), "{last:#?}");
    assert!(history.points.windows(2).all(|pair| pair[0].at < pair[1].at), "oldest first");
}
