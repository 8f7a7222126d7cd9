//! What the daemon records about each API request, on both listeners:
//!
//! - a request id: the client's `X-Request-Id` when it is a short safe token,
//!   else a fresh one; returned in the `x-request-id` response header;
//! - a tracing span `request{request_id, method, route}` around the handling,
//!   so every log line of the request carries its id, closed by one
//!   `request finished` event with the status and duration;
//! - for mutating calls and refused tokens, one line in the audit log.
//!
//! The span covers the handler, not a streamed body or an upgraded
//! connection: a console WebSocket is "finished" (101) once upgraded, and its
//! session logs under the same span without holding the request open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tracing::{Instrument, Level};
use vireo_api::ErrorCode;

use super::peer::Peer;
use crate::audit::{AuditLog, AuditRecord, millis, target};
use crate::token::{TokenFingerprint, to_hex};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The route name logged for a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// The id of one API request, as logged, audited and returned to the client.
/// Handlers can read it from the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    const MAX_LEN: usize = 64;

    /// The client's own id, if it is 1 to 64 characters of `A-Z a-z 0-9 - _ .`:
    /// anything else could forge log lines or flood them, and is replaced.
    pub fn from_client(value: &HeaderValue) -> Option<RequestId> {
        let text = value.to_str().ok()?;
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        (!text.is_empty() && text.len() <= Self::MAX_LEN && text.chars().all(safe)).then(|| RequestId(text.to_string()))
    }

    /// 128 random bits in hex; if the kernel has no randomness to give, a
    /// counter, still unique within this daemon.
    pub fn generate() -> RequestId {
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0u8; 16];
        match getrandom::fill(&mut bytes) {
            Ok(()) => RequestId(to_hex(&bytes)),
            Err(_) => RequestId(format!("local-{}", FALLBACK.fetch_add(1, Ordering::Relaxed))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `router` with request ids, request logging and auditing around every
/// route (and the fallback). Add it last, outside the token check, so that
/// refused calls are logged and audited too.
pub fn observed(router: Router, audit: Arc<AuditLog>) -> Router {
    router.layer(from_fn_with_state(audit, record))
}

/// Calls that change something are audited; so is every refused token.
fn audited(method: &Method, status: StatusCode) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) || status == StatusCode::UNAUTHORIZED
}

/// Successful reads are polled by clients (console logs, state waits) and
/// would drown everything else at `info`.
fn finished_level(method: &Method, status: StatusCode) -> Level {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if read && (status.is_success() || status.is_informational()) { Level::DEBUG } else { Level::INFO }
}

/// The wire name of an error code (`vm_not_found`).
fn code_name(code: ErrorCode) -> Option<String> {
    serde_json::to_value(code).ok()?.as_str().map(str::to_string)
}

