//! Scraping the metrics with many guests running: how long `GET /metrics` takes, what a
//! scrape costs the daemon in CPU, and whether a Prometheus scraping every second slows
//! the API down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use vireo_api::ByteSize;
use vireo_client::Client;

use crate::boot::{self, Guest, VolumeDisk};
use crate::daemon::PrivateDaemon;
use crate::process_info;
use crate::stats::{Summary, ms};

/// Each guest: the test guest with less memory than section 1's, and a small empty disk.
pub const GUEST_MEMORY_MIB: u64 = 128;
pub const DISK_MIB: u64 = 16;
const POOL: &str = "default";
/// After the last boot, before anything is measured: the guests go idle.
pub const SETTLE: Duration = Duration::from_secs(10);
/// The daemon's CPU use with nothing asked of it is read over this long.
pub const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// Between the timed scrapes.
const SCRAPE_SPACING: Duration = Duration::from_millis(100);
/// `GET /v1/vms` calls of each latency measurement, and the time from one call's start to the next.
const LIST_CALLS: usize = 200;
const LIST_SPACING: Duration = Duration::from_millis(20);
/// How often the background scraper scrapes while the list calls run.
const BACKGROUND_INTERVAL: Duration = Duration::from_secs(1);
/// A scrape waits at most 1 s per QEMU; anything near this is broken.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Serialize)]
pub struct MetricsResults {
    pub guests: usize,
    pub guest_memory_mib: u64,
    pub disk_mib: u64,
    /// Guests booting at once (the host's CPUs).
    pub boot_concurrency: usize,
    /// First define → last guest at its marker.
    pub boot_all_ms: f64,
    /// Timed scrapes, `scrape_spacing_ms` apart.
    pub scrapes: usize,
    pub scrape_spacing_ms: f64,
    /// One scrape's body, and its samples (lines that are not comments).
    pub exposition_bytes: usize,
    pub exposition_samples: usize,
    /// `GET /metrics` on the metrics listener, connect → last byte.
    pub scrape: Summary,
    /// The daemon's own `vireo_scrape_duration_seconds` of those scrapes, in ms: sampling the VMs, host and pools.
    pub sampling: Summary,
    /// `vireo_vm_stats_stale` samples at 1 over all scrapes (a QEMU that did not answer within 1 s).
    pub stale_samples: usize,
    /// The daemon's CPU time (user + system) over the timed scrapes, divided by their number.
    pub cpu_per_scrape_ms: f64,
    /// The daemon's CPU time per second of wall time with nothing asked of it, just before.
    pub idle_cpu_ms_per_s: f64,
    /// `cpu_per_scrape_ms` less what the daemon would have used idle over as long.
    pub net_cpu_per_scrape_ms: f64,
    pub list_calls: usize,
    pub list_spacing_ms: f64,
    /// `GET /v1/vms` through vireo-client with nothing else asked of the daemon.
    pub list_quiet: Summary,
    /// The same while a scrape runs every second.
    pub list_scraped: Summary,
    /// The calls of `list_scraped` that overlapped a scrape; `None` if none did.
    pub list_during_scrape: Option<Summary>,
    /// The scrapes that ran during `list_scraped`, connect → last byte.
    pub background_scrape: Summary,
    /// `list_scraped.p99 / list_quiet.p99`.
    pub p99_ratio: f64,
}

