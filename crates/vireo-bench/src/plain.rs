//! The plain QEMU of sections 3 and 4: section 1's command with a qcow2 disk,
//! started by hand and driven with raw QMP ([`RawQmp`]) over a monitor socket.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::boot::{self, BOOT_TIMEOUT, Guest, MARKER};
use crate::qmp::RawQmp;

/// Any single QMP wait of the plain side (a snapshot job, a migration).
pub const QMP_TIMEOUT: Duration = Duration::from_secs(300);

/// Section 1's plain command with a qcow2 disk, attached as vireo attaches it (a `file`
/// and a `qcow2` node, a virtio-blk device; QEMU's default cache and aio, as vireo's).
pub fn disk_args(guest: &Guest, disk: &Path) -> Vec<String> {
    let file = json!({ "driver": "file", "filename": disk, "node-name": "disk0-file" });
    let format = json!({ "driver": "qcow2", "file": "disk0-file", "node-name": "disk0" });
    let mut args = guest.plain_qemu_args();
    args.extend(["-blockdev".into(), file.to_string(), "-blockdev".into(), format.to_string()]);
    args.extend(["-device".into(), "virtio-blk-pci,drive=disk0,id=disk0".into()]);
    args
}

/// A QMP monitor on the inherited listening socket `fd`.
pub fn qmp_args(fd: &str) -> [String; 4] {
    [
        "-chardev".into(),
        format!("socket,id=qmp,fd={fd},server=on,wait=off"),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ]
}

/// Start paused, receiving from `source` (`fd:N`, `defer`), with MIGRATION events (which
/// QMP could only switch on once the incoming migration has begun), as vireo does.
pub fn incoming_args(source: &str) -> [String; 5] {
    ["-S".into(), "-incoming".into(), source.into(), "-global".into(), "migration.x-events=on".into()]
}

/// Where a QEMU started with `-incoming` receives its state from.
#[derive(Clone, Copy, Debug)]
pub enum Incoming<'a> {
    /// A saved state file, inherited as `-incoming fd:N` (a restore).
    StateFile(&'a Path),
    /// `-incoming defer`: [`PlainQemu::listen_incoming`] opens a TCP listener (a live migration).
    Migration,
}

