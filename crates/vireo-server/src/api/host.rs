//! `/v1/host`: what this host can do.

use axum::Json;
use vireo_api::HostCheck;

#[utoipa::path(operation_id = "check_host", get, path = "/v1/host/check", tag = "host",
    responses((status = 200, description = "Host readiness report", body = HostCheck)))]
pub async fn check() -> Json<HostCheck> {
    Json(vireo_qemu::host_check().await)
}
