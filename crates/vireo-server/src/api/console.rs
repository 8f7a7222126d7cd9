//! `/v1/vms/{name}/console`: the serial console over a WebSocket.
//!
//! Binary messages carry raw bytes both ways: what the guest prints, and
//! keystrokes for it. Any number of clients may attach at once.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use super::AppState;
use super::websocket::{binary_upgrade, client_bytes};
use crate::error::ServerError;

#[utoipa::path(operation_id = "attach_vm_console", get, path = "/v1/vms/{name}/console", tag = "vms", params(("name" = String, Path)),
    responses((status = 101, description = "WebSocket: binary frames of raw console bytes, both directions"),
        (status = 404, body = vireo_api::ApiError), (status = 409, description = "VM not running", body = vireo_api::ApiError)))]
pub async fn attach(
    State(state): State<AppState>,
    Path(name): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ServerError> {
    let hub = state.manager.console(&name).await?;
    let upgrade = binary_upgrade(upgrade, "the console")?;
    // The session outlives the request (finished with the 101) but logs
    // under its span, so its lines carry the request id.
    let span = tracing::Span::current();
    Ok(upgrade.on_upgrade(move |socket| relay(socket, hub).instrument(span)))
}

async fn relay(socket: WebSocket, hub: std::sync::Arc<crate::console::ConsoleHub>) {
    let (mut to_client, from_client) = socket.split();
    let mut output = hub.subscribe();
    let forward_output = async {
        loop {
            match output.recv().await {
                Ok(chunk) => {
                    if to_client.send(Message::Binary(chunk)).await.is_err() {
                        break;
                    }
                }
                // A slow client misses some output rather than slowing the guest down.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            }
        }
        let _ = to_client.close().await;
    };
    let forward_input = async {
        let mut input = std::pin::pin!(client_bytes(from_client));
        while let Some(bytes) = input.next().await {
            if !hub.send(bytes).await {
                break;
            }
        }
    };
    tokio::select! {
        () = forward_output => {},
        () = forward_input => {},
        () = hub.wait_closed() => {},
    }
    tracing::debug!("console session ended");
}
