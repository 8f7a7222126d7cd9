//! Building a `VmSpec` for `vm create`, from flags or from a TOML file, and checking it
//! locally so that an invalid spec is reported before anything is sent to the daemon.

use std::path::Path;

use vireo_api::{BootSpec, ByteSize, ConsoleSpec, DiskSpec, DisplaySpec, MachineSpec, NicSpec, VmSpec};
use vireo_client::Endpoint;
use vireo_core::SpecError;

use crate::cli::CreateArgs;
use crate::paths::absolute;

/// Whether host paths in the spec can be checked from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCheck {
    /// The daemon runs on this host (Unix socket): kernel and disk files must exist here.
    Local,
    /// The daemon is elsewhere (`--url`): its host checks the files.
    Remote,
}

impl FileCheck {
    /// Over the Unix socket the daemon shares this host's filesystem; over TCP it may not.
    pub fn for_endpoint(endpoint: &Endpoint) -> Self {
        match endpoint {
            Endpoint::Unix(_) => FileCheck::Local,
            Endpoint::Tcp { .. } => FileCheck::Remote,
        }
    }
}

/// The spec the flags describe, with relative paths made absolute against `cwd`.
pub fn spec_from_flags(args: &CreateArgs, cwd: &Path) -> Result<VmSpec, String> {
    let memory = args.memory.as_deref().ok_or("--memory is required")?;
    let memory: ByteSize = memory.parse().map_err(|e| format!("--memory: {e}"))?;
    let log_size = match &args.console_log_size {
        Some(size) => size.parse().map_err(|e| format!("--console-log-size: {e}"))?,
        None => ConsoleSpec::default().log_size,
    };
    let disks = args.disks.iter().map(|disk| parse_disk(disk, cwd)).collect::<Result<Vec<_>, _>>()?;
    let nics = args.nics.iter().map(|nic| parse_nic(nic)).collect::<Result<Vec<_>, _>>()?;
    let machine = MachineSpec {
        firmware: match &args.firmware {
            Some(name) => parse_choice("firmware", name).map_err(|e| format!("--firmware: {e}"))?,
            None => Default::default(),
        },
        legacy: args
            .legacy
            .iter()
            .map(|name| parse_choice("legacy hardware", name).map_err(|e| format!("--legacy: {e}")))
            .collect::<Result<_, _>>()?,
        hotplug_ports: args.hotplug_ports,
    };
    let display = DisplaySpec {
        vga: match &args.display {
            Some(name) => parse_choice("display", name).map_err(|e| format!("--display: {e}"))?,
            None => Default::default(),
        },
    };
    Ok(VmSpec {
        name: args.name.clone(),
        vcpus: args.vcpus.unwrap_or(1),
        memory,
        accel: args.accel.map(Into::into).unwrap_or_default(),
        boot: BootSpec {
            kernel: args.kernel.as_deref().map(|p| absolute(cwd, p)),
            initrd: args.initrd.as_deref().map(|p| absolute(cwd, p)),
            cmdline: args.cmdline.clone(),
            pvh: !args.no_pvh,
        },
        disks,
        nics,
        console: ConsoleSpec { log_size },
        machine,
        display,
    })
}

/// `NETWORK[,mac=MAC][,model=virtio]`.
pub fn parse_nic(value: &str) -> Result<NicSpec, String> {
    let fail = |reason: String| format!("--nic '{value}': {reason}");
    let mut parts = value.split(',');
    let network = parts.next().unwrap_or_default();
    if network.is_empty() {
        return Err(fail("no network name".into()));
    }
    let mut nic = NicSpec { network: network.to_string(), ..NicSpec::default() };
    for option in parts {
        match option.split_once('=') {
            Some(("mac", mac)) => nic.mac = Some(mac.to_string()),
            Some(("model", model)) => nic.model = parse_choice("model", model).map_err(fail)?,
            _ => return Err(fail(format!("unknown option '{option}' (use mac= or model=)"))),
        }
    }
    Ok(nic)
}

