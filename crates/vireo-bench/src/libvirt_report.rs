//! The Markdown of the comparison with libvirt: its rows of the targets table and its section.

use std::fmt::Write;

use crate::libvirt_bench::{LibvirtOutcome, LibvirtResults, Versus};
use crate::report::fmt_ms;
use crate::snapshots::Op;

const HEADING: &str = "## 6. Against libvirt";

/// The section's rows of the targets table (`| target | measured | holds |`).
pub fn target_rows(out: &mut String, outcome: &LibvirtOutcome) {
    let LibvirtOutcome::Measured(results) = outcome else { return };
    for target in &results.targets {
        let verdict = if target.holds { "**yes**" } else { "**no**" };
        let _ = writeln!(out, "| {} | {} | {verdict} |", target.target, target.measured);
    }
}

pub fn section(out: &mut String, outcome: &LibvirtOutcome) {
    match outcome {
        LibvirtOutcome::Measured(results) => measured(out, results),
        LibvirtOutcome::NotMeasured { reason } => {
            let _ = writeln!(out, "{HEADING}\n\nNot measured: {reason}.\n");
        }
    }
}

fn measured(out: &mut String, r: &LibvirtResults) {
    let _ = write!(
        out,
        "{HEADING}\n\n\
         Debian's libvirt ({version}) against vireo, both as they come, on the same test guest (256 MiB, 1 vCPU, \
         TCG, cmdline `console=ttyS0 quiet`). Every measure runs in pairs, alternating (vireo, libvirt, vireo, \
         libvirt, …), {runs} recorded pair(s) after {warmup} unrecorded warm-up pair(s) unless said otherwise; \
         tables give min / **median** / max of each side and the median of the pairwise ratios vireo / libvirt.\n\n\
         - **vireo**: private `vireo serve` daemons (release build, temporary data directories), as in the sections \
         above.\n\
         - **libvirt**: a private libvirtd run by the bench as root. As root libvirtd is the privileged (system) \
         daemon whatever the URI says (`qemu:///session` reaches the same privileged driver), and that driver's \
         directories are compiled in (/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, \
         /var/log/libvirt); so the bench starts it in a mount namespace of its own (`unshare --mount --propagation \
         private`) in which /etc, /run and /var are overlays whose upper layers are directories of the bench's \
         temporary directory `DIR`: all it writes (domain XML, state, capability cache, logs) lands there and \
         nothing on the host; the namespace ends with its last process. There it runs `{command}` with this \
         libvirtd.conf (sockets in `DIR/sock`, reached with `virsh -c 'qemu:///system?socket=DIR/sock/libvirt-sock'`)\
         :\n\n```\n{libvirtd_conf}```\n\n  and this qemu.conf (QEMU as root, as vireo runs it; QEMU's output \
         straight into the domain log instead of through a virtlogd; no cgroups, so nothing is created under \
         /sys/fs/cgroup, which spares libvirt work it does by default); everything else is libvirt's default, \
         such as a mount namespace per QEMU and the DAC security driver:\n\n```\n{qemu_conf}```\n\n  \
         Debian's libvirt resolves the user `libvirt-qemu` before it reads qemu.conf; where the host has none \
         (only libvirt-daemon-system creates it; the bench installs just libvirt-daemon and libvirt-clients), the \
         namespace's /etc/passwd and /etc/group name it. libvirtd probes QEMU once when it first starts (a few \
         seconds, not timed). libvirtd daemonizes each QEMU, so an exited QEMU is reaped by whoever adopts \
         orphans; on this machine that is a PID 1 which leaves them zombies for a second or two, which libvirt \
         would wait out in every destroy, save and revert (it polls until its QEMU is gone): the bench adopts \
         them instead (a child subreaper) and reaps each as soon as it exits, as an init does. The domain, what a user writes to \
         boot this kernel (ACPI and APIC asked for, as QEMU and vireo have them by default; libvirt adds its \
         defaults: USB controller, memory balloon, PS/2 input, PCIe root ports), its serial console a Unix \
         socket the bench listens on and QEMU connects to:\n\n```xml\n{xml}```\n",
        version = r.libvirt_version,
        runs = r.runs,
        warmup = r.warmup_runs,
        command = r.libvirtd_command,
        libvirtd_conf = r.libvirtd_conf,
        qemu_conf = r.qemu_conf,
        xml = r.domain_xml,
    );
    if let Some(command) = &r.libvirt_qemu_command {
        let _ = writeln!(out, "\nThe QEMU command libvirt ran for it:\n\n```\n{command}\n```");
    }
    out.push('\n');
    starts(out, r);
    snapshots(out, r);
    scale(out, r);
}

