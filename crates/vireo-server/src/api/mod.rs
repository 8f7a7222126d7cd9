//! The REST API: every route in one table (`router`), one module per resource.
//!
//! Handlers are thin: extract, call one `VmManager` method, convert the
//! stored record to the wire type. Errors become JSON through
//! `ServerError::into_response`, the one place that picks status codes.

mod auth;
mod console;
mod devices;
mod events;
mod host;
mod metrics;
mod migrations;
mod networks;
mod openapi;
mod peer;
mod request_log;
mod snapshots;
mod storage;
mod vms;
mod vnc;
mod websocket;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use vireo_core::spec::parse_json;

pub use auth::require_token;
pub use openapi::ApiDoc;
pub use peer::Peer;
pub use request_log::{REQUEST_ID_HEADER, RequestId, observed};
pub(crate) use vms::rfc3339;

use crate::error::ServerError;
use crate::manager::VmManager;

/// Largest request body accepted; a VM spec is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<VmManager>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    pub fn new(manager: Arc<VmManager>) -> Self {
        AppState { manager, metrics: crate::metrics::Metrics::new() }
    }
}

/// The metrics endpoint alone, for `--metrics-listen` (no token: it only reads).
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics::scrape)).with_state(state)
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
        .route("/v1/vms/{name}/history", get(vms::history))
        .route("/v1/vms/{name}/console", get(console::attach))
        .route("/v1/vms/{name}/vnc", get(vnc::attach))
        .route("/v1/vms/{name}/save", post(vms::save))
        .route("/v1/vms/{name}/restore", post(vms::restore))
        .route("/v1/vms/{name}/migrate", post(migrations::migrate))
        .route("/v1/vms/{name}/migration", get(migrations::status))
        .route("/v1/vms/{name}/migration/cancel", post(migrations::cancel))
        .route("/v1/migrations/incoming", post(migrations::prepare_incoming))
        .route("/v1/migrations/incoming/{name}", delete(migrations::abort_incoming))
        .route("/v1/migrations/incoming/{name}/finish", post(migrations::finish_incoming))
        .route("/v1/vms/{name}/disks", post(devices::attach_disk))
        .route("/v1/vms/{name}/nics", post(devices::attach_nic))
        .route("/v1/vms/{name}/nics/{mac}", delete(devices::detach_nic))
        .route("/v1/vms/{name}/disks/{pool}/{volume}", delete(devices::detach_disk))
        .route("/v1/vms/{name}/snapshots", get(snapshots::list).post(snapshots::create))
        .route("/v1/vms/{name}/snapshots/{snapshot}", delete(snapshots::delete))
        .route("/v1/vms/{name}/snapshots/{snapshot}/revert", post(snapshots::revert))
        .route("/v1/pools", get(storage::list_pools).post(storage::create_pool))
        .route("/v1/pools/{pool}", get(storage::show_pool).delete(storage::delete_pool))
        .route("/v1/volumes", get(storage::list_all_volumes))
        .route("/v1/pools/{pool}/volumes", get(storage::list_volumes).post(storage::create_volume))
        .route("/v1/pools/{pool}/import", post(storage::import_volume))
        .route("/v1/pools/{pool}/volumes/{volume}", get(storage::show_volume).delete(storage::delete_volume))
        .route("/v1/pools/{pool}/volumes/{volume}/clone", post(storage::clone_volume))
        .route("/v1/pools/{pool}/volumes/{volume}/resize", post(storage::resize_volume))
        .route("/v1/networks", get(networks::list).post(networks::create))
        .route("/v1/networks/{network}", get(networks::show).delete(networks::delete))
        .route("/v1/host", get(host::show))
        .route("/v1/host/check", get(host::check))
        .route("/v1/events", get(events::list))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(state.metrics.clone(), crate::metrics::track_requests))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The request body, or the error a client can act on (too large, unreadable).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ServerError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ServerError::TooLarge(MAX_BODY_BYTES),
        _ => ServerError::BadRequest(format!("cannot read request body: {}", rejection.body_text())),
    })
}

/// A JSON request document; an unreadable or unknown field is a 422 naming it.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ServerError> {
    Ok(parse_json(&body_bytes(body)?)?)
}

async fn no_route(uri: Uri) -> ServerError {
    ServerError::NoRoute(uri.path().to_string())
}
