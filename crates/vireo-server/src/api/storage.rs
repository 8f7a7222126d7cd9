//! `/v1/pools` and `/v1/volumes`: storage pools and the volumes in them.

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::mpsc;
use vireo_api::{ApiError, Pool, PoolSpec, Progress, Volume, VolumeClone, VolumeCreate, VolumeImport, VolumeResize};

use super::{AppState, json_body};
use crate::error::ServerError;
use crate::manager::{PoolStatus, VolumeStatus};

type ApiResult<T> = Result<T, ServerError>;

fn pool_to_wire(status: PoolStatus) -> Pool {
    Pool {
        name: status.record.name,
        pool_type: status.record.pool_type,
        path: status.record.path,
        capacity_bytes: status.usage.capacity_bytes,
        allocation_bytes: status.usage.allocation_bytes,
        available_bytes: status.usage.available_bytes,
        volume_count: status.volume_count,
    }
}

/// The wire view of a volume; the backing chain only where asked for (`show`).
fn volume_to_wire(status: VolumeStatus, with_chain: bool) -> Volume {
    let chain = if with_chain {
        status.info.backing_chain.iter().map(|p| p.display().to_string()).collect()
    } else {
        Vec::new()
    };
    Volume {
        backing: status.record.backing.map(|(pool, name)| format!("{pool}/{name}")),
        pool: status.record.pool,
        name: status.record.name,
        format: status.record.format,
        capacity_bytes: status.info.capacity_bytes,
        allocation_bytes: status.info.allocation_bytes,
        path: status.info.path,
        backing_chain: chain,
        used_by: status.used_by,
    }
}

#[utoipa::path(operation_id = "list_pools", get, path = "/v1/pools", tag = "storage",
    responses((status = 200, body = [Pool])))]
pub async fn list_pools(State(state): State<AppState>) -> ApiResult<Json<Vec<Pool>>> {
    Ok(Json(state.manager.list_pools().await?.into_iter().map(pool_to_wire).collect()))
}

#[utoipa::path(operation_id = "create_pool", post, path = "/v1/pools", tag = "storage", request_body = PoolSpec,
    responses((status = 201, body = Pool), (status = 409, description = "Name taken, or the directory belongs to another pool", body = ApiError),
        (status = 422, body = ApiError)))]
pub async fn create_pool(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Pool>)> {
    let spec: PoolSpec = json_body(body)?;
    Ok((StatusCode::CREATED, Json(pool_to_wire(state.manager.create_pool(spec).await?))))
}

#[utoipa::path(operation_id = "get_pool", get, path = "/v1/pools/{pool}", tag = "storage", params(("pool" = String, Path)),
    responses((status = 200, body = Pool), (status = 404, body = ApiError)))]
pub async fn show_pool(State(state): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Pool>> {
    Ok(Json(pool_to_wire(state.manager.get_pool(&pool).await?)))
}

#[utoipa::path(operation_id = "delete_pool", delete, path = "/v1/pools/{pool}", tag = "storage", params(("pool" = String, Path)),
    responses((status = 204, description = "Forgotten; the directory stays"), (status = 409, description = "The pool holds volumes", body = ApiError)))]
pub async fn delete_pool(State(state): State<AppState>, Path(pool): Path<String>) -> ApiResult<StatusCode> {
    state.manager.delete_pool(&pool).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "list_all_volumes", get, path = "/v1/volumes", tag = "storage",
    responses((status = 200, body = [Volume])))]
pub async fn list_all_volumes(State(state): State<AppState>) -> ApiResult<Json<Vec<Volume>>> {
    let volumes = state.manager.list_volumes(None).await?;
    Ok(Json(volumes.into_iter().map(|v| volume_to_wire(v, false)).collect()))
}

#[utoipa::path(operation_id = "list_volumes", get, path = "/v1/pools/{pool}/volumes", tag = "storage",
    params(("pool" = String, Path)), responses((status = 200, body = [Volume]), (status = 404, body = ApiError)))]
pub async fn list_volumes(State(state): State<AppState>, Path(pool): Path<String>) -> ApiResult<Json<Vec<Volume>>> {
    let volumes = state.manager.list_volumes(Some(&pool)).await?;
    Ok(Json(volumes.into_iter().map(|v| volume_to_wire(v, false)).collect()))
}

