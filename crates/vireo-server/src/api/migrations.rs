//! Live migration: `/v1/vms/{name}/migrate` and `/v1/vms/{name}/migration` for
//! users of the source daemon, `/v1/migrations/incoming` for the source daemon
//! talking to the destination daemon.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use vireo_api::{ApiError, IncomingMigration, IncomingReady, MigrateRequest, MigrationStatus, Vm};

use super::peer::Peer;
use super::vms::to_wire;
use super::{AppState, json_body};
use crate::error::ServerError;

type ApiResult<T> = Result<T, ServerError>;

#[utoipa::path(operation_id = "migrate_vm", post, path = "/v1/vms/{name}/migrate", tag = "migration",
    params(("name" = String, Path)), request_body = MigrateRequest,
    responses(
        (status = 202, description = "The destination is ready and the migration runs; follow it with GET .../migration", body = MigrationStatus),
        (status = 409, description = "Wrong state, or the destination refused (`migration_refused`, its reason in the message)", body = ApiError),
        (status = 422, description = "Unsupported combination (snapshots, post-copy with copy_storage, linked clones on shared storage)", body = ApiError),
        (status = 502, description = "The destination cannot be reached", body = ApiError)))]
pub async fn migrate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<MigrationStatus>)> {
    let request: MigrateRequest = json_body(body)?;
    Ok((StatusCode::ACCEPTED, Json(state.manager.migrate(&name, request).await?)))
}

#[utoipa::path(operation_id = "get_migration", get, path = "/v1/vms/{name}/migration", tag = "migration",
    params(("name" = String, Path)),
    responses((status = 200, description = "The VM's latest migration from this host, also after it left", body = MigrationStatus),
        (status = 404, body = ApiError)))]
pub async fn status(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<MigrationStatus>> {
    Ok(Json(state.manager.migration_status(&name)?))
}

#[utoipa::path(operation_id = "cancel_migration", post, path = "/v1/vms/{name}/migration/cancel", tag = "migration",
    params(("name" = String, Path)),
    responses((status = 200, description = "Cancel requested; the phase turns `cancelled` once the VM runs here as before", body = MigrationStatus),
        (status = 400, description = "Nothing to cancel, or too late (post-copy)", body = ApiError), (status = 404, body = ApiError)))]
pub async fn cancel(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<MigrationStatus>> {
    Ok(Json(state.manager.cancel_migration(&name)?))
}

#[utoipa::path(operation_id = "prepare_incoming_migration", post, path = "/v1/migrations/incoming", tag = "migration",
    request_body = IncomingMigration,
    responses((status = 201, description = "QEMU waits for the VM (state `incoming`)", body = IncomingReady),
        (status = 404, description = "A pool or network of the VM is missing here", body = ApiError),
        (status = 409, description = "Name or volume taken", body = ApiError),
        (status = 422, description = "Does not fit this host (QEMU version, memory, storage not shared, invalid spec)", body = ApiError)))]
pub async fn prepare_incoming(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<IncomingReady>)> {
    let request: IncomingMigration = json_body(body)?;
    // The destination's QEMU listens on the address the source reached the
    // API on; over the Unix socket (a local proxy) the migration stays on loopback.
    let listen = peer
        .and_then(|Extension(ConnectInfo(peer))| peer.served_on())
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    Ok((StatusCode::CREATED, Json(state.manager.prepare_incoming(request, listen).await?)))
}

#[utoipa::path(operation_id = "finish_incoming_migration", post, path = "/v1/migrations/incoming/{name}/finish", tag = "migration",
    params(("name" = String, Path)),
    responses((status = 200, description = "The VM runs here", body = Vm), (status = 409, body = ApiError),
        (status = 500, description = "The state did not arrive complete; the VM stays `incoming`", body = ApiError)))]
pub async fn finish_incoming(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Vm>> {
    Ok(Json(to_wire(state.manager.finish_incoming(&name).await?)))
}

#[utoipa::path(operation_id = "abort_incoming_migration", delete, path = "/v1/migrations/incoming/{name}", tag = "migration",
    params(("name" = String, Path)),
    responses((status = 204, description = "QEMU, volumes and record of the incoming VM are gone"),
        (status = 404, body = ApiError), (status = 409, description = "Not an incoming VM", body = ApiError)))]
pub async fn abort_incoming(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    state.manager.abort_incoming(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
