//! Samples of every VM for the metrics endpoint: state and configuration from
//! the store, CPU/memory from /proc, disk counters and vCPU threads over QMP,
//! NIC counters from the TAP devices. All VMs are sampled concurrently and QMP
//! is asked with a short time limit, so a hung QEMU only makes its own VM's
//! sample stale and never holds up the others or the API.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use vireo_api::VmState;
use vireo_core::VmRecord;
use vireo_qemu::{DiskStats, ProcessUsage};

use super::VmManager;
use super::live::Live;
use crate::error::ServerError;

/// Traffic of one NIC as the guest sees it (the TAP's counters mirrored).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NicCounters {
    pub mac: String,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub sent_packets: u64,
}

/// One VM at the moment of a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct VmSample {
    pub name: String,
    pub state: VmState,
    pub vcpus: u32,
    pub memory_bytes: u64,
    /// Its QEMU process, while it has one.
    pub process: Option<ProcessUsage>,
    /// CPU seconds of each vCPU thread, by vCPU index.
    pub vcpu_seconds: Vec<(u32, f64)>,
    pub disks: Vec<DiskStats>,
    pub nics: Vec<NicCounters>,
    /// QEMU did not answer in time: the QMP figures (vCPUs, disks) are missing.
    pub stale: bool,
}

impl VmManager {
    /// A sample of every defined VM; QMP gets at most `qmp_limit` per VM.
    pub async fn vm_samples(&self, qmp_limit: Duration) -> Result<Vec<VmSample>, ServerError> {
        let records = self.store.list_vms().await?;
        let samples = records.into_iter().map(|record| {
            let live = self.slot(&record.name).live();
            sample(record, live, qmp_limit)
        });
        Ok(join_all(samples).await)
    }
}

async fn sample(record: VmRecord, live: Option<Arc<Live>>, qmp_limit: Duration) -> VmSample {
    let mut sample = VmSample {
        state: record.state,
        vcpus: record.spec.vcpus,
        memory_bytes: record.spec.memory.bytes(),
        process: None,
        vcpu_seconds: Vec::new(),
        disks: Vec::new(),
        nics: Vec::new(),
        stale: false,
        name: record.name,
    };
    let Some(live) = live else { return sample };
    sample.process = vireo_qemu::process_usage(live.pid);
    sample.nics = record
        .spec
        .nics
        .iter()
        .enumerate()
        .filter_map(|(index, nic)| {
            tap_counters(&vireo_net::tap_name(&sample.name, index), nic.mac.clone().unwrap_or_default())
        })
        .collect();
    let (vcpus, disks) = tokio::join!(live.qmp.vcpu_threads(qmp_limit), live.qmp.disk_stats(qmp_limit));
    match (vcpus, disks) {
        (Ok(vcpus), Ok(disks)) => {
            sample.vcpu_seconds = vcpus
                .iter()
                .filter_map(|vcpu| Some((vcpu.index, vireo_qemu::thread_cpu_seconds(live.pid, vcpu.thread_id)?)))
                .collect();
            sample.disks = disks;
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::debug!(vm = %sample.name, error = %err, "no QMP statistics");
            sample.stale = true;
        }
    }
    sample
}

/// The guest's view of a TAP's counters: what the TAP transmits, the guest receives.
fn tap_counters(tap: &str, mac: String) -> Option<NicCounters> {
    let dir = format!("/sys/class/net/{tap}/statistics");
    let read =
        |name: &str| -> Option<u64> { std::fs::read_to_string(format!("{dir}/{name}")).ok()?.trim().parse().ok() };
    Some(NicCounters {
        mac,
        received_bytes: read("tx_bytes")?,
        sent_bytes: read("rx_bytes")?,
        received_packets: read("tx_packets")?,
        sent_packets: read("rx_packets")?,
    })
}
