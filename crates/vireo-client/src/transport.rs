//! One HTTP/1.1 connection per request, over a Unix socket or TCP.
//!
//! The daemon is local or one hop away and requests are rare, so connection
//! reuse is not worth its complexity here.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use vireo_api::ApiError;

use crate::Endpoint;
use crate::error::ClientError;

/// A TCP connect to an unreachable host would otherwise hang for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest piece of a non-API error body quoted in an error message.
const MAX_BODY_QUOTE: usize = 200;

/// A byte stream to the daemon, whichever transport carries it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type BoxedIo = Box<dyn Io>;

/// An endpoint checked and ready to connect to.
pub(crate) struct Target {
    address: Address,
    /// The `Host` header (and WebSocket URI authority).
    pub(crate) host: String,
    /// `Bearer TOKEN` on TCP; none on the Unix socket, where file permissions guard access.
    pub(crate) authorization: Option<HeaderValue>,
}

enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Target {
    pub(crate) fn from_endpoint(endpoint: &Endpoint) -> Result<Self, ClientError> {
        match endpoint {
            Endpoint::Unix(path) => {
                Ok(Target { address: Address::Unix(path.clone()), host: "localhost".to_string(), authorization: None })
            }
            Endpoint::Tcp { url, token } => {
                let authority = parse_http_url(url)?;
                let mut bearer =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::InvalidToken)?;
                bearer.set_sensitive(true);
                Ok(Target { address: Address::Tcp(authority.clone()), host: authority, authorization: Some(bearer) })
            }
        }
    }

    fn describe(&self) -> String {
        match &self.address {
            Address::Unix(path) => path.display().to_string(),
            Address::Tcp(authority) => format!("http://{authority}"),
        }
    }

    pub(crate) async fn connect(&self) -> Result<BoxedIo, ClientError> {
        let connected: std::io::Result<BoxedIo> = match &self.address {
            Address::Unix(path) => UnixStream::connect(path).await.map(|s| Box::new(s) as BoxedIo),
            Address::Tcp(authority) => {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
                    Ok(result) => result.map(|s| Box::new(s) as BoxedIo),
                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")),
                }
            }
        };
        connected.map_err(|source| ClientError::Connect { target: self.describe(), source })
    }

    /// Sends one request and returns the body of a 2xx answer; anything else becomes an error.
    pub(crate) async fn send(&self, method: Method, path: &str, json: Option<Vec<u8>>) -> Result<Bytes, ClientError> {
        let request = self.request(method, path, json, "application/json")?;
        let io = self.connect().await?;
        let http_error = |source| ClientError::Http { target: self.describe(), source };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(http_error)?;
        // The exchange owns the sender, so the connection winds down as soon as the body is read.
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (exchanged, _) = tokio::join!(exchange, connection);
        let (status, body) = exchanged.map_err(http_error)?;
        check_status(status, body)
    }

    /// Sends one request (see [`request`](Target::request)) whose 2xx answer is a stream
    /// (NDJSON, Server-Sent Events), to be read as it arrives; an error status is read
    /// whole and becomes an error as with [`send`](Target::send).
    pub(crate) async fn open_stream(&self, request: Request<Full<Bytes>>) -> Result<BodyStream, ClientError> {
        let io = self.connect().await?;
        let http_error = |source| ClientError::Http { target: self.describe(), source };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(http_error)?;
        // The body is read after this returns, so the connection must be driven by a task of its own.
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.into_body().collect().await.map_err(http_error)?.to_bytes();
            return Err(status_error(status, &body));
        }
        Ok(BodyStream { body: response.into_body(), target: self.describe(), _sender: sender, _connection: connection })
    }

    /// A request to the daemon, with `accept` as what the caller reads.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        accept: &'static str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(USER_AGENT, concat!("vireo-client/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, accept);
        if let Some(bearer) = &self.authorization {
            builder = builder.header(AUTHORIZATION, bearer.clone());
        }
        if json.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        builder
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(format!("cannot build request for {path}: {e}")))
    }
}

