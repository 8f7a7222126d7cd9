//! A private `vireo serve` on a data directory inside the bench's temporary
//! directory, and the clean-up of every process the bench caused.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vireo_api::{StopRequest, VmState};
use vireo_client::{Client, Endpoint};

use crate::process_info;

/// How long the daemon may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A running daemon; killed (SIGKILL) if dropped without [`PrivateDaemon::shutdown`].
pub struct PrivateDaemon {
    child: Option<Child>,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// Where it also serves the API over TCP (`--listen`), if it does.
    pub listen: Option<SocketAddr>,
    /// Where it also serves `/metrics` alone, without a token (`--metrics-listen`), if it does.
    pub metrics: Option<SocketAddr>,
}

impl PrivateDaemon {
    /// Starts `vireo serve` on `data_dir` (created if missing) with `qemu` as its QEMU, also
    /// serving the API over TCP on `listen` if given, and returns once the API answers.
    pub async fn start(
        vireo: &Path,
        qemu: &Path,
        data_dir: PathBuf,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<PrivateDaemon> {
        PrivateDaemon::start_with_metrics(vireo, qemu, data_dir, listen, None).await
    }

    /// [`PrivateDaemon::start`], also serving its metrics on `metrics` if given.
    pub async fn start_with_metrics(
        vireo: &Path,
        qemu: &Path,
        data_dir: PathBuf,
        listen: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
    ) -> anyhow::Result<PrivateDaemon> {
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let socket = data_dir.join("vireo.sock");
        let log_path = data_dir.join("daemon.log");
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(vireo);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--socket")
            .arg(&socket)
            // The bench runs on the host's own network namespace: no bridges, dnsmasq or nftables there.
            .arg("--no-default-network");
        if let Some(addr) = listen {
            command.arg("--listen").arg(addr.to_string());
        }
        if let Some(addr) = metrics {
            command.arg("--metrics-listen").arg(addr.to_string());
        }
        let child = command
            .env("VIREO_QEMU", qemu)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {} serve", vireo.display()))?;
        let mut daemon = PrivateDaemon { pid: child.id(), child: Some(child), data_dir, socket, listen, metrics };
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    /// The TCP address of the API, `http://ADDR:PORT`, and its token (DATA_DIR/api-token),
    /// as another daemon reaches this one.
    pub fn remote(&self) -> anyhow::Result<(String, String)> {
        let addr = self.listen.context("the daemon was started without --listen")?;
        let path = self.data_dir.join("api-token");
        let token = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok((format!("http://{addr}"), token.trim().to_string()))
    }

    /// Ready once `GET /v1/vms` answers; polling is fine for a benchmark harness.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = self.client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if client.list_vms().await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("vireo serve exited with {status}; see {}", self.data_dir.join("daemon.log").display());
            }
            if Instant::now() > deadline {
                bail!("vireo serve did not answer within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The daemon's resident set (`VmRSS` of /proc/PID/status), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        process_info::rss_kib(self.pid).context("cannot read the daemon's VmRSS")
    }

    /// Force-stops every VM that has a process, then stops the daemon (SIGTERM, SIGKILL after a grace period).
    pub async fn shutdown(mut self) {
        let client = self.client();
        if let Ok(vms) = client.list_vms().await {
            for vm in vms.iter().filter(|vm| vm.state != VmState::Stopped) {
                let force = StopRequest { force: true, timeout_secs: None };
                if let Err(err) = client.stop_vm(&vm.name, &force).await {
                    eprintln!("vireo-bench: cannot stop {}: {err}", vm.name);
                }
            }
        }
        if let Some(child) = self.child.take() {
            terminate(child).await;
        }
    }
}

/// SIGTERM to `child`, then SIGKILL if it has not exited after a grace period.
pub(crate) async fn terminate(mut child: Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        kill_now(self.child.take());
    }
}

/// SIGKILL to `child`, if any, and wait for it: what a daemon dropped without its shutdown gets.
pub(crate) fn kill_now(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// On drop, SIGKILLs every QEMU whose command line mentions `dir` (the daemon's
/// QEMUs run in their own session and outlive a killed daemon) or whose parent is
/// this process (the plain-QEMU runs).
pub struct QemuReaper {
    pub dir: PathBuf,
}

impl QemuReaper {
    pub fn reap(&self) -> usize {
        let needle = self.dir.to_string_lossy().into_owned();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
        let mut killed = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let argv = process_info::cmdline(pid);
            let is_qemu = argv.first().is_some_and(|exe| exe.rsplit('/').next().unwrap_or(exe).starts_with("qemu"));
            if !is_qemu {
                continue;
            }
            let ours = argv.iter().any(|arg| arg.contains(&needle)) || process_info::parent_pid(pid) == Some(me);
            if ours && kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        killed
    }
}

impl Drop for QemuReaper {
    fn drop(&mut self) {
        let killed = self.reap();
        if killed > 0 {
            eprintln!("vireo-bench: killed {killed} leftover QEMU process(es)");
        }
    }
}
