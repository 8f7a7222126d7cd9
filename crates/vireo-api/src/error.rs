//! The error body every failed request returns, and the table of stable codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. Clients match on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad query).
    InvalidRequest,
    /// The VM spec is invalid; `field` names the offending field.
    InvalidSpec,
    /// No bearer token, or a wrong one.
    Unauthorized,
    /// No such route.
    NotFound,
    /// No VM of that name.
    VmNotFound,
    /// A VM of that name already exists.
    VmExists,
    /// The operation does not fit the VM's current state.
    InvalidState,
    /// No storage pool of that name.
    PoolNotFound,
    /// No volume of that name in the pool.
    VolumeNotFound,
    /// No snapshot of that name for the VM.
    SnapshotNotFound,
    /// No network of that name.
    NetworkNotFound,
    /// The VM has no NIC with that MAC.
    NicNotFound,
    /// A pool, volume or snapshot of that name already exists.
    AlreadyExists,
    /// The object is used by something else (a VM, a linked clone, a snapshot) and cannot go.
    InUse,
    /// The VM has no graphical display (`display.vga` is `none`), so there is no VNC to attach to.
    NoDisplay,
    /// The request is valid but cannot be done to this object (e.g. a snapshot of a VM with raw disks).
    Unsupported,
    /// qemu-img or the filesystem failed.
    StorageFailed,
    /// Setting up a bridge, TAP, dnsmasq or nftables failed.
    NetworkFailed,
    /// The requested accelerator cannot run on this host.
    AccelUnavailable,
    /// The request body is too large.
    PayloadTooLarge,
    /// QEMU failed to start or to carry out a command.
    QemuFailed,
    /// The destination daemon of a migration refused it (its reason is in the message).
    MigrationRefused,
    /// The destination daemon of a migration cannot be reached.
    DestinationUnreachable,
    /// A migration failed under way; the VM still runs on the source.
    MigrationFailed,
    /// Something failed inside the daemon.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code; this is the only place that decides it.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound
            | ErrorCode::VmNotFound
            | ErrorCode::PoolNotFound
            | ErrorCode::VolumeNotFound
            | ErrorCode::SnapshotNotFound
            | ErrorCode::NetworkNotFound
            | ErrorCode::NicNotFound => 404,
            ErrorCode::VmExists
            | ErrorCode::InvalidState
            | ErrorCode::AlreadyExists
            | ErrorCode::InUse
            | ErrorCode::NoDisplay
            | ErrorCode::MigrationRefused => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::InvalidSpec | ErrorCode::AccelUnavailable | ErrorCode::Unsupported => 422,
            ErrorCode::QemuFailed
            | ErrorCode::StorageFailed
            | ErrorCode::NetworkFailed
            | ErrorCode::MigrationFailed
            | ErrorCode::Internal => 500,
            ErrorCode::DestinationUnreachable => 502,
        }
    }
}

/// Body of every non-2xx response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// A sentence a user can act on.
    pub message: String,
    /// For `invalid_spec`: the path of the field at fault, e.g. `boot.kernel` or `disks[1].path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), field: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}