/// The body of a 2xx answer, chunk by chunk as the daemon sends it.
pub(crate) struct BodyStream {
    body: Incoming,
    target: String,
    /// Kept so the connection stays open until the body has been read.
    _sender: SendRequest<Full<Bytes>>,
    _connection: AbortOnDrop,
}

impl BodyStream {
    /// The next non-empty chunk; `None` at the end of the body.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<Bytes, ClientError>> {
        loop {
            match self.body.frame().await? {
                // Trailers carry nothing this client uses.
                Ok(frame) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Some(Ok(data)),
                    _ => continue,
                },
                Err(source) => return Some(Err(ClientError::Http { target: self.target.clone(), source })),
            }
        }
    }
}

/// A task that ends with its owner, so an abandoned stream does not leave a connection behind.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A 2xx body, or the error the daemon described.
pub(crate) fn check_status(status: StatusCode, body: Bytes) -> Result<Bytes, ClientError> {
    if status.is_success() {
        return Ok(body);
    }
    Err(status_error(status, &body))
}

/// The error an error status stands for: the daemon's API error, or a quote of whatever else answered.
fn status_error(status: StatusCode, body: &[u8]) -> ClientError {
    if let Ok(api) = serde_json::from_slice::<ApiError>(body) {
        return ClientError::Api(api);
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(MAX_BODY_QUOTE).collect();
    let body = if text.is_empty() { status.canonical_reason().unwrap_or("no reason given").to_string() } else { text };
    ClientError::Status { status: status.as_u16(), body }
}

/// `http://HOST:PORT[/]` → `HOST:PORT`, with port 80 when none is given.
pub(crate) fn parse_http_url(url: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            return Err(invalid("https is not supported; use http://HOST:PORT"));
        }
        return Err(invalid("expected http://HOST:PORT"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return Err(invalid("expected http://HOST:PORT with no path, query or user"));
    }
    let port_separator = if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(invalid("unclosed '[' in IPv6 address"));
        };
        authority[close..].find(':').map(|offset| close + offset)
    } else {
        authority.rfind(':')
    };
    match port_separator {
        None => Ok(format!("{authority}:80")),
        Some(index) => {
            let port = &authority[index + 1..];
            if port.parse::<u16>().is_err() {
                return Err(invalid("the port must be a number from 0 to 65535"));
            }
            if index == 0 {
                return Err(invalid("no host"));
            }
            Ok(authority.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_become_authorities() {
        assert_eq!(parse_http_url("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(parse_http_url("http://host.example:9/").unwrap(), "host.example:9");
        assert_eq!(parse_http_url("http://[::1]:8080").unwrap(), "[::1]:8080");
        assert_eq!(parse_http_url("http://[::1]").unwrap(), "[::1]:80");
        assert_eq!(parse_http_url("http://localhost").unwrap(), "localhost:80");
    }

    #[test]
    fn unusable_urls_are_refused() {
        for url in [
            "https://h:1",
            "h:1",
            "http://",
            "http://:80",
            "http://h:port",
            "http://h:1/v1",
            "http://u@h:1",
            "http://[::1:80",
            "http://h:99999",
        ] {
            assert!(matches!(parse_http_url(url), Err(ClientError::InvalidUrl { .. })), "{url} should be refused");
        }
    }

    #[test]
    fn error_statuses_carry_the_api_error_or_a_quote() {
        let body = Bytes::from_static(br#"{"code":"vm_not_found","message":"no VM named x"}"#);
        let err = check_status(StatusCode::NOT_FOUND, body).unwrap_err();
        assert_eq!(err.api().map(|e| e.message.as_str()), Some("no VM named x"));
        let err = check_status(StatusCode::BAD_GATEWAY, Bytes::from_static(b"<h1>\nbad\ngateway</h1>")).unwrap_err();
        assert_eq!(err.to_string(), "the daemon answered HTTP 502: <h1> bad gateway</h1>");
        let err = check_status(StatusCode::BAD_GATEWAY, Bytes::new()).unwrap_err();
        assert_eq!(err.to_string(), "the daemon answered HTTP 502: Bad Gateway");
        assert!(check_status(StatusCode::NO_CONTENT, Bytes::new()).is_ok());
    }
}
