//! The last hour of every VM's samples, for charts (`GET /v1/vms/{name}/history`).
//!
//! The daemon samples every VM at a fixed interval (`vireo serve --history-interval`)
//! with the same code the metrics endpoint uses, and keeps the cumulative counters
//! in memory; rates are computed when asked, between neighbouring samples of the
//! same QEMU process. Nothing is stored: Prometheus is the place for long history.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use vireo_api::{VmHistory, VmHistoryPoint, VmState};

use super::{VmManager, VmSample, now_ms};
use crate::error::ServerError;

/// How far back the history reaches.
pub const HISTORY_SPAN: Duration = Duration::from_secs(3600);
/// The sampling interval unless `vireo serve --history-interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// QMP time limit per VM and sample, as for a metrics scrape.
const QMP_LIMIT: Duration = Duration::from_secs(1);

impl VmManager {
    /// Samples every VM each `interval` into the history, for as long as the daemon runs.
    pub fn start_history(self: &Arc<Self>, interval: Duration) {
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = History::new(interval);
        let manager = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match manager.vm_samples(QMP_LIMIT).await {
                    Ok(samples) => manager.history.lock().unwrap_or_else(|p| p.into_inner()).record(now_ms(), &samples),
                    Err(err) => tracing::warn!(error = %err, "cannot sample the VMs for their history"),
                }
            }
        });
    }

    /// The recent samples of `vm`, oldest first.
    pub async fn history(&self, vm: &str, rfc3339: impl Fn(i64) -> String) -> Result<VmHistory, ServerError> {
        self.load(vm).await?;
        Ok(self.history.lock().unwrap_or_else(|p| p.into_inner()).of(vm, rfc3339))
    }
}

/// One VM at one moment: what the rates are computed from.
#[derive(Clone, Debug, PartialEq)]
struct Counters {
    at_ms: i64,
    state: VmState,
    /// Absent while the VM has no QEMU.
    process: Option<ProcessCounters>,
}

#[derive(Clone, Debug, PartialEq)]
struct ProcessCounters {
    uptime_seconds: f64,
    cpu_seconds: f64,
    rss_bytes: u64,
    disk_read_bytes: u64,
    disk_write_bytes: u64,
    net_rx_bytes: u64,
    net_tx_bytes: u64,
}

impl Counters {
    fn of(at_ms: i64, sample: &VmSample) -> Counters {
        let process = sample.process.as_ref().map(|usage| ProcessCounters {
            uptime_seconds: usage.uptime_seconds,
            cpu_seconds: usage.cpu_seconds,
            rss_bytes: usage.rss_bytes,
            disk_read_bytes: sample.disks.iter().map(|d| d.read_bytes).sum(),
            disk_write_bytes: sample.disks.iter().map(|d| d.write_bytes).sum(),
            net_rx_bytes: sample.nics.iter().map(|n| n.received_bytes).sum(),
            net_tx_bytes: sample.nics.iter().map(|n| n.sent_bytes).sum(),
        });
        Counters { at_ms, state: sample.state, process }
    }
}

/// Every VM's recent samples, at most [`HISTORY_SPAN`] / interval of them each.
#[derive(Debug)]
pub struct History {
    interval: Duration,
    capacity: usize,
    vms: HashMap<String, VecDeque<Counters>>,
}

impl History {
    pub fn new(interval: Duration) -> History {
        let interval = interval.max(Duration::from_secs(1));
        let capacity = (HISTORY_SPAN.as_secs() / interval.as_secs()).max(1) as usize;
        History { interval, capacity, vms: HashMap::new() }
    }

    /// Adds one round of samples taken at `at_ms`; VMs missing from it (deleted) are forgotten.
    pub fn record(&mut self, at_ms: i64, samples: &[VmSample]) {
        self.vms.retain(|name, _| samples.iter().any(|sample| &sample.name == name));
        for sample in samples {
            let points = self.vms.entry(sample.name.clone()).or_default();
            if points.len() == self.capacity {
                points.pop_front();
            }
            points.push_back(Counters::of(at_ms, sample));
        }
    }

    /// The history of `vm` (empty if it has not been sampled yet), rates between neighbours.
    pub fn of(&self, vm: &str, rfc3339: impl Fn(i64) -> String) -> VmHistory {
        let points = self.vms.get(vm).map(|points| rates(points, &rfc3339)).unwrap_or_default();
        VmHistory { vm: vm.to_string(), interval_secs: self.interval.as_secs(), points }
    }
}

