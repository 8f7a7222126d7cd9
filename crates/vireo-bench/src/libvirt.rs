//! A private libvirtd for the comparison with libvirt (section 5), and the
//! ways the bench talks to it: virsh run once per command (as a user types
//! it) and virsh's shell kept connected (an open API connection, like
//! vireo-client's), plus the domain XML of the test guest.
//!
//! Isolation: as root, libvirtd is the privileged ("system") daemon whatever
//! the URI says (`qemu:///session` as root reaches the same privileged driver),
//! and the privileged QEMU driver's directories are compiled in: /etc/libvirt,
//! /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt. So the
//! daemon runs in a mount namespace of its own (`unshare --mount`) in which
//! /etc, /run and /var are overlays whose upper (written) layers are
//! directories of the bench's temporary directory: everything it writes lands
//! there, nothing on the host, and the namespace goes away with its last
//! process. Its sockets are in the temporary directory too (`unix_sock_dir`),
//! outside the overlays, where virsh reaches them with `?socket=`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::boot::Guest;
use crate::process_info;

/// How long libvirtd may take to answer, including its first probe of QEMU's capabilities
/// (several seconds under TCG).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Any one command in a virsh shell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// The user Debian's libvirt resolves before it reads qemu.conf (its compiled-in default
/// `user`); libvirt-daemon-system creates it, the bench's namespace only names it.
const QEMU_USER: &str = "libvirt-qemu";
/// The uid/gid given to [`QEMU_USER`] inside the namespace when the host has no such user;
/// never used to run anything (qemu.conf says root).
const QEMU_USER_ID: u32 = 64055;

/// libvirtd.conf: Unix sockets in the temporary directory for root only, no TCP or TLS, no
/// polkit, its log in the temporary directory.
pub fn libvirtd_conf(dir: &Path) -> String {
    let sockets = dir.join("sock");
    let log = dir.join("libvirtd.log");
    format!(
        "# vireo-bench's private libvirtd\n\
         listen_tls = 0\n\
         listen_tcp = 0\n\
         unix_sock_dir = \"{}\"\n\
         unix_sock_group = \"root\"\n\
         unix_sock_ro_perms = \"0700\"\n\
         unix_sock_rw_perms = \"0700\"\n\
         unix_sock_admin_perms = \"0700\"\n\
         auth_unix_ro = \"none\"\n\
         auth_unix_rw = \"none\"\n\
         log_outputs = \"3:file:{}\"\n",
        sockets.display(),
        log.display()
    )
}

/// qemu.conf: QEMU runs as root, as vireo runs it; its stdout/stderr go straight to the
/// domain log rather than through a virtlogd; no cgroups. Everything else (the per-VM mount
/// namespace, the DAC security driver, …) stays at libvirt's defaults.
pub const QEMU_CONF: &str = "# vireo-bench's private libvirtd\n\
                             user = \"root\"\n\
                             group = \"root\"\n\
                             stdio_handler = \"file\"\n\
                             cgroup_controllers = [ ]\n";

/// What the daemon's namespace does before it becomes libvirtd (`$1` is the daemon's directory).
const NAMESPACE_SCRIPT: &str = r#"set -e
for dir in etc run var; do
    mount -t overlay overlay -o "lowerdir=/$dir,upperdir=$1/$dir,workdir=$1/work-$dir" "/$dir"
done
exec libvirtd --config "$1/etc/libvirt/libvirtd.conf" --pid-file "$1/libvirtd.pid"
"#;

/// The command that becomes libvirtd in its namespace, once the overlays are mounted.
pub fn daemon_command(dir: &Path) -> String {
    format!(
        "libvirtd --config {} --pid-file {}",
        dir.join("etc/libvirt/libvirtd.conf").display(),
        dir.join("libvirtd.pid").display()
    )
}

/// The binaries the comparison needs, or why it cannot run.
pub fn missing_binaries() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).collect();
    let missing: Vec<&str> = ["libvirtd", "virsh", "unshare"]
        .into_iter()
        .filter(|binary| !dirs.iter().any(|dir| dir.join(binary).is_file()))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not found (Debian: apt-get install libvirt-daemon libvirt-clients; scripts/bench.sh installs them)",
            missing.join(", ")
        )
    })
}

