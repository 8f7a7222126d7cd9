//! Prometheus metrics, served as OpenMetrics text at `GET /metrics`.
//!
//! Two registries make up a scrape: the daemon's own (API requests, their
//! durations, operations, QMP round trips), which live as long as the daemon,
//! and one built afresh for each scrape from a sample of every VM, the host
//! and the pools (`VmManager::vm_samples`), so a VM that is gone leaves no
//! series behind. Names follow Prometheus conventions: base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters, a `vm` label per VM.

use std::hash::Hash;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use vireo_api::VmState;
use vireo_storage::PoolUsage;

use crate::error::ServerError;
use crate::manager::{VmManager, VmSample};

/// A pool gauge: metric name, help text, and the bytes it reports.
type PoolGauge = (&'static str, &'static str, fn(&PoolUsage) -> u64);

const POOL_GAUGES: [PoolGauge; 3] = [
    ("vireo_pool_capacity", "Size of the file system holding the pool", |u| u.capacity_bytes),
    ("vireo_pool_available", "Free space for the pool's volumes", |u| u.available_bytes),
    ("vireo_pool_allocation", "Space the pool's volumes occupy on disk", |u| u.allocation_bytes),
];

/// The content type of the OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long a scrape waits for one VM's QEMU; a slower one is reported stale.
const QMP_LIMIT: Duration = Duration::from_secs(1);

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    vm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmStateLabels {
    vm: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VcpuLabels {
    vm: String,
    vcpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabels {
    vm: String,
    disk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NicLabels {
    vm: String,
    nic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from 0.1 ms to about 3 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// QMP round trips of every QEMU, fed by `vireo_qemu::observe_round_trips`
/// (a plain function, hence a process-wide family).
static QMP_ROUND_TRIPS: OnceLock<Histograms<CommandLabels>> = OnceLock::new();

fn qmp_round_trips() -> &'static Histograms<CommandLabels> {
    QMP_ROUND_TRIPS.get_or_init(|| Family::new_with_constructor(duration_histogram))
}

fn observe_qmp_round_trip(command: &'static str, took: Duration) {
    qmp_round_trips().get_or_create(&CommandLabels { command: command.to_string() }).observe(took.as_secs_f64());
}

/// The daemon's own metrics, for as long as it runs.
pub struct Metrics {
    daemon: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabels>,
    operations: Family<OperationLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut daemon = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        daemon.register("vireo_api_requests", "API requests by route and HTTP status", requests.clone());
        let request_seconds: Histograms<RouteLabels> = Family::new_with_constructor(duration_histogram);
        daemon.register_with_unit(
            "vireo_api_request_duration",
            "Time to answer API requests",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let operations = Family::<OperationLabels, Counter>::default();
        daemon.register(
            "vireo_operations",
            "Changes asked of the daemon (mutating API requests) by kind and result",
            operations.clone(),
        );
        vireo_qemu::observe_round_trips(observe_qmp_round_trip);
        daemon.register_with_unit(
            "vireo_qmp_round_trip",
            "Time from sending a QMP command to its reply (or timeout), by command",
            Unit::Seconds,
            qmp_round_trips().clone(),
        );
        Arc::new(Metrics { daemon, requests, request_seconds, operations })
    }

    fn observe_request(&self, method: &Method, route: &str, status: u16, took: Duration) {
        let method = method.as_str().to_string();
        let route = route.to_string();
        self.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
        self.request_seconds
            .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
            .observe(took.as_secs_f64());
        if let Some(kind) = operation_kind(&method, &route) {
            let result = if status < 400 { "ok" } else { "error" }.to_string();
            self.operations.get_or_create(&OperationLabels { kind, result }).inc();
        }
    }

    /// One scrape: samples every VM, the host and the pools, and encodes them
    /// with the daemon's metrics.
    pub async fn render(&self, manager: &VmManager) -> Result<String, ServerError> {
        let started = Instant::now();
        let vms = manager.vm_samples(QMP_LIMIT).await?;
        let pools = manager.list_pools().await?;
        let mut scrape = Scrape::default();
        scrape.vms(&vms);
        scrape.host(&vms);
        for (name, help, bytes) in POOL_GAUGES {
            let values = pools.iter().map(|p| (PoolLabels { pool: p.record.name.clone() }, bytes(&p.usage) as f64));
            scrape.gauge(name, help, Some(Unit::Bytes), values);
        }
        scrape.single(
            "vireo_scrape_duration",
            "Time this scrape took to sample the VMs, host and pools",
            Some(Unit::Seconds),
            started.elapsed().as_secs_f64(),
        );
        let mut text = String::new();
        let encode = |text: &mut String| -> std::fmt::Result {
            encode_registry(text, &self.daemon)?;
            encode_registry(text, &scrape.registry)?;
            encode_eof(text)
        };
        encode(&mut text).map_err(|err| ServerError::Internal(format!("cannot encode metrics: {err}")))?;
        Ok(text)
    }
}

/// The metrics of one scrape.
#[derive(Default)]
struct Scrape {
    registry: Registry,
}

trait Labels: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static {}
impl<T: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static> Labels for T {}

impl Scrape {
    fn gauge<L: Labels>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        self.family(name, help, unit, samples, |gauge: &FloatGauge, value| {
            gauge.set(value);
        });
    }

    /// A series without labels (a host-wide figure); absent if `value` is.
    fn single(&mut self, name: &str, help: &str, unit: Option<Unit>, value: impl Into<Option<f64>>) {
        if let Some(value) = value.into() {
            let gauge = FloatGauge::default();
            gauge.set(value);
            self.register(name, help, unit, gauge);
        }
    }

    fn counter<L: Labels>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        self.family(name, help, unit, samples, |counter: &FloatCounter, value| {
            counter.inc_by(value);
        });
    }

    /// One series per sample, each metric given its value by `record`.
    fn family<L: Labels, M>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, f64)>,
        record: impl Fn(&M, f64),
    ) where
        M: prometheus_client::metrics::TypedMetric
            + prometheus_client::encoding::EncodeMetric
            + Default
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let family = Family::<L, M>::default();
        for (labels, value) in samples {
            record(&family.get_or_create(&labels), value);
        }
        self.register(name, help, unit, family);
    }

    fn register(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: impl prometheus_client::registry::Metric,
    ) {
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, metric),
            None => self.registry.register(name, help, metric),
        }
    }

    fn vms(&mut self, vms: &[VmSample]) {
        let vm = |s: &VmSample| VmLabels { vm: s.name.clone() };
        let states = vms.iter().flat_map(|s| {
            VmState::ALL.iter().map(move |state| {
                let value = if s.state == *state { 1.0 } else { 0.0 };
                (VmStateLabels { vm: s.name.clone(), state: state.as_str().to_string() }, value)
            })
        });
        self.gauge("vireo_vm_state", "1 for the VM's current state, 0 for the others", None, states);
        self.gauge("vireo_vm_vcpus", "vCPUs the VM is defined with", None, vms.iter().map(|s| (vm(s), s.vcpus as f64)));
        self.gauge(
            "vireo_vm_memory",
            "Memory the VM is defined with",
            Some(Unit::Bytes),
            vms.iter().map(|s| (vm(s), s.memory_bytes as f64)),
        );
        let running: Vec<_> = vms.iter().filter_map(|s| Some((s, s.process?))).collect();
        self.gauge(
            "vireo_vm_rss",
            "Resident memory of the VM's QEMU process",
            Some(Unit::Bytes),
            running.iter().map(|(s, p)| (vm(s), p.rss_bytes as f64)),
        );
        self.counter(
            "vireo_vm_cpu",
            "CPU time of the VM's QEMU process (vCPUs, device emulation and I/O threads)",
            Some(Unit::Seconds),
            running.iter().map(|(s, p)| (vm(s), p.cpu_seconds)),
        );
        self.gauge(
            "vireo_vm_uptime",
            "Time since the VM's QEMU process started",
            Some(Unit::Seconds),
            running.iter().map(|(s, p)| (vm(s), p.uptime_seconds)),
        );
        self.gauge(
            "vireo_vm_stats_stale",
            "1 if the VM's QEMU did not answer in time and its QMP figures (vCPU, disk) are missing from this scrape",
            None,
            running.iter().map(|(s, _)| (vm(s), if s.stale { 1.0 } else { 0.0 })),
        );
        let vcpus = vms.iter().flat_map(|s| {
            s.vcpu_seconds
                .iter()
                .map(|(index, seconds)| (VcpuLabels { vm: s.name.clone(), vcpu: index.to_string() }, *seconds))
        });
        self.counter("vireo_vm_vcpu", "CPU time of each vCPU thread", Some(Unit::Seconds), vcpus);
        self.disks(vms);
        self.nics(vms);
    }

    fn disks(&mut self, vms: &[VmSample]) {
        type Pick = fn(&vireo_qemu::DiskStats) -> f64;
        let counters: [(&str, &str, Option<Unit>, Pick); 8] = [
            ("vireo_vm_disk_read", "Bytes read by the guest", Some(Unit::Bytes), |d| d.read_bytes as f64),
            ("vireo_vm_disk_written", "Bytes written by the guest", Some(Unit::Bytes), |d| d.write_bytes as f64),
            ("vireo_vm_disk_read_operations", "Read requests", None, |d| d.read_ops as f64),
            ("vireo_vm_disk_write_operations", "Write requests", None, |d| d.write_ops as f64),
            ("vireo_vm_disk_flush_operations", "Flush requests", None, |d| d.flush_ops as f64),
            ("vireo_vm_disk_read_time", "Time spent in reads", Some(Unit::Seconds), |d| d.read_time_ns as f64 / 1e9),
            ("vireo_vm_disk_write_time", "Time spent in writes", Some(Unit::Seconds), |d| d.write_time_ns as f64 / 1e9),
            ("vireo_vm_disk_flush_time", "Time spent in flushes", Some(Unit::Seconds), |d| {
                d.flush_time_ns as f64 / 1e9
            }),
        ];
        for (name, help, unit, pick) in counters {
            let samples = vms.iter().flat_map(|s| {
                s.disks.iter().map(move |d| (DiskLabels { vm: s.name.clone(), disk: d.id.clone() }, pick(d)))
            });
            self.counter(name, help, unit, samples);
        }
    }

    fn nics(&mut self, vms: &[VmSample]) {
        type Pick = fn(&crate::manager::NicCounters) -> f64;
        let counters: [(&str, &str, Option<Unit>, Pick); 4] = [
            ("vireo_vm_nic_received", "Bytes the guest received on the NIC", Some(Unit::Bytes), |n| {
                n.received_bytes as f64
            }),
            ("vireo_vm_nic_sent", "Bytes the guest sent on the NIC", Some(Unit::Bytes), |n| n.sent_bytes as f64),
            ("vireo_vm_nic_received_packets", "Packets the guest received", None, |n| n.received_packets as f64),
            ("vireo_vm_nic_sent_packets", "Packets the guest sent", None, |n| n.sent_packets as f64),
        ];
        for (name, help, unit, pick) in counters {
            let samples = vms.iter().flat_map(|s| {
                s.nics.iter().map(move |n| (NicLabels { vm: s.name.clone(), nic: n.mac.clone() }, pick(n)))
            });
            self.counter(name, help, unit, samples);
        }
    }

    fn host(&mut self, vms: &[VmSample]) {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        self.single("vireo_host_cpus", "CPUs of the host", None, cpus as f64);
        let memory = [
            ("vireo_host_memory_total", "Memory of the host", vireo_qemu::memory_total_bytes()),
            (
                "vireo_host_memory_available",
                "Memory the host can still give (MemAvailable)",
                vireo_qemu::memory_available_bytes(),
            ),
        ];
        for (name, help, bytes) in memory {
            self.single(name, help, Some(Unit::Bytes), bytes.map(|b| b as f64));
        }
        self.single("vireo_vms_defined", "VMs defined on this host", None, vms.len() as f64);
        let running = vms.iter().filter(|s| s.state == VmState::Running).count();
        self.single("vireo_vms_running", "VMs running on this host", None, running as f64);
        let by_state = VmState::ALL.iter().map(|state| {
            (StateLabels { state: state.as_str().to_string() }, vms.iter().filter(|s| s.state == *state).count() as f64)
        });
        self.gauge("vireo_vms", "VMs on this host by state", None, by_state);
    }
}

