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

pub fn free_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with_tcp(false)
    }

    pub fn start_with_tcp(tcp: bool) -> Daemon {
        Self::start_with(tcp, &[])
    }

    /// A daemon started with extra `vireo serve` arguments (e.g. `--log-format json`);
    /// a later [`Daemon::spawn`] starts it without them.
    pub fn start_with(tcp: bool, serve_args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("vireo-e2e-").tempdir().expect("tempdir");
        let socket = dir.path().join("vireo.sock");
        let mut daemon = Daemon { dir, socket, tcp: tcp.then(free_tcp_port), netns: None, child: None };
        daemon.spawn_with(serve_args);
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
        self.spawn_with(&[]);
    }

    fn spawn_with(&mut self, serve_args: &[&str]) {
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
        command.args(serve_args);
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

/// The TCP port each daemon of a [`Daemon::pair_in_netns`] listens on (each
/// namespace has a port space of its own, so a fixed port never clashes).
pub const PAIR_PORT: u16 = 7400;

impl Daemon {
    /// Two daemons for migration tests, each in a network namespace of its own,
    /// the namespaces joined by a veth pair (`10.234.N.1/30` and `10.234.N.2/30`),
    /// each daemon serving TCP on its end ([`Daemon::url`], [`Daemon::token`]).
    /// The veth lives only inside the two namespaces and goes with them on drop.
    pub fn pair_in_netns() -> (Daemon, Daemon) {
        static PAIRS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let count = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id().wrapping_mul(7).wrapping_add(count) % 250 + 1) as u8;
        let addresses = [std::net::Ipv4Addr::new(10, 234, n, 1), std::net::Ipv4Addr::new(10, 234, n, 2)];
        // Both exist (and so are cleaned up on drop) before anything can fail.
        let mut first = Daemon::unspawned_in_netns(SocketAddr::from((addresses[0], PAIR_PORT)));
        let mut second = Daemon::unspawned_in_netns(SocketAddr::from((addresses[1], PAIR_PORT)));
        let namespaces = [first.netns.clone().unwrap(), second.netns.clone().unwrap()];
        let links = [format!("vmig{n}a"), format!("vmig{n}b")];
        // Created directly inside the namespaces: the host never sees the veth.
        run_ip(&[
            "link",
            "add",
            &links[0],
            "netns",
            &namespaces[0],
            "type",
            "veth",
            "peer",
            "name",
            &links[1],
            "netns",
            &namespaces[1],
        ]);
        for i in 0..2 {
            run_ip(&["-n", &namespaces[i], "addr", "add", &format!("{}/30", addresses[i]), "dev", &links[i]]);
            run_ip(&["-n", &namespaces[i], "link", "set", &links[i], "up"]);
        }
        first.spawn();
        first.wait_tcp_ready();
        second.spawn();
        second.wait_tcp_ready();
        (first, second)
    }

    /// A daemon in a fresh network namespace that will listen on `tcp`, not started yet.
    fn unspawned_in_netns(tcp: SocketAddr) -> Daemon {
        let dir = tempfile::Builder::new().prefix("vireo-e2e-").tempdir().expect("tempdir");
        let socket = dir.path().join("vireo.sock");
        let name = format!("vireo-e2e-{}", dir.path().file_name().unwrap().to_string_lossy().replace(['.', '-'], ""));
        run_ip(&["netns", "add", &name]);
        let daemon = Daemon { dir, socket, tcp: Some(tcp), netns: Some(name.clone()), child: None };
        run_ip(&["-n", &name, "link", "set", "lo", "up"]);
        daemon
    }

    /// Waits until the daemon's TCP listener (inside its namespace) accepts connections.
    pub fn wait_tcp_ready(&mut self) {
        let addr = self.tcp.expect("daemon listens on TCP");
        let filter = format!("sport = :{}", addr.port());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening = match &self.netns {
                Some(_) => String::from_utf8_lossy(&self.in_netns(&["ss", "-Hltn", &filter]).stdout).into_owned(),
                None => {
                    String::from_utf8_lossy(&Command::new("ss").args(["-Hltn", &filter]).output().expect("ss").stdout)
                        .into_owned()
                }
            };
            if listening.contains(&addr.to_string()) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("vireo serve exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "vireo serve does not listen on {addr}: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's TCP API address as another daemon reaches it, `http://IP:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.tcp.expect("daemon listens on TCP"))
    }

    /// Live QEMU processes of this daemon's VM `vm`, found by the pid file path
    /// (under this daemon's data directory) on their command line. Zombies have
    /// no command line and do not count.
    pub fn qemu_processes(&self, vm: &str) -> Vec<u32> {
        let needle = format!("{}/vms/{vm}/", self.dir.path().display());
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&needle)
            })
            .collect()
    }

    /// What a failed test should show: the tail of the daemon's log and of each
    /// VM's QMP, QEMU and console logs.
    pub fn debug_dump(&self) -> String {
        dump_data_dir(self.dir.path())
    }
}

fn run_ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn tail_lines(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn dump_data_dir(dir: &Path) -> String {
    let mut out =
        format!("===== {}/daemon.log (tail) =====\n{}\n", dir.display(), tail_lines(&dir.join("daemon.log"), 80));
    if let Ok(entries) = std::fs::read_dir(dir.join("vms")) {
        for entry in entries.flatten() {
            for (file, lines) in [("qmp.log", 40), ("qemu.log", 20), ("console.log", 20)] {
                let path = entry.path().join(file);
                if path.exists() {
                    out += &format!("===== {} (tail) =====\n{}\n", path.display(), tail_lines(&path, lines));
                }
            }
        }
    }
    out
}

/// Prints the daemons' logs (see [`Daemon::debug_dump`]) if the test panics
/// while this guard lives. Declare it after the daemons, so that it runs
/// before they are killed.
pub struct LogsOnPanic(Vec<PathBuf>);

impl LogsOnPanic {
    pub fn new(daemons: &[&Daemon]) -> LogsOnPanic {
        LogsOnPanic(daemons.iter().map(|d| d.dir.path().to_path_buf()).collect())
    }
}

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for dir in &self.0 {
                eprintln!("{}", dump_data_dir(dir));
            }
        }
    }
}