/// A running private libvirtd; killed (SIGKILL) if dropped without [`PrivateLibvirtd::shutdown`].
pub struct PrivateLibvirtd {
    child: Option<Child>,
    pub pid: u32,
    /// The daemon's directory: configuration, overlay layers, sockets, logs.
    pub dir: PathBuf,
    /// `qemu:///system?socket=DIR/sock/libvirt-sock`
    pub uri: String,
}

impl PrivateLibvirtd {
    /// Starts libvirtd on `dir` (created if missing; kept as it is if it holds a previous
    /// daemon's state), waits until it answers and has probed QEMU's capabilities.
    pub async fn start(dir: PathBuf) -> anyhow::Result<PrivateLibvirtd> {
        let conf = libvirtd_conf(&dir);
        PrivateLibvirtd::start_with_conf(dir, &conf).await
    }

    /// [`PrivateLibvirtd::start`] with `conf` as its libvirtd.conf.
    pub async fn start_with_conf(dir: PathBuf, conf: &str) -> anyhow::Result<PrivateLibvirtd> {
        if dir.to_string_lossy().contains([',', ':', '"', '\n']) {
            bail!("{} cannot be an overlay layer (it has a comma, colon or quote)", dir.display());
        }
        for sub in ["etc/libvirt", "run", "var", "work-etc", "work-run", "work-var", "sock"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        }
        std::fs::write(dir.join("etc/libvirt/libvirtd.conf"), conf)?;
        std::fs::write(dir.join("etc/libvirt/qemu.conf"), QEMU_CONF)?;
        for (file, line) in [
            ("passwd", format!("{QEMU_USER}:x:{QEMU_USER_ID}:{QEMU_USER_ID}::/var/lib/libvirt:/usr/sbin/nologin")),
            ("group", format!("{QEMU_USER}:x:{QEMU_USER_ID}:")),
        ] {
            let host = std::fs::read_to_string(Path::new("/etc").join(file))
                .with_context(|| format!("cannot read /etc/{file}"))?;
            if let Some(private) = with_entry(&host, QEMU_USER, &line) {
                std::fs::write(dir.join("etc").join(file), private)?;
            }
        }
        let output = dir.join("libvirtd.out");
        let output = std::fs::File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SCRIPT, "sh"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("cannot run unshare (util-linux)")?;
        let socket = dir.join("sock/libvirt-sock");
        let mut daemon = PrivateLibvirtd {
            pid: child.id(),
            child: Some(child),
            uri: format!("qemu:///system?socket={}", socket.display()),
            dir,
        };
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    /// Ready once `virsh version` answers, which also makes libvirtd probe QEMU (once per
    /// cache directory), so that no measured command pays for the probe.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let said = std::fs::read_to_string(self.dir.join("libvirtd.out")).unwrap_or_default();
                bail!("libvirtd exited with {status}: {}", said.trim());
            }
            if self.dir.join("sock/libvirt-sock").exists() {
                let output = self.virsh(&["version"]).await?;
                if output.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "libvirtd did not answer within {READY_TIMEOUT:?}; see {}",
                    self.dir.join("libvirtd.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `virsh -c URI ARGS…` as a process of its own: spawn → exit.
    pub fn virsh_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("virsh");
        command.arg("-c").arg(&self.uri).args(args).stdin(Stdio::null());
        command
    }

    /// Runs `virsh ARGS…` off the runtime; fails unless it succeeds.
    pub async fn virsh(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.virsh_command(args);
        let what = args.join(" ");
        tokio::task::spawn_blocking(move || command.output()).await?.with_context(|| format!("cannot run virsh {what}"))
    }

    /// A virsh shell connected to this daemon.
    pub async fn shell(&self) -> anyhow::Result<VirshShell> {
        VirshShell::open(&self.uri).await
    }

    /// libvirtd's resident set (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        process_info::rss_kib(self.pid).context("cannot read libvirtd's VmRSS")
    }

