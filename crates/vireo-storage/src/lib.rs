//! Vireo's storage pool drivers: where volumes live and how they are made.
//!
//! This crate owns the pool drivers (`PoolDriver`; `DirPool` keeps each volume
//! as a file in a directory) and every invocation of `qemu-img`, with argv
//! built by pure functions and output read as JSON. It must not touch the
//! store, serve HTTP or run QEMU processes: the daemon decides what may be
//! done to a volume (which VM uses it, which pool it belongs to) and calls in
//! here to do it.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use vireo_api::{DiskFormat, PoolType};

pub mod dir;
mod error;
pub mod qemu_img;

pub use dir::DirPool;
pub use error::StorageError;
use qemu_img::ImageInfo;

/// Space of the filesystem holding a pool, and what its volumes occupy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    /// Sum of the bytes allocated on disk to the volumes asked about.
    pub allocation_bytes: u64,
}

/// A volume as qemu-img sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeInfo {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Virtual size: what the guest sees.
    pub capacity_bytes: u64,
    /// Bytes the file occupies on disk.
    pub allocation_bytes: u64,
    /// The image this one is an overlay of (linked clones), absolute.
    pub backing_file: Option<PathBuf>,
    /// Every image below this one, nearest first; empty without a backing file.
    pub backing_chain: Vec<PathBuf>,
}

impl VolumeInfo {
    /// From `qemu-img info --backing-chain` of the file now at `path`.
    fn from_chain(path: PathBuf, chain: &[ImageInfo]) -> Result<VolumeInfo, StorageError> {
        let Some((top, below)) = chain.split_first() else {
            return Err(StorageError::InfoOutput { path, reason: "empty backing chain".into() });
        };
        let format = match top.format.as_str() {
            "raw" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2,
            other => return Err(StorageError::UnsupportedFormat { path, format: other.into() }),
        };
        let backing_file =
            top.full_backing_filename.clone().or_else(|| top.backing_filename.as_ref().map(PathBuf::from));
        Ok(VolumeInfo {
            format,
            capacity_bytes: top.virtual_size,
            allocation_bytes: top.actual_size.unwrap_or(0),
            backing_file,
            backing_chain: below.iter().map(|image| image.filename.clone()).collect(),
            path,
        })
    }
}

/// An existing volume, possibly of another pool: the source of a clone.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeSource {
    pub path: PathBuf,
    pub format: DiskFormat,
}

/// One kind of pool. Volume names are checked by the caller
/// (`vireo_core::spec::validate_volume_name`); drivers still refuse any name
/// that would leave the pool.
///
/// Creating operations (create, import, clone) never overwrite an existing
/// volume and leave nothing behind when they fail or their future is dropped.
#[async_trait]
pub trait PoolDriver: Send + Sync {
    fn pool_type(&self) -> PoolType;

    /// Creates the pool's backing storage if missing and checks it is usable.
    async fn prepare(&self) -> Result<(), StorageError>;

    /// Filesystem capacity and free space, and the allocation of the named volumes.
    async fn usage(&self, volume_names: &[String]) -> Result<PoolUsage, StorageError>;

    fn volume_path(&self, name: &str) -> PathBuf;

    async fn create_volume(&self, name: &str, size: u64, format: DiskFormat) -> Result<VolumeInfo, StorageError>;

    /// Copies any image qemu-img reads into a new volume of `format`, calling
    /// `progress` with a rising fraction that ends at 1.0.
    async fn import_volume(
        &self,
        name: &str,
        source: &Path,
        format: DiskFormat,
        progress: &(dyn Fn(f64) + Send + Sync),
    ) -> Result<VolumeInfo, StorageError>;

    /// A full copy in the source's format, or (`linked`) a qcow2 overlay backed
    /// by the source: instant, and the source must then outlive the clone.
    async fn clone_volume(&self, name: &str, source: &VolumeSource, linked: bool) -> Result<VolumeInfo, StorageError>;

    /// Grows, or with `allow_shrink` shrinks, the virtual size to `size`. A
    /// shrink without it fails with `ShrinkRefused` before anything is touched.
    async fn resize_volume(
        &self,
        name: &str,
        format: DiskFormat,
        size: u64,
        allow_shrink: bool,
    ) -> Result<VolumeInfo, StorageError>;

    async fn delete_volume(&self, name: &str) -> Result<(), StorageError>;

    /// What qemu-img reports, also while a VM has the volume open.
    async fn volume_info(&self, name: &str, format: DiskFormat) -> Result<VolumeInfo, StorageError>;

    /// Removes what creating operations interrupted by a crash of the daemon
    /// left behind, and returns it. Call it only while no operation on the
    /// pool can be running (at start-up): it would remove their work too.
    async fn remove_leftovers(&self) -> Result<Vec<PathBuf>, StorageError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(filename: &str, format: &str, backing: Option<&str>) -> ImageInfo {
        ImageInfo {
            filename: filename.into(),
            format: format.into(),
            virtual_size: 1 << 20,
            actual_size: Some(4096),
            backing_filename: backing.map(Into::into),
            full_backing_filename: backing.map(Into::into),
            backing_format: None,
            snapshots: Vec::new(),
            dirty_flag: false,
        }
    }

    #[test]
    fn volume_info_lists_the_chain_nearest_first() {
        let chain = [
            image("/p/.c.partial-1/c", "qcow2", Some("/p/b")),
            image("/p/b", "qcow2", Some("/q/a")),
            image("/q/a", "raw", None),
        ];
        let info = VolumeInfo::from_chain("/p/c".into(), &chain).unwrap();
        assert_eq!(info.path, Path::new("/p/c"));
        assert_eq!(info.format, DiskFormat::Qcow2);
        assert_eq!((info.capacity_bytes, info.allocation_bytes), (1 << 20, 4096));
        assert_eq!(info.backing_file.as_deref(), Some(Path::new("/p/b")));
        assert_eq!(info.backing_chain, [PathBuf::from("/p/b"), PathBuf::from("/q/a")]);
    }

    #[test]
    fn volume_info_refuses_formats_pools_do_not_hold() {
        let err = VolumeInfo::from_chain("/p/v".into(), &[image("/p/v", "vmdk", None)]).unwrap_err();
        assert!(matches!(err, StorageError::UnsupportedFormat { ref format, .. } if format == "vmdk"), "{err}");
    }
}
