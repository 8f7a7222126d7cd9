//! Reading and validating VM specs.
//!
//! Every error names the field at fault (`boot.kernel`, `disks[1].path`) and
//! the reason, so the CLI and the web console can point at it.

use std::collections::HashSet;
use std::path::Path;

use crate::mac::MacAddr;
use vireo_api::size::{MIB, TIB};
use vireo_api::{ByteSize, DiskAio, DiskCache, DiskFormat, DiskSpec, Firmware, MAX_HOTPLUG_PORTS, NicSpec, VmSpec};

/// A spec that cannot be accepted, and which field is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// Path of the field, e.g. `memory` or `disks[0].path`; empty when the document itself is unreadable.
    pub field: String,
    pub reason: String,
}

impl SpecError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError { field: field.into(), reason: reason.into() }
    }
}

pub const MAX_NAME_LEN: usize = 63;
pub const MAX_VCPUS: u32 = 255;
pub const MIN_MEMORY: u64 = 16 * MIB;
pub const MAX_MEMORY: u64 = TIB;
pub const MAX_DISKS: usize = 16;
pub const MAX_CMDLINE_LEN: usize = 4096;
pub const MIN_CONSOLE_LOG: u64 = 4 * 1024;
pub const MAX_CONSOLE_LOG: u64 = 64 * MIB;

/// Reads a spec from TOML, reporting the path of an unreadable or unknown field.
pub fn parse_spec_toml(text: &str) -> Result<VmSpec, SpecError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| SpecError::new("", e.message().to_string()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| path_error(&e, e.inner().message()))
}

/// Reads a spec from JSON, reporting the path of an unreadable or unknown field.
pub fn parse_spec_json(text: &[u8]) -> Result<VmSpec, SpecError> {
    parse_json(text)
}

/// Reads any request document from JSON, reporting the path of an unreadable or unknown field.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, SpecError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| path_error(&e, &e.inner().to_string()))
}

fn path_error<E>(err: &serde_path_to_error::Error<E>, reason: &str) -> SpecError {
    let field = err.path().to_string();
    let field = if field == "." { String::new() } else { field };
    SpecError::new(field, reason)
}

/// What validation needs to know about the host; the daemon answers from
/// the filesystem and its store, tests answer from tables.
pub trait SpecContext {
    /// Whether a host path names an existing regular file.
    fn file_exists(&self, path: &Path) -> bool;
    /// Whether the volume `pool/name` exists.
    fn volume_exists(&self, pool: &str, name: &str) -> bool;
    /// Whether a network of that name exists.
    fn network_exists(&self, name: &str) -> bool;
}

/// Checks every field of `spec` against the host described by `host`.
pub fn validate_spec(spec: &VmSpec, host: &dyn SpecContext) -> Result<(), SpecError> {
    validate_name(&spec.name).map_err(|reason| SpecError::new("name", reason))?;
    validate_vcpus(spec.vcpus)?;
    validate_memory(spec.memory)?;
    validate_boot(spec, host)?;
    validate_machine(spec)?;
    validate_disks(&spec.disks, host)?;
    validate_nics(&spec.nics, host)?;
    validate_console_log(spec.console.log_size)
}

pub const MAX_NICS: usize = 8;

/// Checks a VM's NICs: known networks, well-formed unicast MACs, no MAC twice.
pub fn validate_nics(nics: &[NicSpec], host: &dyn SpecContext) -> Result<(), SpecError> {
    if nics.len() > MAX_NICS {
        return Err(SpecError::new("nics", format!("at most {MAX_NICS} NICs, got {}", nics.len())));
    }
    let mut macs = HashSet::new();
    for (index, nic) in nics.iter().enumerate() {
        let field = format!("nics[{index}]");
        validate_name(&nic.network).map_err(|reason| SpecError::new(format!("{field}.network"), reason))?;
        if !host.network_exists(&nic.network) {
            return Err(SpecError::new(format!("{field}.network"), format!("network {} does not exist", nic.network)));
        }
        if let Some(mac) = &nic.mac {
            let parsed = MacAddr::parse_nic(mac).map_err(|err| SpecError::new(format!("{field}.mac"), err.reason))?;
            if !macs.insert(parsed) {
                return Err(SpecError::new(format!("{field}.mac"), format!("{mac} is used by another NIC")));
            }
        }
    }
    Ok(())
}