    /// The version libvirtd reports (`virsh version --daemon`).
    pub async fn version(&self) -> String {
        let output = self.virsh(&["version", "--daemon"]).await;
        let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("Running against daemon: ")).unwrap_or("unknown").trim().to_string()
    }

    /// The QEMU command line libvirt ran for `domain` last, from its domain log.
    pub fn qemu_command(&self, domain: &str) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("var/log/libvirt/qemu").join(format!("{domain}.log"))).ok()?;
        qemu_command_from_log(&log)
    }

    /// The pid of `domain`'s running QEMU (libvirt's pid file, in the /run overlay).
    pub fn qemu_pid(&self, domain: &str) -> Option<u32> {
        let file = self.dir.join("run/libvirt/qemu").join(format!("{domain}.pid"));
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Destroys every running domain (they outlive libvirtd otherwise), then stops the
    /// daemon (SIGTERM, SIGKILL after a grace period).
    pub async fn shutdown(mut self) {
        if let Ok(output) = self.virsh(&["list", "--name"]).await {
            for name in String::from_utf8_lossy(&output.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Err(err) = self.virsh(&["destroy", name]).await {
                    eprintln!("vireo-bench: cannot destroy libvirt domain {name}: {err:#}");
                }
            }
        }
        if let Some(child) = self.child.take() {
            crate::daemon::terminate(child).await;
        }
    }
}

impl Drop for PrivateLibvirtd {
    fn drop(&mut self) {
        // The domains' QEMUs are left to the QemuReaper: their command lines name the bench's directory.
        crate::daemon::kill_now(self.child.take());
    }
}

/// libvirtd daemonizes each QEMU (it forks twice), so a QEMU's parent is whoever adopts
/// orphans: PID 1, which on a host like the bench's (no systemd, a PID 1 that reaps lazily)
/// can leave an exited QEMU a zombie for a second or two; libvirt, which polls with
/// `kill(pid, 0)` until its QEMU is gone, would wait that long in every destroy, save and
/// revert. While this lives, the bench adopts them instead (a child subreaper) and reaps each
/// exited QEMU on SIGCHLD, as an init does. vireo's QEMUs are its daemon's children: unaffected.
/// So are the QEMUs the bench spawns itself (plain QEMU, vireo's command by hand), whose exit
/// tokio must see: they stay in the bench's session, libvirt's daemonized QEMUs do not.
pub struct OrphanReaper {
    task: tokio::task::JoinHandle<()>,
}

impl OrphanReaper {
    pub fn start() -> anyhow::Result<OrphanReaper> {
        let mut exits = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
        let task = tokio::spawn(async move {
            while exits.recv().await.is_some() {
                reap_adopted_qemus();
            }
        });
        Ok(OrphanReaper { task })
    }
}

impl Drop for OrphanReaper {
    fn drop(&mut self) {
        self.task.abort();
        let _ = nix::sys::prctl::set_child_subreaper(false);
        reap_adopted_qemus();
    }
}

/// Reaps every exited QEMU whose parent is this process and which left its session.
fn reap_adopted_qemus() {
    let me = std::process::id();
    let session = process_info::session_id(me);
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if process_info::parent_pid(pid) != Some(me)
            || process_info::session_id(pid) == session
            || !process_info::has_exited(pid)
        {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("qemu") {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
    }
}

/// `content` (an /etc/passwd or /etc/group) with `line` appended, or `None` if it already has `name`.
fn with_entry(content: &str, name: &str, line: &str) -> Option<String> {
    if content.lines().any(|l| l.split(':').next() == Some(name)) {
        return None;
    }
    let mut out = content.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    Some(out)
}

/// The QEMU command of the last start in a libvirt domain log: from the line that names the
/// emulator to the first line that does not end in ` \`, joined.
fn qemu_command_from_log(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.iter().rposition(|l| l.contains("qemu-system") && l.ends_with(" \\"))?;
    let mut words = Vec::new();
    for line in &lines[start..] {
        let continued = line.strip_suffix(" \\");
        words.push(continued.unwrap_or(line).trim().to_string());
        if continued.is_none() {
            break;
        }
    }
    Some(words.join(" "))
}

/// The test guest as a libvirt domain: what a user writes to boot this kernel with 256 MiB and
/// 1 vCPU under TCG (`type='qemu'`) on q35, ACPI and APIC on (QEMU's own default, which
/// libvirt turns off unless asked), its serial console on a Unix socket QEMU connects to,
/// optionally a qcow2 disk. libvirt adds its defaults to the rest (USB controller, balloon,
/// PS/2 input, PCIe root ports).
pub struct Domain<'a> {
    pub name: &'a str,
    pub guest: &'a Guest,
    pub emulator: &'a Path,
    /// Where the bench listens for the serial console.
    pub serial: &'a Path,
    pub disk: Option<&'a Path>,
}

