//! Reading the NDJSON progress stream of a long storage operation (`POST .../import`).
//!
//! Each line is one `vireo_api::Progress`: fractions done, then exactly one `done` or `error`.
//! Lines arrive in whatever chunks the network makes of them, so a line may be split
//! across chunks and a chunk may hold several lines.

use vireo_api::{Progress, Volume};

use crate::error::ClientError;

/// The longest line accepted; a progress line is tens of bytes, a volume or an event a few hundred.
const MAX_LINE: usize = 1024 * 1024;

/// Splits a byte stream into lines, whatever chunk boundaries it arrives in.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// The start of a line whose `\n` has not arrived yet.
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Adds `chunk` and returns the lines it completed, without their `\n`.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..end]);
            lines.push(line);
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            return Err(ClientError::Protocol(format!("a line of the stream is longer than {MAX_LINE} bytes")));
        }
        Ok(lines)
    }

    /// The last line once the stream has ended, if it did not end with `\n`.
    pub(crate) fn finish(self) -> Option<Vec<u8>> {
        Some(self.partial).filter(|line| !line.is_empty())
    }
}

/// One line of the stream; `None` for a blank line.
pub(crate) fn decode_line(line: &[u8]) -> Result<Option<Progress>, ClientError> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(line).map(Some).map_err(|e| {
        let text = String::from_utf8_lossy(line);
        let quote: String = text.chars().take(200).collect();
        ClientError::Protocol(format!("unreadable progress line {quote:?}: {e}"))
    })
}

/// Follows a progress stream to its end: reports fractions to `on_progress`, and yields the
/// volume of the `done` line or the API error of the `error` line.
pub(crate) struct ProgressReader<F> {
    lines: LineSplitter,
    on_progress: F,
}

impl<F: FnMut(f64)> ProgressReader<F> {
    pub(crate) fn new(on_progress: F) -> Self {
        ProgressReader { lines: LineSplitter::default(), on_progress }
    }

    /// Takes the next chunk; `Some` once the operation has finished, with its volume.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Option<Volume>, ClientError> {
        for line in self.lines.push(chunk)? {
            if let Some(volume) = self.line(&line)? {
                return Ok(Some(volume));
            }
        }
        Ok(None)
    }

    /// The stream has ended: its last line must have finished the operation.
    pub(crate) fn finish(mut self) -> Result<Volume, ClientError> {
        let truncated =
            || ClientError::Protocol("the progress stream ended before the daemon reported the result".into());
        if let Some(line) = std::mem::take(&mut self.lines).finish() {
            // A last line without its newline is whole only if it decodes.
            match self.line(&line) {
                Ok(Some(volume)) => return Ok(volume),
                Ok(None) | Err(ClientError::Protocol(_)) => return Err(truncated()),
                Err(err) => return Err(err),
            }
        }
        Err(truncated())
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Volume>, ClientError> {
        match decode_line(line)? {
            None => Ok(None),
            Some(Progress::Progress(fraction)) => {
                (self.on_progress)(fraction.clamp(0.0, 1.0));
                Ok(None)
            }
            Some(Progress::Done(volume)) => Ok(Some(volume)),
            Some(Progress::Error(err)) => Err(ClientError::Api(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use vireo_api::ErrorCode;

    use super::*;

    const DONE: &str = r#"{"done":{"pool":"default","name":"root.qcow2","format":"qcow2","capacity_bytes":1073741824,
        "allocation_bytes":4096,"path":"/p/root.qcow2","backing":null,"used_by":[]}}"#;

    fn done_line() -> String {
        format!("{}\n", DONE.replace('\n', " "))
    }

    #[test]
    fn lines_survive_any_chunking() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"{\"progress\":0.1}\n{\"prog").unwrap(), vec![b"{\"progress\":0.1}".to_vec()]);
        assert_eq!(splitter.push(b"ress\":").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(splitter.push(b"0.5}\n\n{\"x\"").unwrap(), vec![b"{\"progress\":0.5}".to_vec(), Vec::new()]);
        assert_eq!(splitter.finish(), Some(b"{\"x\"".to_vec()));
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"a\n").unwrap().len(), 1);
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut splitter = LineSplitter::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..17 {
            result = splitter.push(&chunk);
        }
        assert!(matches!(result, Err(ClientError::Protocol(_))), "{result:?}");
    }

    #[test]
    fn lines_decode_to_progress() {
        assert_eq!(decode_line(b"{\"progress\":0.42}").unwrap(), Some(Progress::Progress(0.42)));
        assert_eq!(decode_line(b"{\"progress\":1}\r").unwrap(), Some(Progress::Progress(1.0)));
        assert_eq!(decode_line(b"  \r").unwrap(), None);
        let err = decode_line(b"{\"percent\":3}").unwrap_err();
        assert!(err.to_string().contains("unreadable progress line"), "{err}");
        let err = decode_line(br#"{"error":{"code":"qemu_failed","message":"qemu-img: bad image"}}"#).unwrap();
        assert!(matches!(err, Some(Progress::Error(e)) if e.code == ErrorCode::QemuFailed));
    }

    #[test]
    fn a_reader_reports_progress_then_the_volume() {
        let mut seen = Vec::new();
        let mut reader = ProgressReader::new(|fraction| seen.push(fraction));
        assert!(reader.feed(b"{\"progress\":0.25}\n{\"progress\":").unwrap().is_none());
        assert!(reader.feed(b"0.5}\n{\"progress\":7}\n").unwrap().is_none());
        let line = done_line();
        let (head, tail) = line.split_at(30);
        assert!(reader.feed(head.as_bytes()).unwrap().is_none());
        let volume = reader.feed(tail.as_bytes()).unwrap().expect("done");
        assert_eq!((volume.pool.as_str(), volume.name.as_str()), ("default", "root.qcow2"));
        drop(reader);
        assert_eq!(seen, [0.25, 0.5, 1.0]);
    }

    #[test]
    fn a_last_line_without_newline_still_counts() {
        let mut reader = ProgressReader::new(|_| {});
        assert!(reader.feed(done_line().trim_end().as_bytes()).unwrap().is_none());
        assert_eq!(reader.finish().unwrap().name, "root.qcow2");
    }

    #[test]
    fn an_error_line_is_an_api_error() {
        let mut reader = ProgressReader::new(|_| {});
        let err = reader
            .feed(
                b"{\"progress\":0.1}\n{\"error\":{\"code\":\"qemu_failed\",\"message\":\"source is not an image\"}}\n",
            )
            .unwrap_err();
        assert_eq!(err.api().map(|e| e.code), Some(ErrorCode::QemuFailed));
        assert_eq!(err.to_string(), "source is not an image");
    }

    #[test]
    fn a_stream_ending_early_is_a_protocol_error() {
        let mut reader = ProgressReader::new(|_| {});
        assert!(reader.feed(b"{\"progress\":0.1}\n{\"progress\":0.2").unwrap().is_none());
        let err = reader.finish().unwrap_err();
        assert!(err.to_string().contains("ended before"), "{err}");
        let err = ProgressReader::new(|_| {}).finish().unwrap_err();
        assert!(err.to_string().contains("ended before"), "{err}");
    }
}
