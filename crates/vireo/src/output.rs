//! What commands print: tables, detail views, JSON, raw bytes.
//!
//! Rendering is pure (values in, strings out) so it unit-tests; writing goes through
//! [`write_stdout`], which turns a closed pipe (`vireo vm logs x | head`) into a quiet exit.

use std::fmt;
use std::io::Write;

use serde::Serialize;
use vireo_api::{CheckStatus, HostCheck, Vm};
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
    ];
    if spec.disks.is_empty() {
        lines.push(("disks".into(), "-".into()));
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        let access = if disk.readonly { ", read-only" } else { "" };
        let format = match &disk.path {
            Some(path) => format!("{}, ", path_disk_format(path, disk.format).as_str()),
            None => String::new(),
        };
        let cache =
            serde_json::to_value(disk.cache).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        lines.push((format!("disk[{index}]"), format!("{} ({format}cache {cache}{access})", disk_source(disk))));
    }
    lines.push(("console log".into(), spec.console.log_size.to_string()));
    lines.push(("created".into(), vm.created_at.clone()));
    lines.push(("last error".into(), or_dash(vm.last_error.as_ref())));
    key_values(&lines)
}

fn key_values(lines: &[(String, String)]) -> String {
    let width = lines.iter().map(|(key, _)| key.len() + 1).max().unwrap_or(0);
    lines.iter().map(|(key, value)| format!("{:<width$}  {value}\n", format!("{key}:"))).collect()
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
    use vireo_api::{Accel, BootSpec, ByteSize, ConsoleSpec, DiskSpec, HostCheckItem, VmSpec, VmState};

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
                },
                disks: vec![DiskSpec { path: Some("/d/root.qcow2".into()), readonly: true, ..DiskSpec::default() }],
                console: ConsoleSpec::default(),
            },
            accel: pid.map(|_| "kvm".into()),
            pid,
            created_at: "2025-01-01T00:00:00Z".into(),
            state_changed_at: "2025-01-01T00:01:00Z".into(),
            last_error: None,
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
            "disk[0]:      /d/root.qcow2 (qcow2, cache writeback, read-only)\n",
            "console log:  1MiB\n",
            "last error:   -\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
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
