//! Following the daemon's event log: `GET /v1/events` as Server-Sent Events.
//!
//! Each message carries one event (`id:` its id, `event:` its kind, `data:`
//! the event as JSON); comment lines keep an idle connection alive; an
//! `error` message carries the API error that ended the stream. Messages
//! arrive in whatever chunks the network makes of them.

use std::collections::VecDeque;

use vireo_api::{ApiError, Event};

use crate::error::ClientError;
use crate::ndjson::LineSplitter;
use crate::transport::BodyStream;

/// One Server-Sent Events message, with the fields Vireo uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Splits a byte stream into SSE messages (the `text/event-stream` format).
#[derive(Debug, Default)]
pub(crate) struct MessageReader {
    lines: LineSplitter,
    message: Message,
    /// Whether the message under way has had a `data` line (an empty one counts).
    has_data: bool,
}

impl MessageReader {
    /// Adds `chunk` and returns the messages it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, ClientError> {
        let mut messages = Vec::new();
        for line in self.lines.push(chunk)? {
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                // A blank line ends a message; one without data is nothing (as the format says).
                let message = std::mem::take(&mut self.message);
                if std::mem::take(&mut self.has_data) {
                    messages.push(message);
                }
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                // A line starting with ':' is a comment: the daemon's keep-alive.
                "" => {}
                "id" => self.message.id = Some(value.to_string()),
                "event" => self.message.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.message.data.push('\n');
                    }
                    self.message.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        Ok(messages)
    }
}

/// The event a message carries, or the error an `error` message reports.
pub(crate) fn decode(message: &Message) -> Result<Event, ClientError> {
    let unreadable = |e: serde_json::Error| {
        let quote: String = message.data.chars().take(200).collect();
        ClientError::Protocol(format!("unreadable event {quote:?}: {e}"))
    };
    if message.event.as_deref() == Some("error") {
        let error: ApiError = serde_json::from_str(&message.data).map_err(unreadable)?;
        return Err(ClientError::Api(error));
    }
    serde_json::from_str(&message.data).map_err(unreadable)
}

/// The daemon's events as they happen (see [`Client::follow_events`](crate::Client::follow_events)).
pub struct EventStream {
    body: BodyStream,
    reader: MessageReader,
    pending: VecDeque<Message>,
    last_id: Option<u64>,
}

impl EventStream {
    pub(crate) fn new(body: BodyStream, after: Option<u64>) -> Self {
        EventStream { body, reader: MessageReader::default(), pending: VecDeque::new(), last_id: after }
    }

    /// The next event; `None` when the daemon ended the stream (it shuts down).
    /// After an error the stream is over: follow again from [`last_id`](EventStream::last_id).
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                let event = decode(&message);
                if let Ok(event) = &event {
                    self.last_id = Some(event.id);
                }
                return Some(event);
            }
            let chunk = match self.body.next_chunk().await? {
                Ok(chunk) => chunk,
                Err(err) => return Some(Err(err)),
            };
            match self.reader.push(&chunk) {
                Ok(messages) => self.pending.extend(messages),
                Err(err) => return Some(Err(err)),
            }
        }
    }

    /// The id of the last event received (or the one the stream started after):
    /// where a new stream resumes without a gap or a repeat.
    pub fn last_id(&self) -> Option<u64> {
        self.last_id
    }
}

#[cfg(test)]
mod tests {
    use vireo_api::{ErrorCode, EventKind};

    use super::*;

    const STARTED: &str = r#"{"id":12,"time":"2025-01-01T00:00:00.000Z","vm":"web1","kind":"vm.started","details":{}}"#;

    #[test]
    fn messages_survive_any_chunking() {
        let stream = format!(":\n\nid: 12\nevent: vm.started\ndata: {STARTED}\n\n");
        let whole = MessageReader::default().push(stream.as_bytes()).unwrap();
        assert_eq!(whole.len(), 1, "the keep-alive comment is no message");
        assert_eq!(whole[0].id.as_deref(), Some("12"));
        assert_eq!(whole[0].event.as_deref(), Some("vm.started"));
        assert_eq!(whole[0].data, STARTED);
        let mut reader = MessageReader::default();
        let mut bytewise = Vec::new();
        for byte in stream.as_bytes() {
            bytewise.extend(reader.push(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn data_lines_join_and_crlf_counts_as_a_line_end() {
        let messages = MessageReader::default().push(b"data:a\r\ndata: b\r\nid:3\r\n\r\nevent: x\n\n").unwrap();
        assert_eq!(messages, [Message { id: Some("3".into()), event: None, data: "a\nb".into() }]);
    }

    #[test]
    fn messages_decode_to_events_or_errors() {
        let message = Message { id: Some("12".into()), event: Some("vm.started".into()), data: STARTED.into() };
        let event = decode(&message).unwrap();
        assert_eq!((event.id, event.vm.as_deref(), event.kind), (12, Some("web1"), EventKind::VmStarted {}));
        let error = Message {
            event: Some("error".into()),
            data: r#"{"code":"internal","message":"state store failed"}"#.into(),
            ..Message::default()
        };
        assert_eq!(decode(&error).unwrap_err().api().map(|e| e.code), Some(ErrorCode::Internal));
        let garbage = Message { data: "{not json".into(), ..Message::default() };
        assert!(matches!(decode(&garbage), Err(ClientError::Protocol(_))));
    }
}