#[utoipa::path(operation_id = "create_volume", post, path = "/v1/pools/{pool}/volumes", tag = "storage",
    params(("pool" = String, Path)), request_body = VolumeCreate,
    responses((status = 201, body = Volume), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_volume(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Volume>)> {
    let request: VolumeCreate = json_body(body)?;
    let status = state.manager.create_volume(&pool, request).await?;
    Ok((StatusCode::CREATED, Json(volume_to_wire(status, false))))
}

#[utoipa::path(operation_id = "import_volume", post, path = "/v1/pools/{pool}/import", tag = "storage",
    params(("pool" = String, Path)), request_body = VolumeImport,
    responses(
        (status = 200, description = "A stream of `Progress` lines (NDJSON), ending with `done` or `error`; the import finishes even if the client goes away",
            content_type = "application/x-ndjson", body = Progress),
        (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn import_volume(
    State(state): State<AppState>,
    Path(pool): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: VolumeImport = json_body(body)?;
    state.manager.check_import(&pool, &request).await?;
    let (lines, receiver) = mpsc::unbounded_channel::<Progress>();
    let manager = state.manager.clone();
    tokio::spawn(async move {
        let progress = lines.clone();
        let report = move |fraction: f64| {
            let _ = progress.send(Progress::Progress(fraction));
        };
        let last = match manager.import_volume(&pool, request, &report).await {
            Ok(status) => Progress::Done(volume_to_wire(status, false)),
            Err(err) => Progress::Error(err.to_api()),
        };
        let _ = lines.send(last);
    });
    let body = stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        Some((Ok::<_, Infallible>(text), receiver))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response())
}

#[utoipa::path(operation_id = "get_volume", get, path = "/v1/pools/{pool}/volumes/{volume}", tag = "storage",
    params(("pool" = String, Path), ("volume" = String, Path)),
    responses((status = 200, description = "With its backing chain", body = Volume), (status = 404, body = ApiError)))]
pub async fn show_volume(
    State(state): State<AppState>,
    Path((pool, volume)): Path<(String, String)>,
) -> ApiResult<Json<Volume>> {
    Ok(Json(volume_to_wire(state.manager.get_volume(&pool, &volume).await?, true)))
}

#[utoipa::path(operation_id = "delete_volume", delete, path = "/v1/pools/{pool}/volumes/{volume}", tag = "storage",
    params(("pool" = String, Path), ("volume" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError),
        (status = 409, description = "Attached to a VM, kept by a snapshot, or the base of a linked clone", body = ApiError)))]
pub async fn delete_volume(
    State(state): State<AppState>,
    Path((pool, volume)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.manager.delete_volume(&pool, &volume).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "clone_volume", post, path = "/v1/pools/{pool}/volumes/{volume}/clone", tag = "storage",
    params(("pool" = String, Path), ("volume" = String, Path)), request_body = VolumeClone,
    responses((status = 201, body = Volume), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn clone_volume(
    State(state): State<AppState>,
    Path((pool, volume)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Volume>)> {
    let request: VolumeClone = json_body(body)?;
    let status = state.manager.clone_volume(&pool, &volume, request).await?;
    Ok((StatusCode::CREATED, Json(volume_to_wire(status, false))))
}

#[utoipa::path(operation_id = "resize_volume", post, path = "/v1/pools/{pool}/volumes/{volume}/resize", tag = "storage",
    params(("pool" = String, Path), ("volume" = String, Path)), request_body = VolumeResize,
    responses((status = 200, body = Volume), (status = 409, description = "Used by a running VM", body = ApiError),
        (status = 422, description = "A shrink without allow_shrink", body = ApiError)))]
pub async fn resize_volume(
    State(state): State<AppState>,
    Path((pool, volume)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Volume>> {
    let request: VolumeResize = json_body(body)?;
    let status = state.manager.resize_volume(&pool, &volume, request.size.bytes(), request.allow_shrink).await?;
    Ok(Json(volume_to_wire(status, false)))
}
