//! Helpers shared by the integration tests: real qemu-img and qemu-io in temporary directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vireo_storage::DirPool;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// A pool in a fresh temporary directory (kept alive by the returned guard).
pub fn pool() -> (tempfile::TempDir, DirPool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = DirPool::new(dir.path().join("pool"));
    (dir, pool)
}

/// Runs one qemu-io command; Ok(stdout) when it succeeded and printed no pattern mismatch.
pub fn qemu_io(format: &str, path: &Path, command: &str) -> Result<String, String> {
    let output = Command::new("qemu-io").args(["-f", format, "-c", command]).arg(path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && !text.contains("Pattern verification failed") { Ok(text) } else { Err(text) }
}

pub fn write_pattern(format: &str, path: &Path, pattern: u8, offset: u64, len: u64) {
    qemu_io(format, path, &format!("write -P {pattern:#x} {offset} {len}")).unwrap();
}

pub fn has_pattern(format: &str, path: &Path, pattern: u8, offset: u64, len: u64) -> bool {
    qemu_io(format, path, &format!("read -P {pattern:#x} {offset} {len}")).is_ok()
}

/// Names in a directory, sorted (hidden ones too: leftovers would be hidden).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// An image made directly with qemu-img, outside any pool.
pub fn make_image(path: &Path, format: &str, size: &str) -> PathBuf {
    let status = Command::new("qemu-img").args(["create", "-q", "-f", format]).arg(path).arg(size).status().unwrap();
    assert!(status.success());
    path.to_path_buf()
}