pub async fn qemu_img_create(qemu: &Path, file: &Path, mib: u64) -> anyhow::Result<()> {
    // qemu-img lives beside qemu-system-x86_64 (or in PATH).
    let beside = qemu.with_file_name("qemu-img");
    let qemu_img = if beside.is_file() { beside } else { PathBuf::from("qemu-img") };
    let output = tokio::process::Command::new(&qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .arg(file)
        .arg(format!("{mib}M"))
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", qemu_img.display()))?;
    if !output.status.success() {
        bail!("qemu-img create failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// A plain QEMU with its QMP connection; killed if dropped.
pub struct PlainQemu {
    pub child: tokio::process::Child,
    pub qmp: RawQmp,
    /// Fires when the marker went by on the serial console (stdout is drained on after it).
    marker: Option<oneshot::Receiver<()>>,
    stderr: PathBuf,
}

impl PlainQemu {
    /// Spawns QEMU with `args`, a QMP monitor on an inherited listening socket and, for an
    /// incoming one, [`incoming_args`]; returns once QMP answers. Its QMP socket and stderr
    /// log are `qmp.sock` and `qemu.log` in `scratch`, so two at a time need two directories.
    pub async fn spawn(
        qemu: &Path,
        args: &[String],
        incoming: Option<Incoming<'_>>,
        scratch: &Path,
    ) -> anyhow::Result<Self> {
        let socket = scratch.join("qmp.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .with_context(|| format!("cannot bind {}", socket.display()))?;
        // Connecting before QEMU runs is fine: the listen backlog holds the connection.
        let stream = std::os::unix::net::UnixStream::connect(&socket)?;
        let state = match incoming {
            Some(Incoming::StateFile(path)) => Some(File::open(path).context("cannot open the state file")?),
            _ => None,
        };
        let stderr = scratch.join("qemu.log");
        let mut command = tokio::process::Command::new(qemu);
        command.args(args).args(qmp_args(&listener.as_raw_fd().to_string()));
        // QEMU must inherit these two; nothing else is spawned meanwhile.
        fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
        if let Some(file) = &state {
            fcntl(file, FcntlArg::F_SETFD(FdFlag::empty()))?;
            command.args(incoming_args(&format!("fd:{}", file.as_raw_fd())));
        } else if incoming.is_some() {
            command.args(incoming_args("defer"));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).with_context(|| format!("cannot create {}", stderr.display()))?)
            .kill_on_drop(true);
        let spawned = command.spawn().with_context(|| format!("cannot run {}", qemu.display()));
        drop((listener, state));
        let mut child = spawned?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let (found, marker) = oneshot::channel();
        tokio::spawn(async move {
            if let Ok(true) = boot::read_until(&mut stdout, MARKER.as_bytes()).await {
                let _ = found.send(());
            }
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        });
        stream.set_nonblocking(true)?;
        let handshake = RawQmp::handshake(tokio::net::UnixStream::from_std(stream)?, QMP_TIMEOUT).await;
        let qmp = match handshake {
            Ok(qmp) => qmp,
            Err(err) => {
                let _ = child.kill().await;
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                return Err(err.context(format!("QEMU said: {}", log.trim())));
            }
        };
        Ok(PlainQemu { child, qmp, marker: Some(marker), stderr })
    }

    pub async fn wait_marker(&mut self) -> anyhow::Result<()> {
        let marker = self.marker.take().context("the marker was already awaited")?;
        match tokio::time::timeout(BOOT_TIMEOUT, marker).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("QEMU exited before the marker: {}", self.stderr_text()),
            Err(_) => bail!("no marker within {BOOT_TIMEOUT:?}"),
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default().trim().to_string()
    }

    /// Switches on MIGRATION events (QEMU 7.2's `events` capability; it changes nothing in how
    /// QEMU migrates).
    pub async fn migration_events(&mut self) -> anyhow::Result<()> {
        let events = json!({ "capabilities": [{ "capability": "events", "state": true }] });
        self.qmp.execute("migrate-set-capabilities", events).await.map(drop)
    }

    /// Source: sends `migrate` to `uri` and waits for its MIGRATION event `completed`; returns
    /// when `migrate` was sent. An earlier migration's events (a snapshot job runs as one too,
    /// a destination saw its incoming one) do not count.
    pub async fn migrate(&mut self, uri: &str) -> anyhow::Result<Instant> {
        // A round trip reads every event QEMU sent before it.
        self.qmp.execute("query-migrate", json!({})).await?;
        self.qmp.discard_events();
        let sent = Instant::now();
        self.qmp.execute("migrate", json!({ "uri": uri })).await?;
        let done = self
            .qmp
            .wait_event(|e| {
                e["event"] == "MIGRATION"
                    && matches!(e["data"]["status"].as_str(), Some("completed" | "failed" | "cancelled"))
            })
            .await?;
        if done["data"]["status"] != "completed" {
            let info = self.qmp.execute("query-migrate", json!({})).await.unwrap_or_default();
            bail!("migration {}: {}", done["data"]["status"], info["error-desc"]);
        }
        Ok(sent)
    }

    /// Source: `query-migrate` once its figures (`total-time`, `downtime`) are final. QEMU 7.2
    /// reports `completed` before it has worked them out (a query in between says 0 ms); they
    /// are final once the run state is `postmigrate`.
    pub async fn final_migration_info(&mut self) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.qmp.execute("query-status", json!({})).await?;
            if status["status"] == "postmigrate" {
                return self.qmp.execute("query-migrate", json!({})).await;
            }
            if Instant::now() > deadline {
                bail!("the source is still {} 10 s after its migration completed", status["status"]);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Destination started with [`Incoming::Migration`]: listens on `host`, on a port QEMU
    /// picks, and returns the URI to migrate to.
    pub async fn listen_incoming(&mut self, host: &str) -> anyhow::Result<String> {
        self.qmp.execute("migrate-incoming", json!({ "uri": format!("tcp:{host}:0") })).await?;
        let info = self.qmp.execute("query-migrate", json!({})).await?;
        let addresses = info["socket-address"].as_array().into_iter().flatten();
        let port = addresses
            .filter_map(|a| a["port"].as_str())
            .next()
            .with_context(|| format!("query-migrate names no listening port: {info}"))?;
        Ok(format!("tcp:{host}:{port}"))
    }

    /// Waits until the incoming migration has `completed` (QEMU then waits for `cont`).
    pub async fn wait_incoming(&mut self) -> anyhow::Result<()> {
        loop {
            let info: Value = self.qmp.execute("query-migrate", json!({})).await?;
            match info["status"].as_str() {
                Some("completed") => return Ok(()),
                Some(status @ ("failed" | "cancelled")) => {
                    bail!("incoming migration {status}: {} {}", info["error-desc"], self.stderr_text())
                }
                _ => {
                    self.qmp.wait_event(|e| e["event"] == "MIGRATION").await?;
                }
            }
        }
    }

    /// `quit`, and waits for the process to end (SIGKILL after 10 s).
    pub async fn quit(mut self) {
        let _ = self.qmp.execute("quit", json!({})).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_is_attached_as_vireo_attaches_it() {
        let guest = Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() };
        let args = disk_args(&guest, Path::new("/t/disk.qcow2"));
        let tail: Vec<&str> = args.iter().rev().take(6).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-blockdev",
                r#"{"driver":"file","filename":"/t/disk.qcow2","node-name":"disk0-file"}"#,
                "-blockdev",
                r#"{"driver":"qcow2","file":"disk0-file","node-name":"disk0"}"#,
                "-device",
                "virtio-blk-pci,drive=disk0,id=disk0"
            ]
        );
        assert_eq!(incoming_args("fd:7").join(" "), "-S -incoming fd:7 -global migration.x-events=on");
    }
}
