//! Shared harness of the end-to-end tests: a real `vireo serve` on a private
//! data directory, real QEMU guests (TCG) built from the project's test guest.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vireo_api::{ByteSize, VmSpec, VmState};
use vireo_client::{Client, Endpoint};

pub const MARKER: &str = "VIREO-TEST-GUEST-READY";
pub const PROMPT: &str = "guest# ";
/// Under TCG on a busy 2-core machine a boot takes seconds; allow plenty.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn vireo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vireo")
}

/// The test guest's kernel and initramfs, built once per machine by scripts/build-test-guest.sh.
pub fn guest() -> &'static (PathBuf, PathBuf) {
    static GUEST: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    GUEST.get_or_init(|| {
        let dir = std::env::var_os("VIREO_TEST_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/vireo/test-guest"));
        let files = (dir.join("vmlinuz"), dir.join("initramfs.img"));
        if files.0.is_file() && files.1.is_file() {
            return files;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-guest.sh");
        let output = Command::new(&script).env("VIREO_TEST_GUEST_DIR", &dir).output().expect("run build-test-guest.sh");
        assert!(output.status.success(), "build-test-guest.sh failed: {}", String::from_utf8_lossy(&output.stderr));
        assert!(files.0.is_file() && files.1.is_file(), "test guest missing in {}", dir.display());
        files
    })
}

/// A small spec booting the test guest.
pub fn guest_spec(name: &str) -> VmSpec {
    let (kernel, initrd) = guest();
    serde_json::from_value(serde_json::json!({
        "name": name,
        "vcpus": 1,
        "memory": ByteSize::mib(128),
        "accel": "auto",
        "boot": {
            "kernel": kernel,
            "initrd": initrd,
            "cmdline": "console=ttyS0 quiet panic=-1",
        },
    }))
    .expect("guest spec")
}

/// A running `vireo serve` on a private data directory, killed (with its VMs) on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    /// The network namespace the daemon runs in (created and deleted by the test), if any.
    pub netns: Option<String>,
    child: Option<Child>,
}

fn free_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with_tcp(false)
    }

    pub fn start_with_tcp(tcp: bool) -> Daemon {
        let dir = tempfile::Builder::new().prefix("vireo-e2e-").tempdir().expect("tempdir");
        let socket = dir.path().join("vireo.sock");
        let mut daemon = Daemon { dir, socket, tcp: tcp.then(free_tcp_port), netns: None, child: None };
        daemon.spawn();
        daemon
    }

    /// A daemon inside a network namespace of its own: its bridges, TAPs,
    /// dnsmasq and nftables tables never touch the host's network, and all go
    /// with the namespace when the test ends.
    pub fn start_in_netns() -> Daemon {
        let dir = tempfile::Builder::new().prefix("vireo-e2e-").tempdir().expect("tempdir");
        let socket = dir.path().join("vireo.sock");
        let name = format!("vireo-e2e-{}", dir.path().file_name().unwrap().to_string_lossy().replace(['.', '-'], ""));
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "cannot create network namespace {name}");
        // Loopback up, so the namespace behaves like a fresh host.
        Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]).status().expect("lo up");
        let mut daemon = Daemon { dir, socket, tcp: None, netns: Some(name), child: None };
        daemon.spawn();
        daemon
    }

    /// Runs a command inside the daemon's namespace (host-side checks).
    pub fn in_netns(&self, argv: &[&str]) -> Output {
        let netns = self.netns.as_deref().expect("daemon runs in a namespace");
        Command::new("ip").args(["netns", "exec", netns]).args(argv).output().expect("ip netns exec")
    }

    /// Starts `vireo serve` (again) on the same data directory.
    pub fn spawn(&mut self) {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(vireo_bin());
                command
            }
            None => Command::new(vireo_bin()),
        };
        command.arg("serve").arg("--data-dir").arg(self.dir.path()).arg("--socket").arg(&self.socket);
        if self.netns.is_none() {
            // Outside a namespace of its own, the daemon must not build bridges on the host.
            command.arg("--no-default-network");
        }
        if let Some(addr) = self.tcp {
            command.arg("--listen").arg(addr.to_string());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        command.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        self.child = Some(command.spawn().expect("spawn vireo serve"));
        self.wait_ready();
    }

    /// The daemon is ready once its socket answers; polling is fine in a test harness.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("vireo serve exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("vireo serve did not open its socket: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would: no clean-up runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill daemon");
            child.wait().expect("reap daemon");
        }
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api-token")).expect("api-token").trim().to_string()
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(vireo_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vireo")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(output.status.success(), "vireo {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    pub fn qemu_pid(&self, vm: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("vms").join(vm).join("qemu.pid")).ok()?.trim().parse().ok()
    }

    fn kill_all_qemu(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("vms")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = self.qemu_pid(&name) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy()) {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        self.kill_all_qemu();
        self.kill_dnsmasqs();
        if let Some(netns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

impl Daemon {
    fn kill_dnsmasqs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("networks")) else { return };
        for entry in entries.flatten() {
            let pid_file = entry.path().join("dnsmasq.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy()) {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
    }
}

/// Polls the VM's console log until `pattern` appears.
pub async fn wait_for_log(client: &Client, vm: &str, pattern: &str, timeout: Duration) -> String {
    wait_for_log_count(client, vm, pattern, 1, timeout).await
}

/// Polls the VM's console log until `pattern` appears `count` times.
pub async fn wait_for_log_count(client: &Client, vm: &str, pattern: &str, count: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = String::from_utf8_lossy(&client.vm_logs(vm, None).await.expect("vm logs")).into_owned();
        if log.matches(pattern).count() >= count {
            return log;
        }
        assert!(Instant::now() < deadline, "'{pattern}' not {count}x in {vm}'s console log after {timeout:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the VM reaches `state` (for changes the guest causes itself).
pub async fn wait_for_state(client: &Client, vm: &str, state: VmState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let current = client.get_vm(vm).await.expect("get vm").state;
        if current == state {
            return;
        }
        assert!(Instant::now() < deadline, "{vm} is {current}, expected {state} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a shell command in the guest through the console API and returns its output.
pub async fn run_in_guest(client: &Client, vm: &str, command: &str) -> String {
    let mut console = client.console(vm).await.expect("attach console");
    // Right after the boot marker the shell may not be reading yet: an empty
    // line makes it print a fresh prompt once it is.
    console.send_line("").await.expect("type newline");
    console.read_until(PROMPT.as_bytes(), Duration::from_secs(60)).await.expect("shell prompt");
    // The end marker is computed by the guest's shell, so the echo of the typed
    // line (which shows `$((40+2))`) can never be mistaken for the output.
    console.send_line(&format!("{command}; echo END-$((40+2))-END")).await.expect("type command");
    let seen = console.read_until(b"END-42-END", Duration::from_secs(60)).await.expect("command output");
    let _ = console.close().await;
    let text = String::from_utf8_lossy(&seen).replace('\r', "");
    // What follows the last echo of the typed line is what the command printed.
    let after_echo = text.rsplit_once("-END\n").map(|(_, rest)| rest).unwrap_or(&text);
    after_echo.trim_end_matches("END-42-END").trim().to_string()
}

/// The stable code of an API error.
pub fn code(err: vireo_client::ClientError) -> vireo_api::ErrorCode {
    err.api().map(|e| e.code).unwrap_or_else(|| panic!("not an API error: {err}"))
}

pub fn json_list(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(stdout).expect("JSON output").as_array().expect("array").clone()
}
