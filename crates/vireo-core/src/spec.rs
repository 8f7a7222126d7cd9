//! Reading and validating VM specs.
//!
//! Every error names the field at fault (`boot.kernel`, `disks[1].path`) and
//! the reason, so the CLI and the web console can point at it.

use std::collections::HashSet;
use std::path::Path;

use vireo_api::size::{MIB, TIB};
use vireo_api::{ByteSize, DiskFormat, VmSpec};

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
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| path_error(&e, &e.inner().to_string()))
}

fn path_error<E>(err: &serde_path_to_error::Error<E>, reason: &str) -> SpecError {
    let field = err.path().to_string();
    let field = if field == "." { String::new() } else { field };
    SpecError::new(field, reason)
}

/// Checks every field of `spec`. `file_exists` answers whether a host path is an existing regular file.
pub fn validate_spec(spec: &VmSpec, file_exists: &dyn Fn(&Path) -> bool) -> Result<(), SpecError> {
    validate_name(&spec.name).map_err(|reason| SpecError::new("name", reason))?;
    validate_vcpus(spec.vcpus)?;
    validate_memory(spec.memory)?;
    validate_boot(spec, file_exists)?;
    validate_disks(spec, file_exists)?;
    validate_console_log(spec.console.log_size)
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

fn validate_boot(spec: &VmSpec, file_exists: &dyn Fn(&Path) -> bool) -> Result<(), SpecError> {
    let boot = &spec.boot;
    match &boot.kernel {
        Some(kernel) => check_host_file("boot.kernel", kernel, file_exists)?,
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
        check_host_file("boot.initrd", initrd, file_exists)?;
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

fn validate_disks(spec: &VmSpec, file_exists: &dyn Fn(&Path) -> bool) -> Result<(), SpecError> {
    if spec.disks.len() > MAX_DISKS {
        return Err(SpecError::new("disks", format!("at most {MAX_DISKS} disks, got {}", spec.disks.len())));
    }
    let mut seen = HashSet::new();
    for (index, disk) in spec.disks.iter().enumerate() {
        let field = format!("disks[{index}].path");
        check_host_file(&field, &disk.path, file_exists)?;
        if !seen.insert(&disk.path) {
            return Err(SpecError::new(field, format!("{} is attached twice", disk.path.display())));
        }
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
fn check_host_file(field: &str, path: &Path, file_exists: &dyn Fn(&Path) -> bool) -> Result<(), SpecError> {
    if !path.is_absolute() {
        return Err(SpecError::new(field, format!("must be an absolute path, got '{}'", path.display())));
    }
    if path.to_str().is_none() {
        return Err(SpecError::new(field, "must be valid UTF-8"));
    }
    if !file_exists(path) {
        return Err(SpecError::new(field, format!("{} does not exist or is not a regular file", path.display())));
    }
    Ok(())
}

/// The disk format in effect: the one given, else guessed from the file name.
pub fn effective_disk_format(disk: &vireo_api::DiskSpec) -> DiskFormat {
    disk.format.unwrap_or_else(|| match disk.path.extension().and_then(|e| e.to_str()) {
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

    fn all_exist(_: &Path) -> bool {
        true
    }

    fn check(text: &str) -> Result<VmSpec, SpecError> {
        let spec = parse_spec_toml(text)?;
        validate_spec(&spec, &all_exist)?;
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
        assert_eq!(effective_disk_format(&spec.disks[0]), DiskFormat::Qcow2);
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
    fn boot_needs_existing_absolute_files() {
        assert_eq!(field_of(&GOOD.replace("/k/vmlinuz", "vmlinuz")), "boot.kernel");
        let spec = parse_spec_toml(GOOD).unwrap();
        let err = validate_spec(&spec, &|p: &Path| p != Path::new("/k/initrd")).unwrap_err();
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
        assert_eq!(field_of(&twice), "disks[1].path");
        assert_eq!(field_of(&GOOD.replace("console=ttyS0", "a\\nb")), "boot.cmdline");
    }

    #[test]
    fn json_errors_carry_paths_too() {
        let err = parse_spec_json(br#"{"name":"a","memory":"64M","disks":[{"path":"/x","bogus":1}]}"#).unwrap_err();
        assert_eq!(err.field, "disks[0].bogus");
        let err = parse_spec_json(b"{not json").unwrap_err();
        assert!(!err.reason.is_empty());
    }
}