impl Domain<'_> {
    pub fn xml(&self) -> String {
        let path = |p: &Path| escape(&p.to_string_lossy());
        let mut xml = String::new();
        let _ = write!(
            xml,
            "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>{memory}</memory>\n  <vcpu>1</vcpu>\n  \
             <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{kernel}</kernel>\n    \
             <initrd>{initrd}</initrd>\n    <cmdline>{cmdline}</cmdline>\n  </os>\n  \
             <features>\n    <acpi/>\n    <apic/>\n  </features>\n  <devices>\n    <emulator>{emulator}</emulator>\n",
            name = escape(self.name),
            memory = crate::boot::MEMORY_MIB,
            kernel = path(&self.guest.kernel),
            initrd = path(&self.guest.initrd),
            cmdline = escape(crate::boot::CMDLINE),
            emulator = path(self.emulator),
        );
        if let Some(disk) = self.disk {
            let _ = write!(
                xml,
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
                 <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n",
                path(disk)
            );
        }
        let _ = write!(
            xml,
            "    <serial type='unix'>\n      <source mode='connect' path='{}'/>\n      <target port='0'/>\n    \
             </serial>\n  </devices>\n</domain>\n",
            path(self.serial)
        );
        xml
    }
}

/// Text for XML content and single- or double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// virsh's interactive shell with its input and output on pipes, connected once: each
/// command then costs what the libvirt API call costs, without virsh's start-up and
/// connection, as vireo-client's calls over an open socket.
pub struct VirshShell {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::net::unix::pipe::Receiver,
    seen: Vec<u8>,
    commands: u64,
}

impl VirshShell {
    async fn open(uri: &str) -> anyhow::Result<VirshShell> {
        // stdout and stderr on one pipe, so an error comes before the end marker that follows it.
        let (reader, writer) = std::io::pipe()?;
        let mut child = tokio::process::Command::new("virsh")
            .args(["-q", "-c", uri])
            .stdin(Stdio::piped())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run virsh")?;
        let input = child.stdin.take().context("no stdin")?;
        let output = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
        let mut shell = VirshShell { child, input, output, seen: Vec::new(), commands: 0 };
        shell.run("uri").await.context("the virsh shell does not answer")?;
        Ok(shell)
    }

    /// Sends `command` and returns what it printed once virsh has finished it (an `echo` of a
    /// marker after it comes back); fails if it printed an `error:` line.
    pub async fn run(&mut self, command: &str) -> anyhow::Result<String> {
        self.send(command).await?;
        self.finish(command).await
    }

