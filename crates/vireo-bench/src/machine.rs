//! The machine the figures were taken on.

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use vireo_client::Client;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
    pub kernel: String,
    pub os: String,
    pub qemu: String,
    /// The accelerator the guests ran with (the benchmark asks for TCG on both sides).
    pub accel: String,
    /// What `auto` resolves to on this host, and why (the daemon's host check).
    pub auto_accel: String,
    pub auto_accel_reason: String,
    /// /proc/loadavg when the benchmark began and when it ended: other work on the machine shows here.
    pub loadavg_before: String,
    pub loadavg_after: String,
}

impl Machine {
    /// Everything but `loadavg_after`, which is filled in at the end.
    pub async fn gather(qemu: &Path, client: &Client) -> Machine {
        let (auto_accel, auto_accel_reason) = match client.host_check().await {
            Ok(check) => (check.accel, check.accel_reason),
            Err(err) => ("unknown".into(), format!("host check failed: {err}")),
        };
        Machine {
            nproc: std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            cpu_model: cpuinfo_model().unwrap_or_else(|| "unknown".into()),
            memory_kib: meminfo_total_kib().unwrap_or(0),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            os: os_name().unwrap_or_else(|| "unknown".into()),
            qemu: qemu_version(qemu).unwrap_or_else(|| "unknown".into()),
            accel: "tcg".into(),
            auto_accel,
            auto_accel_reason,
            loadavg_before: loadavg(),
            loadavg_after: String::new(),
        }
    }
}

pub fn loadavg() -> String {
    // The first three fields: 1, 5 and 15 minute averages.
    read_trimmed("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn cpuinfo_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

fn meminfo_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let rest = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:"))?;
    rest.trim().trim_end_matches("kB").trim().parse().ok()
}

fn os_name() -> Option<String> {
    let release = std::fs::read_to_string("/etc/os-release").ok()?;
    let value = release.lines().find_map(|line| line.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim_matches('"').to_string())
}

fn qemu_version(qemu: &Path) -> Option<String> {
    let output = Command::new(qemu).arg("--version").output().ok()?;
    String::from_utf8_lossy(&output.stdout).lines().next().map(|l| l.trim().to_string())
}
