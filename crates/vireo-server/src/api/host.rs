//! `/v1/host`: what this host is, and what it can do.

use axum::Json;
use axum::extract::State;
use vireo_api::{HostCheck, HostInfo};

use super::AppState;

#[utoipa::path(operation_id = "check_host", get, path = "/v1/host/check", tag = "host",
    responses((status = 200, description = "Host readiness report", body = HostCheck)))]
pub async fn check() -> Json<HostCheck> {
    Json(vireo_qemu::host_check().await)
}

#[utoipa::path(operation_id = "show_host", get, path = "/v1/host", tag = "host",
    responses((status = 200, description = "Host facts and load, for an overview", body = HostInfo)))]
pub async fn show(State(state): State<AppState>) -> Json<HostInfo> {
    Json(state.manager.host_info().await)
}