/// Validates a spec built from flags, naming the flag at fault.
pub fn validate_flags(spec: &VmSpec, check: FileCheck) -> Result<(), String> {
    validate(spec, check).map_err(|err| {
        let reason = err.reason.replace("boot.kernel", "--kernel");
        match err.field.as_str() {
            "boot" => "nothing to boot: give --kernel or at least one --disk".to_string(),
            field => format!("{}: {reason}", flag_for_field(field)),
        }
    })
}

/// The command-line flag that sets a spec field.
fn flag_for_field(field: &str) -> &str {
    match field {
        "vcpus" => "--vcpus",
        "memory" => "--memory",
        "accel" => "--accel",
        "boot.kernel" => "--kernel",
        "boot.initrd" => "--initrd",
        "boot.cmdline" => "--cmdline",
        "console.log_size" => "--console-log-size",
        disk if disk.starts_with("disks") => "--disk",
        other => other,
    }
}

/// Reads `text` (the contents of `file`) as the spec of VM `name`: the file's `name` may be
/// omitted but must otherwise agree. Errors read `FILE: FIELD: REASON`.
pub fn spec_from_file(name: &str, file: &str, text: &str, check: FileCheck) -> Result<VmSpec, String> {
    let fail = |field: &str, reason: &str| {
        if field.is_empty() { format!("{file}: {reason}") } else { format!("{file}: {field}: {reason}") }
    };
    let mut table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        let line = err.span().and_then(|span| text.get(..span.start)).map(|before| before.matches('\n').count() + 1);
        let reason = err.message().trim();
        fail(&line.map(|n| format!("line {n}")).unwrap_or_default(), reason)
    })?;
    match table.get("name").and_then(toml::Value::as_str) {
        Some(inner) if inner != name => {
            return Err(fail("name", &format!("is '{inner}' but the command line says '{name}'")));
        }
        Some(_) => {}
        None if table.contains_key("name") => {} // not a string: let the spec parser explain
        None => {
            table.insert("name".into(), toml::Value::String(name.to_string()));
        }
    }
    let text = toml::to_string(&table).map_err(|e| fail("", &e.to_string()))?;
    let spec = vireo_core::parse_spec_toml(&text).map_err(|e| fail(&e.field, &e.reason))?;
    validate(&spec, check).map_err(|e| fail(&e.field, &e.reason))?;
    Ok(spec)
}

/// What the CLI can check before sending a spec: local files (over the Unix
/// socket the daemon shares our filesystem); volumes and networks only the daemon knows.
struct LocalHost(FileCheck);

impl vireo_core::SpecContext for LocalHost {
    fn file_exists(&self, path: &Path) -> bool {
        match self.0 {
            FileCheck::Local => path.is_file(),
            FileCheck::Remote => true,
        }
    }

    fn volume_exists(&self, _pool: &str, _name: &str) -> bool {
        true
    }

    fn network_exists(&self, _name: &str) -> bool {
        true
    }
}

fn validate(spec: &VmSpec, check: FileCheck) -> Result<(), SpecError> {
    vireo_core::validate_spec(spec, &LocalHost(check))
}

/// `POOL/NAME` or `PATH`, then `[,format=raw|qcow2][,readonly=on|off][,cache=MODE][,aio=MODE][,boot_order=N]`.
/// A value with exactly one `/` that starts with neither `/` nor `.` names a volume;
/// anything else is a file path. A literal ',' in PATH is written ',,' as in QEMU.
pub fn parse_disk(value: &str, cwd: &Path) -> Result<DiskSpec, String> {
    parse_disk_named("--disk", value, cwd)
}

/// The disk of `vm disk attach`, written as for `--disk` and checked as far as this host can.
pub fn disk_to_attach(value: &str, cwd: &Path, check: FileCheck) -> Result<DiskSpec, String> {
    let disk = parse_disk_named("disk", value, cwd)?;
    vireo_core::spec::validate_disk("disk", &disk, &LocalHost(check))
        .map_err(|err| format!("disk '{value}': {}", err.reason))?;
    Ok(disk)
}