/// Names become directory names and database keys: keep them to a safe alphabet.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters, got {}", name.len()));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("'{name}' must start with a letter or digit"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("'{name}' contains '{bad}'; use letters, digits, '-' and '_'"));
    }
    Ok(())
}

fn validate_vcpus(vcpus: u32) -> Result<(), SpecError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(SpecError::new("vcpus", format!("must be between 1 and {MAX_VCPUS}, got {vcpus}")));
    }
    Ok(())
}

fn validate_memory(memory: ByteSize) -> Result<(), SpecError> {
    let bytes = memory.bytes();
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        return Err(SpecError::new("memory", format!("must be between 16MiB and 1TiB, got {memory}")));
    }
    if !bytes.is_multiple_of(MIB) {
        return Err(SpecError::new("memory", format!("must be a whole number of MiB, got {memory}")));
    }
    Ok(())
}

fn validate_boot(spec: &VmSpec, host: &dyn SpecContext) -> Result<(), SpecError> {
    let boot = &spec.boot;
    match &boot.kernel {
        Some(kernel) => check_host_file("boot.kernel", kernel, host)?,
        None => {
            if boot.initrd.is_some() {
                return Err(SpecError::new("boot.initrd", "needs boot.kernel"));
            }
            if boot.cmdline.is_some() {
                return Err(SpecError::new("boot.cmdline", "needs boot.kernel"));
            }
            if spec.disks.is_empty() {
                return Err(SpecError::new("boot", "nothing to boot: give boot.kernel or at least one disk"));
            }
        }
    }
    if let Some(initrd) = &boot.initrd {
        check_host_file("boot.initrd", initrd, host)?;
    }
    if let Some(cmdline) = &boot.cmdline {
        if cmdline.len() > MAX_CMDLINE_LEN {
            return Err(SpecError::new("boot.cmdline", format!("must be at most {MAX_CMDLINE_LEN} bytes")));
        }
        if cmdline.chars().any(char::is_control) {
            return Err(SpecError::new("boot.cmdline", "must not contain control characters or newlines"));
        }
    }
    Ok(())
}

fn validate_machine(spec: &VmSpec) -> Result<(), SpecError> {
    let machine = &spec.machine;
    if machine.firmware == Firmware::Qboot && spec.boot.kernel.is_none() {
        return Err(SpecError::new("machine.firmware", "qboot boots no disks: it needs boot.kernel"));
    }
    let mut seen = HashSet::new();
    if let Some(twice) = machine.legacy.iter().find(|hardware| !seen.insert(**hardware)) {
        return Err(SpecError::new("machine.legacy", format!("'{}' is given twice", twice.as_str())));
    }
    if machine.hotplug_ports() > MAX_HOTPLUG_PORTS {
        return Err(SpecError::new(
            "machine.hotplug_ports",
            format!("at most {MAX_HOTPLUG_PORTS}, got {}", machine.hotplug_ports()),
        ));
    }
    Ok(())
}

