//! Bearer-token check for the TCP listener (the Unix socket relies on file permissions).
//!
//! The token comes in the `Authorization: Bearer` header. A browser cannot set
//! headers on a WebSocket, so a WebSocket upgrade may instead offer it as a
//! subprotocol `vireo.token.<token>` beside the protocol it speaks (`binary`);
//! the handler answers with `binary`, never echoing the token.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ServerError;
use crate::token::ApiToken;

/// The subprotocol prefix that carries the token on a WebSocket upgrade.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "vireo.token.";

pub async fn require_token(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    match presented_token(request.headers()) {
        Some(presented) if token.matches(presented) => {
            let mut response = next.run(request).await;
            // Names the client in the audit log (see request_log.rs).
            response.extensions_mut().insert(token.fingerprint());
            response
        }
        _ => ServerError::Unauthorized.into_response(),
    }
}

/// The token of the `Authorization` header, else of a WebSocket upgrade's subprotocols.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| subprotocol_token(headers))
}

fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    let upgrade = headers.get(UPGRADE).and_then(|value| value.to_str().ok());
    if !upgrade.is_some_and(|value| value.eq_ignore_ascii_case("websocket")) {
        return None;
    }
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_authorization_header_carries_the_token() {
        assert_eq!(presented_token(&headers(&[(AUTHORIZATION, "Bearer abc ")])), Some("abc"));
        assert_eq!(presented_token(&headers(&[(AUTHORIZATION, "Basic abc")])), None);
    }

    #[test]
    fn a_websocket_upgrade_may_offer_the_token_as_a_subprotocol() {
        let offered = [(UPGRADE, "websocket"), (SEC_WEBSOCKET_PROTOCOL, "binary, vireo.token.abc")];
        assert_eq!(presented_token(&headers(&offered)), Some("abc"));
        let split =
            [(UPGRADE, "WebSocket"), (SEC_WEBSOCKET_PROTOCOL, "binary"), (SEC_WEBSOCKET_PROTOCOL, "vireo.token.x")];
        assert_eq!(presented_token(&headers(&split)), Some("x"));
    }

    #[test]
    fn a_plain_request_cannot_use_the_subprotocol_header() {
        assert_eq!(presented_token(&headers(&[(SEC_WEBSOCKET_PROTOCOL, "vireo.token.abc")])), None);
    }
}