/// [`parse_disk`] with errors naming the disk as `{label} '{value}'`.
fn parse_disk_named(label: &str, value: &str, cwd: &Path) -> Result<DiskSpec, String> {
    let fail = |reason: String| format!("{label} '{value}': {reason}");
    let mut parts = split_options(value).into_iter();
    let source = parts.next().unwrap_or_default();
    if source.is_empty() {
        return Err(fail("no volume or image path".into()));
    }
    let mut disk = DiskSpec::default();
    if is_volume_ref(&source) {
        disk.volume = Some(source);
    } else {
        disk.path = Some(absolute(cwd, Path::new(&source)));
    }
    for option in parts {
        match option.split_once('=') {
            Some(("format", value)) => disk.format = Some(parse_choice("format", value).map_err(fail)?),
            Some(("cache", value)) => disk.cache = parse_choice("cache", value).map_err(fail)?,
            Some(("aio", value)) => disk.aio = parse_choice("aio", value).map_err(fail)?,
            Some(("boot_order", value)) => {
                disk.boot_order =
                    Some(value.parse().map_err(|_| fail(format!("boot_order must be a number, got '{value}'")))?)
            }
            Some(("readonly", flag)) => {
                disk.readonly =
                    parse_on_off(flag).ok_or_else(|| fail(format!("readonly must be on or off, got '{flag}'")))?
            }
            None if option == "readonly" => disk.readonly = true,
            _ => {
                return Err(fail(format!(
                    "unknown option '{option}' (use format=, readonly=, cache=, aio= or boot_order=)"
                )));
            }
        }
    }
    Ok(disk)
}

fn is_volume_ref(source: &str) -> bool {
    !source.starts_with(['/', '.']) && source.matches('/').count() == 1
}

/// Parses one of the spec's lowercase enum values, e.g. `cache=none`, with the spec's own names.
fn parse_choice<T: serde::de::DeserializeOwned>(option: &str, value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| format!("unknown {option} '{value}'"))
}

