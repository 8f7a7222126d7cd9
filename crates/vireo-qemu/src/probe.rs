//! What a QEMU binary can do, asked once per binary and remembered.
//!
//! The argv builder leaves out legacy hardware with machine properties
//! (`hpet=off`, `i8042=off`, …) that older QEMUs do not have, and picks qboot
//! only where QEMU can find it. Asking costs three QEMU runs (~60 ms), so the
//! answer is kept in a file keyed by the binary's path, size and modification
//! time: a daemon restart does not ask again, an upgraded QEMU is asked anew.
//! Nothing is probed when a VM starts.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::QemuError;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The firmware file Debian's qemu-system-data ships for qboot.
pub const QBOOT_ROM: &str = "qboot.rom";

/// What Vireo needs to know about a QEMU binary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuCaps {
    /// First line of `--version`, e.g. `QEMU emulator version 7.2.22 (Debian …)`.
    pub version: String,
    /// The properties of the `q35` machine (`-machine q35,help`).
    pub machine_properties: BTreeSet<String>,
    /// Whether `qboot.rom` is in one of QEMU's firmware directories (`-L help`).
    pub qboot: bool,
}

impl QemuCaps {
    pub fn has_machine_property(&self, name: &str) -> bool {
        self.machine_properties.contains(name)
    }
}

/// Identifies one build of a binary: a replaced file changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryStamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

impl BinaryStamp {
    pub fn of(binary: &Path) -> std::io::Result<BinaryStamp> {
        let meta = std::fs::metadata(binary)?;
        Ok(BinaryStamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    binary: PathBuf,
    stamp: BinaryStamp,
    caps: QemuCaps,
}

/// The capabilities of `binary`, from `cache_file` when it describes this very
/// binary, else asked from QEMU and written to `cache_file` (mode 0600). A cache
/// that cannot be read or written only costs a new probe next time.
pub async fn probe_cached(binary: &Path, cache_file: &Path) -> Result<QemuCaps, QemuError> {
    let stamp = BinaryStamp::of(binary).map_err(|source| QemuError::Probe {
        binary: binary.to_path_buf(),
        reason: format!("cannot stat it: {source}"),
    })?;
    if let Some(caps) = read_cache(cache_file, binary, stamp) {
        return Ok(caps);
    }
    let caps = probe(binary).await?;
    let entry = CachedProbe { binary: binary.to_path_buf(), stamp, caps: caps.clone() };
    if let Err(err) = write_cache(cache_file, &entry) {
        tracing::warn!(file = %cache_file.display(), error = %err, "cannot record the QEMU probe");
    }
    Ok(caps)
}

fn read_cache(cache_file: &Path, binary: &Path, stamp: BinaryStamp) -> Option<QemuCaps> {
    let text = std::fs::read_to_string(cache_file).ok()?;
    let cached: CachedProbe = serde_json::from_str(&text).ok()?;
    (cached.binary == binary && cached.stamp == stamp).then_some(cached.caps)
}

fn write_cache(cache_file: &Path, entry: &CachedProbe) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    let temporary = cache_file.with_extension("json.partial");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&temporary, cache_file)
}

/// Asks `binary` for its version, the q35 machine's properties and its firmware directories.
pub async fn probe(binary: &Path) -> Result<QemuCaps, QemuError> {
    let version = run(binary, &["--version"]).await?;
    let machine = run(binary, &["-machine", "q35,help"]).await?;
    let firmware_dirs = run(binary, &["-L", "help"]).await?;
    Ok(QemuCaps {
        version: version.lines().next().unwrap_or_default().trim().to_string(),
        machine_properties: parse_machine_properties(&machine),
        qboot: firmware_dirs.lines().any(|dir| Path::new(dir.trim()).join(QBOOT_ROM).is_file()),
    })
}

async fn run(binary: &Path, args: &[&str]) -> Result<String, QemuError> {
    let fail = |reason: String| QemuError::Probe { binary: binary.to_path_buf(), reason };
    let command = tokio::process::Command::new(binary).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, command)
        .await
        .map_err(|_| fail(format!("`{}` did not answer within {}s", args.join(" "), PROBE_TIMEOUT.as_secs())))?
        .map_err(|err| fail(format!("cannot run it: {err}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("`{}` failed ({}): {}", args.join(" "), output.status, stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The property names of `-machine q35,help`: lines like `  hpet=<bool>  - Enable …`.
fn parse_machine_properties(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter(|line| line.starts_with(' '))
        .filter_map(|line| line.trim_start().split_once('='))
        .map(|(name, _)| name.to_string())
        .filter(|name| !name.is_empty() && !name.contains(' '))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_properties_are_the_names_before_the_equals_sign() {
        let help = "pc-q35-7.2-machine options:\n  acpi=<OnOffAuto>       - Enable ACPI\n  \
                    hpet=<bool>            - Enable/disable high precision event timer emulation\n  \
                    i8042=<bool>\n\nsome trailer = not a property\n";
        let names: Vec<_> = parse_machine_properties(help).into_iter().collect();
        assert_eq!(names, ["acpi", "hpet", "i8042"]);
    }

    #[test]
    fn a_cache_entry_of_another_binary_or_build_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("probe.json");
        let stamp = BinaryStamp { size: 10, mtime_ns: 5, inode: 1 };
        let caps = QemuCaps { version: "QEMU 9".into(), qboot: true, ..QemuCaps::default() };
        write_cache(&file, &CachedProbe { binary: "/q".into(), stamp, caps: caps.clone() }).unwrap();
        assert_eq!(read_cache(&file, Path::new("/q"), stamp), Some(caps));
        assert_eq!(read_cache(&file, Path::new("/other"), stamp), None);
        assert_eq!(read_cache(&file, Path::new("/q"), BinaryStamp { mtime_ns: 6, ..stamp }), None);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
