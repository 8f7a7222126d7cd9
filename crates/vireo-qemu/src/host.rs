//! Host facts and the report of `vireo host check`.
//!
//! Reading the host (files under /sys and /proc, running `--version`) is kept
//! apart from judging it, so every judgment unit-tests on literal text.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vireo_api::{Accel, CheckStatus, HostCheck, HostCheckItem};
use vireo_core::HostAccelFacts;

use crate::error::QemuError;

const QEMU_BINARY: &str = "qemu-system-x86_64";
const QEMU_IMG: &str = "qemu-img";
/// The kernel modules that provide KVM flavours; `kvmgt` and friends are not accelerators.
const KVM_MODULES: &[&str] = &["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"];
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// `$VIREO_QEMU`, or `qemu-system-x86_64` found in `PATH`.
pub fn find_qemu_binary() -> Result<PathBuf, QemuError> {
    if let Some(path) = std::env::var_os("VIREO_QEMU") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(QemuError::QemuNotFound { reason: format!("VIREO_QEMU={} is not a file", path.display()) })
        };
    }
    find_in_path(QEMU_BINARY).ok_or_else(|| QemuError::QemuNotFound {
        reason: format!("{QEMU_BINARY} is not in PATH (install it with: apt-get install qemu-system-x86)"),
    })
}

/// What the host offers for KVM; `HostAccelFacts::choose` judges it.
pub fn gather_accel_facts() -> HostAccelFacts {
    let loaded = |module: &str| Path::new("/sys/module").join(module).exists();
    HostAccelFacts {
        dev_kvm_usable: OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
        kvm_modules: KVM_MODULES.iter().filter(|m| loaded(m)).map(|m| m.to_string()).collect(),
        cpu_has_virt_flag: std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|text| cpu_has_virt_flag(&text)),
    }
}

