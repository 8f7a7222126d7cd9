//! The Markdown of the comparison with libvirt: its rows of the targets table and its section.

use std::fmt::Write;

use crate::libvirt_bench::{LibvirtOutcome, LibvirtResults, Versus};
use crate::report::{fmt_ms, fmt_opt_ms};
use crate::snapshots::Op;
use crate::start_marker::Side;
use crate::stats::Summary;

pub(crate) const HEADING: &str = "## 6. Against libvirt";

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
    let together = &r.concurrent;
    start_marker(out, r);
    commands(out, r);
    let _ = write!(
        out,
        "### {vms} VMs started at once\n\n\
         {vms} fresh VMs defined (not timed), then all started at the same moment: vireo, {vms} start requests at \
         once through vireo-client, each followed by its console; by hand, vireo's QEMU command of side (e) run \
         {vms} times at once as (e) runs it once, with no manager at all; libvirt, `start` written at once to {vms} \
         virsh shells connected beforehand. Timed until the last of the {vms} markers; every guest runs until then. \
         vireo and by hand alternate which goes first; libvirt follows. The bound is {factor} × {vms} single starts \
         back to back (the medians of (a) and (c) above, each side its own) / {nproc} cores.\n\n\
         | | min | median | max | bound |\n|---|---|---|---|---|\n",
        vms = together.vms,
        factor = crate::libvirt_bench::TARGET_CONCURRENT,
        nproc = r.nproc,
    );
    for (side, summary, bound) in [
        ("vireo", &together.all_markers.vireo, together.vireo_bound_ms),
        ("vireo's QEMU command, by hand", &together.by_hand, together.vireo_bound_ms),
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
        "\nvireo / libvirt: {:.3} (medians), {:.3} (median of the pairwise ratios). vireo / by hand: {:.3} \
         (medians).\n",
        together.all_markers.ratio_of_medians,
        together.all_markers.pairwise_ratio.median,
        together.all_markers.vireo.median / together.by_hand.median
    );
    concurrent_cpu(out, r);
}

/// Where the time of the concurrent starts goes: each QEMU's CPU time alone and in company.
fn concurrent_cpu(out: &mut String, r: &LibvirtResults) {
    let together = &r.concurrent;
    let _ = write!(
        out,
        "\nWhere the time goes: under TCG a guest's boot is CPU work of its QEMU, so {vms} guests on {nproc} cores \
         take at least {vms} × one guest's CPU time / {nproc}. One guest's QEMU until its marker, medians over \
         the guests (/proc/PID/stat, 10 ms ticks):\n\n\
         | QEMU | CPU time | of it in the kernel |\n|---|---|---|\n",
        vms = together.vms,
        nproc = r.nproc,
    );
    for (what, cpu) in [
        ("alone (side (e) of the round robin)", &together.qemu_cpu_alone),
        ("by hand, all at once", &together.qemu_cpu_by_hand),
        ("through vireo, all at once", &together.qemu_cpu_vireo),
    ] {
        let _ = writeln!(out, "| {what} | {} | {} |", fmt_opt_ms(cpu.total_ms), fmt_opt_ms(cpu.system_ms));
    }
    let (Some(alone), Some(shared)) = (together.qemu_cpu_alone.total_ms, together.qemu_cpu_by_hand.total_ms) else {
        return;
    };
    let vms = together.vms as f64;
    let _ = writeln!(
        out,
        "\nEach QEMU needs {:.0} % more CPU when {} share {} cores than alone (by hand, no manager involved): \
         the kernel switching between their threads and the caches they share. At that cost the CPU work alone \
         takes {} of the {} cores, against {} for the bound's arithmetic.\n",
        (shared / alone - 1.0) * 100.0,
        together.vms,
        r.nproc,
        fmt_ms(vms * shared / r.nproc.max(1) as f64),
        r.nproc,
        fmt_ms(vms * alone / r.nproc.max(1) as f64),
    );
}

