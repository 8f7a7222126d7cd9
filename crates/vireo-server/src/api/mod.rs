//! The REST API: every route in one table (`router`), one module per resource.
//!
//! Handlers are thin: extract, call one `VmManager` method, convert the
//! stored record to the wire type. Errors become JSON through
//! `ServerError::into_response`, the one place that picks status codes.

mod auth;
mod console;
mod host;
mod openapi;
mod vms;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};

pub use auth::require_token;
pub use openapi::ApiDoc;

use crate::error::ServerError;
use crate::manager::VmManager;

/// Largest request body accepted; a VM spec is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<VmManager>,
}

/// All routes of `/v1`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/vms", get(vms::list).post(vms::create))
        .route("/v1/vms/{name}", get(vms::show).delete(vms::delete))
        .route("/v1/vms/{name}/start", post(vms::start))
        .route("/v1/vms/{name}/stop", post(vms::stop))
        .route("/v1/vms/{name}/pause", post(vms::pause))
        .route("/v1/vms/{name}/resume", post(vms::resume))
        .route("/v1/vms/{name}/restart", post(vms::restart))
        .route("/v1/vms/{name}/logs", get(vms::logs))
        .route("/v1/vms/{name}/console", get(console::attach))
        .route("/v1/host/check", get(host::check))
        .route("/v1/openapi.json", get(openapi::document))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn no_route(uri: Uri) -> ServerError {
    ServerError::NoRoute(uri.path().to_string())
}
