//! What commands print: tables, detail views, JSON, raw bytes.
//!
//! Rendering is pure (values in, strings out) so it unit-tests; writing goes through
//! [`write_stdout`], which turns a closed pipe (`vireo vm logs x | head`) into a quiet exit.

use std::fmt;
use std::io::Write;

use serde::Serialize;
use vireo_api::{
    BootEntry, CheckStatus, DiskAio, HostCheck, HostInfo, Lease, MigrationPhase, MigrationStatus, Network, NetworkMode,
    Pool, Snapshot, SnapshotKind, Vm, VmSpec, Volume,
};
use vireo_core::spec::{disk_source, path_disk_format};

/// Stdout was closed by its reader: the command stops quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes and flushes `bytes` to stdout.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to standard output")),
    }
}

/// Prints `text`, which should end with a newline.
pub fn print(text: &str) -> anyhow::Result<()> {
    write_stdout(text.as_bytes())
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    print(&json)
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The accelerator a VM runs with, or the one its spec asks for while it is not running.
fn accel_of(vm: &Vm) -> String {
    vm.accel.clone().unwrap_or_else(|| vm.spec.accel.as_str().to_string())
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `vm list`: NAME STATE VCPUS MEMORY ACCEL PID.
pub fn vm_table(vms: &[Vm]) -> String {
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|vm| {
            vec![
                vm.name.clone(),
                vm.state.to_string(),
                vm.spec.vcpus.to_string(),
                vm.spec.memory.to_string(),
                accel_of(vm),
                or_dash(vm.pid),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "VCPUS", "MEMORY", "ACCEL", "PID"], &rows)
}

/// `vm show`: one `key: value` line per fact.
pub fn vm_details(vm: &Vm) -> String {
    let spec = &vm.spec;
    let accel = match &vm.accel {
        Some(running) => format!("{running} (spec: {})", spec.accel.as_str()),
        None => spec.accel.as_str().to_string(),
    };
    let mut lines: Vec<(String, String)> = vec![
        ("name".into(), vm.name.clone()),
        ("state".into(), format!("{} (since {})", vm.state, vm.state_changed_at)),
        ("vcpus".into(), spec.vcpus.to_string()),
        ("memory".into(), spec.memory.to_string()),
        ("accel".into(), accel),
        ("pid".into(), or_dash(vm.pid)),
        ("kernel".into(), or_dash(spec.boot.kernel.as_ref().map(|p| p.display()))),
        ("initrd".into(), or_dash(spec.boot.initrd.as_ref().map(|p| p.display()))),
        ("cmdline".into(), or_dash(spec.boot.cmdline.as_ref())),
        ("boot".into(), boot_of(vm)),
        ("machine".into(), machine_of(spec)),
    ];
    if !spec.display.is_none() {
        lines.push(("display".into(), format!("{} vga, vnc", spec.display.vga.as_str())));
    }
    if spec.disks.is_empty() {
        lines.push(("disks".into(), "-".into()));
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        let access = if disk.readonly { ", read-only" } else { "" };
        let format = match &disk.path {
            Some(path) => format!("{}, ", path_disk_format(path, disk.format).as_str()),
            None => String::new(),
        };
        let aio = match disk.aio {
            DiskAio::Threads => String::new(),
            aio => format!(", aio {}", wire_name(aio)),
        };
        let boot = disk.boot_order.map(|order| format!(", boot order {order}")).unwrap_or_default();
        let cache = wire_name(disk.cache);
        lines.push((
            format!("disk[{index}]"),
            format!("{} ({format}cache {cache}{aio}{access}{boot})", disk_source(disk)),
        ));
    }
    for (index, nic) in vm.nics.iter().enumerate() {
        let ip = nic.ip.as_deref().unwrap_or("no lease");
        lines.push((format!("nic[{index}]"), format!("{} on {} ({ip})", nic.mac, nic.network)));
    }
    lines.push(("console log".into(), spec.console.log_size.to_string()));
    if let Some(migration) = &vm.migration {
        lines.push(("migration".into(), format!("to {} since {}", migration.destination, migration.started_at)));
        lines.push((String::new(), migration_progress(migration)));
    }
    lines.push(("created".into(), vm.created_at.clone()));
    lines.push(("last error".into(), or_dash(vm.last_error.as_ref())));
    key_values(&lines)
}

/// How the running guest was booted, or how it will be while it is not running.
fn boot_of(vm: &Vm) -> String {
    match &vm.boot {
        Some(boot) => {
            let kernel = match (boot.entry, &boot.kernel) {
                (BootEntry::Pvh, Some(kernel)) => format!(", kernel unpacked to {kernel}"),
                _ => String::new(),
            };
            format!("{} entry, {} firmware{kernel}", boot.entry.as_str(), boot.firmware.as_str())
        }
        None if vm.spec.boot.kernel.is_none() => "firmware boots a disk".into(),
        None if vm.spec.boot.pvh => "pvh entry when the kernel has one".into(),
        None => "kernel as given (pvh off)".into(),
    }
}

/// `firmware auto, legacy hardware: hpet, ps2, hot-plug ports: 4` (the spec's choices).
fn machine_of(spec: &VmSpec) -> String {
    let legacy: Vec<&str> = spec.machine.legacy.iter().map(|hardware| hardware.as_str()).collect();
    let legacy = if legacy.is_empty() { "none".to_string() } else { legacy.join(", ") };
    format!(
        "firmware {}, legacy hardware: {legacy}, hot-plug ports: {}",
        spec.machine.firmware.as_str(),
        spec.machine.hotplug_ports()
    )
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// `web1: migrating, 120/256 MiB sent, 3 MiB left, dirty 1 MiB/s, downtime ~12 ms`
pub fn migration_progress(status: &MigrationStatus) -> String {
    let phase = status.phase.map(MigrationPhase::as_str).unwrap_or("starting");
    let mut line = format!("{}: {phase}", status.vm);
    if status.phase == Some(MigrationPhase::CopyingDisks) {
        line.push_str(&format!(", disks {}/{} MiB", mib(status.disk_copied_bytes), mib(status.disk_total_bytes)));
        return line;
    }
    if status.memory_total_bytes > 0 {
        line.push_str(&format!(
            ", {} MiB sent, {} MiB left, dirty {} MiB/s",
            mib(status.memory_transferred_bytes),
            mib(status.memory_remaining_bytes),
            mib(status.dirty_rate_bytes_per_sec)
        ));
    }
    if status.cpu_throttle_percent > 0 {
        line.push_str(&format!(", vCPUs throttled {}%", status.cpu_throttle_percent));
    }
    if let Some(ms) = status.expected_downtime_ms {
        line.push_str(&format!(", downtime ~{ms} ms"));
    }
    line
}

/// An enum value as the spec spells it, e.g. `io_uring`.
fn wire_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `key:  value` lines with the values aligned; an empty key continues the value above.
fn key_values(lines: &[(String, String)]) -> String {
    let width = lines.iter().map(|(key, _)| key.len() + 1).max().unwrap_or(0);
    lines
        .iter()
        .map(|(key, value)| {
            let label = if key.is_empty() { String::new() } else { format!("{key}:") };
            format!("{label:<width$}  {value}\n")
        })
        .collect()
}

/// A size for people: `512B`, `1.5KiB`, `12.3GiB`, `10GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let text = format!("{value:.1}");
    format!("{}{}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
}

/// `10GiB (10737418240 bytes)`: rounded for reading, exact for checking.
fn size_details(bytes: u64) -> String {
    if bytes < 1024 { format!("{bytes}B") } else { format!("{} ({bytes} bytes)", human_size(bytes)) }
}

/// `pool list`: NAME TYPE PATH CAPACITY ALLOCATION AVAILABLE VOLUMES.
pub fn pool_table(pools: &[Pool]) -> String {
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|pool| {
            vec![
                pool.name.clone(),
                pool.pool_type.as_str().to_string(),
                pool.path.display().to_string(),
                human_size(pool.capacity_bytes),
                human_size(pool.allocation_bytes),
                human_size(pool.available_bytes),
                pool.volume_count.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "TYPE", "PATH", "CAPACITY", "ALLOCATION", "AVAILABLE", "VOLUMES"], &rows)
}

/// `pool show`
pub fn pool_details(pool: &Pool) -> String {
    key_values(&[
        ("name".into(), pool.name.clone()),
        ("type".into(), pool.pool_type.as_str().to_string()),
        ("path".into(), pool.path.display().to_string()),
        ("capacity".into(), size_details(pool.capacity_bytes)),
        ("allocation".into(), size_details(pool.allocation_bytes)),
        ("available".into(), size_details(pool.available_bytes)),
        ("volumes".into(), pool.volume_count.to_string()),
    ])
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "-".to_string() } else { items.join(",") }
}

/// `volume list`: POOL NAME FORMAT CAPACITY ALLOCATION BACKING USED-BY.
pub fn volume_table(volumes: &[Volume]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|volume| {
            vec![
                volume.pool.clone(),
                volume.name.clone(),
                volume.format.as_str().to_string(),
                human_size(volume.capacity_bytes),
                human_size(volume.allocation_bytes),
                or_dash(volume.backing.as_ref()),
                list_or_dash(&volume.used_by),
            ]
        })
        .collect();
    table(&["POOL", "NAME", "FORMAT", "CAPACITY", "ALLOCATION", "BACKING", "USED-BY"], &rows)
}

/// `volume show`: the facts, then the backing chain one image per line, nearest first.
pub fn volume_details(volume: &Volume) -> String {
    let mut lines: Vec<(String, String)> = vec![
        ("volume".into(), format!("{}/{}", volume.pool, volume.name)),
        ("format".into(), volume.format.as_str().to_string()),
        ("capacity".into(), size_details(volume.capacity_bytes)),
        ("allocation".into(), size_details(volume.allocation_bytes)),
        ("path".into(), volume.path.display().to_string()),
        ("backing".into(), or_dash(volume.backing.as_ref())),
    ];
    match volume.backing_chain.split_first() {
        None => lines.push(("backing chain".into(), "-".into())),
        Some((first, rest)) => {
            lines.push(("backing chain".into(), first.clone()));
            lines.extend(rest.iter().map(|image| (String::new(), image.clone())));
        }
    }
    lines.push(("used by".into(), list_or_dash(&volume.used_by)));
    key_values(&lines)
}

/// `snapshot list`: NAME KIND VM-STATE CREATED.
pub fn snapshot_table(snapshots: &[Snapshot]) -> String {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|snapshot| {
            vec![
                snapshot.name.clone(),
                snapshot_kind(snapshot.kind).to_string(),
                snapshot.vm_state.to_string(),
                snapshot.created_at.clone(),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "VM-STATE", "CREATED"], &rows)
}

pub fn snapshot_kind(kind: SnapshotKind) -> &'static str {
    match kind {
        SnapshotKind::Full => "full",
        SnapshotKind::Disk => "disk",
    }
}

