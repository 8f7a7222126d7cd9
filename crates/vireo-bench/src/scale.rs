//! The daemon with many defined VMs: memory, define time and list latency.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::boot::Guest;
use crate::daemon::PrivateDaemon;
use crate::stats::{Summary, ms};

/// `vireo vm list -o json` should answer within this (median) with the VMs defined.
pub const TARGET_CLI_LIST_MS: f64 = 50.0;
/// Let the freshly started daemon settle before its idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Serialize)]
pub struct ScaleResults {
    pub vms: usize,
    pub list_runs: usize,
    /// VmRSS of the idle daemon with no VMs.
    pub rss_idle_kib: u64,
    /// VmRSS once all VMs are defined.
    pub rss_defined_kib: u64,
    /// VmRSS after the list runs.
    pub rss_after_lists_kib: u64,
    /// All creates, one after the other.
    pub create_total_ms: f64,
    pub create: Summary,
    /// `vireo vm list -o json` run as a process, spawn → exit with stdout read.
    pub cli_list: Summary,
    /// `GET /v1/vms` through vireo-client, decoded.
    pub api_list: Summary,
    /// Size of the CLI's JSON output.
    pub list_json_bytes: usize,
    pub target_cli_list_ms: f64,
    pub target_holds: bool,
}

pub async fn run(
    daemon: &PrivateDaemon,
    vireo: &Path,
    guest: &Guest,
    vms: usize,
    list_runs: usize,
) -> anyhow::Result<ScaleResults> {
    let client = daemon.client();
    tokio::time::sleep(IDLE_SETTLE).await;
    let rss_idle_kib = daemon.rss_kib()?;
    eprintln!("vireo-bench: idle daemon RSS {} KiB; defining {vms} VMs", rss_idle_kib);

    let mut creates = Vec::with_capacity(vms);
    let all = Instant::now();
    for i in 1..=vms {
        let name = format!("scale-{i:04}");
        let start = Instant::now();
        client.create_vm(&guest.spec(&name)).await.with_context(|| format!("cannot define {name}"))?;
        creates.push(start.elapsed());
        if i % 100 == 0 || i == vms {
            eprintln!("vireo-bench: defined {i}/{vms}");
        }
    }
    let create_total = all.elapsed();
    let rss_defined_kib = daemon.rss_kib()?;

    let (cli_times, list_json_bytes) = cli_list(vireo, &daemon.socket, vms, list_runs).await?;
    let mut api_times = Vec::with_capacity(list_runs);
    for _ in 0..list_runs {
        let start = Instant::now();
        let listed = client.list_vms().await.context("GET /v1/vms")?;
        api_times.push(start.elapsed());
        if listed.len() != vms {
            bail!("GET /v1/vms returned {} VMs, expected {vms}", listed.len());
        }
    }
    let rss_after_lists_kib = daemon.rss_kib()?;

    let cli_list = Summary::of_ms(&cli_times).context("no list runs")?;
    Ok(ScaleResults {
        vms,
        list_runs,
        rss_idle_kib,
        rss_defined_kib,
        rss_after_lists_kib,
        create_total_ms: ms(create_total),
        create: Summary::of_ms(&creates).context("no VMs")?,
        target_holds: cli_list.median < TARGET_CLI_LIST_MS,
        cli_list,
        api_list: Summary::of_ms(&api_times).context("no list runs")?,
        list_json_bytes,
        target_cli_list_ms: TARGET_CLI_LIST_MS,
    })
}

/// Times `runs` runs of `vireo --socket S vm list -o json` (after one untimed run)
/// and checks that each lists `vms` VMs. Returns the times and the output size.
async fn cli_list(vireo: &Path, socket: &Path, vms: usize, runs: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
    let vireo = vireo.to_path_buf();
    let socket = socket.to_path_buf();
    // Blocking process runs on their own thread, timed there, away from the runtime.
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for run in 0..=runs {
            let start = Instant::now();
            let output = Command::new(&vireo)
                .arg("--socket")
                .arg(&socket)
                .args(["vm", "list", "-o", "json"])
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("cannot run {}", vireo.display()))?;
            let elapsed = start.elapsed();
            if !output.status.success() {
                bail!("vireo vm list failed: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            let listed: Vec<serde_json::Value> =
                serde_json::from_slice(&output.stdout).context("vireo vm list -o json printed no JSON array")?;
            if listed.len() != vms {
                bail!("vireo vm list listed {} VMs, expected {vms}", listed.len());
            }
            bytes = output.stdout.len();
            // Run 0 warms the page cache for the binary; it is not counted.
            if run > 0 {
                times.push(elapsed);
            }
        }
        Ok((times, bytes))
    })
    .await?
}