/// What a mutating request does, from its method and route template:
/// `POST /v1/vms` → `vms.create`, `POST /v1/vms/{name}/start` → `vms.start`,
/// `DELETE /v1/pools/{pool}/volumes/{volume}` → `pools.volumes.delete`. Reads are none.
fn operation_kind(method: &str, route: &str) -> Option<String> {
    let verb = match method {
        "POST" => "create",
        "PUT" | "PATCH" => "update",
        "DELETE" => "delete",
        _ => return None,
    };
    let segments: Vec<&str> = route.trim_start_matches('/').split('/').skip(1).collect();
    let after_last_param = segments.iter().rposition(|s| s.starts_with('{')).map_or(0, |i| i + 1);
    let literals = |range: &[&str]| range.iter().filter(|s| !s.starts_with('{')).copied().collect::<Vec<_>>().join(".");
    let object = literals(&segments[..after_last_param.min(segments.len())]);
    let action = literals(&segments[after_last_param.min(segments.len())..]);
    Some(match (object.is_empty(), action.is_empty()) {
        (_, true) => format!("{object}.{verb}"),
        (true, false) => format!("{action}.{verb}"),
        (false, false) => format!("{object}.{action}"),
    })
}

/// Middleware on the API's routes: counts and times every request by its route template.
pub async fn track_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let response = next.run(request).await;
    metrics.observe_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_after_their_route() {
        assert_eq!(operation_kind("POST", "/v1/vms").as_deref(), Some("vms.create"));
        assert_eq!(operation_kind("DELETE", "/v1/vms/{name}").as_deref(), Some("vms.delete"));
        assert_eq!(operation_kind("POST", "/v1/vms/{name}/start").as_deref(), Some("vms.start"));
        assert_eq!(operation_kind("POST", "/v1/vms/{name}/migration/cancel").as_deref(), Some("vms.migration.cancel"));
        assert_eq!(
            operation_kind("DELETE", "/v1/pools/{pool}/volumes/{volume}").as_deref(),
            Some("pools.volumes.delete")
        );
        assert_eq!(operation_kind("POST", "/v1/migrations/incoming").as_deref(), Some("migrations.incoming.create"));
        assert_eq!(operation_kind("GET", "/v1/vms"), None);
    }
}
