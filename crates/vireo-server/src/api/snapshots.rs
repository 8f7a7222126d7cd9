//! `/v1/vms/{name}/snapshots`, `/disks`, `/save`, `/restore`: what a VM keeps on its disks.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use vireo_api::{ApiError, DiskSpec, NicSpec, Snapshot, SnapshotCreate, Vm};
use vireo_core::SnapshotRecord;

use super::vms::to_wire;
use super::{AppState, json_body};
use crate::error::ServerError;

type ApiResult<T> = Result<T, ServerError>;

fn snapshot_to_wire(record: SnapshotRecord) -> Snapshot {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(record.created_at_ms).unwrap_or(0));
    Snapshot {
        vm: record.vm,
        name: record.name,
        kind: record.kind,
        vm_state: record.vm_state,
        created_at: humantime::format_rfc3339_millis(at).to_string(),
    }
}

#[utoipa::path(operation_id = "list_snapshots", get, path = "/v1/vms/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path)), responses((status = 200, description = "Oldest first", body = [Snapshot]), (status = 404, body = ApiError)))]
pub async fn list(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vec<Snapshot>>> {
    Ok(Json(state.manager.list_snapshots(&name).await?.into_iter().map(snapshot_to_wire).collect()))
}

#[utoipa::path(operation_id = "create_snapshot", post, path = "/v1/vms/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path)), request_body = SnapshotCreate,
    responses(
        (status = 201, description = "Running or paused VM: memory and disks (full) unless disk_only; stopped VM: disks", body = Snapshot),
        (status = 409, body = ApiError), (status = 422, description = "Raw disks, or no disk to keep it in", body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    let request: SnapshotCreate = json_body(body)?;
    let snapshot = state.manager.create_snapshot(&name, request).await?;
    Ok((StatusCode::CREATED, Json(snapshot_to_wire(snapshot))))
}

#[utoipa::path(operation_id = "revert_snapshot", post, path = "/v1/vms/{name}/snapshots/{snapshot}/revert", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, description = "A full snapshot leaves the VM running (or paused) at that moment; a disk snapshot leaves it stopped", body = Vm),
        (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn revert(
    State(state): State<AppState>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.revert_snapshot(&name, &snapshot).await?)))
}

#[utoipa::path(operation_id = "delete_snapshot", delete, path = "/v1/vms/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)), responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.manager.delete_snapshot(&name, &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

#[utoipa::path(operation_id = "save_vm", post, path = "/v1/vms/{name}/save", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, description = "Memory saved to disk, QEMU gone; state `saved`", body = Vm), (status = 409, body = ApiError)))]
pub async fn save(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.save(&name).await?)))
}

#[utoipa::path(operation_id = "restore_vm", post, path = "/v1/vms/{name}/restore", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, description = "Running again where it was saved", body = Vm), (status = 409, body = ApiError)))]
pub async fn restore(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.restore(&name).await?)))
}