pub fn network_mode(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Nat => "nat",
        NetworkMode::Isolated => "isolated",
        NetworkMode::Bridge => "bridge",
    }
}

/// `net list`: NAME MODE BRIDGE SUBNET GATEWAY LEASES USED-BY.
pub fn network_table(networks: &[Network]) -> String {
    let rows: Vec<Vec<String>> = networks
        .iter()
        .map(|network| {
            vec![
                network.name.clone(),
                network_mode(network.mode).to_string(),
                network.bridge.clone(),
                or_dash(network.subnet.as_ref()),
                or_dash(network.gateway.as_ref()),
                network.leases.len().to_string(),
                list_or_dash(&network.used_by),
            ]
        })
        .collect();
    table(&["NAME", "MODE", "BRIDGE", "SUBNET", "GATEWAY", "LEASES", "USED-BY"], &rows)
}

/// `net show`: the facts, then the DHCP leases as a table.
pub fn network_details(network: &Network) -> String {
    let dhcp_range = match (&network.dhcp_start, &network.dhcp_end) {
        (Some(start), Some(end)) => format!("{start} - {end}"),
        _ => "-".to_string(),
    };
    let mut out = key_values(&[
        ("name".into(), network.name.clone()),
        ("mode".into(), network_mode(network.mode).to_string()),
        ("bridge".into(), network.bridge.clone()),
        ("subnet".into(), or_dash(network.subnet.as_ref())),
        ("gateway".into(), or_dash(network.gateway.as_ref())),
        ("DHCP range".into(), dhcp_range),
        ("VLAN".into(), or_dash(network.vlan)),
        ("used by".into(), list_or_dash(&network.used_by)),
    ]);
    out.push('\n');
    if network.leases.is_empty() {
        out.push_str("no leases\n");
    } else {
        out.push_str(&lease_table(&network.leases));
    }
    out
}