fn rates(points: &VecDeque<Counters>, rfc3339: &impl Fn(i64) -> String) -> Vec<VmHistoryPoint> {
    let mut previous: Option<&Counters> = None;
    let mut out = Vec::with_capacity(points.len());
    for point in points {
        let same_process = previous.and_then(|before| same_process_delta(before, point));
        let per_sec = |delta: Option<f64>| same_process.and_then(|secs| delta.map(|d| d / secs));
        let now = point.process.as_ref();
        let before = previous.and_then(|p| p.process.as_ref());
        let delta = |get: fn(&ProcessCounters) -> u64| Some(get(now?).checked_sub(get(before?))? as f64);
        out.push(VmHistoryPoint {
            at: rfc3339(point.at_ms),
            state: point.state,
            cpu_percent: per_sec(now.zip(before).map(|(n, b)| n.cpu_seconds - b.cpu_seconds)).map(|s| s * 100.0),
            memory_rss_bytes: now.map(|n| n.rss_bytes),
            disk_read_bytes_per_sec: per_sec(delta(|c| c.disk_read_bytes)),
            disk_write_bytes_per_sec: per_sec(delta(|c| c.disk_write_bytes)),
            net_rx_bytes_per_sec: per_sec(delta(|c| c.net_rx_bytes)),
            net_tx_bytes_per_sec: per_sec(delta(|c| c.net_tx_bytes)),
        });
        previous = Some(point);
    }
    out
}

/// Seconds between two samples of the same QEMU process; `None` when either has no
/// process or QEMU was restarted in between (its uptime went back).
fn same_process_delta(before: &Counters, now: &Counters) -> Option<f64> {
    let (b, n) = (before.process.as_ref()?, now.process.as_ref()?);
    let seconds = (now.at_ms - before.at_ms) as f64 / 1000.0;
    (n.uptime_seconds >= b.uptime_seconds && n.cpu_seconds >= b.cpu_seconds && seconds > 0.0).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use vireo_qemu::{DiskStats, ProcessUsage};

    use super::*;
    use crate::manager::NicCounters;

    fn sample(name: &str, cpu: f64, uptime: f64, read: u64, rx: u64) -> VmSample {
        VmSample {
            name: name.into(),
            state: VmState::Running,
            vcpus: 1,
            memory_bytes: 256 << 20,
            process: Some(ProcessUsage { cpu_seconds: cpu, rss_bytes: 100 << 20, uptime_seconds: uptime }),
            vcpu_seconds: vec![],
            disks: vec![DiskStats { id: "disk0".into(), read_bytes: read, ..DiskStats::default() }],
            nics: vec![NicCounters { mac: "52:54:00:00:00:01".into(), received_bytes: rx, ..NicCounters::default() }],
            stale: false,
        }
    }

    fn stopped(name: &str) -> VmSample {
        VmSample { state: VmState::Stopped, process: None, disks: vec![], nics: vec![], ..sample(name, 0.0, 0.0, 0, 0) }
    }

    fn at(ms: i64) -> String {
        ms.to_string()
    }

    #[test]
    fn rates_come_from_neighbouring_samples_of_one_process() {
        let mut history = History::new(Duration::from_secs(10));
        history.record(0, &[sample("a", 1.0, 5.0, 1000, 0)]);
        history.record(10_000, &[sample("a", 6.0, 15.0, 21_000, 5000)]);
        let points = history.of("a", at).points;
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].cpu_percent, None, "nothing to compare the first sample with");
        assert_eq!(points[0].memory_rss_bytes, Some(100 << 20));
        assert_eq!(points[1].cpu_percent, Some(50.0));
        assert_eq!(points[1].disk_read_bytes_per_sec, Some(2000.0));
        assert_eq!(points[1].net_rx_bytes_per_sec, Some(500.0));
        assert_eq!(points[1].at, "10000");
    }

    #[test]
    fn a_restarted_or_stopped_vm_has_no_rates_across_the_gap() {
        let mut history = History::new(Duration::from_secs(10));
        history.record(0, &[sample("a", 50.0, 100.0, 9000, 0)]);
        history.record(10_000, &[stopped("a")]);
        history.record(20_000, &[sample("a", 1.0, 2.0, 10, 0)]);
        history.record(30_000, &[sample("a", 2.0, 12.0, 10, 0)]);
        let points = history.of("a", at).points;
        assert_eq!(points[1].state, VmState::Stopped);
        assert_eq!((points[1].cpu_percent, points[1].memory_rss_bytes), (None, None));
        assert_eq!(points[2].cpu_percent, None, "a new QEMU: its counters started again");
        assert_eq!(points[3].cpu_percent, Some(10.0));
    }

    #[test]
    fn an_hour_is_kept_and_deleted_vms_are_forgotten() {
        let mut history = History::new(Duration::from_secs(600));
        for i in 0..10 {
            history.record(i * 600_000, &[sample("a", i as f64, i as f64 * 600.0, 0, 0), sample("b", 0.0, 1.0, 0, 0)]);
        }
        let points = history.of("a", at).points;
        assert_eq!(points.len(), 6, "3600 s at 600 s");
        assert_eq!(points[0].at, (4 * 600_000).to_string());
        history.record(10 * 600_000, &[sample("a", 10.0, 6000.0, 0, 0)]);
        assert!(history.of("b", at).points.is_empty());
        assert_eq!(history.of("a", at).interval_secs, 600);
    }
}