fn starts(out: &mut String, r: &LibvirtResults) {
    let (boot, together) = (&r.boot, &r.concurrent);
    out.push_str(
        "### Start → marker\n\n\
         Each run defines a fresh VM (not timed) and times the start until `VIREO-TEST-GUEST-READY` arrives on the \
         serial console, then stops it. vireo: section 1's measure, from `POST /v1/vms/{name}/start` through \
         vireo-client to the marker on the console WebSocket. libvirt: from `start NAME` written to a virsh shell \
         that is already connected (so neither virsh's start-up nor its connection is counted, as for the API \
         call) to the marker on the serial socket, read by the bench directly: libvirt's console goes through \
         no daemon here, vireo's through its console hub and a WebSocket.\n\n\
         | measure | vireo: min / median / max | libvirt: min / median / max | vireo / libvirt, pairwise (median) | \
         vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
    );
    versus_row(out, "start → marker", &boot.marker, fmt_ms);
    versus_row(out, "start request → returned (the guest runs)", &boot.start_return, fmt_ms);
    let cpu = |v: Option<f64>| v.map_or("n/a".into(), fmt_ms);
    let _ = write!(
        out,
        "\nCPU time of the guest's QEMU until the marker (medians, /proc/PID/stat): vireo's {}, libvirt's {}. \
         Of the {} between the medians, the start returning accounts for {} (the managers' own work before the \
         guest runs); the rest is in the boot, which under TCG is CPU work of QEMU: the guest's machine as each \
         system defines it, and the CPU each leaves QEMU on a 2-core host.\n\n",
        cpu(boot.vireo_qemu_cpu_ms),
        cpu(boot.libvirt_qemu_cpu_ms),
        fmt_ms(boot.marker.libvirt.median - boot.marker.vireo.median),
        fmt_ms(boot.start_return.libvirt.median - boot.start_return.vireo.median),
    );
    let _ = write!(
        out,
        "### {vms} VMs started at once\n\n\
         {vms} fresh VMs defined (not timed), then all started at the same moment: vireo, {vms} start requests at \
         once through vireo-client, each followed by its console; libvirt, `start` written at once to {vms} virsh \
         shells connected beforehand. Timed until the last of the {vms} markers. The bound is {factor} × {vms} \
         single starts back to back (the median above, each side its own) / {nproc} cores.\n\n\
         | | min | median | max | bound |\n|---|---|---|---|---|\n",
        vms = together.vms,
        factor = crate::libvirt_bench::TARGET_CONCURRENT,
        nproc = r.nproc,
    );
    for (side, summary, bound) in [
        ("vireo", &together.all_markers.vireo, together.vireo_bound_ms),
        ("libvirt", &together.all_markers.libvirt, together.libvirt_bound_ms),
    ] {
        let _ = writeln!(
            out,
            "| {side} | {} | **{}** | {} | {} |",
            fmt_ms(summary.min),
            fmt_ms(summary.median),
            fmt_ms(summary.max),
            fmt_ms(bound)
        );
    }
    let _ = writeln!(
        out,
        "\nvireo / libvirt: {:.3} (medians), {:.3} (median of the pairwise ratios).\n",
        together.all_markers.ratio_of_medians, together.all_markers.pairwise_ratio.median
    );
}

fn snapshots(out: &mut String, r: &LibvirtResults) {
    let s = &r.snapshots;
    let _ = write!(
        out,
        "### Snapshots, save/restore\n\n\
         One VM on each side with a {disk} MiB qcow2 disk, booted to the marker and kept up: vireo's is section \
         3's, its operations timed request → response through vireo-client; libvirt's is the domain above plus \
         `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>` on a fresh `qemu-img create -f \
         qcow2` file (virtio), its operations timed from the command written to the connected virsh shell until \
         virsh is done: `snapshot-create-as snap TAG` (an internal snapshot of the running domain, memory and \
         disk), `snapshot-revert snap TAG` (it runs again), `snapshot-delete` (not timed), `save snap FILE` and \
         `restore FILE` (running again). libvirt's state file was {state}. libvirt ends the domain's QEMU after a \
         save, and reverts a running domain to an internal snapshot by starting a new QEMU that loads it; each \
         time it waits until the old QEMU is gone.\n\n\
         | operation | vireo: min / median / max | libvirt: min / median / max | vireo / libvirt, pairwise (median) | \
         vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
        disk = s.disk_mib,
        state = mib(s.libvirt_state_bytes as f64 / 1024.0),
    );
    for op in &s.ops {
        let name = match op.op {
            Op::SnapshotCreate => "snapshot create (running)",
            Op::SnapshotRevert => "snapshot revert (running)",
            Op::Save => "save",
            Op::Restore => "restore",
        };
        versus_row(out, name, &op.times, fmt_ms);
    }
    out.push('\n');
}