/// Checks a VM's disks: each one alone, then that no volume or file is attached twice.
pub fn validate_disks(disks: &[DiskSpec], host: &dyn SpecContext) -> Result<(), SpecError> {
    if disks.len() > MAX_DISKS {
        return Err(SpecError::new("disks", format!("at most {MAX_DISKS} disks, got {}", disks.len())));
    }
    let mut seen = HashSet::new();
    let mut boot_orders = HashSet::new();
    for (index, disk) in disks.iter().enumerate() {
        let field = format!("disks[{index}]");
        validate_disk(&field, disk, host)?;
        let source = disk_source(disk);
        if !seen.insert(source.clone()) {
            return Err(SpecError::new(field, format!("{source} is attached twice")));
        }
        if let Some(order) = disk.boot_order
            && !boot_orders.insert(order)
        {
            return Err(SpecError::new(format!("{field}.boot_order"), format!("{order} is used by another disk")));
        }
    }
    Ok(())
}

/// Checks one disk; `field` is its path in the spec, e.g. `disks[2]`.
pub fn validate_disk(field: &str, disk: &DiskSpec, host: &dyn SpecContext) -> Result<(), SpecError> {
    match (&disk.volume, &disk.path) {
        (Some(_), Some(_)) => return Err(SpecError::new(field, "give either volume or path, not both")),
        (None, None) => return Err(SpecError::new(field, "needs a volume (POOL/NAME) or a path")),
        (Some(volume), None) => {
            let field = format!("{field}.volume");
            let (pool, name) = parse_volume_ref(volume).map_err(|reason| SpecError::new(&field, reason))?;
            if disk.format.is_some() {
                return Err(SpecError::new(&field, "a volume has its own format; drop `format`"));
            }
            if !host.volume_exists(pool, name) {
                return Err(SpecError::new(field, format!("volume {volume} does not exist")));
            }
        }
        (None, Some(path)) => check_host_file(&format!("{field}.path"), path, host)?,
    }
    if disk.aio == DiskAio::Native && !matches!(disk.cache, DiskCache::None | DiskCache::Directsync) {
        return Err(SpecError::new(format!("{field}.aio"), "native needs cache \"none\" or \"directsync\""));
    }
    if disk.boot_order == Some(0) {
        return Err(SpecError::new(format!("{field}.boot_order"), "must be 1 or more"));
    }
    Ok(())
}

/// What a disk refers to, for messages and duplicate checks.
pub fn disk_source(disk: &DiskSpec) -> String {
    match (&disk.volume, &disk.path) {
        (Some(volume), _) => format!("volume {volume}"),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => "nothing".to_string(),
    }
}

/// Splits `POOL/NAME`, checking both names.
pub fn parse_volume_ref(text: &str) -> Result<(&str, &str), String> {
    let (pool, name) = text.split_once('/').ok_or_else(|| format!("'{text}' is not of the form POOL/NAME"))?;
    validate_name(pool).map_err(|reason| format!("pool name {reason}"))?;
    validate_volume_name(name).map_err(|reason| format!("volume name {reason}"))?;
    Ok((pool, name))
}

pub const MAX_VOLUME_NAME_LEN: usize = 128;

/// Volume names are file names inside the pool directory: no `/`, and no
/// leading `.` (so never `.` or `..`), which rules out path traversal.
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_VOLUME_NAME_LEN {
        return Err(format!("must be at most {MAX_VOLUME_NAME_LEN} characters, got {}", name.len()));
    }
    if name.starts_with('.') {
        return Err(format!("'{name}' must not start with '.'"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("'{name}' contains '{bad}'; use letters, digits, '.', '-' and '_'"));
    }
    Ok(())
}

fn validate_console_log(size: ByteSize) -> Result<(), SpecError> {
    if !(MIN_CONSOLE_LOG..=MAX_CONSOLE_LOG).contains(&size.bytes()) {
        return Err(SpecError::new("console.log_size", format!("must be between 4KiB and 64MiB, got {size}")));
    }
    Ok(())
}

/// Host paths go to QEMU inside JSON, so they must be absolute UTF-8 and name an existing file.
fn check_host_file(field: &str, path: &Path, host: &dyn SpecContext) -> Result<(), SpecError> {
    if !path.is_absolute() {
        return Err(SpecError::new(field, format!("must be an absolute path, got '{}'", path.display())));
    }
    if path.to_str().is_none() {
        return Err(SpecError::new(field, "must be valid UTF-8"));
    }
    if !host.file_exists(path) {
        return Err(SpecError::new(field, format!("{} does not exist or is not a regular file", path.display())));
    }
    Ok(())
}