/// The whole host report.
pub async fn host_check() -> HostCheck {
    let facts = gather_accel_facts();
    let choice = facts.choose(Accel::Auto);
    let (accel, accel_reason) = match &choice {
        Ok(choice) => (choice.accel.as_str().to_string(), choice.reason.clone()),
        Err(err) => (Accel::Tcg.as_str().to_string(), err.to_string()),
    };
    let qemu = find_qemu_binary();
    let qemu_version = match &qemu {
        Ok(path) => tool_version(path).await,
        Err(_) => None,
    };
    let qemu_img = qemu
        .as_ref()
        .ok()
        .and_then(|qemu| qemu.parent())
        .map(|dir| dir.join(QEMU_IMG))
        .filter(|path| path.is_file())
        .or_else(|| find_in_path(QEMU_IMG));
    let qemu_img_version = match &qemu_img {
        Some(path) => tool_version(path).await,
        None => None,
    };
    let items = vec![
        qemu_item(qemu.as_ref().map_err(ToString::to_string), qemu_version),
        qemu_img_item(qemu_img.as_deref(), qemu_img_version),
        accel_item(&accel, &accel_reason),
        dev_kvm_item(&facts),
        cgroups_item(detect_cgroups(Path::new("/sys/fs/cgroup"))),
        hugepages_item(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()),
        kvm_modules_item(&facts),
    ];
    HostCheck { accel, accel_reason, items }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// First line of `TOOL --version`, e.g. `QEMU emulator version 7.2.22 (Debian …)`.
pub async fn tool_version(path: &Path) -> Option<String> {
    let run = tokio::process::Command::new(path).arg("--version").kill_on_drop(true).output();
    let output = tokio::time::timeout(VERSION_TIMEOUT, run).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success().then(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// `MemAvailable` of /proc/meminfo in bytes: what the host can give a new guest without swapping.
pub fn memory_available_bytes() -> Option<u64> {
    meminfo_bytes(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable")
}

/// `MemTotal` of /proc/meminfo in bytes.
pub fn memory_total_bytes() -> Option<u64> {
    meminfo_bytes(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal")
}

/// The 1, 5 and 15 minute load averages of /proc/loadavg.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// Whole seconds since boot, from /proc/uptime.
pub fn uptime_secs() -> Option<u64> {
    parse_uptime(&std::fs::read_to_string("/proc/uptime").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|field| field.parse::<f64>().ok().filter(|v| v.is_finite()));
    Some([fields.next()??, fields.next()??, fields.next()??])
}

fn parse_uptime(text: &str) -> Option<u64> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds as u64)
}

fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let rest = meminfo.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

fn cpu_has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

fn item(name: &str, status: CheckStatus, detail: impl Into<String>, fix: Option<&str>) -> HostCheckItem {
    HostCheckItem { name: name.to_string(), status, detail: detail.into(), fix: fix.map(str::to_string) }
}

fn qemu_item(binary: Result<&PathBuf, String>, version: Option<String>) -> HostCheckItem {
    match (binary, version) {
        (Ok(path), Some(version)) => {
            item(QEMU_BINARY, CheckStatus::Ok, format!("{} ({version})", path.display()), None)
        }
        (Ok(path), None) => item(
            QEMU_BINARY,
            CheckStatus::Fail,
            format!("{} does not run (`--version` failed)", path.display()),
            Some("reinstall it: apt-get install --reinstall qemu-system-x86"),
        ),
        (Err(reason), _) => item(QEMU_BINARY, CheckStatus::Fail, reason, Some("apt-get install qemu-system-x86")),
    }
}

fn qemu_img_item(path: Option<&Path>, version: Option<String>) -> HostCheckItem {
    match (path, version) {
        (Some(path), Some(version)) => item(QEMU_IMG, CheckStatus::Ok, format!("{} ({version})", path.display()), None),
        (Some(path), None) => item(
            QEMU_IMG,
            CheckStatus::Warn,
            format!("{} does not run (`--version` failed)", path.display()),
            Some("apt-get install --reinstall qemu-utils"),
        ),
        (None, _) => item(
            QEMU_IMG,
            CheckStatus::Warn,
            "not found: disk images cannot be created or converted",
            Some("apt-get install qemu-utils"),
        ),
    }
}

fn accel_item(accel: &str, reason: &str) -> HostCheckItem {
    if accel == Accel::Kvm.as_str() {
        return item("accelerator", CheckStatus::Ok, format!("auto → kvm: {reason}"), None);
    }
    // vireo-core's reason for a fallback already starts with "TCG: ".
    let reason = reason.strip_prefix("TCG: ").unwrap_or(reason);
    item(
        "accelerator",
        CheckStatus::Warn,
        format!("auto → tcg (emulation, much slower): {reason}"),
        Some(
            "run on a host with VT-x/AMD-V (on a cloud VM: enable nested virtualization) and load kvm_intel or kvm_amd",
        ),
    )
}

fn dev_kvm_item(facts: &HostAccelFacts) -> HostCheckItem {
    match (facts.dev_kvm_usable, facts.hardware_kvm()) {
        (true, Ok(_)) => item("/dev/kvm", CheckStatus::Ok, "present and read-write", None),
        (true, Err(reason)) => item(
            "/dev/kvm",
            CheckStatus::Warn,
            format!("present and read-write, but not usable for ordinary guests: {reason}"),
            None,
        ),
        (false, _) => item(
            "/dev/kvm",
            CheckStatus::Warn,
            "missing or not read-write for the daemon; VMs run with TCG",
            Some("modprobe kvm_intel (or kvm_amd), and run the daemon as root or in group kvm"),
        ),
    }
}

fn kvm_modules_item(facts: &HostAccelFacts) -> HostCheckItem {
    let loaded = if facts.kvm_modules.is_empty() { "none loaded".to_string() } else { facts.kvm_modules.join(", ") };
    match facts.hardware_kvm() {
        Ok(_) => item("kvm modules", CheckStatus::Ok, loaded, None),
        Err(reason) => item(
            "kvm modules",
            CheckStatus::Warn,
            format!("{loaded}: {reason}"),
            Some("modprobe kvm_intel (Intel) or kvm_amd (AMD) on a CPU with VT-x/AMD-V"),
        ),
    }
}

/// How the cgroup file systems are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cgroups {
    /// cgroup v2 only, with its enabled controllers.
    Unified {
        controllers: String,
    },
    /// v1 controllers plus a v2 hierarchy at `unified/`.
    Hybrid,
    Legacy,
    None,
}

fn detect_cgroups(root: &Path) -> Cgroups {
    if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        return Cgroups::Unified { controllers: controllers.trim().to_string() };
    }
    if root.join("unified/cgroup.controllers").exists() {
        return Cgroups::Hybrid;
    }
    if ["cpu", "memory", "cpu,cpuacct"].iter().any(|c| root.join(c).is_dir()) {
        return Cgroups::Legacy;
    }
    Cgroups::None
}

fn cgroups_item(cgroups: Cgroups) -> HostCheckItem {
    const FIX: &str = "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2)";
    match cgroups {
        Cgroups::Unified { controllers } => {
            item("cgroups", CheckStatus::Ok, format!("v2 (unified); controllers: {controllers}"), None)
        }
        Cgroups::Hybrid => item("cgroups", CheckStatus::Warn, "hybrid (v1 controllers, v2 at unified/)", Some(FIX)),
        Cgroups::Legacy => item("cgroups", CheckStatus::Warn, "v1 (legacy)", Some(FIX)),
        Cgroups::None => item("cgroups", CheckStatus::Warn, "no cgroup file system at /sys/fs/cgroup", Some(FIX)),
    }
}

/// Judges /proc/meminfo's `HugePages_Total`, `HugePages_Free` and `Hugepagesize`.
fn hugepages_item(meminfo: &str) -> HostCheckItem {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
    };
    let fix = Some("reserve some: echo 512 > /proc/sys/vm/nr_hugepages (or hugepages=N on the kernel command line)");
    match (field("HugePages_Total"), field("HugePages_Free"), field("Hugepagesize")) {
        (Some(0), _, size) => item(
            "hugepages",
            CheckStatus::Warn,
            format!("none reserved (page size {} kB); VMs use normal pages", size.unwrap_or(0)),
            fix,
        ),
        (Some(total), free, Some(size)) => item(
            "hugepages",
            CheckStatus::Ok,
            format!("{total} pages of {size} kB reserved, {} free", free.unwrap_or(0)),
            None,
        ),
        _ => item("hugepages", CheckStatus::Warn, "not reported by /proc/meminfo", fix),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_average_reads_the_first_three_fields() {
        assert_eq!(parse_loadavg("0.52 1.25 2.00 3/412 12345\n"), Some([0.52, 1.25, 2.0]));
        assert_eq!(parse_loadavg("0.52 1.25\n"), None);
        assert_eq!(parse_loadavg("x 1 2"), None);
    }

    #[test]
    fn uptime_is_the_first_field_in_whole_seconds() {
        assert_eq!(parse_uptime("12345.67 23456.78\n"), Some(12345));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("-3 1"), None);
    }

    use super::*;

    #[test]
    fn virt_flags_are_whole_words() {
        assert!(cpu_has_virt_flag("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virt_flag("flags\t: svm lm\n"));
        assert!(!cpu_has_virt_flag("flags\t: fpu vmxnet svmx\n"));
        assert!(!cpu_has_virt_flag("model name : vmx\n"));
    }

    #[test]
    fn hugepages_zero_warns_with_a_fix() {
        let meminfo =
            "MemTotal: 4000000 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n";
        let check = hugepages_item(meminfo);
        assert_eq!(check.status, CheckStatus::Warn);
        assert!(check.detail.contains("2048 kB"), "{}", check.detail);
        assert!(check.fix.unwrap().contains("nr_hugepages"));
        let reserved = meminfo.replace("Total:       0", "Total:     512").replace("Free:        0", "Free:      500");
        let check = hugepages_item(&reserved);
        assert_eq!(check.status, CheckStatus::Ok);
        assert_eq!(check.detail, "512 pages of 2048 kB reserved, 500 free");
        assert_eq!(hugepages_item("").status, CheckStatus::Warn);
    }

    #[test]
    fn cgroup_modes_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect_cgroups(dir.path()), Cgroups::None);
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        assert_eq!(detect_cgroups(dir.path()), Cgroups::Legacy);
        std::fs::create_dir(dir.path().join("unified")).unwrap();
        std::fs::write(dir.path().join("unified/cgroup.controllers"), "memory pids\n").unwrap();
        assert_eq!(detect_cgroups(dir.path()), Cgroups::Hybrid);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu io memory\n").unwrap();
        let unified = detect_cgroups(dir.path());
        assert_eq!(unified, Cgroups::Unified { controllers: "cpu io memory".into() });
        assert_eq!(cgroups_item(unified).status, CheckStatus::Ok);
        assert_eq!(cgroups_item(Cgroups::Hybrid).status, CheckStatus::Warn);
    }

    #[test]
    fn paravirtual_kvm_is_flagged_in_device_and_module_items() {
        let facts = HostAccelFacts {
            dev_kvm_usable: true,
            kvm_modules: vec!["kvm".into(), "kvm_pvm".into()],
            cpu_has_virt_flag: false,
        };
        let dev = dev_kvm_item(&facts);
        assert_eq!(dev.status, CheckStatus::Warn);
        assert!(dev.detail.contains("kvm_pvm"), "{}", dev.detail);
        let modules = kvm_modules_item(&facts);
        assert!(modules.detail.starts_with("kvm, kvm_pvm: "), "{}", modules.detail);
        let hardware =
            HostAccelFacts { kvm_modules: vec!["kvm".into(), "kvm_intel".into()], cpu_has_virt_flag: true, ..facts };
        assert_eq!(dev_kvm_item(&hardware).status, CheckStatus::Ok);
        assert_eq!(kvm_modules_item(&hardware).status, CheckStatus::Ok);
    }

    #[test]
    fn missing_qemu_fails_with_the_install_command() {
        let check = qemu_item(Err("qemu-system-x86_64 is not in PATH".into()), None);
        assert_eq!(check.status, CheckStatus::Fail);
        assert_eq!(check.fix.as_deref(), Some("apt-get install qemu-system-x86"));
        let ok =
            qemu_item(Ok(&PathBuf::from("/usr/bin/qemu-system-x86_64")), Some("QEMU emulator version 7.2.22".into()));
        assert_eq!(ok.status, CheckStatus::Ok);
        assert_eq!(qemu_img_item(None, None).fix.as_deref(), Some("apt-get install qemu-utils"));
    }

    #[test]
    fn tcg_choice_is_a_warning_with_the_reason() {
        let check = accel_item("tcg", "TCG: neither kvm_intel nor kvm_amd is loaded");
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(check.detail, "auto → tcg (emulation, much slower): neither kvm_intel nor kvm_amd is loaded");
        assert_eq!(accel_item("kvm", "hardware KVM through kvm_intel").status, CheckStatus::Ok);
    }

    #[test]
    fn available_memory_is_read_in_bytes() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(20_000_000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_bytes("MemTotal: 1 kB\n", "MemAvailable"), None);
    }
}
