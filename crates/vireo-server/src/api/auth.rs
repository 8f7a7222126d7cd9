//! Bearer-token check for the TCP listener (the Unix socket relies on file permissions).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ServerError;
use crate::token::ApiToken;

pub async fn require_token(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token.matches(presented.trim()) => {
            let mut response = next.run(request).await;
            // Names the client in the audit log (see request_log.rs).
            response.extensions_mut().insert(token.fingerprint());
            response
        }
        _ => ServerError::Unauthorized.into_response(),
    }
}