/// The format of a `path` disk: the one given, else guessed from the file name.
pub fn path_disk_format(path: &Path, format: Option<DiskFormat>) -> DiskFormat {
    format.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => DiskFormat::Qcow2,
        _ => DiskFormat::Raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "web1"
        vcpus = 2
        memory = "256MiB"
        accel = "tcg"
        [boot]
        kernel = "/k/vmlinuz"
        initrd = "/k/initrd"
        cmdline = "console=ttyS0"
        [[disks]]
        path = "/d/a.qcow2"
    "#;

    /// A host where every file exists, and the volumes `default/base.qcow2` and `default/data`.
    struct FakeHost {
        missing_file: Option<&'static str>,
    }

    impl SpecContext for FakeHost {
        fn file_exists(&self, path: &Path) -> bool {
            self.missing_file.is_none_or(|missing| path != Path::new(missing))
        }
        fn volume_exists(&self, pool: &str, name: &str) -> bool {
            pool == "default" && (name == "base.qcow2" || name == "data")
        }
        fn network_exists(&self, name: &str) -> bool {
            name == "lan"
        }
    }

    const HOST: FakeHost = FakeHost { missing_file: None };

    fn check(text: &str) -> Result<VmSpec, SpecError> {
        let spec = parse_spec_toml(text)?;
        validate_spec(&spec, &HOST)?;
        Ok(spec)
    }

    fn field_of(text: &str) -> String {
        check(text).expect_err("spec should be refused").field
    }

    #[test]
    fn accepts_a_good_spec_with_defaults() {
        let spec = check(GOOD).unwrap();
        assert_eq!(spec.memory, ByteSize::mib(256));
        assert_eq!(spec.console.log_size, ByteSize::mib(1));
        let disk = &spec.disks[0];
        assert_eq!(path_disk_format(disk.path.as_deref().unwrap(), disk.format), DiskFormat::Qcow2);
        assert_eq!(disk.cache, DiskCache::Writeback);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let err = check(&GOOD.replace("vcpus = 2", "vcpu = 2")).unwrap_err();
        assert_eq!(err.field, "vcpu");
        assert!(err.reason.contains("unknown field"), "{err}");
        assert_eq!(field_of(&GOOD.replace("cmdline", "cmdlin")), "boot.cmdlin");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "../etc", "a/b", "-x", "a b", "é", &"x".repeat(64)] {
            let text = GOOD.replace("\"web1\"", &format!("{name:?}"));
            assert_eq!(field_of(&text), "name", "name {name:?} should be refused");
        }
    }

    #[test]
    fn sizes_and_counts_are_range_checked() {
        assert_eq!(field_of(&GOOD.replace("vcpus = 2", "vcpus = 0")), "vcpus");
        assert_eq!(field_of(&GOOD.replace("vcpus = 2", "vcpus = 1000")), "vcpus");
        assert_eq!(field_of(&GOOD.replace("\"256MiB\"", "\"1MiB\"")), "memory");
        assert_eq!(field_of(&GOOD.replace("\"256MiB\"", "\"2TiB\"")), "memory");
        assert_eq!(field_of(&GOOD.replace("\"256MiB\"", "\"256XB\"")), "memory");
        assert_eq!(field_of(&GOOD.replace("\"256MiB\"", "268435457")), "memory");
        assert_eq!(field_of(&format!("{GOOD}\n[console]\nlog_size = 10")), "console.log_size");
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert_eq!(field_of(&GOOD.replace("vcpus = 2", "vcpus = \"two\"")), "vcpus");
        assert_eq!(field_of(&GOOD.replace("accel = \"tcg\"", "accel = \"xen\"")), "accel");
    }

    #[test]
    fn machine_defaults_are_lean_and_checked() {
        let spec = check(GOOD).unwrap();
        assert!(spec.boot.pvh);
        assert_eq!(spec.machine.firmware, Firmware::Auto);
        assert!(spec.machine.legacy.is_empty());
        let legacy =
            check(&format!("{GOOD}\n[machine]\nfirmware = \"seabios\"\nlegacy = [\"hpet\", \"ps2\"]")).unwrap();
        assert!(legacy.machine.has_legacy(vireo_api::LegacyHardware::Ps2));
        assert!(!legacy.machine.has_legacy(vireo_api::LegacyHardware::Sata));
        assert_eq!(field_of(&format!("{GOOD}\n[machine]\nlegacy = [\"hpet\", \"hpet\"]")), "machine.legacy");
        assert_eq!(field_of(&format!("{GOOD}\n[machine]\nlegacy = [\"floppy\"]")), "machine.legacy[0]");
        assert_eq!(check(&format!("{GOOD}\n[machine]\nhotplug_ports = 0")).unwrap().machine.hotplug_ports(), 0);
        assert_eq!(check(&format!("{GOOD}\n[machine]\nhotplug_ports = 8")).unwrap().machine.hotplug_ports(), 8);
        assert_eq!(field_of(&format!("{GOOD}\n[machine]\nhotplug_ports = 9")), "machine.hotplug_ports");
        let no_kernel = "name = \"disk-boot\"\nmemory = \"256MiB\"\n[[disks]]\npath = \"/d/a.qcow2\"";
        check(no_kernel).unwrap();
        assert_eq!(field_of(&format!("{no_kernel}\n[machine]\nfirmware = \"qboot\"")), "machine.firmware");
    }

    #[test]
    fn a_display_is_optional_and_named_lowercase() {
        let spec = check(GOOD).unwrap();
        assert!(spec.display.is_none());
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("display").is_none(), "a headless spec is stored as before: {json}");
        let std = check(&format!("{GOOD}\n[display]\nvga = \"std\"")).unwrap();
        assert_eq!(std.display.vga, vireo_api::Vga::Std);
        assert_eq!(serde_json::to_value(&std).unwrap()["display"], serde_json::json!({"vga": "std"}));
        assert_eq!(check(&format!("{GOOD}\n[display]\nvga = \"virtio\"")).unwrap().display.vga, vireo_api::Vga::Virtio);
        assert!(check(&format!("{GOOD}\n[display]\nvga = \"none\"")).unwrap().display.is_none());
        assert_eq!(field_of(&format!("{GOOD}\n[display]\nvga = \"cirrus\"")), "display.vga");
        assert_eq!(field_of(&format!("{GOOD}\n[display]\nvnc = true")), "display.vnc");
    }

    #[test]
    fn boot_needs_existing_absolute_files() {
        assert_eq!(field_of(&GOOD.replace("/k/vmlinuz", "vmlinuz")), "boot.kernel");
        let spec = parse_spec_toml(GOOD).unwrap();
        let err = validate_spec(&spec, &FakeHost { missing_file: Some("/k/initrd") }).unwrap_err();
        assert_eq!(err.field, "boot.initrd");
        assert!(err.reason.contains("does not exist"));
    }

    #[test]
    fn initrd_without_kernel_is_refused() {
        let text = r#"
            name = "a"
            memory = "64M"
            [boot]
            initrd = "/k/initrd"
            [[disks]]
            path = "/d/a.raw"
        "#;
        assert_eq!(field_of(text), "boot.initrd");
    }

    #[test]
    fn nothing_to_boot_is_refused() {
        assert_eq!(field_of("name = \"a\"\nmemory = \"64M\""), "boot");
    }

    #[test]
    fn duplicate_disks_and_control_chars_are_refused() {
        let twice = format!("{GOOD}\n[[disks]]\npath = \"/d/a.qcow2\"");
        assert_eq!(field_of(&twice), "disks[1]");
        assert_eq!(field_of(&GOOD.replace("console=ttyS0", "a\\nb")), "boot.cmdline");
    }

    #[test]
    fn volume_disks_are_checked() {
        let with = |disk: &str| format!("{GOOD}\n[[disks]]\n{disk}");
        assert!(check(&with("volume = \"default/base.qcow2\"")).is_ok());
        assert_eq!(field_of(&with("volume = \"default/nope\"")), "disks[1].volume");
        assert_eq!(field_of(&with("volume = \"default/../etc/passwd\"")), "disks[1].volume");
        assert_eq!(field_of(&with("volume = \"default/.hidden\"")), "disks[1].volume");
        assert_eq!(field_of(&with("volume = \"noslash\"")), "disks[1].volume");
        assert_eq!(field_of(&with("volume = \"default/data\"\nformat = \"raw\"")), "disks[1].volume");
        assert_eq!(field_of(&with("volume = \"default/data\"\npath = \"/x\"")), "disks[1]");
        assert_eq!(field_of(&with("readonly = true")), "disks[1]");
        let twice = with("volume = \"default/data\"\n[[disks]]\nvolume = \"default/data\"");
        assert_eq!(field_of(&twice), "disks[2]");
    }

    #[test]
    fn disk_options_are_checked() {
        let with = |extra: &str| format!("{GOOD}\n{extra}");
        assert!(check(&with("cache = \"none\"\naio = \"native\"\nboot_order = 1")).is_ok());
        assert_eq!(field_of(&with("aio = \"native\"")), "disks[0].aio");
        assert_eq!(field_of(&with("cache = \"sometimes\"")), "disks[0].cache");
        assert_eq!(field_of(&with("boot_order = 0")), "disks[0].boot_order");
        let both_first = format!("{}\n[[disks]]\npath = \"/d/b.raw\"\nboot_order = 1", with("boot_order = 1"));
        assert_eq!(field_of(&both_first), "disks[1].boot_order");
    }

    #[test]
    fn nics_are_checked() {
        let with = |nic: &str| format!("{GOOD}\n[[nics]]\n{nic}");
        assert!(check(&with("network = \"lan\"\nmac = \"52:54:00:AB:cd:01\"")).is_ok());
        assert_eq!(field_of(&with("network = \"wan\"")), "nics[0].network");
        assert_eq!(field_of(&with("network = \"lan\"\nmac = \"52:54:00:ab:cd\"")), "nics[0].mac");
        assert_eq!(field_of(&with("network = \"lan\"\nmac = \"01:00:5e:00:00:01\"")), "nics[0].mac");
        assert_eq!(field_of(&with("network = \"lan\"\nmodel = \"e1000\"")), "nics[0].model");
        let twice = format!(
            "{}\n[[nics]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:01\"",
            with("network = \"lan\"\nmac = \"52:54:00:00:00:01\"")
        );
        assert_eq!(field_of(&twice), "nics[1].mac");
    }

    #[test]
    fn volume_names_cannot_escape_the_pool() {
        for bad in ["", ".", "..", "../x", "a/b", ".x", "a b", &"v".repeat(129)] {
            assert!(validate_volume_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_volume_name("disk-1.qcow2").is_ok());
        assert_eq!(parse_volume_ref("p/v.img"), Ok(("p", "v.img")));
    }

    #[test]
    fn json_errors_carry_paths_too() {
        let err = parse_spec_json(br#"{"name":"a","memory":"64M","disks":[{"path":"/x","bogus":1}]}"#).unwrap_err();
        assert_eq!(err.field, "disks[0].bogus");
        let err = parse_spec_json(b"{not json").unwrap_err();
        assert!(!err.reason.is_empty());
    }
}