fn start_marker(out: &mut String, r: &LibvirtResults) {
    let boot = &r.boot;
    let _ = write!(
        out,
        "### Start → marker, five ways\n\n\
         One round robin: each round starts the test guest once on each side below, each VM defined beforehand \
         (not timed), and times it until `VIREO-TEST-GUEST-READY` arrives on its serial console; then the VM is \
         stopped. {runs} recorded round(s) after {warmup} unrecorded warm-up round(s); sides (a) and (d) are \
         section 1's runs. The order changes from round to round \
         (the first round a b c d e, every later one shuffled, the same way in every run) so that no side always \
         runs first or right after the same other side.\n\n\
         - **(a) vireo, defaults**: section 1's measure, from `POST /v1/vms/{{name}}/start` through vireo-client \
         to the marker on the console WebSocket. The spec says nothing about the machine, so the daemon boots the \
         kernel through its PVH entry (the bzImage's ELF payload, unpacked once into its kernel cache), with \
         qboot and without legacy hardware. Stopped with `vireo vm stop --force` (below).\n\
         - **(b) vireo, `boot.pvh: false`**: the same with the bzImage booted as given. Stopped through the \
         API.\n\
         - **(c) libvirt, defaults**: from `start NAME` written to a virsh shell that is already connected (so \
         neither virsh's start-up nor its connection is counted, as for the API call) to the marker on the \
         serial socket, read by the bench directly: libvirt's console goes through no daemon here, vireo's \
         through its console hub and a WebSocket. Stopped with `virsh destroy` (below).\n\
         - **(d) plain QEMU**: section 1's command (the bzImage, `-machine q35,accel=tcg`, nothing else), timed \
         from its spawn to the marker on its stdout.\n\
         - **(e) vireo's QEMU command, by hand**: the command vireo ran for (a) in the same round, read from \
         /proc/PID/cmdline, run by the bench with only what ties it to the daemon replaced: the QMP and console \
         sockets are bound by the bench and inherited (`fd=N`, as the daemon passes them) and `-pidfile` points \
         into the bench's directory; `-S` stays. Timed from its spawn: the bench, connected to both sockets \
         beforehand as the daemon is, answers the QMP greeting with `qmp_capabilities`, sends `cont` and reads \
         the marker from the console socket. (a) − (e) is thus the daemon's own cost: the API request, its \
         checks and state writes, its QMP exchanges, the console hub and the WebSocket.\n\n",
        runs = r.runs,
        warmup = r.warmup_runs,
    );
    if let Some(command) = &boot.vireo_command {
        let _ = writeln!(
            out,
            "The QEMU command vireo ran for (a) (`DATA_DIR` is the daemon's data directory):\n\n```\n{command}\n```\n"
        );
    }
    if let Some(command) = &boot.vireo_bzimage_command {
        let _ = writeln!(out, "and for (b):\n\n```\n{command}\n```\n");
    }
    out.push_str(
        "| side | time starts when | min | median | max | QEMU's CPU time until the marker (median) |\n\
         |---|---|---|---|---|---|\n",
    );
    let cpu = |v: Option<f64>| v.map_or("n/a".into(), fmt_ms);
    for figures in &boot.sides {
        let side = figures.side;
        let _ = writeln!(
            out,
            "| ({}) {} | {} | {} | **{}** | {} | {} |",
            side.letter(),
            side.label(),
            side.start_point(),
            fmt_ms(figures.marker.min),
            fmt_ms(figures.marker.median),
            fmt_ms(figures.marker.max),
            cpu(figures.qemu_cpu_ms)
        );
    }
    out.push_str("\n| ratio | round by round: min / **median** / max | of the medians |\n|---|---|---|\n");
    for ratio in &boot.ratios {
        let what = match (ratio.of, ratio.to) {
            (Side::VireoDefaults, Side::Libvirt) => "vireo's defaults against libvirt's",
            (Side::VireoDefaults, Side::PlainQemu) => "vireo's defaults against plain QEMU with the bzImage",
            (Side::VireoBzimage, Side::VireoDefaults) => "the bzImage against the PVH entry, through vireo",
            (Side::VireoCommandByHand, Side::VireoDefaults) => "vireo's QEMU command by hand against through vireo",
            _ => "",
        };
        let p = &ratio.pairwise;
        let _ = writeln!(
            out,
            "| ({}) / ({}): {what} | {:.3} / **{:.3}** / {:.3} | {:.3} |",
            ratio.of.letter(),
            ratio.to.letter(),
            p.min,
            p.median,
            p.max,
            ratio.ratio_of_medians
        );
    }
    by_hand(out, boot);
    out.push_str(
        "\n| measure | vireo (a): min / median / max | libvirt (c): min / median / max | vireo / libvirt, pairwise \
         (median) | vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
    );
    versus_row(out, "start sent → returned (the guest runs)", &boot.start_return, fmt_ms);
    let cpu_of = |side| boot.side(side).and_then(|s| s.qemu_cpu_ms);
    let _ = write!(
        out,
        "\nOf the {} between the medians of (a) and (c), the start returning accounts for {} (the managers' own \
         work before the guest runs); the rest is in the boot, which under TCG is CPU work of QEMU (its CPU time \
         above: vireo's {}, libvirt's {}): the guest's machine as each system defines it, and the CPU each leaves \
         QEMU on a 2-core host.\n\n### Every round\n\n\
         | round | order | (a) | (b) | (c) | (d) | (e) | (e) / (a) |\n|---|---|---|---|---|---|---|---|\n",
        fmt_ms(boot.marker.libvirt.median - boot.marker.vireo.median),
        fmt_ms(boot.start_return.libvirt.median - boot.start_return.vireo.median),
        cpu(cpu_of(Side::VireoDefaults)),
        cpu(cpu_of(Side::Libvirt)),
    );
    for (i, round) in boot.rounds.iter().enumerate() {
        let marker = |side| fmt_ms(round.marker_ms(side));
        let order: String = round.order.iter().map(|side| side.letter()).collect();
        let _ = writeln!(
            out,
            "| {} | {order} | {} | {} | {} | {} | {} | {:.3} |",
            i + 1,
            marker(Side::VireoDefaults),
            marker(Side::VireoBzimage),
            marker(Side::Libvirt),
            marker(Side::PlainQemu),
            marker(Side::VireoCommandByHand),
            round.marker_ms(Side::VireoCommandByHand) / round.marker_ms(Side::VireoDefaults)
        );
    }
    out.push('\n');
}

