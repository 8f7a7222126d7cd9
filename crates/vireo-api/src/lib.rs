//! Wire types of Vireo's REST API (`/v1`): what clients send and receive.
//!
//! This crate owns the JSON shapes, their OpenAPI schemas and the table of
//! stable error codes. It must not know about tokio, the database or QEMU:
//! the daemon builds these types from its own records, and the CLI and web
//! console consume them.

pub mod error;
pub mod events;
pub mod host;
pub mod migration;
pub mod network;
pub mod size;
pub mod snapshot;
pub mod spec;
pub mod storage;
pub mod vm;

pub use error::{ApiError, ErrorCode};
pub use events::{Event, EventKind, EventsQuery};
pub use host::{CheckStatus, HostCheck, HostCheckItem, HostInfo};
pub use migration::{
    IncomingMigration, IncomingReady, IncomingVolume, MigrateRequest, MigrationPhase, MigrationStatus, NbdServer,
    StorageProbe,
};
pub use network::{Lease, Network, NetworkMode, NetworkSpec, NicModel, NicSpec, NicStatus};
pub use size::ByteSize;
pub use snapshot::{Snapshot, SnapshotCreate, SnapshotKind};
pub use spec::{
    Accel, BootSpec, ConsoleSpec, DiskAio, DiskBus, DiskCache, DiskFormat, DiskSpec, DisplaySpec, Firmware,
    LegacyHardware, MAX_HOTPLUG_PORTS, MachineSpec, Vga, VmSpec,
};
pub use storage::{Pool, PoolSpec, PoolType, Progress, Volume, VolumeClone, VolumeCreate, VolumeImport, VolumeResize};
pub use vm::{BootEntry, BootStatus, StopRequest, Vm, VmHistory, VmHistoryPoint, VmState};

/// The API version prefix every route lives under.
pub const API_PREFIX: &str = "/v1";
