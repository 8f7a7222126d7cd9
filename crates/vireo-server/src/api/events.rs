//! `/v1/events`: the event log as a JSON list, or followed as Server-Sent Events.

use std::convert::Infallible;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use vireo_api::events::{DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT};
use vireo_api::{ApiError, Event, EventKind, EventsQuery};
use vireo_core::EventRecord;

use super::AppState;
use super::vms::rfc3339;
use crate::error::ServerError;
use crate::events::Follower;

/// The header a reconnecting SSE client sends with the last id it received.
const LAST_EVENT_ID: &str = "last-event-id";

/// The wire view of a stored event; `None` (and a warning) for one this daemon cannot read.
fn to_wire(record: EventRecord) -> Option<Event> {
    match EventKind::from_parts(&record.kind, record.details) {
        Ok(kind) => Some(Event { id: record.id, time: rfc3339(record.at_ms), vm: record.vm, kind }),
        Err(err) => {
            tracing::warn!(id = record.id, kind = %record.kind, error = %err, "skipping unreadable event");
            None
        }
    }
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// Where a stream starts: after `Last-Event-ID` (a reconnect), else after `after`, else now.
fn stream_start(headers: &HeaderMap, query: &EventsQuery) -> Result<Option<u64>, ServerError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else { return Ok(query.after) };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse().map(Some).map_err(|_| {
        ServerError::BadRequest(format!("Last-Event-ID must be the id of an event (a number), got '{text}'"))
    })
}

fn check_query(query: &EventsQuery) -> Result<usize, ServerError> {
    if query.vm.as_deref() == Some("") {
        return Err(ServerError::BadRequest("vm must name a VM".into()));
    }
    match query.limit.unwrap_or(DEFAULT_EVENT_LIMIT) {
        limit @ 1..=MAX_EVENT_LIMIT => Ok(limit as usize),
        limit => Err(ServerError::BadRequest(format!("limit must be between 1 and {MAX_EVENT_LIMIT}, got {limit}"))),
    }
}

#[utoipa::path(operation_id = "list_events", get, path = "/v1/events", tag = "events",
    params(EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Stream only: resume after this event id (takes the place of `after`)")),
    responses(
        (status = 200, description = "Oldest first. With `Accept: text/event-stream`, a Server-Sent Events stream instead: \
            the stored events after `Last-Event-ID` or `after` (without either, only new events), then each new one as it happens; \
            every message has `id:` the event id, `event:` its kind and `data:` the event as JSON. A stream that cannot \
            go on sends an `error` message with an `ApiError` and ends.",
            content((Vec<Event> = "application/json"), (Event = "text/event-stream"))),
        (status = 400, description = "Bad `after`, `limit`, `vm` or `Last-Event-ID`", body = ApiError)))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ServerError> {
    let Query(query) = query.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let limit = check_query(&query)?;
    let events = state.manager.events();
    if wants_stream(&headers) {
        let follower = events.follow(stream_start(&headers, &query)?, query.vm).await?;
        return Ok(Sse::new(messages(follower)).keep_alive(KeepAlive::default()).into_response());
    }
    let records = events.list(query.after, query.vm.as_deref(), limit).await?;
    Ok(Json(records.into_iter().filter_map(to_wire).collect::<Vec<_>>()).into_response())
}

/// The follower's events as SSE messages; a failure becomes one `error` message that ends the stream.
fn messages(follower: Follower) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        loop {
            match follower.next().await? {
                Ok(record) => {
                    let Some(event) = to_wire(record) else { continue };
                    return Some((Ok(message(&event)), Some(follower)));
                }
                Err(err) => {
                    let error = ServerError::from(err).to_api();
                    let data = serde_json::to_string(&error).unwrap_or_default();
                    return Some((Ok(SseEvent::default().event("error").data(data)), None));
                }
            }
        }
    })
}

fn message(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_default();
    SseEvent::default().id(event.id.to_string()).event(event.kind.name()).data(data)
}
