//! Statistics a running QEMU reports over QMP: per-disk I/O counters and the
//! host threads of the vCPUs (whose CPU time /proc then gives).

use std::time::Duration;

use serde::Deserialize;

use crate::error::QemuError;
use crate::hotplug::device_id;
use crate::qmp::{QmpClient, qmp_command};

/// I/O counters of one disk since QEMU started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// The device id (`DiskAttachment::id`).
    pub id: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub flush_ops: u64,
    /// Time spent in reads, writes and flushes, in nanoseconds.
    pub read_time_ns: u64,
    pub write_time_ns: u64,
    pub flush_time_ns: u64,
}

#[derive(Deserialize)]
struct BlockStatsEntry {
    qdev: Option<String>,
    stats: BlockStatsCounters,
}

#[derive(Deserialize)]
struct BlockStatsCounters {
    rd_bytes: u64,
    wr_bytes: u64,
    rd_operations: u64,
    wr_operations: u64,
    flush_operations: u64,
    rd_total_time_ns: u64,
    wr_total_time_ns: u64,
    flush_total_time_ns: u64,
}

/// One vCPU (`query-cpus-fast`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VcpuThread {
    #[serde(rename = "cpu-index")]
    pub index: u32,
    /// The host thread running it (a task of the QEMU process).
    #[serde(rename = "thread-id")]
    pub thread_id: u32,
}

qmp_command! {
    struct QueryBlockstats {} => "query-blockstats" -> Vec<BlockStatsEntry>
}

qmp_command! {
    struct QueryCpusFast {} => "query-cpus-fast" -> Vec<VcpuThread>
}

impl QmpClient {
    /// I/O counters of every disk device; waits at most `limit` for QEMU.
    pub async fn disk_stats(&self, limit: Duration) -> Result<Vec<DiskStats>, QemuError> {
        let entries = self.execute_within(&QueryBlockstats {}, limit).await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let id = device_id(entry.qdev.as_deref()?)?.to_string();
                let s = entry.stats;
                Some(DiskStats {
                    id,
                    read_bytes: s.rd_bytes,
                    write_bytes: s.wr_bytes,
                    read_ops: s.rd_operations,
                    write_ops: s.wr_operations,
                    flush_ops: s.flush_operations,
                    read_time_ns: s.rd_total_time_ns,
                    write_time_ns: s.wr_total_time_ns,
                    flush_time_ns: s.flush_total_time_ns,
                })
            })
            .collect())
    }

    /// The vCPUs and their host threads; waits at most `limit` for QEMU.
    pub async fn vcpu_threads(&self, limit: Duration) -> Result<Vec<VcpuThread>, QemuError> {
        self.execute_within(&QueryCpusFast {}, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockstats_parse() {
        let reply = r#"[{"device":"","node-name":"disk0","qdev":"/machine/peripheral/disk0/virtio-backend",
            "stats":{"rd_bytes":4096,"wr_bytes":512,"rd_operations":2,"wr_operations":1,"flush_operations":1,
            "rd_total_time_ns":10,"wr_total_time_ns":20,"flush_total_time_ns":30,"idle_time_ns":5}}]"#;
        let entries: Vec<BlockStatsEntry> = serde_json::from_str(reply).unwrap();
        assert_eq!(entries[0].stats.rd_bytes, 4096);
        let vcpus: Vec<VcpuThread> = serde_json::from_str(
            r#"[{"cpu-index":0,"thread-id":1234,"qom-path":"/machine/unattached/device[0]","target":"x86_64"}]"#,
        )
        .unwrap();
        assert_eq!(vcpus[0], VcpuThread { index: 0, thread_id: 1234 });
    }
}
