//! The console hub: one per running VM, it owns the connection to QEMU's
//! serial console, keeps a size-bounded log of everything the guest printed,
//! and fans output out to any number of attached clients.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, watch};

/// Output chunks kept for a slow client before it starts losing data.
const FANOUT_BACKLOG: usize = 1024;
const INPUT_BACKLOG: usize = 256;

pub struct ConsoleHub {
    output: broadcast::Sender<Bytes>,
    input: mpsc::Sender<Bytes>,
    /// Becomes true when the guest's console connection closes (QEMU exited).
    closed: watch::Receiver<bool>,
}

impl ConsoleHub {
    /// Takes over a connected console stream; the hub lives until the stream closes.
    pub fn start(stream: UnixStream, mut log: ConsoleLog) -> Arc<Self> {
        let (output, _) = broadcast::channel(FANOUT_BACKLOG);
        let (input, mut input_rx) = mpsc::channel::<Bytes>(INPUT_BACKLOG);
        let (mut reader, mut writer) = stream.into_split();
        let fanout = output.clone();
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        if let Err(err) = log.append(&chunk) {
                            tracing::warn!(error = %err, "cannot write console log");
                        }
                        // No receivers is fine: nobody is attached.
                        let _ = fanout.send(chunk);
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        tokio::spawn(async move {
            while let Some(bytes) = input_rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        Arc::new(ConsoleHub { output, input, closed })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.output.subscribe()
    }

    /// Resolves once the console connection has closed.
    pub async fn wait_closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Sends keystrokes to the guest; false once the console is gone.
    pub async fn send(&self, bytes: Bytes) -> bool {
        self.input.send(bytes).await.is_ok()
    }
}

/// A console log bounded to `max_bytes` in two halves: `console.log` is
/// written until it holds half the budget, then it becomes `console.log.1`
/// (replacing the older half) and a new `console.log` starts.
pub struct ConsoleLog {
    current: PathBuf,
    previous: PathBuf,
    file: File,
    written: u64,
    half: u64,
}

impl ConsoleLog {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let current = dir.join("console.log");
        let previous = dir.join("console.log.1");
        let file = OpenOptions::new().create(true).append(true).open(&current)?;
        let written = file.metadata()?.len();
        Ok(ConsoleLog { current, previous, file, written, half: (max_bytes / 2).max(1) })
    }

    pub fn append(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.written >= self.half {
                self.rotate()?;
            }
            let room = usize::try_from(self.half - self.written).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.file.write_all(now)?;
            self.written += now.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.current, &self.previous)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.current)?;
        self.written = 0;
        Ok(())
    }
}

/// The last `tail` bytes (or everything) the guest printed, oldest first.
pub fn read_console_log(dir: &Path, tail: Option<u64>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for name in ["console.log.1", "console.log"] {
        match File::open(dir.join(name)) {
            Ok(mut file) => {
                file.read_to_end(&mut out)?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    if let Some(tail) = tail {
        let keep = usize::try_from(tail).unwrap_or(usize::MAX).min(out.len());
        out.drain(..out.len() - keep);
    }
    Ok(out)
}

/// The last `max` bytes of a text file, for error messages (e.g. QEMU's stderr).
pub fn tail_of_file(path: &Path, max: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_stays_within_its_budget_and_keeps_the_newest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ConsoleLog::open(dir.path(), 100).unwrap();
        for i in 0..50u8 {
            log.append(&[b'a' + (i % 26); 7]).unwrap();
        }
        let all = read_console_log(dir.path(), None).unwrap();
        assert!(all.len() <= 100, "log holds {} bytes", all.len());
        assert!(all.len() >= 50);
        assert!(all.ends_with(&[b'a' + (49 % 26); 7]), "newest output is kept");
        assert_eq!(read_console_log(dir.path(), Some(3)).unwrap(), vec![b'a' + (49 % 26); 3]);
    }

    #[test]
    fn log_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        ConsoleLog::open(dir.path(), 1000).unwrap().append(b"first ").unwrap();
        ConsoleLog::open(dir.path(), 1000).unwrap().append(b"second").unwrap();
        assert_eq!(read_console_log(dir.path(), None).unwrap(), b"first second");
    }

    #[test]
    fn missing_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_console_log(dir.path(), None).unwrap().is_empty());
    }
}