/// Section 5: boots `guests` idle test guests on `daemon` (which serves `--metrics-listen`),
/// then times `scrapes` scrapes, the daemon's CPU time for them, and the latency of
/// `GET /v1/vms` without and with a scrape every second.
pub async fn run(
    daemon: &PrivateDaemon,
    guest: &Guest,
    guests: usize,
    scrapes: usize,
) -> anyhow::Result<MetricsResults> {
    let addr = daemon.metrics.context("the daemon was started without --metrics-listen")?;
    let client = daemon.client();
    let boot_concurrency = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let started = Instant::now();
    boot_all(&client, guest, guests, boot_concurrency).await?;
    let boot_all_ms = ms(started.elapsed());
    eprintln!("vireo-bench: {guests} guests booted in {:.0} s; letting them settle", boot_all_ms / 1000.0);
    tokio::time::sleep(SETTLE).await;

    // Untimed: the first scrape and list call pay for connections and first allocations.
    scrape(addr).await?;
    list_latencies(&client, 1, guests).await?;

    let cpu = || process_info::cpu_time(daemon.pid).context("cannot read the daemon's CPU time");
    let (idle_before, idle_started) = (cpu()?, Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu_ms_per_s = ms(cpu()? - idle_before) / idle_started.elapsed().as_secs_f64();

    eprintln!("vireo-bench: {scrapes} scrapes, {} ms apart", SCRAPE_SPACING.as_millis());
    let (cpu_before, batch_started) = (cpu()?, Instant::now());
    let (mut times, mut bodies) = (Vec::with_capacity(scrapes), Vec::with_capacity(scrapes));
    for _ in 0..scrapes {
        let (took, body) = scrape(addr).await?;
        times.push(took);
        bodies.push(Exposition::read(&body, guests)?);
        tokio::time::sleep(SCRAPE_SPACING).await;
    }
    let batch_seconds = batch_started.elapsed().as_secs_f64();
    let cpu_per_scrape_ms = ms(cpu()? - cpu_before) / scrapes as f64;

    eprintln!("vireo-bench: {LIST_CALLS} × GET /v1/vms, {} ms apart, without scrapes", LIST_SPACING.as_millis());
    let list_quiet: Vec<Duration> = list_latencies(&client, LIST_CALLS, guests).await?.iter().map(|c| c.took).collect();
    eprintln!("vireo-bench: {LIST_CALLS} × GET /v1/vms while a scrape runs every second");
    let mut background = Vec::new();
    let list_scraped = tokio::select! {
        times = list_latencies(&client, LIST_CALLS, guests) => times?,
        failed = scrape_every(addr, BACKGROUND_INTERVAL, &mut background) => match failed {
            Err(err) => return Err(err.context("background scrape")),
            Ok(never) => match never {},
        },
    };

    let during: Vec<Duration> = list_scraped
        .iter()
        .filter(|call| background.iter().any(|scrape| call.overlaps(scrape)))
        .map(|c| c.took)
        .collect();
    let list_quiet = Summary::of_ms(&list_quiet).context("no list calls")?;
    let list_scraped =
        Summary::of_ms(&list_scraped.iter().map(|c| c.took).collect::<Vec<_>>()).context("no list calls")?;
    let background: Vec<Duration> = background.iter().map(|s| s.took).collect();
    let first = bodies.first().context("no scrapes")?;
    Ok(MetricsResults {
        guests,
        guest_memory_mib: GUEST_MEMORY_MIB,
        disk_mib: DISK_MIB,
        boot_concurrency,
        boot_all_ms,
        scrapes,
        scrape_spacing_ms: ms(SCRAPE_SPACING),
        exposition_bytes: first.bytes,
        exposition_samples: first.samples,
        scrape: Summary::of_ms(&times).context("no scrapes")?,
        sampling: Summary::of(&bodies.iter().map(|b| b.sampling_ms).collect::<Vec<_>>()).context("no scrapes")?,
        stale_samples: bodies.iter().map(|b| b.stale).sum(),
        net_cpu_per_scrape_ms: cpu_per_scrape_ms - idle_cpu_ms_per_s * batch_seconds / scrapes as f64,
        cpu_per_scrape_ms,
        idle_cpu_ms_per_s,
        list_calls: LIST_CALLS,
        list_spacing_ms: ms(LIST_SPACING),
        p99_ratio: list_scraped.p99 / list_quiet.p99,
        list_quiet,
        list_scraped,
        list_during_scrape: Summary::of_ms(&during),
        background_scrape: Summary::of_ms(&background).context("no scrape ran during the list calls")?,
    })
}

/// Boots `metrics-01` … with `concurrency` boots at a time.
async fn boot_all(client: &Client, guest: &Guest, guests: usize, concurrency: usize) -> anyhow::Result<()> {
    eprintln!("vireo-bench: booting {guests} guests, {concurrency} at a time");
    let booted = std::sync::atomic::AtomicUsize::new(0);
    stream::iter(1..=guests)
        .map(|i| {
            let booted = &booted;
            async move {
                let name = format!("metrics-{i:02}");
                let volume = format!("{name}.qcow2");
                let disk = VolumeDisk { pool: POOL, volume: &volume, mib: DISK_MIB };
                let mut spec = guest.spec_with_volume(&name, &disk.path());
                spec.memory = ByteSize::mib(GUEST_MEMORY_MIB);
                boot::boot_spec_with_volume(client, &spec, &disk)
                    .await
                    .with_context(|| format!("cannot boot {name}"))?;
                let done = booted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                eprintln!("vireo-bench: booted {done}/{guests}");
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One `GET /metrics` on a fresh connection: connect → last byte, and the body.
async fn scrape(addr: SocketAddr) -> anyhow::Result<(Duration, String)> {
    let exchange = async {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: vireo\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok((started.elapsed(), response))
    };
    let (took, response) = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .context("GET /metrics took too long")?
        .with_context(|| format!("GET http://{addr}/metrics"))?;
    let text = String::from_utf8(response).context("the metrics are not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("GET /metrics: no HTTP head")?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok((took, body.to_string()))
}

/// When a request started and how long it took.
struct Span {
    start: Instant,
    took: Duration,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.start + other.took && other.start < self.start + self.took
    }
}

/// Scrapes `addr` every `interval` until dropped (or a scrape fails), recording each scrape.
async fn scrape_every(addr: SocketAddr, interval: Duration, scrapes: &mut Vec<Span>) -> anyhow::Result<Infallible> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let start = Instant::now();
        let (took, _) = scrape(addr).await?;
        scrapes.push(Span { start, took });
    }
}

/// `calls` calls of `GET /v1/vms`, each started `LIST_SPACING` after the one before (or
/// when it returned, if later); each must list `guests` VMs.
async fn list_latencies(client: &Client, calls: usize, guests: usize) -> anyhow::Result<Vec<Span>> {
    let mut ticks = tokio::time::interval(LIST_SPACING);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        ticks.tick().await;
        let start = Instant::now();
        let listed = client.list_vms().await.context("GET /v1/vms")?;
        times.push(Span { start, took: start.elapsed() });
        if listed.len() != guests {
            bail!("GET /v1/vms listed {} VMs, expected {guests}", listed.len());
        }
    }
    Ok(times)
}

/// What the benchmark reads from one scrape's body.
#[derive(Debug, PartialEq)]
struct Exposition {
    bytes: usize,
    samples: usize,
    /// The daemon's `vireo_scrape_duration_seconds`, in ms.
    sampling_ms: f64,
    /// `vireo_vm_stats_stale` samples at 1.
    stale: usize,
}

impl Exposition {
    /// Checks that the scrape is whole (it ends in `# EOF` and has a CPU series for each of
    /// the `guests`) and reads it.
    fn read(body: &str, guests: usize) -> anyhow::Result<Exposition> {
        if body.trim_end().lines().last() != Some("# EOF") {
            bail!("a scrape does not end in # EOF");
        }
        let samples: Vec<&str> = body.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
        let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        let cpu_series = samples.iter().filter(|line| line.starts_with("vireo_vm_cpu_seconds_total{")).count();
        if cpu_series != guests {
            bail!("a scrape has CPU series of {cpu_series} VMs, expected {guests}");
        }
        let sampling =
            samples.iter().find_map(|line| line.strip_prefix("vireo_scrape_duration_seconds ")?.parse().ok());
        let stale =
            samples.iter().filter(|line| line.starts_with("vireo_vm_stats_stale{") && value(line) == Some(1.0)).count();
        Ok(Exposition {
            bytes: body.len(),
            samples: samples.len(),
            sampling_ms: sampling.map(|s: f64| s * 1000.0).context("a scrape has no vireo_scrape_duration_seconds")?,
            stale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_read_and_checked() {
        let body = "# HELP vireo_vm_cpu_seconds CPU.\n# TYPE vireo_vm_cpu_seconds counter\n\
                    vireo_vm_cpu_seconds_total{vm=\"a\"} 1.5\nvireo_vm_cpu_seconds_total{vm=\"b\"} 2.0\n\
                    vireo_vm_stats_stale{vm=\"a\"} 0.0\nvireo_vm_stats_stale{vm=\"b\"} 1.0\n\
                    vireo_scrape_duration_seconds 0.0125\n# EOF\n";
        let read = Exposition::read(body, 2).unwrap();
        assert_eq!(read, Exposition { bytes: body.len(), samples: 5, sampling_ms: 12.5, stale: 1 });
        assert!(Exposition::read(body, 3).is_err(), "a VM missing");
        assert!(Exposition::read(body.trim_end_matches("# EOF\n"), 2).is_err(), "cut short");
    }

    #[test]
    fn a_call_overlaps_a_scrape_it_shares_time_with() {
        let t0 = Instant::now();
        let span = |from: u64, to: u64| Span {
            start: t0 + Duration::from_millis(from),
            took: Duration::from_millis(to - from),
        };
        let scrape = span(100, 120);
        assert!(span(90, 101).overlaps(&scrape));
        assert!(span(110, 115).overlaps(&scrape));
        assert!(span(119, 130).overlaps(&scrape));
        assert!(!span(80, 100).overlaps(&scrape), "ended as the scrape began");
        assert!(!span(120, 130).overlaps(&scrape), "began as it ended");
    }
}