fn scale(out: &mut String, r: &LibvirtResults) {
    let s = &r.scale;
    let _ = write!(
        out,
        "### {vms} defined VMs, through the CLIs\n\n\
         A fresh daemon on each side (libvirtd restarted on its directory, its capability cache kept). {vms} VMs \
         defined through each side's command-line tool, one process per VM, alternating VM by VM: `vireo \
         --socket SOCKET vm create NAME --vcpus 1 --memory 256MiB --accel tcg --kernel … --initrd … --cmdline …` \
         and `virsh -c URI define NAME.xml` (the domain above, its XML written beforehand). Then each lists them \
         ({runs} runs each after one untimed run): `vireo vm list -o json` ({vireo_bytes}) and `virsh list --all` \
         ({virsh_bytes}); then each deletes them one by one: `vireo vm delete NAME` and `virsh undefine NAME`. \
         Each command is timed from spawn to exit; none of the VMs is started. RSS is `VmRSS` of the vireo \
         daemon and of libvirtd.\n\n\
         | measure | vireo: min / median / max | libvirt: min / median / max | vireo / libvirt, pairwise (median) | \
         vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
        vms = s.vms,
        runs = s.list_runs,
        vireo_bytes = kib(s.vireo_list_bytes),
        virsh_bytes = kib(s.virsh_list_bytes),
    );
    versus_row(out, "create (`vm create` / `define`), per VM", &s.create, fmt_ms);
    versus_row(out, &format!("list, {} VMs", s.vms), &s.list, fmt_ms);
    versus_row(out, "delete (`vm delete` / `undefine`), per VM", &s.delete, fmt_ms);
    let _ = write!(
        out,
        "\n| daemon RSS | vireo | libvirtd | vireo / libvirtd |\n|---|---|---|---|\n\
         | idle, no VMs | {} | {} | {:.3} |\n| {} VMs defined | {} | {} | **{:.3}** |\n\n",
        mib(s.rss_idle.vireo_kib as f64),
        mib(s.rss_idle.libvirtd_kib as f64),
        s.rss_idle.vireo_kib as f64 / s.rss_idle.libvirtd_kib as f64,
        s.vms,
        mib(s.rss_defined.vireo_kib as f64),
        mib(s.rss_defined.libvirtd_kib as f64),
        s.rss_defined.vireo_kib as f64 / s.rss_defined.libvirtd_kib as f64,
    );
}

