//! `/v1/vms/{name}/disks` and `/nics`: devices attached to (and hot-plugged into) a VM.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use vireo_api::{ApiError, DiskSpec, NicSpec, Vm};

use super::vms::to_wire;
use super::{AppState, json_body};
use crate::error::ServerError;

type ApiResult<T> = Result<T, ServerError>;

#[utoipa::path(operation_id = "attach_disk", post, path = "/v1/vms/{name}/disks", tag = "vms",
    params(("name" = String, Path)), request_body = DiskSpec,
    responses((status = 200, description = "Hot-plugged if the VM runs, and kept in its spec", body = Vm),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn attach_disk(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vm>> {
    let disk: DiskSpec = json_body(body)?;
    Ok(Json(to_wire(state.manager.attach_disk(&name, disk).await?)))
}

#[utoipa::path(operation_id = "detach_disk", delete, path = "/v1/vms/{name}/disks/{pool}/{volume}", tag = "vms",
    params(("name" = String, Path), ("pool" = String, Path), ("volume" = String, Path)),
    responses((status = 200, description = "Unplugged (the guest must release it) and dropped from the spec", body = Vm),
        (status = 404, body = ApiError), (status = 500, description = "The guest did not release the disk", body = ApiError)))]
pub async fn detach_disk(
    State(state): State<AppState>,
    Path((name, pool, volume)): Path<(String, String, String)>,
) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.detach_disk(&name, &format!("{pool}/{volume}")).await?)))
}

#[utoipa::path(operation_id = "attach_nic", post, path = "/v1/vms/{name}/nics", tag = "vms",
    params(("name" = String, Path)), request_body = NicSpec,
    responses((status = 200, description = "Hot-plugged if the VM runs (the guest gets a new ethN), and kept in its spec", body = Vm),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn attach_nic(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vm>> {
    let nic: NicSpec = json_body(body)?;
    Ok(Json(to_wire(state.manager.attach_nic(&name, nic).await?)))
}

#[utoipa::path(operation_id = "detach_nic", delete, path = "/v1/vms/{name}/nics/{mac}", tag = "vms",
    params(("name" = String, Path), ("mac" = String, Path)),
    responses((status = 200, description = "Unplugged (the guest must release it) and dropped from the spec", body = Vm),
        (status = 404, body = ApiError), (status = 422, description = "A NIC present at boot, on a running VM", body = ApiError)))]
pub async fn detach_nic(
    State(state): State<AppState>,
    Path((name, mac)): Path<(String, String)>,
) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.detach_nic(&name, &mac).await?)))
}