/// Where (a) and (e) part: the same QEMU command, through the daemon and by hand.
fn by_hand(out: &mut String, boot: &crate::start_marker::StartMarker) {
    let median = |values: Vec<f64>| Summary::of(&values).map_or("n/a".into(), |s| fmt_ms(s.median));
    let rounds = &boot.rounds;
    let phases: Vec<_> = rounds.iter().filter_map(|r| r.vireo.run.phases.as_ref()).collect();
    let running = phases.iter().map(|p| p.request_to_greeting_ms + p.greeting_to_cont_ms + p.cont_reply_ms);
    let cont_to_marker = phases.iter().map(|p| p.cont_to_marker_ms);
    let _ = write!(
        out,
        "\nThe same QEMU command through vireo (a) and by hand (e), step by step (medians; vireo's from its \
         `qmp.log`, as in section 1; by hand, QEMU answered `qmp_capabilities` {} after its spawn):\n\n\
         | | (a) through vireo, from the start request | (e) by hand, from the spawn |\n|---|---|---|\n\
         | → the guest runs (`cont` answered) | {} | {} |\n\
         | `cont` → marker seen | {} | {} |\n",
        median(rounds.iter().map(|r| r.by_hand.qmp_ready_ms).collect()),
        median(running.collect()),
        median(rounds.iter().map(|r| r.by_hand.running_ms).collect()),
        median(cont_to_marker.collect()),
        median(rounds.iter().map(|r| r.by_hand.marker_ms - r.by_hand.running_ms).collect()),
    );
}