fn versus_row(out: &mut String, label: &str, v: &Versus, fmt: impl Fn(f64) -> String) {
    let range = |s: &crate::stats::Summary| format!("{} / **{}** / {}", fmt(s.min), fmt(s.median), fmt(s.max));
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {:.3} | **{:.3}** |",
        range(&v.vireo),
        range(&v.libvirt),
        v.pairwise_ratio.median,
        v.ratio_of_medians
    );
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn kib(bytes: usize) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt_bench::{
        BootVersus, ConcurrentVersus, OpVersus, Rss, ScaleVersus, SnapshotVersus, TARGET_CONCURRENT, targets,
    };

    fn versus(vireo: &[f64], libvirt: &[f64]) -> Versus {
        Versus::of(vireo, libvirt).unwrap()
    }

    fn results() -> LibvirtResults {
        let boot = BootVersus {
            pairs: Vec::new(),
            marker: versus(&[1900.0, 2000.0, 2100.0], &[2400.0, 2500.0, 2600.0]),
            start_return: versus(&[40.0, 45.0, 50.0], &[200.0, 210.0, 220.0]),
            vireo_qemu_cpu_ms: Some(1990.0),
            libvirt_qemu_cpu_ms: None,
        };
        let concurrent = ConcurrentVersus {
            vms: 5,
            all_markers: versus(&[5000.0, 5200.0], &[6000.0, 6400.0]),
            vireo_bound_ms: TARGET_CONCURRENT * 5.0 * 2000.0 / 2.0,
            libvirt_bound_ms: TARGET_CONCURRENT * 5.0 * 2500.0 / 2.0,
        };
        let ops = Op::ALL.map(|op| OpVersus { op, times: versus(&[100.0], &[400.0]) }).to_vec();
        let scale = ScaleVersus {
            vms: 1000,
            list_runs: 3,
            rss_idle: Rss { vireo_kib: 10 << 10, libvirtd_kib: 25 << 10 },
            rss_defined: Rss { vireo_kib: 12 << 10, libvirtd_kib: 20 << 10 },
            create: versus(&[8.0, 9.0], &[20.0, 22.0]),
            list: versus(&[8.0], &[60.0]),
            delete: versus(&[8.0], &[15.0]),
            vireo_list_bytes: 600 << 10,
            virsh_list_bytes: 60 << 10,
        };
        let mut results = LibvirtResults {
            libvirt_version: "9.0.0".into(),
            nproc: 2,
            runs: 3,
            warmup_runs: 1,
            libvirtd_command: "libvirtd --config DIR/etc/libvirt/libvirtd.conf".into(),
            libvirtd_conf: "listen_tcp = 0\n".into(),
            qemu_conf: "user = \"root\"\n".into(),
            domain_xml: "<domain type='qemu'>\n</domain>\n".into(),
            libvirt_qemu_command: Some("/usr/bin/qemu-system-x86_64 -name guest=versus-1".into()),
            boot,
            concurrent,
            snapshots: SnapshotVersus { disk_mib: 256, ops, libvirt_state_bytes: 100 << 20 },
            scale,
            targets: Vec::new(),
        };
        results.targets = targets(&results);
        results
    }

    #[test]
    fn each_target_has_its_verdict() {
        let mut out = String::new();
        target_rows(&mut out, &LibvirtOutcome::Measured(Box::new(results())));
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows.len(), 5, "{out}");
        // 2000 / 2500 = 0.8: holds, just.
        assert!(rows[0].starts_with("| start → marker through vireo ≤ 0.8 × through libvirt (medians) | 0.800 ×"));
        assert!(rows[0].ends_with("| **yes** |"), "{out}");
        // 8 / 60 > 0.1.
        assert!(rows[1].contains("with 1000 VMs defined ≤ 0.1 × `virsh list --all`") && rows[1].ends_with("**no** |"));
        // create 8.5 / 21 ≈ 0.40; RSS 12 / 20 MiB = 0.6.
        assert!(rows[2].contains("0.405 ×") && rows[2].ends_with("**yes** |"), "{out}");
        assert!(rows[3].contains("0.600 × (12.0 MiB vs 20.0 MiB)") && rows[3].ends_with("**no** |"), "{out}");
        // 5100 ms against 1.1 × 5 × 2000 / 2 = 5500 ms.
        assert!(rows[4].contains("5100 ms vs a bound of 5500 ms (libvirt: 6200 ms vs its bound of 6875 ms)"));
        assert!(rows[4].ends_with("**yes** |"), "{out}");
        let mut none = String::new();
        target_rows(&mut none, &LibvirtOutcome::NotMeasured { reason: "libvirtd not found".into() });
        assert!(none.is_empty());
    }

    #[test]
    fn the_section_shows_both_sides() {
        let mut out = String::new();
        section(&mut out, &LibvirtOutcome::Measured(Box::new(results())));
        assert!(out.starts_with("## 6. Against libvirt\n\nDebian's libvirt (9.0.0)"), "{out}");
        assert!(out.contains("```\nlisten_tcp = 0\n```"), "{out}");
        assert!(
            out.contains(
                "| start → marker | 1900 ms / **2000 ms** / 2100 ms | 2400 ms / **2500 ms** / 2600 ms | 0.800 | **0.800** |"
            ),
            "{out}"
        );
        assert!(out.contains("| vireo | 5000 ms | **5100 ms** | 5200 ms | 5500 ms |"), "{out}");
        assert!(out.contains("| restore | 100 ms / **100 ms** / 100 ms | 400 ms / **400 ms** / 400 ms |"), "{out}");
        assert!(out.contains("| 1000 VMs defined | 12.0 MiB | 20.0 MiB | **0.600** |"), "{out}");
        assert!(out.contains("libvirt's state file was 100.0 MiB"), "{out}");
        let mut skipped = String::new();
        section(&mut skipped, &LibvirtOutcome::NotMeasured { reason: "libvirtd not found".into() });
        assert_eq!(skipped, "## 6. Against libvirt\n\nNot measured: libvirtd not found.\n\n");
    }
}
