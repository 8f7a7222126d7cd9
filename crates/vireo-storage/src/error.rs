//! The one error type of the storage drivers.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("qemu-img not found ({reason}); apt-get install qemu-utils")]
    QemuImgNotFound { reason: String },
    #[error("cannot run {}", .binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    /// qemu-img ran and failed; `stderr` is what it said (or its exit status when it said nothing).
    #[error("qemu-img could not {action} {}: {stderr}", .path.display())]
    QemuImg { action: &'static str, path: PathBuf, stderr: String },
    #[error("cannot understand `qemu-img info` of {}: {reason}", .path.display())]
    InfoOutput { path: PathBuf, reason: String },
    #[error("volume name '{name}' {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("size {size} is not a multiple of 512 bytes")]
    InvalidSize { size: u64 },
    #[error("volume {} already exists", .path.display())]
    VolumeExists { path: PathBuf },
    #[error("volume {} does not exist", .path.display())]
    VolumeNotFound { path: PathBuf },
    /// Shrinking loses data beyond the new end, so it must be asked for explicitly.
    #[error("refusing to shrink from {current} to {requested} bytes: shrinking must be allowed explicitly")]
    ShrinkRefused { current: u64, requested: u64 },
    #[error("{} is a {format} image; pool volumes are raw or qcow2", .path.display())]
    UnsupportedFormat { path: PathBuf, format: String },
    #[error("snapshot tag '{tag}' {reason}")]
    InvalidSnapshotTag { tag: String, reason: &'static str },
    #[error("{} already has a snapshot '{tag}'", .path.display())]
    SnapshotExists { path: PathBuf, tag: String },
    #[error("{} has no snapshot '{tag}'", .path.display())]
    SnapshotNotFound { path: PathBuf, tag: String },
    #[error("pool directory {} is not usable: {reason}", .path.display())]
    PoolUnusable { path: PathBuf, reason: String },
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { action, path, source }
    }
}