fn commands(out: &mut String, r: &LibvirtResults) {
    let c = &r.commands;
    let _ = write!(
        out,
        "### Start and destroy through the command-line tools\n\n\
         Each command a process of its own, timed from its spawn to its exit, as a user or a script runs it. \
         `vireo --socket SOCKET vm start NAME` against `virsh -c URI start NAME`, alternating, {runs} run(s) each \
         after {warmup} warm-up run(s), each VM defined beforehand and stopped right after (not timed). `vireo vm \
         stop --force NAME` against `virsh -c URI destroy NAME` on the VMs of sides (a) and (c) above, once they \
         printed their marker. For those, QEMU's exit is taken from a pidfd opened on its pid before the command \
         is spawned: a thread blocks in poll(2) on it and reads the monotonic clock when it turns readable, which \
         the kernel does as the process exits (before it is reaped); the command's return is the same clock when \
         waitpid(2) on it returns.\n\n\
         | measure | vireo: min / median / max | libvirt: min / median / max | vireo / libvirt, pairwise (median) | \
         vireo / libvirt (medians) |\n|---|---|---|---|---|\n",
        runs = r.runs,
        warmup = r.warmup_runs,
    );
    versus_row(out, "`vm start` / `start`: spawn → exit", &c.start, fmt_ms);
    versus_row(out, "`vm stop --force` / `destroy`: spawn → exit", &c.destroy, fmt_ms);
    versus_row(out, "… of which after QEMU's exit", &c.destroy_after_exit, fmt_ms);
    out.push('\n');
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

pub(crate) fn versus_row(out: &mut String, label: &str, v: &Versus, fmt: impl Fn(f64) -> String) {
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
        CommandsVersus, ConcurrentVersus, OpVersus, QemuCpu, Rss, ScaleVersus, SnapshotVersus, TARGET_CONCURRENT,
        targets,
    };
    use crate::start_marker;

    fn versus(vireo: &[f64], libvirt: &[f64]) -> Versus {
        Versus::of(vireo, libvirt).unwrap()
    }

    fn results() -> LibvirtResults {
        let rows = [
            [1600.0, 2000.0, 2400.0, 1900.0, 1580.0],
            [1700.0, 2100.0, 2500.0, 2000.0, 1650.0],
            [1800.0, 2200.0, 2600.0, 2100.0, 1790.0],
        ];
        let rounds = start_marker::testing::rounds(&rows, &[(40.0, 200.0), (45.0, 210.0), (50.0, 220.0)]);
        let command = Some("qemu-system-x86_64 -machine q35,accel=tcg,hpet=off".to_string());
        let boot = start_marker::summarize(rounds, [command, None]).unwrap();
        let commands = CommandsVersus {
            start: versus(&[44.0, 46.0], &[120.0, 130.0]),
            destroy: versus(&[12.0, 14.0], &[60.0, 70.0]),
            destroy_after_exit: versus(&[5.0, 7.0], &[30.0, 40.0]),
        };
        let cpu = |total: f64| QemuCpu { total_ms: Some(total), system_ms: Some(total / 10.0) };
        let concurrent = ConcurrentVersus {
            vms: 5,
            all_markers: versus(&[5000.0, 5200.0], &[6000.0, 6400.0]),
            by_hand: Summary::of(&[4900.0, 5100.0]).unwrap(),
            qemu_cpu_alone: cpu(1800.0),
            qemu_cpu_by_hand: cpu(2000.0),
            qemu_cpu_vireo: cpu(2050.0),
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
            commands,
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
        assert_eq!(rows.len(), 8, "{out}");
        // Round by round 1600 / 2400, 1700 / 2500 = 0.68, 1800 / 2600: holds.
        assert!(rows[0].starts_with(
            "| start → marker, vireo's defaults ≤ 0.7 × libvirt's defaults (median of the pairwise ratios) | 0.680 ×; \
             medians 1700 ms vs 2500 ms (0.680 ×) | **yes** |"
        ));
        // 1580 / 1600, 1650 / 1700 ≈ 0.971, 1790 / 1800: holds.
        assert!(rows[1].contains("run by hand ≥ 0.95 × through vireo") && rows[1].contains("| 0.988 ×;"), "{out}");
        assert!(rows[1].ends_with("| **yes** |"), "{out}");
        assert!(rows[2].contains("returns ≤ 50.0 ms (median, spawn → exit) | median 45.0 ms (`virsh start`: 125 ms)"));
        assert!(rows[3].contains(
            "after QEMU exits (median) | median 6.00 ms (`virsh destroy`: 35.0 ms); the whole \
             command 13.0 ms vs 65.0 ms | **yes** |"
        ));
        // 8 / 60 > 0.1.
        assert!(rows[4].contains("with 1000 VMs defined ≤ 0.1 × `virsh list --all`") && rows[4].ends_with("**no** |"));
        // create 8.5 / 21 ≈ 0.40; RSS 12 / 20 MiB = 0.6.
        assert!(rows[5].contains("0.405 ×") && rows[5].ends_with("**yes** |"), "{out}");
        assert!(rows[6].contains("0.600 × (12.0 MiB vs 20.0 MiB)") && rows[6].ends_with("**no** |"), "{out}");
        // 5100 ms against 1.1 × 5 × 2000 / 2 = 5500 ms.
        assert!(rows[7].contains(
            "5100 ms vs a bound of 5500 ms (vireo's QEMU command by hand, 5 at once: 5000 ms; libvirt: 6200 ms vs \
             its bound of 6875 ms)"
        ));
        assert!(rows[7].ends_with("**yes** |"), "{out}");
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
        assert!(out.contains(
            "| (a) vireo, defaults (PVH, qboot, lean machine) | `POST /v1/vms/{name}/start` sent | \
             1600 ms | **1700 ms** | 1800 ms | 1700 ms |"
        ));
        assert!(
            out.contains("| (c) libvirt, defaults | `start NAME` written to the connected virsh shell | 2400 ms |")
        );
        assert!(out.contains(
            "| (e) / (a): vireo's QEMU command by hand against through vireo | 0.971 / **0.988** / \
             0.994 | 0.971 |"
        ));
        assert!(out.contains("```\nqemu-system-x86_64 -machine q35,accel=tcg,hpet=off\n```"), "{out}");
        assert!(out.contains("| 2 | abcde | 1700 ms | 2100 ms | 2500 ms | 2000 ms | 1650 ms | 0.971 |"), "{out}");
        assert!(out.contains("| → the guest runs (`cont` answered) | 44.0 ms | 32.0 ms |"), "{out}");
        assert!(out.contains("| … of which after QEMU's exit | 5.00 ms / **6.00 ms** / 7.00 ms | 30.0 ms /"), "{out}");
        assert!(out.contains("| vireo | 5000 ms | **5100 ms** | 5200 ms | 5500 ms |"), "{out}");
        assert!(out.contains("| vireo's QEMU command, by hand | 4900 ms | **5000 ms** | 5100 ms | 5500 ms |"), "{out}");
        assert!(out.contains("vireo / by hand: 1.020 (medians)"), "{out}");
        assert!(out.contains("| by hand, all at once | 2000 ms | 200 ms |"), "{out}");
        // 2000 / 1800 ≈ 1.11; 5 × 2000 / 2 and 5 × 1800 / 2.
        assert!(out.contains("Each QEMU needs 11 % more CPU when 5 share 2 cores"), "{out}");
        assert!(out.contains("takes 5000 ms of the 2 cores, against 4500 ms for the bound's arithmetic"), "{out}");
        assert!(out.contains("| restore | 100 ms / **100 ms** / 100 ms | 400 ms / **400 ms** / 400 ms |"), "{out}");
        assert!(out.contains("| 1000 VMs defined | 12.0 MiB | 20.0 MiB | **0.600** |"), "{out}");
        assert!(out.contains("libvirt's state file was 100.0 MiB"), "{out}");
        let mut skipped = String::new();
        section(&mut skipped, &LibvirtOutcome::NotMeasured { reason: "libvirtd not found".into() });
        assert_eq!(skipped, "## 6. Against libvirt\n\nNot measured: libvirtd not found.\n\n");
    }
}