/// MAC IP VM HOSTNAME EXPIRES.
fn lease_table(leases: &[Lease]) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|lease| {
            vec![
                lease.mac.clone(),
                lease.ip.clone(),
                or_dash(lease.vm.as_ref()),
                or_dash(lease.hostname.as_ref()),
                lease.expires_at.clone(),
            ]
        })
        .collect();
    table(&["MAC", "IP", "VM", "HOSTNAME", "EXPIRES"], &rows)
}

/// `host show`: one fact per line.
pub fn host_details(host: &HostInfo) -> String {
    let [one, five, fifteen] = host.load_average;
    let used = host.memory_total_bytes.saturating_sub(host.memory_available_bytes);
    key_values(&[
        ("hostname".into(), host.hostname.clone()),
        ("vireo".into(), host.version.clone()),
        ("qemu".into(), or_dash(Some(&host.qemu_version).filter(|v| !v.is_empty()))),
        ("accelerator".into(), host.accel.clone()),
        ("cpus".into(), host.cpus.to_string()),
        ("load".into(), format!("{one:.2} {five:.2} {fifteen:.2}")),
        ("memory".into(), format!("{} used of {}", human_size(used), human_size(host.memory_total_bytes))),
        ("uptime".into(), days_hours_minutes(host.uptime_secs)),
    ])
}

