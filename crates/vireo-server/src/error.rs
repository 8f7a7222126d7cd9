//! The daemon's error type and its one mapping to API error codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vireo_api::{ApiError, ErrorCode};
use vireo_core::{AccelError, InvalidTransition, ObjectKind, SpecError, StoreError};
use vireo_qemu::QemuError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("VM '{0}' does not exist")]
    VmNotFound(String),
    #[error("VM '{0}' already exists")]
    VmExists(String),
    #[error("{0}")]
    InvalidSpec(#[from] SpecError),
    #[error("VM '{name}': {source}")]
    InvalidState { name: String, source: InvalidTransition },
    #[error("VM '{0}' has no QEMU attached yet; try again")]
    NotAttached(String),
    #[error("VM '{0}' has no display (its spec's display.vga is none)")]
    NoDisplay(String),
    #[error("VM '{name}' cannot start")]
    Accel { name: String, source: AccelError },
    #[error("VM '{name}': QEMU failed to {action}")]
    Qemu { name: String, action: &'static str, source: QemuError },
    #[error("VM '{name}' did not power off within {seconds} s, and QEMU did not exit when killed")]
    StopTimeout { name: String, seconds: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("no such route: {0}")]
    NoRoute(String),
    #[error("cannot access {path}")]
    Io { path: String, source: std::io::Error },
    #[error("{kind} '{name}' does not exist")]
    NotFound { kind: ObjectKind, name: String },
    #[error("{kind} '{name}' already exists")]
    Exists { kind: ObjectKind, name: String },
    #[error("{what} is used by {by}")]
    InUse { what: String, by: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot {action}")]
    Storage { action: String, source: vireo_storage::StorageError },
    #[error("cannot {action}")]
    Network { action: String, source: vireo_net::NetError },
    #[error("VM '{0}' has no migration on this host")]
    NoMigration(String),
    #[error("the destination refused VM '{vm}': {reason}")]
    MigrationRefused { vm: String, reason: ApiError },
    #[error("cannot reach the destination {url}: {reason}")]
    DestinationUnreachable { url: String, reason: String },
    #[error("migration of VM '{vm}' failed: {reason}")]
    MigrationFailed { vm: String, reason: String },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Storage failures the user caused are 4xx; the rest are the host's.
fn storage_code(error: &vireo_storage::StorageError) -> ErrorCode {
    use vireo_storage::StorageError as E;
    match error {
        E::InvalidName { .. } | E::InvalidSize { .. } | E::ShrinkRefused { .. } | E::InvalidSnapshotTag { .. } => {
            ErrorCode::InvalidSpec
        }
        E::VolumeExists { .. } | E::SnapshotExists { .. } => ErrorCode::AlreadyExists,
        E::VolumeNotFound { .. } => ErrorCode::VolumeNotFound,
        E::SnapshotNotFound { .. } => ErrorCode::SnapshotNotFound,
        E::UnsupportedFormat { .. } => ErrorCode::Unsupported,
        E::QemuImg { stderr, .. } if stderr.contains("lock") => ErrorCode::InUse,
        _ => ErrorCode::StorageFailed,
    }
}

fn not_found_code(kind: ObjectKind) -> ErrorCode {
    match kind {
        ObjectKind::Vm => ErrorCode::VmNotFound,
        ObjectKind::Pool => ErrorCode::PoolNotFound,
        ObjectKind::Volume => ErrorCode::VolumeNotFound,
        ObjectKind::Snapshot => ErrorCode::SnapshotNotFound,
        ObjectKind::Network => ErrorCode::NetworkNotFound,
        ObjectKind::Nic => ErrorCode::NicNotFound,
    }
}

impl ServerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::VmNotFound(_) => ErrorCode::VmNotFound,
            ServerError::VmExists(_) => ErrorCode::VmExists,
            ServerError::InvalidSpec(_) => ErrorCode::InvalidSpec,
            ServerError::InvalidState { .. } | ServerError::NotAttached(_) => ErrorCode::InvalidState,
            ServerError::NoDisplay(_) => ErrorCode::NoDisplay,
            ServerError::Accel { .. } => ErrorCode::AccelUnavailable,
            ServerError::Qemu {
                source: QemuError::NotHotUnpluggable { .. } | QemuError::NoFreeHotplugPort { .. },
                ..
            } => ErrorCode::Unsupported,
            ServerError::Qemu { .. } | ServerError::StopTimeout { .. } => ErrorCode::QemuFailed,
            ServerError::BadRequest(_) => ErrorCode::InvalidRequest,
            ServerError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ServerError::Unauthorized => ErrorCode::Unauthorized,
            ServerError::NoRoute(_) => ErrorCode::NotFound,
            ServerError::NotFound { kind, .. } | ServerError::Store(StoreError::ObjectNotFound { kind, .. }) => {
                not_found_code(*kind)
            }
            ServerError::Exists { .. } | ServerError::Store(StoreError::ObjectExists { .. }) => {
                ErrorCode::AlreadyExists
            }
            ServerError::InUse { .. } => ErrorCode::InUse,
            ServerError::Unsupported(_) => ErrorCode::Unsupported,
            ServerError::Storage { source, .. } => storage_code(source),
            ServerError::Network { .. } => ErrorCode::NetworkFailed,
            ServerError::NoMigration(_) => ErrorCode::NotFound,
            ServerError::MigrationRefused { .. } => ErrorCode::MigrationRefused,
            ServerError::DestinationUnreachable { .. } => ErrorCode::DestinationUnreachable,
            ServerError::MigrationFailed { .. } => ErrorCode::MigrationFailed,
            ServerError::Store(StoreError::NotFound(_)) => ErrorCode::VmNotFound,
            ServerError::Store(StoreError::Exists(_)) => ErrorCode::VmExists,
            ServerError::Io { .. } | ServerError::Internal(_) | ServerError::Store(_) => ErrorCode::Internal,
        }
    }

    /// The message for the user: this error and its causes, once each.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        // `InvalidState` and `InvalidSpec` already include their source in their own text.
        if matches!(self, ServerError::InvalidState { .. } | ServerError::InvalidSpec(_)) {
            source = None;
        }
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }

    pub fn to_api(&self) -> ApiError {
        let api = ApiError::new(self.code(), self.message());
        match self {
            ServerError::InvalidSpec(spec) if !spec.field.is_empty() => api.with_field(spec.field.clone()),
            _ => api,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let api = self.to_api();
        if api.code == ErrorCode::Internal || api.code == ErrorCode::QemuFailed {
            tracing::error!(error = %api.message, "request failed");
        }
        let code = api.code;
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(api)).into_response();
        // For the request log and the audit log, which do not read bodies.
        response.extensions_mut().insert(code);
        response
    }
}
