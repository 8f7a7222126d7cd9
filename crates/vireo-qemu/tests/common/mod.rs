//! Shared helpers of the integration tests that boot the real test guest under TCG.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc::UnboundedReceiver;
use vireo_api::VmSpec;
use vireo_qemu::QemuEvent;

/// TCG on a busy 2-core machine with tests in parallel: generous, but finite.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
pub const READY_MARKER: &str = "VIREO-TEST-GUEST-READY";
pub const PROMPT: &str = "guest# ";

/// The test guest's kernel and initramfs: from `$VIREO_TEST_GUEST_DIR` (default
/// /var/cache/vireo/test-guest), built by scripts/build-test-guest.sh when missing.
pub fn test_guest() -> &'static (PathBuf, PathBuf) {
    static GUEST: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    GUEST.get_or_init(|| {
        let dir = std::env::var_os("VIREO_TEST_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/vireo/test-guest"));
        let dir = if has_guest(&dir) { dir } else { build_test_guest() };
        (dir.join("vmlinuz"), dir.join("initramfs.img"))
    })
}

fn has_guest(dir: &Path) -> bool {
    dir.join("vmlinuz").is_file() && dir.join("initramfs.img").is_file()
}

fn build_test_guest() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-guest.sh");
    let output = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(output.status.success(), "{} failed: {}", script.display(), output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(stdout.lines().last().expect("build-test-guest.sh printed no directory").trim());
    assert!(has_guest(&dir), "{} has no vmlinuz and initramfs.img", dir.display());
    dir
}

pub fn qemu_binary() -> PathBuf {
    vireo_qemu::find_qemu_binary().expect("qemu-system-x86_64 is needed for these tests")
}

/// A small TCG guest booting the test kernel.
pub fn guest_spec(name: &str) -> VmSpec {
    let (kernel, initrd) = test_guest();
    serde_json::from_value(serde_json::json!({
        "name": name,
        "vcpus": 1,
        "memory": "256MiB",
        "accel": "tcg",
        "boot": { "kernel": kernel, "initrd": initrd, "cmdline": "console=ttyS0 quiet" },
    }))
    .expect("test spec parses")
}

/// Reads the serial console; each `expect` looks only at output after the previous match.
pub struct Console {
    stream: UnixStream,
    output: Vec<u8>,
    cursor: usize,
}

impl Console {
    pub fn new(stream: UnixStream) -> Self {
        Console { stream, output: Vec::new(), cursor: 0 }
    }

    pub async fn expect(&mut self, needle: &str) {
        let found = tokio::time::timeout(BOOT_TIMEOUT, self.read_until(needle.as_bytes())).await;
        match found {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("console: {err} while waiting for {needle:?}; got:\n{}", self.text()),
            Err(_) => panic!("console: no {needle:?} within {BOOT_TIMEOUT:?}; got:\n{}", self.text()),
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.expect("console write");
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    async fn read_until(&mut self, needle: &[u8]) -> std::io::Result<()> {
        loop {
            if let Some(at) = self.output[self.cursor..].windows(needle.len()).position(|w| w == needle) {
                self.cursor += at + needle.len();
                return Ok(());
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "console closed"));
            }
            self.output.extend_from_slice(&buf[..n]);
        }
    }
}

/// The next event, within a timeout.
pub async fn next_event(events: &mut UnboundedReceiver<QemuEvent>) -> QemuEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event channel closed without Exited"),
        Err(_) => panic!("no QEMU event within {EVENT_TIMEOUT:?}"),
    }
}

/// Collects events up to and including `wanted`.
pub async fn events_until(events: &mut UnboundedReceiver<QemuEvent>, wanted: QemuEvent) -> Vec<QemuEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events).await;
        let done = event == wanted;
        assert!(done || event != QemuEvent::Exited, "QEMU exited while waiting for {wanted:?}; saw {seen:?}");
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Kills the guest when a test ends, passing or not: a QEMU outlives its
/// `VmProcess` by design, and a failed test must not leave one running.
pub struct KillOnDrop {
    pub pid: u32,
    pub pid_start_ticks: u64,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = vireo_qemu::kill(self.pid, self.pid_start_ticks);
    }
}