    /// Sends `command` without waiting; [`VirshShell::finish`] collects its output.
    pub async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.commands += 1;
        // virsh echoes each line it reads: split the marker with quotes so that only the output of
        // the `echo` has it whole.
        let line = format!("{command}\n{}\n", echo_end_marker(self.commands));
        self.input.write_all(line.as_bytes()).await.context("cannot write to virsh")?;
        Ok(())
    }

    /// Waits for the end of the command sent last.
    pub async fn finish(&mut self, command: &str) -> anyhow::Result<String> {
        let marker = end_marker(self.commands);
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(at) = find(&self.seen, marker.as_bytes()) {
                    let said = String::from_utf8_lossy(&self.seen[..at]).into_owned();
                    self.seen.drain(..at + marker.len());
                    return Ok(said);
                }
                let n = self.output.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "virsh exited"));
                }
                self.seen.extend_from_slice(&buf[..n]);
            }
        };
        let said = tokio::time::timeout(COMMAND_TIMEOUT, read)
            .await
            .with_context(|| format!("virsh {command}: no answer within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("virsh {command}"))?;
        let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("error:")).collect();
        if !errors.is_empty() {
            bail!("virsh {command}: {}", errors.join(" "));
        }
        Ok(said)
    }

    pub async fn close(mut self) {
        let _ = self.input.write_all(b"quit\n").await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

fn end_marker(n: u64) -> String {
    format!("__VIREO_DONE_{n}__")
}

/// The virsh command that prints [`end_marker`] `n`, which it does not contain itself.
fn echo_end_marker(n: u64) -> String {
    format!("echo \"__VIREO\"\"_DONE_{n}__\"")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest() -> Guest {
        Guest { kernel: "/g/vmlinuz".into(), initrd: "/g/initramfs.img".into() }
    }

    #[test]
    fn the_domain_is_the_test_guest() {
        let guest = guest();
        let domain = Domain {
            name: "boot-1",
            guest: &guest,
            emulator: Path::new("/usr/bin/qemu-system-x86_64"),
            serial: Path::new("/t/boot-1.serial"),
            disk: None,
        };
        let xml = domain.xml();
        assert!(xml.starts_with("<domain type='qemu'>\n  <name>boot-1</name>\n  <memory unit='MiB'>256</memory>\n"));
        assert!(xml.contains("<type arch='x86_64' machine='q35'>hvm</type>"), "{xml}");
        assert!(xml.contains("<kernel>/g/vmlinuz</kernel>\n    <initrd>/g/initramfs.img</initrd>"), "{xml}");
        assert!(xml.contains("<cmdline>console=ttyS0 quiet</cmdline>"), "{xml}");
        assert!(xml.contains("<source mode='connect' path='/t/boot-1.serial'/>"), "{xml}");
        assert!(!xml.contains("<disk"), "{xml}");
        let disk = Domain { disk: Some(Path::new("/t/a&b.qcow2")), ..domain };
        assert!(disk.xml().contains("<source file='/t/a&amp;b.qcow2'/>\n      <target dev='vda' bus='virtio'/>"));
    }

    #[test]
    fn the_configuration_stays_in_the_directory() {
        let conf = libvirtd_conf(Path::new("/tmp/b/libvirt"));
        assert!(conf.contains("unix_sock_dir = \"/tmp/b/libvirt/sock\"\n"), "{conf}");
        assert!(conf.contains("listen_tcp = 0\n") && conf.contains("auth_unix_rw = \"none\"\n"), "{conf}");
        assert!(conf.contains("log_outputs = \"3:file:/tmp/b/libvirt/libvirtd.log\"\n"), "{conf}");
        assert!(QEMU_CONF.contains("user = \"root\"\n") && QEMU_CONF.contains("stdio_handler = \"file\"\n"));
    }

    #[test]
    fn the_qemu_user_is_added_only_when_missing() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2::/bin:/usr/sbin/nologin";
        let added = with_entry(passwd, "libvirt-qemu", "libvirt-qemu:x:1:1::/:/bin/false").unwrap();
        assert!(added.ends_with("/usr/sbin/nologin\nlibvirt-qemu:x:1:1::/:/bin/false\n"), "{added}");
        assert!(with_entry(&added, "libvirt-qemu", "x").is_none());
        assert!(with_entry(passwd, "bin", "x").is_none());
    }

    #[test]
    fn the_qemu_command_comes_from_the_domain_log() {
        let log = "2026-01-01 00:00:00.000+0000: starting up libvirt version: 9.0.0\n\
                   LC_ALL=C \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=old \\\n-S\n\
                   2026-01-01 00:01:00.000+0000: starting up libvirt version: 9.0.0\n\
                   LC_ALL=C \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=new,debug-threads=on \\\n\
                   -append 'console=ttyS0 quiet' \\\n-msg timestamp=on\nchar device redirected\n";
        assert_eq!(
            qemu_command_from_log(log).unwrap(),
            "/usr/bin/qemu-system-x86_64 -name guest=new,debug-threads=on -append 'console=ttyS0 quiet' -msg timestamp=on"
        );
        assert!(qemu_command_from_log("nothing").is_none());
    }

    #[test]
    fn the_end_marker_is_whole_only_in_the_output() {
        let sent = echo_end_marker(12);
        assert_eq!(sent, "echo \"__VIREO\"\"_DONE_12__\"");
        assert!(find(sent.as_bytes(), end_marker(12).as_bytes()).is_none());
        assert_eq!(find(b"virsh # \n__VIREO_DONE_1__virsh #", end_marker(1).as_bytes()), Some(9));
        assert!(find(b"__VIREO_DONE_12__", end_marker(1).as_bytes()).is_none());
    }
}
