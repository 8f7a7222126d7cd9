//! `/v1/vms`: define, inspect and drive virtual machines.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use vireo_api::vm::LogsQuery;
use vireo_api::{ApiError, NicStatus, StopRequest, Vm, VmHistory, VmSpec};
use vireo_core::VmRecord;

use super::{AppState, body_bytes, json_body};
use crate::error::ServerError;

type ApiResult<T> = Result<T, ServerError>;

pub(crate) fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// The wire view of a stored record, without NIC addresses (see `to_wire_with_leases`).
pub fn to_wire(record: VmRecord) -> Vm {
    to_wire_with_leases(record, &HashMap::new())
}

/// The wire view of a stored record, with each NIC's address from the DHCP leases (by MAC).
pub fn to_wire_with_leases(record: VmRecord, leases: &HashMap<String, Ipv4Addr>) -> Vm {
    let nics = record
        .spec
        .nics
        .iter()
        .map(|nic| {
            let mac = nic.mac.clone().unwrap_or_default();
            let ip = leases.get(&mac).map(ToString::to_string);
            NicStatus { network: nic.network.clone(), mac, ip }
        })
        .collect();
    Vm {
        nics,
        accel: record.runtime.as_ref().map(|r| r.accel.as_str().to_string()),
        boot: record.runtime.as_ref().and_then(|r| r.boot.clone()),
        pid: record.runtime.as_ref().map(|r| r.pid),
        created_at: rfc3339(record.created_at_ms),
        state_changed_at: rfc3339(record.state_changed_at_ms),
        name: record.name,
        state: record.state,
        spec: record.spec,
        last_error: record.last_error,
        migration: None,
    }
}

#[utoipa::path(operation_id = "list_vms", get, path = "/v1/vms", tag = "vms",
    responses((status = 200, description = "All defined VMs, by name", body = [Vm])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Vm>>> {
    let records = state.manager.list().await?;
    let leases = state.manager.leased_addresses().await?;
    Ok(Json(records.into_iter().map(|record| to_wire_with_leases(record, &leases)).collect()))
}

#[utoipa::path(operation_id = "create_vm", post, path = "/v1/vms", tag = "vms", request_body = VmSpec,
    responses(
        (status = 201, description = "VM defined (stopped)", body = Vm),
        (status = 409, description = "Name taken", body = ApiError),
        (status = 413, description = "Body too large", body = ApiError),
        (status = 422, description = "Invalid spec; `field` names the culprit", body = ApiError)))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Vm>)> {
    let spec: VmSpec = json_body(body)?;
    let record = state.manager.create(spec).await?;
    Ok((StatusCode::CREATED, Json(to_wire(record))))
}

#[utoipa::path(operation_id = "get_vm", get, path = "/v1/vms/{name}", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = Vm), (status = 404, body = ApiError)))]
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    let record = state.manager.get(&name).await?;
    let mut vm = to_wire_with_leases(record, &state.manager.leased_addresses().await?);
    vm.migration = state.manager.active_migration(&name);
    Ok(Json(vm))
}

#[utoipa::path(operation_id = "delete_vm", delete, path = "/v1/vms/{name}", tag = "vms", params(("name" = String, Path)),
    responses(
        (status = 204, description = "Deleted with its console log and runtime files"),
        (status = 404, body = ApiError),
        (status = 409, description = "The VM is not stopped", body = ApiError)))]
pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.manager.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "start_vm", post, path = "/v1/vms/{name}/start", tag = "vms", params(("name" = String, Path)),
    responses(
        (status = 200, description = "QEMU is running the guest", body = Vm),
        (status = 409, body = ApiError), (status = 422, description = "Accelerator unavailable", body = ApiError),
        (status = 500, description = "QEMU failed", body = ApiError)))]
pub async fn start(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.start(&name).await?)))
}

#[utoipa::path(operation_id = "stop_vm", post, path = "/v1/vms/{name}/stop", tag = "vms", params(("name" = String, Path)),
    request_body(content = Option<StopRequest>, description = "Empty for a graceful stop with the default timeout"),
    responses((status = 200, description = "Stopped", body = Vm), (status = 409, body = ApiError)))]
pub async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vm>> {
    let body = body_bytes(body)?;
    let request: StopRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StopRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ServerError::BadRequest(format!("invalid stop request: {e}")))?
    };
    Ok(Json(to_wire(state.manager.stop(&name, &request).await?)))
}

#[utoipa::path(operation_id = "pause_vm", post, path = "/v1/vms/{name}/pause", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = Vm), (status = 409, body = ApiError)))]
pub async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.pause(&name).await?)))
}

#[utoipa::path(operation_id = "resume_vm", post, path = "/v1/vms/{name}/resume", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, body = Vm), (status = 409, body = ApiError)))]
pub async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.resume(&name).await?)))
}

#[utoipa::path(operation_id = "restart_vm", post, path = "/v1/vms/{name}/restart", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, description = "Powered off gracefully and started again", body = Vm),
        (status = 409, body = ApiError)))]
pub async fn restart(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.restart(&name).await?)))
}

#[utoipa::path(operation_id = "get_vm_logs", get, path = "/v1/vms/{name}/logs", tag = "vms", params(("name" = String, Path), LogsQuery),
    responses((status = 200, description = "Console output, oldest first", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ApiError)))]
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let bytes = state.manager.logs(&name, query.tail_bytes).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

#[utoipa::path(operation_id = "get_vm_history", get, path = "/v1/vms/{name}/history", tag = "vms", params(("name" = String, Path)),
    responses((status = 200, description = "The last hour of samples, oldest first (kept in memory)", body = VmHistory),
        (status = 404, body = ApiError)))]
pub async fn history(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<VmHistory>> {
    Ok(Json(state.manager.history(&name, rfc3339).await?))
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
