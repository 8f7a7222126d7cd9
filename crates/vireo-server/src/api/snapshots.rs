//! `/v1/vms/{name}/snapshots`: internal qcow2 snapshots of a VM.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use vireo_api::{ApiError, Snapshot, SnapshotCreate, Vm};
use vireo_core::SnapshotRecord;

use super::vms::{rfc3339, to_wire};
use super::{AppState, json_body};
use crate::error::ServerError;

type ApiResult<T> = Result<T, ServerError>;

fn snapshot_to_wire(record: SnapshotRecord) -> Snapshot {
    Snapshot {
        vm: record.vm,
        name: record.name,
        kind: record.kind,
        vm_state: record.vm_state,
        created_at: rfc3339(record.created_at_ms),
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
