//! Shared helpers of the integration tests that boot the real test guest under TCG.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc::UnboundedReceiver;
use vireo_api::{DiskAio, DiskCache, DiskFormat, VmSpec};
use vireo_qemu::{DiskAttachment, QemuEvent, RuntimePaths, VmProcess};

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

/// The test guest with 128 MiB and these disks (format from the extension), `disk0`… in order.
pub fn small_guest_spec(name: &str, disks: &[&Path]) -> VmSpec {
    let mut spec = guest_spec(name);
    spec.memory = vireo_api::ByteSize::mib(128);
    let disks: Vec<_> = disks.iter().map(|path| serde_json::json!({ "path": path })).collect();
    spec.disks = serde_json::from_value(serde_json::Value::Array(disks)).expect("disk specs parse");
    spec
}

/// A disk attachment with the defaults, as the daemon would make for a hot-plug.
pub fn disk(id: &str, path: &Path, format: DiskFormat) -> DiskAttachment {
    DiskAttachment {
        id: id.to_string(),
        path: path.to_path_buf(),
        format,
        readonly: false,
        cache: DiskCache::default(),
        aio: DiskAio::default(),
        boot_index: None,
        hotplug_port: None,
    }
}

/// Runs qemu-img and returns its standard output; any failure fails the test.
pub fn qemu_img(args: &[&str]) -> String {
    let output = Command::new("qemu-img").args(args).output().expect("qemu-img is needed for these tests");
    assert!(output.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates an image of `size` (e.g. "64M") in the format its extension names.
pub fn create_image(path: &Path, size: &str) {
    let format = if path.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    qemu_img(&["create", "-q", "-f", format, &path.to_string_lossy(), size]);
}

/// The internal snapshots of an image in use by a running QEMU (`-U`: no lock).
pub fn image_snapshots(path: &Path) -> String {
    qemu_img(&["snapshot", "-U", "-l", &path.to_string_lossy()])
}

/// A private temporary directory and a VM runtime directory inside it.
pub fn runtime_dir() -> (tempfile::TempDir, RuntimePaths) {
    let dir = tempfile::Builder::new().prefix("vireo-qemu-").tempdir().expect("temp dir");
    let paths = RuntimePaths::new(dir.path().join("vm"));
    (dir, paths)
}

/// Takes the console out of `VmProcess` (a plain field) for a `Console` reader.
pub fn take_console(vm: &mut VmProcess) -> UnixStream {
    let (placeholder, _) = UnixStream::pair().expect("socket pair");
    std::mem::replace(&mut vm.console, placeholder)
}

/// Runs the guest to its shell prompt.
pub async fn boot_to_prompt(vm: &mut VmProcess) -> Console {
    let mut console = Console::new(take_console(vm));
    vm.qmp.cont().await.expect("cont");
    console.expect(READY_MARKER).await;
    console.expect(PROMPT).await;
    console
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

    /// Runs a shell command in the guest and returns its output (trimmed, `\n` line ends).
    /// The markers are computed by the shell, so the echo of the typed line never matches them.
    pub async fn run(&mut self, command: &str) -> String {
        self.send(&format!("echo @@$((1+1))B; {command}; echo @@$((1+2))E\n")).await;
        self.expect("@@2B").await;
        let start = self.cursor;
        self.expect("@@3E").await;
        let end = self.cursor - "@@3E".len();
        let output = String::from_utf8_lossy(&self.output[start..end]).replace('\r', "");
        self.expect(PROMPT).await;
        output.trim().to_string()
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

/// The guest's uptime in seconds (/proc/uptime).
pub async fn guest_uptime(console: &mut Console) -> f64 {
    let uptime = console.run("cat /proc/uptime").await;
    uptime.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("uptime: {uptime:?}"))
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

/// What the QEMU under test can do (asked afresh: a few QEMU runs).
pub async fn caps() -> vireo_qemu::QemuCaps {
    vireo_qemu::probe(&qemu_binary()).await.expect("probe QEMU")
}