/// `3d 4h 5m`, leaving out leading zero units.
fn days_hours_minutes(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h {minutes}m"),
    }
}

/// `host check`: the accelerator and why, then one row per item with fixes under the failing ones.
pub fn host_check_report(check: &HostCheck) -> String {
    let mut out = format!("accelerator: {} ({})\n\n", check.accel, check.accel_reason);
    let rows: Vec<Vec<String>> = check
        .items
        .iter()
        .map(|item| vec![item.name.clone(), status_word(item.status).to_string(), item.detail.clone()])
        .collect();
    let rendered = table(&["NAME", "STATUS", "DETAIL"], &rows);
    let mut lines = rendered.lines();
    let header = lines.next().unwrap_or_default();
    // Fixes line up under DETAIL.
    let indent = header.find("DETAIL").unwrap_or(0);
    out.push_str(header);
    out.push('\n');
    for (line, item) in lines.zip(&check.items) {
        out.push_str(line);
        out.push('\n');
        if let (Some(fix), false) = (&item.fix, item.status == CheckStatus::Ok) {
            out.push_str(&format!("{:indent$}fix: {fix}\n", ""));
        }
    }
    out
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Ok => "ok",
        CheckStatus::Warn => "warn",
        CheckStatus::Fail => "FAIL",
    }
}

#[cfg(test)]
mod tests {
    use vireo_api::{
        Accel, BootSpec, ByteSize, ConsoleSpec, DiskCache, DiskFormat, DiskSpec, HostCheckItem, LegacyHardware,
        MachineSpec, PoolType, VmSpec, VmState,
    };

    use super::*;

    fn vm(name: &str, state: VmState, pid: Option<u32>) -> Vm {
        Vm {
            name: name.into(),
            state,
            spec: VmSpec {
                name: name.into(),
                vcpus: 2,
                memory: ByteSize::mib(256),
                accel: Accel::Auto,
                boot: BootSpec {
                    kernel: Some("/k/bzImage".into()),
                    initrd: None,
                    cmdline: Some("console=ttyS0".into()),
                    ..BootSpec::default()
                },
                disks: vec![DiskSpec { path: Some("/d/root.qcow2".into()), readonly: true, ..DiskSpec::default() }],
                nics: vec![],
                console: ConsoleSpec::default(),
                machine: MachineSpec::default(),
                display: Default::default(),
            },
            nics: vec![vireo_api::NicStatus {
                network: "default".into(),
                mac: "52:54:00:00:00:01".into(),
                ip: Some("10.77.0.5".into()),
            }],
            accel: pid.map(|_| "kvm".into()),
            pid,
            created_at: "2025-01-01T00:00:00Z".into(),
            state_changed_at: "2025-01-01T00:01:00Z".into(),
            last_error: None,
            migration: None,
            boot: pid.map(|_| vireo_api::BootStatus {
                entry: BootEntry::Pvh,
                firmware: vireo_api::Firmware::Qboot,
                kernel: Some("/var/lib/vireo/kernels/ab.vmlinux".into()),
            }),
        }
    }

