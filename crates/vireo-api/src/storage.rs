//! Storage pools and the volumes in them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::size::ByteSize;
use crate::spec::DiskFormat;

/// The kind of storage behind a pool. Only `dir` exists today; LVM-thin and
/// Ceph RBD drivers plug in behind the same driver trait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    /// A directory on the host; each volume is a file in it.
    #[default]
    Dir,
}

impl PoolType {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::Dir => "dir",
        }
    }
}

/// Body of `POST /v1/pools`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    #[serde(rename = "type", default)]
    pub pool_type: PoolType,
    /// Absolute path of the directory (created if missing).
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// A pool with its usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pool {
    pub name: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Size of the filesystem holding the pool.
    pub capacity_bytes: u64,
    /// Bytes the pool's volumes occupy on disk.
    pub allocation_bytes: u64,
    /// Bytes still free on the filesystem.
    pub available_bytes: u64,
    pub volume_count: u64,
}

/// Body of `POST /v1/pools/{pool}/volumes`: a new empty volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    /// File name in the pool: letters, digits, `.`, `-`, `_`; not starting with `.`.
    pub name: String,
    /// Virtual size the guest sees.
    pub size: ByteSize,
    /// `qcow2` unless said otherwise.
    pub format: Option<DiskFormat>,
}

/// Body of `POST /v1/pools/{pool}/import`: copy an image file into the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeImport {
    pub name: String,
    /// Absolute path of any image qemu-img reads, on the daemon's host.
    #[schema(value_type = String)]
    pub source: PathBuf,
    /// Format of the new volume; `qcow2` unless said otherwise.
    pub format: Option<DiskFormat>,
}

/// Body of `POST /v1/pools/{pool}/volumes/{name}/clone`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeClone {
    /// The new volume, as `POOL/NAME`.
    pub target: String,
    /// A thin qcow2 overlay backed by the source (instant) instead of a full copy.
    #[serde(default)]
    pub linked: bool,
}

/// Body of `POST /v1/pools/{pool}/volumes/{name}/resize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeResize {
    pub size: ByteSize,
    /// Shrinking loses whatever lies beyond the new end: it must be asked for.
    #[serde(default)]
    pub allow_shrink: bool,
}

/// A volume with what qemu-img reports about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub pool: String,
    pub name: String,
    pub format: DiskFormat,
    /// Virtual size the guest sees.
    pub capacity_bytes: u64,
    /// Bytes the file occupies on disk.
    pub allocation_bytes: u64,
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// The volume this one is a linked clone of, as `POOL/NAME`.
    pub backing: Option<String>,
    /// Image files below this one, nearest first (only in `show`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backing_chain: Vec<String>,
    /// VMs whose spec uses the volume.
    pub used_by: Vec<String>,
}

/// One line of the NDJSON stream of a long storage operation (import).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Fraction done, 0.0 to 1.0.
    Progress(f64),
    /// The operation finished with this volume.
    Done(Volume),
    /// The operation failed; nothing was left behind.
    Error(crate::error::ApiError),
}
