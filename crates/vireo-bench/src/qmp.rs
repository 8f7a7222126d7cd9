//! A minimal QMP client for the plain QEMU of section 3: one connection, one
//! command at a time, events queued in order until asked for. It is not
//! vireo-qemu's client on purpose: the plain side is QEMU's own cost, and this
//! is about as little as a script driving QEMU by hand would do.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

pub struct RawQmp {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    /// Events read while waiting for a reply, oldest first.
    events: VecDeque<Value>,
    next_id: u64,
    timeout: Duration,
}

impl RawQmp {
    /// Reads the greeting and leaves capability negotiation (`qmp_capabilities`).
    /// Every later wait for a reply or an event gives up after `timeout`.
    pub async fn handshake(stream: UnixStream, timeout: Duration) -> anyhow::Result<RawQmp> {
        let (read, write) = stream.into_split();
        let mut qmp =
            RawQmp { lines: BufReader::new(read).lines(), write, events: VecDeque::new(), next_id: 1, timeout };
        let deadline = Instant::now() + timeout;
        let greeting = qmp.read(deadline).await?;
        if greeting.get("QMP").is_none() {
            bail!("expected the QMP greeting, got {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Sends one command and returns its `return` value; an `error` reply is an error.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = json!({ "execute": command, "arguments": arguments, "id": id }).to_string();
        line.push('\n');
        self.write.write_all(line.as_bytes()).await.with_context(|| format!("cannot send {command}"))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read(deadline).await.with_context(|| format!("no reply to {command}"))?;
            if message.get("event").is_some() {
                self.events.push_back(message);
            } else if message["id"] == id {
                if let Some(error) = message.get("error") {
                    bail!("{command}: {}", error["desc"].as_str().unwrap_or("QEMU gave no reason"));
                }
                return Ok(message.get("return").cloned().unwrap_or(Value::Null));
            }
        }
    }

    /// The first event, queued or new, for which `wanted` holds; the events before it are dropped.
    pub async fn wait_event(&mut self, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        while let Some(event) = self.events.pop_front() {
            if wanted(&event) {
                return Ok(event);
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read(deadline).await?;
            if message.get("event").is_some() && wanted(&message) {
                return Ok(message);
            }
        }
    }

    /// Forgets the events read so far. Those still unread come before the reply of the next command.
    pub fn discard_events(&mut self) {
        self.events.clear();
    }

    async fn read(&mut self, deadline: Instant) -> anyhow::Result<Value> {
        let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
            Err(_) => bail!("QEMU did not answer within {:?}", self.timeout),
            Ok(line) => line.context("cannot read from QMP")?.context("QEMU closed QMP")?,
        };
        serde_json::from_str(&line).with_context(|| format!("QMP sent something else than JSON: {line}"))
    }
}

/// `{"event": NAME, "data": {KEY: VALUE, …}}` with every given pair.
pub fn is_event(event: &Value, name: &str, data: &[(&str, &str)]) -> bool {
    event["event"] == name && data.iter().all(|(key, value)| event["data"][key] == *value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_are_matched_and_events_kept_for_later() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let qemu = tokio::spawn(async move {
            let (read, mut write) = theirs.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"{\"QMP\":{\"version\":{}}}\n").await.unwrap();
            let caps: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(caps["execute"], "qmp_capabilities");
            write.write_all(b"{\"return\":{},\"id\":1}\n").await.unwrap();
            let job: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!((job["execute"].as_str(), job["arguments"]["tag"].as_str()), (Some("snapshot-save"), Some("t")));
            // The job's events may come before its reply.
            write
                .write_all(
                    b"{\"event\":\"JOB_STATUS_CHANGE\",\"data\":{\"id\":\"j\",\"status\":\"created\"}}\n\
                      {\"event\":\"JOB_STATUS_CHANGE\",\"data\":{\"id\":\"j\",\"status\":\"concluded\"}}\n\
                      {\"return\":{},\"id\":2}\n",
                )
                .await
                .unwrap();
            let bad: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(bad["id"], 3);
            write
                .write_all(b"{\"error\":{\"class\":\"GenericError\",\"desc\":\"no such job\"},\"id\":3}\n")
                .await
                .unwrap();
        });
        let mut qmp = RawQmp::handshake(ours, Duration::from_secs(5)).await.unwrap();
        qmp.execute("snapshot-save", json!({"job-id": "j", "tag": "t"})).await.unwrap();
        let done = qmp.wait_event(|e| is_event(e, "JOB_STATUS_CHANGE", &[("id", "j"), ("status", "concluded")])).await;
        assert_eq!(done.unwrap()["data"]["status"], "concluded");
        let err = qmp.execute("job-dismiss", json!({"id": "x"})).await.unwrap_err();
        assert_eq!(err.to_string(), "job-dismiss: no such job");
        qemu.await.unwrap();
        let err = qmp.wait_event(|_| true).await.unwrap_err();
        assert_eq!(err.to_string(), "QEMU closed QMP");
    }
}
