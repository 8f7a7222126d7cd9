//! What the WebSocket routes (serial console, VNC display) share.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use bytes::Bytes;
use futures_util::stream::SplitStream;
use futures_util::{Stream, StreamExt};

use crate::error::ServerError;

/// The subprotocol the WebSocket routes answer with when a client offers it
/// (browsers must offer one to pass the token; see auth.rs): raw binary frames.
pub const SUBPROTOCOL: &str = "binary";

/// The upgrade, answering with [`SUBPROTOCOL`]; a plain HTTP request to `what` is a 400.
pub fn binary_upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    what: &str,
) -> Result<WebSocketUpgrade, ServerError> {
    let upgrade =
        upgrade.map_err(|e| ServerError::BadRequest(format!("{what} needs a WebSocket upgrade: {}", e.body_text())))?;
    Ok(upgrade.protocols([SUBPROTOCOL]))
}

/// The bytes a client sends, binary or text frames alike, until it closes or fails.
pub fn client_bytes(from_client: SplitStream<WebSocket>) -> impl Stream<Item = Bytes> {
    from_client
        .take_while(|message| {
            std::future::ready(matches!(message, Ok(message) if !matches!(message, Message::Close(_))))
        })
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Binary(bytes)) => Some(bytes),
                Ok(Message::Text(text)) => Some(Bytes::from(text.as_str().to_owned())),
                _ => None,
            })
        })
}