async fn record(
    State(audit): State<Arc<AuditLog>>,
    route: Option<MatchedPath>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let id =
        request.headers().get(REQUEST_ID_HEADER).and_then(RequestId::from_client).unwrap_or_else(RequestId::generate);
    request.extensions_mut().insert(id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|ConnectInfo(peer)| *peer);
    let route = route.as_ref().map(MatchedPath::as_str);
    let span = tracing::info_span!("request", request_id = %id.as_str(), %method, route = %route.unwrap_or(UNMATCHED));

    let mut response = next.run(request).instrument(span.clone()).await;

    let duration = started.elapsed();
    let status = response.status();
    let error = response.extensions().get::<ErrorCode>().copied();
    span.in_scope(|| log_finished(finished_level(&method, status), status, error, duration));
    if audited(&method, status) {
        let token = response.extensions().get::<TokenFingerprint>();
        audit.append(&AuditRecord {
            time,
            request_id: id.as_str(),
            client: peer.map(|peer| peer.audit_client(token)),
            method: method.as_str(),
            route,
            path: &path,
            // Without a route there are no names, only the fallback's wildcard.
            target: route.and(params.ok()).and_then(|params| target(params.iter().map(|(_, value)| value))),
            status: status.as_u16(),
            error,
            duration_ms: millis(duration),
        });
    }
    // A client id or a generated one is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

fn log_finished(level: Level, status: StatusCode, error: Option<ErrorCode>, duration: Duration) {
    let status = status.as_u16();
    let duration_ms = millis(duration);
    let error = error.and_then(code_name);
    if level == Level::DEBUG {
        tracing::debug!(status, duration_ms, error, "request finished");
    } else {
        tracing::info!(status, duration_ms, error, "request finished");
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;
    use crate::error::ServerError;

    #[test]
    fn a_client_id_is_kept_only_if_short_and_safe() {
        let kept = |text: &str| RequestId::from_client(&HeaderValue::from_str(text).unwrap()).map(|id| id.0);
        assert_eq!(kept("3f2a-11.b_c").as_deref(), Some("3f2a-11.b_c"));
        assert_eq!(kept(&"a".repeat(64)).map(|id| id.len()), Some(64));
        for refused in ["", "has space", "quote\"", "a=b", "new\\nline", &"a".repeat(65)] {
            assert_eq!(kept(refused), None, "{refused:?}");
        }
        let non_ascii = HeaderValue::from_bytes("é".as_bytes()).unwrap();
        assert_eq!(RequestId::from_client(&non_ascii), None);
    }

    #[test]
    fn generated_ids_are_distinct_and_valid_client_ids() {
        let (first, second) = (RequestId::generate(), RequestId::generate());
        assert_ne!(first, second);
        assert_eq!(first.as_str().len(), 32);
        let header = HeaderValue::from_str(first.as_str()).unwrap();
        assert_eq!(RequestId::from_client(&header), Some(first));
    }

    #[test]
    fn mutating_calls_and_refused_tokens_are_audited_reads_are_not() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(audited(&method, StatusCode::OK), "{method}");
        }
        assert!(!audited(&Method::GET, StatusCode::NOT_FOUND));
        assert!(audited(&Method::GET, StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn successful_reads_log_at_debug_everything_else_at_info() {
        assert_eq!(finished_level(&Method::GET, StatusCode::OK), Level::DEBUG);
        assert_eq!(finished_level(&Method::GET, StatusCode::SWITCHING_PROTOCOLS), Level::DEBUG);
        assert_eq!(finished_level(&Method::GET, StatusCode::NOT_FOUND), Level::INFO);
        assert_eq!(finished_level(&Method::DELETE, StatusCode::NO_CONTENT), Level::INFO);
        assert_eq!(code_name(ErrorCode::VmNotFound).as_deref(), Some("vm_not_found"));
    }

    /// A router shaped like the API's, behind `observed`.
    fn app(dir: &std::path::Path) -> Router {
        let router = Router::new()
            .route("/v1/vms/{name}", get(|| async { "read" }).delete(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/v1/pools/{pool}/volumes/{volume}/resize",
                post(|| async { ServerError::VmNotFound("web1".to_string()) }),
            );
        observed(router, Arc::new(AuditLog::open(dir).unwrap()))
    }

    async fn call(app: &Router, method: Method, path: &str, id: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(id) = id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn response_id(response: &Response) -> String {
        response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string()
    }

    fn audit_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(crate::audit::AUDIT_FILE)).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[tokio::test]
    async fn each_call_gets_an_id_and_mutating_ones_an_audit_line() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());

        let read = call(&app, Method::GET, "/v1/vms/web1", Some("client-chosen-1")).await;
        assert_eq!(response_id(&read), "client-chosen-1");
        let deleted = call(&app, Method::DELETE, "/v1/vms/web1", Some("bad id!")).await;
        let delete_id = response_id(&deleted);
        assert_ne!(delete_id, "bad id!");
        let failed = call(&app, Method::POST, "/v1/pools/default/volumes/a.qcow2/resize", None).await;
        assert_eq!(failed.status(), StatusCode::NOT_FOUND);
        let unmatched = call(&app, Method::POST, "/v1/nothing/here", None).await;

        let lines = audit_lines(dir.path());
        assert_eq!(lines.len(), 3, "the GET is not audited: {lines:?}");
        assert_eq!(lines[0]["request_id"], delete_id.as_str());
        assert_eq!(lines[0]["method"], "DELETE");
        assert_eq!(lines[0]["route"], "/v1/vms/{name}");
        assert_eq!(lines[0]["path"], "/v1/vms/web1");
        assert_eq!(lines[0]["target"], "web1");
        assert_eq!(lines[0]["status"], 204);
        assert_eq!(lines[0]["error"], serde_json::Value::Null);
        assert_eq!(lines[1]["route"], "/v1/pools/{pool}/volumes/{volume}/resize");
        assert_eq!(lines[1]["target"], "default/a.qcow2");
        assert_eq!(lines[1]["error"], "vm_not_found");
        assert_eq!(lines[1]["request_id"], response_id(&failed).as_str());
        assert_eq!(lines[2]["route"], serde_json::Value::Null);
        assert_eq!(lines[2]["target"], serde_json::Value::Null);
        assert_eq!(lines[2]["status"], unmatched.status().as_u16());
        assert!(lines.iter().all(|line| line["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    }
}