fn parse_on_off(flag: &str) -> Option<bool> {
    match flag {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Splits on ',' except where it is doubled.
fn split_options(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                current.push(',');
            }
            ',' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, VmCommand};
    use vireo_api::DiskFormat;

    fn create_args(flags: &[&str]) -> CreateArgs {
        let argv = [&["vireo", "vm", "create", "web1"], flags].concat();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Vm(VmCommand::Create(args)) => *args,
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn disks_take_options() {
        let cwd = Path::new("/work");
        let disk = parse_disk("a.qcow2", cwd).unwrap();
        assert_eq!(disk, DiskSpec { path: Some("/work/a.qcow2".into()), ..DiskSpec::default() });
        let disk = parse_disk("/img/b,format=raw,readonly=on,cache=none,aio=native,boot_order=2", cwd).unwrap();
        assert_eq!(
            disk,
            DiskSpec {
                path: Some("/img/b".into()),
                format: Some(DiskFormat::Raw),
                readonly: true,
                cache: vireo_api::DiskCache::None,
                aio: vireo_api::DiskAio::Native,
                boot_order: Some(2),
                ..DiskSpec::default()
            }
        );
        let disk = parse_disk("./odd,,name.img,readonly,format=qcow2", cwd).unwrap();
        assert_eq!(disk.path, Some(PathBuf::from("/work/odd,name.img")));
        assert!(disk.readonly);
        assert_eq!(disk.format, Some(DiskFormat::Qcow2));
    }

    #[test]
    fn bad_disk_options_say_what_is_wrong() {
        let cwd = Path::new("/");
        assert!(parse_disk(",format=raw", cwd).unwrap_err().contains("no volume or image path"));
        assert!(parse_disk("a,format=vmdk", cwd).unwrap_err().contains("unknown format 'vmdk'"));
        assert!(parse_disk("a,readonly=maybe", cwd).unwrap_err().contains("readonly must be on or off"));
        assert!(parse_disk("a,cache=sometimes", cwd).unwrap_err().contains("unknown cache 'sometimes'"));
        assert!(parse_disk("a,colour=red", cwd).unwrap_err().contains("unknown option 'colour=red'"));
    }

    #[test]
    fn nics_take_a_network_and_options() {
        let nic = parse_nic("default").unwrap();
        assert_eq!((nic.network.as_str(), nic.mac), ("default", None));
        let nic = parse_nic("lan,mac=52:54:00:01:02:03,model=virtio").unwrap();
        assert_eq!(nic.mac.as_deref(), Some("52:54:00:01:02:03"));
        assert!(parse_nic(",mac=x").unwrap_err().contains("no network name"));
        assert!(parse_nic("lan,model=e1000").unwrap_err().contains("unknown model 'e1000'"));
        assert!(parse_nic("lan,speed=10G").unwrap_err().contains("unknown option 'speed=10G'"));
    }

    #[test]
    fn pool_slash_name_is_a_volume() {
        let cwd = Path::new("/work");
        assert_eq!(parse_disk("default/root.qcow2", cwd).unwrap().volume.as_deref(), Some("default/root.qcow2"));
        assert_eq!(
            parse_disk("./default/root.qcow2", cwd).unwrap().path,
            Some(PathBuf::from("/work/default/root.qcow2"))
        );
        assert_eq!(parse_disk("a/b/c.img", cwd).unwrap().path, Some(PathBuf::from("/work/a/b/c.img")));
    }

    #[test]
    fn attached_disks_are_checked_here() {
        let cwd = Path::new("/work");
        let disk = disk_to_attach("default/data.img,readonly=on,cache=none", cwd, FileCheck::Local).unwrap();
        assert_eq!(disk.volume.as_deref(), Some("default/data.img"));
        assert!(disk.readonly);
        assert_eq!(disk.cache, vireo_api::DiskCache::None);
        let check = |value: &str| disk_to_attach(value, cwd, FileCheck::Local).unwrap_err();
        assert_eq!(check("default/.x"), "disk 'default/.x': volume name '.x' must not start with '.'");
        assert!(check("my pool/x").starts_with("disk 'my pool/x': pool name 'my pool' contains ' '"));
        assert_eq!(check("d/x,format=raw"), "disk 'd/x,format=raw': a volume has its own format; drop `format`");
        assert_eq!(check("d/x,colour=red").split(':').next(), Some("disk 'd/x,colour=red'"));
        assert!(check("/no/such.img").starts_with("disk '/no/such.img': /no/such.img does not exist"));
        assert!(disk_to_attach("/no/such.img", cwd, FileCheck::Remote).is_ok());
    }

    #[test]
    fn flags_build_a_spec() {
        let args = create_args(&[
            "--vcpus",
            "2",
            "--memory",
            "256MiB",
            "--kernel",
            "bzImage",
            "--initrd",
            "/i/initrd",
            "--cmdline",
            "console=ttyS0 quiet",
            "--disk",
            "root.qcow2",
            "--accel",
            "tcg",
            "--console-log-size",
            "64KiB",
        ]);
        let spec = spec_from_flags(&args, Path::new("/vms")).unwrap();
        assert_eq!(spec.name, "web1");
        assert_eq!(spec.vcpus, 2);
        assert_eq!(spec.memory, ByteSize::mib(256));
        assert_eq!(spec.accel, vireo_api::Accel::Tcg);
        assert_eq!(spec.boot.kernel, Some(PathBuf::from("/vms/bzImage")));
        assert_eq!(spec.boot.initrd, Some(PathBuf::from("/i/initrd")));
        assert_eq!(spec.boot.cmdline.as_deref(), Some("console=ttyS0 quiet"));
        assert_eq!(spec.disks[0].path, Some(PathBuf::from("/vms/root.qcow2")));
        assert_eq!(spec.console.log_size, ByteSize(64 * 1024));
        assert!(spec.display.is_none(), "headless unless asked");
        assert_eq!(validate_flags(&spec, FileCheck::Remote), Ok(()));
    }

    #[test]
    fn display_flag_picks_the_card() {
        let spec_of = |vga: &str| spec_from_flags(&create_args(&["--memory", "64M", "--display", vga]), Path::new("/"));
        assert_eq!(spec_of("std").unwrap().display.vga, vireo_api::Vga::Std);
        assert_eq!(spec_of("virtio").unwrap().display.vga, vireo_api::Vga::Virtio);
        assert!(spec_of("none").unwrap().display.is_none());
        assert_eq!(spec_of("cirrus").unwrap_err(), "--display: unknown display 'cirrus'");
    }

    #[test]
    fn a_file_may_ask_for_a_display() {
        let text = format!("{FILE}[display]\nvga = \"std\"\n");
        let spec = spec_from_file("web1", "spec.toml", &text, FileCheck::Remote).unwrap();
        assert_eq!(spec.display.vga, vireo_api::Vga::Std);
        let err = spec_from_file("web1", "spec.toml", &text.replace("std", "svga"), FileCheck::Remote).unwrap_err();
        assert!(err.starts_with("spec.toml: display.vga: unknown variant `svga`"), "{err}");
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let args = create_args(&["--memory", "lots"]);
        assert!(spec_from_flags(&args, Path::new("/")).unwrap_err().starts_with("--memory: "));
        let spec = spec_from_flags(&create_args(&["--memory", "1MiB", "--kernel", "/k"]), Path::new("/")).unwrap();
        let err = validate_flags(&spec, FileCheck::Remote).unwrap_err();
        assert!(err.starts_with("--memory: must be between 16MiB and 1TiB"), "{err}");
        let spec =
            spec_from_flags(&create_args(&["--memory", "64M", "--kernel", "/no/such/k"]), Path::new("/")).unwrap();
        assert!(
            validate_flags(&spec, FileCheck::Local).unwrap_err().starts_with("--kernel: /no/such/k does not exist")
        );
        let spec = spec_from_flags(&create_args(&["--memory", "64M"]), Path::new("/")).unwrap();
        assert_eq!(
            validate_flags(&spec, FileCheck::Remote).unwrap_err(),
            "nothing to boot: give --kernel or at least one --disk"
        );
        let spec = spec_from_flags(&create_args(&["--memory", "64M", "--initrd", "/i"]), Path::new("/")).unwrap();
        assert_eq!(validate_flags(&spec, FileCheck::Remote).unwrap_err(), "--initrd: needs --kernel");
    }

    const FILE: &str = "memory = \"128MiB\"\n[boot]\nkernel = \"/k/bzImage\"\n";

    #[test]
    fn a_file_may_omit_the_name() {
        let spec = spec_from_file("web1", "spec.toml", FILE, FileCheck::Remote).unwrap();
        assert_eq!(spec.name, "web1");
        assert_eq!(spec.memory, ByteSize::mib(128));
        let named = format!("name = \"web1\"\n{FILE}");
        assert!(spec_from_file("web1", "spec.toml", &named, FileCheck::Remote).is_ok());
    }

    #[test]
    fn file_errors_name_the_file_and_field() {
        let check = |text: &str| spec_from_file("web1", "spec.toml", text, FileCheck::Remote).unwrap_err();
        assert_eq!(
            check(&format!("name = \"db\"\n{FILE}")),
            "spec.toml: name: is 'db' but the command line says 'web1'"
        );
        assert!(check(&FILE.replace("128MiB", "8MiB")).starts_with("spec.toml: memory: must be between"));
        let err = check(&format!("vcpu = 2\n{FILE}"));
        assert!(err.starts_with("spec.toml: vcpu: unknown field"), "{err}");
        let err = check(&FILE.replace("kernel", "kernal"));
        assert!(err.starts_with("spec.toml: boot.kernal: unknown field"), "{err}");
        let err = check("memory = \n");
        assert!(err.starts_with("spec.toml: line 1: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
