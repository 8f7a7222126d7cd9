//! The one error type of the client.

use vireo_api::ApiError;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (no socket, daemon down, connection refused).
    #[error("cannot reach the vireo daemon at {target}: {} (is `vireo serve` running?)", io_reason(.source))]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The `http://HOST:PORT` URL of a TCP endpoint is unusable.
    #[error("invalid daemon URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The bearer token cannot be sent in an HTTP header.
    #[error("the API token contains characters that cannot be sent in an HTTP header")]
    InvalidToken,
    /// A name that cannot name a route (the empty name); `what` says whose name it is.
    #[error("a {what} name must not be empty")]
    EmptyName { what: &'static str },
    /// A volume reference without the `/` of `POOL/NAME`.
    #[error("'{text}' is not of the form POOL/NAME")]
    NotAVolume { text: String },
    /// The daemon refused the request and said why.
    #[error("{}", api_message(.0))]
    Api(ApiError),
    /// The daemon (or something in front of it) answered an error status without an API error body.
    #[error("the daemon answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The HTTP exchange broke off.
    #[error("request to the vireo daemon at {target} failed")]
    Http {
        target: String,
        #[source]
        source: hyper::Error,
    },
    /// The console WebSocket failed.
    #[error("console connection failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The daemon answered something this client does not understand.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// `read_until` saw no match in time; `seen` holds what did arrive.
    #[error("timed out waiting for {:?} on the console; last output: {:?}", String::from_utf8_lossy(.pattern), tail_text(.seen))]
    ConsoleTimeout { pattern: Vec<u8>, seen: Vec<u8> },
    /// The console closed before `read_until` saw its pattern.
    #[error("the console closed before {:?} appeared; last output: {:?}", String::from_utf8_lossy(.pattern), tail_text(.seen))]
    ConsoleClosed { pattern: Vec<u8>, seen: Vec<u8> },
}

impl ClientError {
    /// The API error the daemon sent, if that is what this is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(err) => Some(err),
            _ => None,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(err: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(err))
    }
}

/// The message, prefixed by the field at fault unless the message already starts with it.
fn api_message(err: &ApiError) -> String {
    match &err.field {
        Some(field) if !field.is_empty() && !err.message.starts_with(field.as_str()) => {
            format!("{field}: {}", err.message)
        }
        _ => err.message.clone(),
    }
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(index) if text.ends_with(')') => text[..index].to_string(),
        _ => text,
    }
}

/// The last few hundred bytes of console output, for error messages.
fn tail_text(seen: &[u8]) -> String {
    const TAIL: usize = 300;
    let start = seen.len().saturating_sub(TAIL);
    String::from_utf8_lossy(&seen[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use vireo_api::ErrorCode;

    use super::*;

    #[test]
    fn connect_error_reads_as_one_sentence() {
        let err =
            ClientError::Connect { target: "/run/vireo.sock".into(), source: std::io::Error::from_raw_os_error(2) };
        assert_eq!(
            err.to_string(),
            "cannot reach the vireo daemon at /run/vireo.sock: No such file or directory \
             (is `vireo serve` running?)"
        );
    }

    #[test]
    fn api_errors_name_their_field_once() {
        let plain = ClientError::Api(ApiError::new(ErrorCode::VmNotFound, "no VM named web1"));
        assert_eq!(plain.to_string(), "no VM named web1");
        let field = ApiError::new(ErrorCode::InvalidSpec, "must be between 16MiB and 1TiB").with_field("memory");
        assert_eq!(ClientError::Api(field).to_string(), "memory: must be between 16MiB and 1TiB");
        let prefixed = ApiError::new(ErrorCode::InvalidSpec, "memory: too small").with_field("memory");
        assert_eq!(ClientError::Api(prefixed).to_string(), "memory: too small");
    }
}
