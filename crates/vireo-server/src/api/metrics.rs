//! `GET /metrics`: Prometheus metrics of the daemon, the host and every VM.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::error::ServerError;
use crate::metrics::CONTENT_TYPE;

#[utoipa::path(operation_id = "get_metrics", get, path = "/metrics", tag = "host",
    responses((status = 200, description = "OpenMetrics text: daemon, host, pool and per-VM metrics (see docs/observability.md)",
        content_type = "application/openmetrics-text", body = String)))]
pub async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ServerError> {
    let text = state.metrics.render(&state.manager).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}
