//! `/v1/vms/{name}/vnc`: the graphical display over a WebSocket.
//!
//! QEMU's VNC server listens on a Unix socket in the VM's private directory
//! (`vnc.sock`, never a TCP port). Each WebSocket gets a connection of its own to
//! it, and binary messages carry the raw RFB stream both ways, as noVNC expects;
//! the daemon's token is the only guard, as for the serial console.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::Instrument;

use super::AppState;
use super::websocket::{binary_upgrade, client_bytes};
use crate::error::ServerError;

/// How much of QEMU's output one WebSocket message carries at most.
const CHUNK: usize = 64 * 1024;

#[utoipa::path(operation_id = "attach_vm_vnc", get, path = "/v1/vms/{name}/vnc", tag = "vms", params(("name" = String, Path)),
    responses((status = 101, description = "WebSocket (subprotocol `binary`): binary frames of the raw RFB stream of QEMU's VNC server, both directions"),
        (status = 404, body = vireo_api::ApiError),
        (status = 409, description = "`no_display`: the VM has no display; `invalid_state`: the VM is not running", body = vireo_api::ApiError)))]
pub async fn attach(
    State(state): State<AppState>,
    Path(name): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ServerError> {
    let socket_path = state.manager.vnc_socket(&name).await?;
    let upgrade = binary_upgrade(upgrade, "the display")?;
    // Connected before the 101, so a VNC server that is not there is an HTTP error.
    let vnc = connect(&socket_path).await?;
    let span = tracing::Span::current();
    Ok(upgrade.on_upgrade(move |socket| relay(socket, vnc).instrument(span)))
}

async fn connect(path: &std::path::Path) -> Result<UnixStream, ServerError> {
    UnixStream::connect(path).await.map_err(|source| ServerError::Io { path: path.display().to_string(), source })
}

/// Copies bytes both ways until either side closes; the other side is then closed too.
async fn relay(socket: WebSocket, vnc: UnixStream) {
    let (mut to_client, from_client) = socket.split();
    let (mut from_vnc, mut to_vnc) = vnc.into_split();
    let forward_output = async {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match from_vnc.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(Message::Binary(Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.close().await;
    };
    let forward_input = async {
        let mut input = std::pin::pin!(client_bytes(from_client));
        while let Some(bytes) = input.next().await {
            if to_vnc.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = forward_output => {},
        () = forward_input => {},
    }
    tracing::debug!("vnc session ended");
}