    #[test]
    fn list_is_an_aligned_table() {
        let vms = [vm("web1", VmState::Running, Some(4242)), vm("database", VmState::Stopped, None)];
        assert_eq!(
            vm_table(&vms),
            "NAME      STATE    VCPUS  MEMORY  ACCEL  PID\n\
             web1      running  2      256MiB  kvm    4242\n\
             database  stopped  2      256MiB  auto   -\n"
        );
        assert_eq!(vm_table(&[]), "NAME  STATE  VCPUS  MEMORY  ACCEL  PID\n");
    }

    #[test]
    fn show_lists_spec_boot_and_disks() {
        let text = vm_details(&vm("web1", VmState::Running, Some(7)));
        for expected in [
            "name:         web1\n",
            "state:        running (since 2025-01-01T00:01:00Z)\n",
            "accel:        kvm (spec: auto)\n",
            "kernel:       /k/bzImage\n",
            "initrd:       -\n",
            "cmdline:      console=ttyS0\n",
            "boot:         pvh entry, qboot firmware, kernel unpacked to /var/lib/vireo/kernels/ab.vmlinux\n",
            "machine:      firmware auto, legacy hardware: none, hot-plug ports: 4\n",
            "disk[0]:      /d/root.qcow2 (qcow2, cache writeback, read-only)\n",
            "nic[0]:       52:54:00:00:00:01 on default (10.77.0.5)\n",
            "console log:  1MiB\n",
            "last error:   -\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("display:"), "a headless VM has no display line:\n{text}");
        let mut with_display = vm("web1", VmState::Stopped, None);
        with_display.spec.display.vga = vireo_api::Vga::Virtio;
        let text = vm_details(&with_display);
        assert!(text.contains("\ndisplay:      virtio vga, vnc\n"), "{text}");
    }

    #[test]
    fn saved_vms_and_volume_disks_show() {
        let mut saved = vm("web1", VmState::Saved, None);
        saved.spec.disks = vec![
            DiskSpec { volume: Some("default/root.qcow2".into()), boot_order: Some(1), ..DiskSpec::default() },
            DiskSpec {
                path: Some("/d/data.img".into()),
                cache: DiskCache::None,
                aio: DiskAio::IoUring,
                ..DiskSpec::default()
            },
        ];
        assert!(vm_table(std::slice::from_ref(&saved)).contains("\nweb1  saved  2  "));
        saved.spec.machine.legacy = vec![LegacyHardware::Hpet, LegacyHardware::Ps2];
        let text = vm_details(&saved);
        for expected in [
            "state:        saved (since 2025-01-01T00:01:00Z)\n",
            "boot:         pvh entry when the kernel has one\n",
            "machine:      firmware auto, legacy hardware: hpet, ps2, hot-plug ports: 4\n",
            "disk[0]:      volume default/root.qcow2 (cache writeback, boot order 1)\n",
            "disk[1]:      /d/data.img (raw, cache none, aio io_uring)\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(1536), "1.5KiB");
        assert_eq!(human_size(10 << 30), "10GiB");
        assert_eq!(human_size(13_207_024_435), "12.3GiB");
        assert_eq!(human_size(3 << 40), "3TiB");
        assert_eq!(human_size(u64::MAX), "16384PiB");
    }

    fn volume(name: &str, backing: Option<&str>, used_by: &[&str]) -> Volume {
        Volume {
            pool: "default".into(),
            name: name.into(),
            format: DiskFormat::Qcow2,
            capacity_bytes: 10 << 30,
            allocation_bytes: 196_608,
            path: format!("/pools/default/{name}").into(),
            backing: backing.map(Into::into),
            backing_chain: Vec::new(),
            used_by: used_by.iter().map(|vm| vm.to_string()).collect(),
        }
    }

    #[test]
    fn pools_list_and_show_their_usage() {
        let pool = Pool {
            name: "default".into(),
            pool_type: PoolType::Dir,
            path: "/var/lib/vireo/pools/default".into(),
            capacity_bytes: 100 << 30,
            allocation_bytes: 13_207_024_435,
            available_bytes: 80 << 30,
            volume_count: 3,
        };
        assert_eq!(
            pool_table(std::slice::from_ref(&pool)),
            "NAME     TYPE  PATH                          CAPACITY  ALLOCATION  AVAILABLE  VOLUMES\n\
             default  dir   /var/lib/vireo/pools/default  100GiB    12.3GiB     80GiB      3\n"
        );
        let text = pool_details(&pool);
        assert!(text.contains("allocation:  12.3GiB (13207024435 bytes)\n"), "{text}");
        assert!(text.contains("volumes:     3\n"), "{text}");
    }

    #[test]
    fn volumes_list_backing_and_users() {
        let volumes = [volume("base.qcow2", None, &[]), volume("web.qcow2", Some("default/base.qcow2"), &["a", "b"])];
        assert_eq!(
            volume_table(&volumes),
            "POOL     NAME        FORMAT  CAPACITY  ALLOCATION  BACKING             USED-BY\n\
             default  base.qcow2  qcow2   10GiB     192KiB      -                   -\n\
             default  web.qcow2   qcow2   10GiB     192KiB      default/base.qcow2  a,b\n"
        );
    }

    #[test]
    fn volume_show_lists_the_backing_chain() {
        let mut shown = volume("web.qcow2", Some("default/base.qcow2"), &["web1"]);
        shown.backing_chain = vec!["/pools/default/base.qcow2".into(), "/images/golden.raw".into()];
        assert_eq!(
            volume_details(&shown),
            "volume:         default/web.qcow2\n\
             format:         qcow2\n\
             capacity:       10GiB (10737418240 bytes)\n\
             allocation:     192KiB (196608 bytes)\n\
             path:           /pools/default/web.qcow2\n\
             backing:        default/base.qcow2\n\
             backing chain:  /pools/default/base.qcow2\n\
             \x20               /images/golden.raw\n\
             used by:        web1\n"
        );
        assert!(volume_details(&volume("a", None, &[])).contains("backing chain:  -\n"));
    }

    #[test]
    fn snapshots_list_kind_and_state() {
        let snapshot = |name: &str, kind, vm_state| Snapshot {
            vm: "web1".into(),
            name: name.into(),
            kind,
            vm_state,
            created_at: "2025-01-02T03:04:05Z".into(),
        };
        let snapshots = [
            snapshot("before-upgrade", SnapshotKind::Full, VmState::Running),
            snapshot("s2", SnapshotKind::Disk, VmState::Stopped),
        ];
        assert_eq!(
            snapshot_table(&snapshots),
            "NAME            KIND  VM-STATE  CREATED\n\
             before-upgrade  full  running   2025-01-02T03:04:05Z\n\
             s2              disk  stopped   2025-01-02T03:04:05Z\n"
        );
    }

    fn network(name: &str, mode: NetworkMode, leases: Vec<Lease>, used_by: &[&str]) -> Network {
        let managed = mode != NetworkMode::Bridge;
        let address = |last: &str| managed.then(|| format!("10.77.1.{last}"));
        Network {
            name: name.into(),
            mode,
            bridge: if managed { "vbr-0123456789".into() } else { "br0".into() },
            subnet: managed.then(|| "10.77.1.0/24".into()),
            gateway: address("1"),
            dhcp_start: address("10"),
            dhcp_end: address("254"),
            vlan: (!managed).then_some(42),
            leases,
            used_by: used_by.iter().map(|vm| vm.to_string()).collect(),
        }
    }

    fn lease(mac: &str, ip: &str, vm: Option<&str>, hostname: Option<&str>) -> Lease {
        Lease {
            mac: mac.into(),
            ip: ip.into(),
            vm: vm.map(Into::into),
            hostname: hostname.map(Into::into),
            expires_at: "2025-01-01T01:00:00Z".into(),
        }
    }

    #[test]
    fn networks_list_mode_subnet_and_users() {
        let leases = vec![lease("52:54:00:00:00:01", "10.77.1.10", Some("web1"), None)];
        let networks = [
            network("default", NetworkMode::Nat, leases, &["web1", "db"]),
            network("lan", NetworkMode::Bridge, Vec::new(), &[]),
        ];
        assert_eq!(
            network_table(&networks),
            "NAME     MODE    BRIDGE          SUBNET        GATEWAY    LEASES  USED-BY\n\
             default  nat     vbr-0123456789  10.77.1.0/24  10.77.1.1  1       web1,db\n\
             lan      bridge  br0             -             -          0       -\n"
        );
        assert_eq!(network_table(&[]), "NAME  MODE  BRIDGE  SUBNET  GATEWAY  LEASES  USED-BY\n");
    }

    #[test]
    fn network_show_lists_facts_then_leases() {
        let leases = vec![
            lease("52:54:00:00:00:01", "10.77.1.10", Some("web1"), Some("web1")),
            lease("52:54:00:aa:bb:cc", "10.77.1.11", None, None),
        ];
        assert_eq!(
            network_details(&network("default", NetworkMode::Isolated, leases, &["web1"])),
            "name:        default\n\
             mode:        isolated\n\
             bridge:      vbr-0123456789\n\
             subnet:      10.77.1.0/24\n\
             gateway:     10.77.1.1\n\
             DHCP range:  10.77.1.10 - 10.77.1.254\n\
             VLAN:        -\n\
             used by:     web1\n\
             \n\
             MAC                IP          VM    HOSTNAME  EXPIRES\n\
             52:54:00:00:00:01  10.77.1.10  web1  web1      2025-01-01T01:00:00Z\n\
             52:54:00:aa:bb:cc  10.77.1.11  -     -         2025-01-01T01:00:00Z\n"
        );
        let text = network_details(&network("lan", NetworkMode::Bridge, Vec::new(), &[]));
        for expected in ["mode:        bridge\n", "DHCP range:  -\n", "VLAN:        42\n", "\nno leases\n"] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn vms_without_a_lease_say_so() {
        let mut shown = vm("web1", VmState::Stopped, None);
        shown.nics[0].ip = None;
        let text = vm_details(&shown);
        assert!(text.contains("nic[0]:       52:54:00:00:00:01 on default (no lease)\n"), "{text}");
        assert!(!vm_table(&[shown]).contains("52:54"), "vm list shows no NICs");
    }

    #[test]
    fn host_show_reads_memory_as_used_of_total() {
        let host = HostInfo {
            hostname: "h1".into(),
            version: "0.1.0".into(),
            qemu_version: String::new(),
            accel: "tcg".into(),
            cpus: 2,
            load_average: [0.5, 1.0, 1.25],
            memory_total_bytes: 4 << 30,
            memory_available_bytes: 3 << 30,
            uptime_secs: 3_661,
        };
        let text = host_details(&host);
        assert!(text.contains("memory:       1GiB used of 4GiB"), "{text}");
        assert!(text.contains("load:         0.50 1.00 1.25"), "{text}");
        assert!(text.contains("qemu:         -"), "{text}");
        assert!(text.contains("uptime:       1h 1m"), "{text}");
        assert_eq!(days_hours_minutes(59), "0m");
        assert_eq!(days_hours_minutes(2 * 86_400 + 60), "2d 0h 1m");
    }

    #[test]
    fn host_check_puts_fixes_under_failures() {
        let item = |name: &str, status, fix: Option<&str>| HostCheckItem {
            name: name.into(),
            status,
            detail: format!("{name} detail"),
            fix: fix.map(Into::into),
        };
        let check = HostCheck {
            accel: "tcg".into(),
            accel_reason: "/dev/kvm is missing".into(),
            items: vec![
                item("qemu", CheckStatus::Ok, Some("ignored")),
                item("kvm", CheckStatus::Fail, Some("modprobe kvm")),
            ],
        };
        assert_eq!(
            host_check_report(&check),
            "accelerator: tcg (/dev/kvm is missing)\n\n\
             NAME  STATUS  DETAIL\n\
             qemu  ok      qemu detail\n\
             kvm   FAIL    kvm detail\n\
             \x20             fix: modprobe kvm\n"
        );
    }
}
