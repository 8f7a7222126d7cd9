//! A VM's serial console over a WebSocket: binary messages carry raw bytes both ways.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use hyper::header::AUTHORIZATION;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::error::ClientError;
use crate::transport::{BoxedIo, Target, check_status};

type Socket = WebSocketStream<BoxedIo>;

/// An attached console. Use it whole, or [`split`](ConsoleStream::split) it to read and write from different tasks.
pub struct ConsoleStream {
    sender: ConsoleSender,
    receiver: ConsoleReceiver,
}

/// The writing half: bytes typed into the console.
pub struct ConsoleSender {
    sink: SplitSink<Socket, Message>,
}

/// The reading half: bytes the guest wrote to its serial port.
pub struct ConsoleReceiver {
    stream: SplitStream<Socket>,
    /// Bytes received past the end of a `read_until` match, handed out first by the next read.
    pending: Vec<u8>,
}

pub(crate) async fn open(target: &Target, path: &str) -> Result<ConsoleStream, ClientError> {
    let mut request = format!("ws://{}{path}", target.host).into_client_request()?;
    if let Some(bearer) = &target.authorization {
        request.headers_mut().insert(AUTHORIZATION, bearer.clone());
    }
    let io = target.connect().await?;
    let socket = match tokio_tungstenite::client_async(request, io).await {
        Ok((socket, _response)) => socket,
        Err(WsError::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = response.into_body().map(Bytes::from).unwrap_or_default();
            check_status(status, body)?;
            return Err(ClientError::Protocol(format!("the console answered HTTP {status} instead of a WebSocket")));
        }
        Err(err) => return Err(err.into()),
    };
    let (sink, stream) = socket.split();
    Ok(ConsoleStream { sender: ConsoleSender { sink }, receiver: ConsoleReceiver { stream, pending: Vec::new() } })
}

impl ConsoleStream {
    /// Types `bytes` into the console.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sender.send(bytes).await
    }

    /// Types `line` followed by a newline.
    pub async fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        self.sender.send_line(line).await
    }

    /// The next bytes of console output; `None` once the console has closed.
    pub async fn recv(&mut self) -> Option<Result<Vec<u8>, ClientError>> {
        self.receiver.recv().await
    }

    /// Reads until `pattern` appears; see [`ConsoleReceiver::read_until`].
    pub async fn read_until(&mut self, pattern: &[u8], timeout: Duration) -> Result<Vec<u8>, ClientError> {
        self.receiver.read_until(pattern, timeout).await
    }

    /// Closes the WebSocket politely.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sender.close().await
    }

    pub fn split(self) -> (ConsoleSender, ConsoleReceiver) {
        (self.sender, self.receiver)
    }
}

impl ConsoleSender {
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(Bytes::copy_from_slice(bytes))).await?;
        Ok(())
    }

    pub async fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        self.send(format!("{line}\n").as_bytes()).await
    }

    pub async fn close(&mut self) -> Result<(), ClientError> {
        match self.sink.close().await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl ConsoleReceiver {
    /// The next non-empty chunk of console output; `None` once the console has closed.
    pub async fn recv(&mut self) -> Option<Result<Vec<u8>, ClientError>> {
        if !self.pending.is_empty() {
            return Some(Ok(std::mem::take(&mut self.pending)));
        }
        loop {
            let bytes: Vec<u8> = match self.stream.next().await? {
                Ok(Message::Binary(bytes)) => bytes.into(),
                Ok(Message::Text(text)) => text.as_str().as_bytes().to_vec(),
                Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return None;
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(err) => return Some(Err(err.into())),
            };
            if !bytes.is_empty() {
                return Some(Ok(bytes));
            }
        }
    }

    /// Reads output until `pattern` appears and returns it all, up to and including the
    /// pattern; what follows the pattern stays for the next read. On timeout or close the
    /// error carries the output seen so far, which is then gone from the stream.
    pub async fn read_until(&mut self, pattern: &[u8], timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut search_from = 0;
        loop {
            if let Some(end) = find_end(&seen, pattern, search_from) {
                self.pending = seen.split_off(end);
                return Ok(seen);
            }
            // A match may straddle two chunks: search again from just before the old end.
            search_from = seen.len().saturating_sub(pattern.len().saturating_sub(1));
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(Some(Ok(bytes))) => seen.extend_from_slice(&bytes),
                Ok(Some(Err(err))) => return Err(err),
                Ok(None) => {
                    return Err(ClientError::ConsoleClosed { pattern: pattern.to_vec(), seen });
                }
                Err(_elapsed) => {
                    return Err(ClientError::ConsoleTimeout { pattern: pattern.to_vec(), seen });
                }
            }
        }
    }
}

/// The index just past the first `pattern` in `haystack[from..]`.
fn find_end(haystack: &[u8], pattern: &[u8], from: usize) -> Option<usize> {
    if pattern.is_empty() {
        return Some(from.min(haystack.len()));
    }
    haystack
        .get(from..)?
        .windows(pattern.len())
        .position(|window| window == pattern)
        .map(|at| from + at + pattern.len())
}

#[cfg(test)]
mod tests {
    use super::find_end;

    #[test]
    fn find_end_points_past_the_match() {
        assert_eq!(find_end(b"login: ", b"login:", 0), Some(6));
        assert_eq!(find_end(b"xxlogin:", b"login:", 1), Some(8));
        assert_eq!(find_end(b"login", b"login:", 0), None);
        assert_eq!(find_end(b"abc", b"", 0), Some(0));
        assert_eq!(find_end(b"abc", b"c", 9), None);
    }
}
