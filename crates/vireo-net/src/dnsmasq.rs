//! dnsmasq: DHCP (and, if asked, DNS) for one managed network.
//!
//! dnsmasq runs as its own daemon (it forks, detaches and writes a pid file),
//! not as a child of ours, so it outlives a daemon restart and is re-adopted
//! from its pid file: [`Dnsmasq::adopt`] trusts a pid only when a pidfd of it
//! is open and its command line names that same pid file. Its launcher exits
//! only once the daemon is serving (or has failed, with the reason on stderr),
//! so [`Dnsmasq::spawn`] needs no polling. Everything is on the command line
//! (`--conf-file=/dev/null`: no system configuration is read), static leases
//! included, so there are no extra files that dnsmasq — which drops root for
//! `nobody` — would have to be allowed to read; changing them is a restart.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::Command;

use crate::error::NetError;
use crate::mac::MacAddr;
use crate::subnet::Ipv4Subnet;
use crate::tools::DNSMASQ;

/// How long dnsmasq's launcher may take to report that the daemon serves.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dnsmasq gets to exit after SIGTERM, then after SIGKILL.
const TERM_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// dnsmasq refuses shorter leases.
pub const MIN_LEASE_TIME: Duration = Duration::from_secs(120);

/// What dnsmasq does about DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dns {
    /// dnsmasq answers DNS on the gateway address (and only there), forwarding
    /// to the host's resolvers (/etc/resolv.conf), and DHCP names itself as the
    /// guests' resolver: guests resolve out of the box, like libvirt's default
    /// network. With a `domain`, DHCP clients' host names resolve under it.
    Gateway { domain: Option<String> },
    /// No DNS server at all (`--port=0`); DHCP offers `servers` as resolvers
    /// (none: guests get no resolver from DHCP).
    Off { servers: Vec<Ipv4Addr> },
}

/// Whether DHCP gives guests a default route through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultRoute {
    /// Through the gateway (nat networks).
    Gateway,
    /// None (isolated networks: the guests have nowhere to go).
    None,
}

/// A fixed address for one MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticLease {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Given to the guest and resolvable under [`Dns::Gateway`]'s domain; a
    /// name that is no valid host name (e.g. with `_`) is left out.
    pub hostname: Option<String>,
}

/// One network's dnsmasq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsmasqConfig {
    /// The bridge dnsmasq serves; it must exist and have the gateway address.
    pub interface: String,
    pub subnet: Ipv4Subnet,
    /// At least [`MIN_LEASE_TIME`].
    pub lease_time: Duration,
    pub dns: Dns,
    pub default_route: DefaultRoute,
    pub static_leases: Vec<StaticLease>,
    /// Holds the pid, lease and log files; created if missing. One per network.
    pub dir: PathBuf,
}

impl DnsmasqConfig {
    /// One-hour leases, DNS on the gateway, a default route, no static leases.
    pub fn new(interface: impl Into<String>, subnet: Ipv4Subnet, dir: impl Into<PathBuf>) -> DnsmasqConfig {
        DnsmasqConfig {
            interface: interface.into(),
            subnet,
            lease_time: Duration::from_secs(3600),
            dns: Dns::Gateway { domain: None },
            default_route: DefaultRoute::Gateway,
            static_leases: Vec::new(),
            dir: dir.into(),
        }
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    /// dnsmasq's lease database; read it with [`read_leases`].
    pub fn lease_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }

    /// What dnsmasq logs (start-up, DHCP warnings); there is no syslog to rely on.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    /// The checks dnsmasq would otherwise fail on (or, worse, accept and misbehave).
    fn check(&self) -> Result<(), NetError> {
        let invalid = |reason: String| NetError::DnsmasqConfig { interface: self.interface.clone(), reason };
        crate::names::validate_link_name(&self.interface)?;
        if self.lease_time < MIN_LEASE_TIME {
            return Err(invalid(format!("lease time must be at least {} s", MIN_LEASE_TIME.as_secs())));
        }
        if let Dns::Gateway { domain: Some(domain) } = &self.dns
            && !is_domain_name(domain)
        {
            return Err(invalid(format!("'{domain}' is not a DNS domain name")));
        }
        for lease in &self.static_leases {
            if !self.subnet.contains(lease.ip)
                || lease.ip == self.subnet.network()
                || lease.ip == self.subnet.broadcast()
            {
                return Err(invalid(format!("static lease {} is not a host address of {}", lease.ip, self.subnet)));
            }
            if lease.ip == self.subnet.gateway() {
                return Err(invalid(format!("static lease {} is the gateway's address", lease.ip)));
            }
        }
        Ok(())
    }
}

/// dnsmasq's command line for `config` (without the binary).
pub fn dnsmasq_args(config: &DnsmasqConfig) -> Vec<OsString> {
    let subnet = &config.subnet;
    let range = subnet.dhcp_range();
    let range_size = u32::from(range.end) - u32::from(range.start) + 1;
    let mut argv: Vec<OsString> = vec![
        "--conf-file=/dev/null".into(),
        path_arg("--pid-file=", &config.pid_file()),
        // Bind to the bridge only, so other dnsmasq instances (and the host's
        // resolver on port 53 of other addresses) are not in the way.
        "--bind-interfaces".into(),
        format!("--interface={}", config.interface).into(),
        "--except-interface=lo".into(),
        format!("--listen-address={}", subnet.gateway()).into(),
        format!("--dhcp-range={},{},{},{}", range.start, range.end, subnet.netmask(), config.lease_time.as_secs())
            .into(),
        format!("--dhcp-lease-max={range_size}").into(),
        path_arg("--dhcp-leasefile=", &config.lease_file()),
        // The only DHCP server on this bridge: answer clients that ask for an
        // address it has no lease for (e.g. after its lease file was lost).
        "--dhcp-authoritative".into(),
        "--dhcp-no-override".into(),
        path_arg("--log-facility=", &config.log_file()),
    ];
    if config.default_route == DefaultRoute::None {
        // An option with no value tells dnsmasq to send none.
        argv.push("--dhcp-option=option:router".into());
    }
    match &config.dns {
        Dns::Gateway { domain } => {
            // Never forward unqualified names or private reverse lookups upstream,
            // and serve nothing of the host's /etc/hosts to guests.
            argv.extend(["--domain-needed", "--bogus-priv", "--no-hosts"].map(OsString::from));
            if let Some(domain) = domain {
                argv.push(format!("--domain={domain}").into());
                argv.push(format!("--local=/{domain}/").into());
                argv.push("--expand-hosts".into());
            }
        }
        Dns::Off { servers } => {
            argv.push("--port=0".into());
            if !servers.is_empty() {
                let list: Vec<String> = servers.iter().map(Ipv4Addr::to_string).collect();
                argv.push(format!("--dhcp-option=option:dns-server,{}", list.join(",")).into());
            }
        }
    }
    for lease in &config.static_leases {
        let mut host = format!("--dhcp-host={},{}", lease.mac, lease.ip);
        if let Some(name) = lease.hostname.as_deref().filter(|name| is_host_name(name)) {
            host.push(',');
            host.push_str(name);
        }
        argv.push(host.into());
    }
    argv
}

fn path_arg(flag: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(path.as_os_str());
    arg
}

/// One DNS label: letters, digits and inner hyphens, at most 63 bytes.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_domain_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_host_name)
}

/// A running dnsmasq: its pid and a pidfd that pins it.
#[derive(Debug)]
pub struct Dnsmasq {
    pid: u32,
    pidfd: OwnedFd,
    cmdline: Vec<OsString>,
}

impl Dnsmasq {
    /// Starts dnsmasq for `config` and returns once it serves. A dnsmasq already
    /// running for the same pid file is stopped first, so this also restarts
    /// (how a changed configuration, e.g. new static leases, takes effect;
    /// leases survive in the lease file).
    pub async fn spawn(config: &DnsmasqConfig) -> Result<Dnsmasq, NetError> {
        config.check()?;
        let binary = DNSMASQ.find()?;
        std::fs::create_dir_all(&config.dir).map_err(NetError::io("create", &config.dir))?;
        if let Some(running) = Dnsmasq::adopt(config)? {
            running.stop().await?;
        }
        let pid_file = config.pid_file();
        match std::fs::remove_file(&pid_file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(NetError::io("remove", &pid_file)(err)),
        }
        let start_failed = |message: String| NetError::DnsmasqStart { interface: config.interface.clone(), message };
        let mut command = Command::new(&binary);
        command.args(dnsmasq_args(config)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        command.kill_on_drop(true);
        let output = tokio::time::timeout(START_TIMEOUT, command.output())
            .await
            .map_err(|_| start_failed(format!("no answer within {} s", START_TIMEOUT.as_secs())))?
            .map_err(|source| NetError::Spawn { binary: binary.clone(), source })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim().trim_start_matches("dnsmasq: ").to_owned();
            let message = if stderr.is_empty() { output.status.to_string() } else { stderr };
            return Err(start_failed(message));
        }
        let pid = read_pid_file(&pid_file)?
            .ok_or_else(|| start_failed(format!("it wrote no pid to {}", pid_file.display())))?;
        Dnsmasq::identify(pid, &pid_file)?
            .ok_or_else(|| start_failed(format!("it exited right after starting; see {}", config.log_file().display())))
    }

    /// The dnsmasq an earlier daemon started for `config`, if it still runs:
    /// the pid in the pid file, pinned by a pidfd, whose command line names that
    /// pid file. A missing or stale pid file is None, not an error.
    pub fn adopt(config: &DnsmasqConfig) -> Result<Option<Dnsmasq>, NetError> {
        let pid_file = config.pid_file();
        match read_pid_file(&pid_file) {
            Ok(Some(pid)) => Dnsmasq::identify(pid, &pid_file),
            Ok(None) => Ok(None),
            Err(NetError::PidFile { path, reason }) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring dnsmasq pid file");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// `pid` if it is a dnsmasq started with `--pid-file=<pid_file>`.
    fn identify(pid: u32, pid_file: &Path) -> Result<Option<Dnsmasq>, NetError> {
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return Ok(None);
        };
        // Open the pidfd first: from then on the pid cannot be reused behind our
        // back, and the command line read below is that process's.
        let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(errno) => return Err(NetError::Watch { pid, source: errno.into() }),
        };
        // A zombie's command line is empty, so it is not taken for a live dnsmasq.
        let Ok(raw_cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return Ok(None);
        };
        let cmdline: Vec<OsString> = raw_cmdline
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| OsStr::from_bytes(arg).into())
            .collect();
        let is_dnsmasq = cmdline.first().and_then(|argv0| Path::new(argv0).file_name()) == Some(OsStr::new("dnsmasq"));
        let names_pid_file = cmdline.iter().any(|arg| *arg == path_arg("--pid-file=", pid_file));
        if !(is_dnsmasq && names_pid_file) {
            return Ok(None);
        }
        Ok(Some(Dnsmasq { pid, pidfd, cmdline }))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it runs with exactly the command line `config` asks for; if not,
    /// [`Dnsmasq::spawn`] restarts it with the new one.
    pub fn matches(&self, config: &DnsmasqConfig) -> bool {
        self.cmdline.get(1..) == Some(dnsmasq_args(config).as_slice())
    }

    /// Whether the process is still alive (its pidfd is not yet readable).
    pub fn is_running(&self) -> bool {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let exited = rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }))
            .map(|ready| ready > 0)
            .unwrap_or(false);
        !exited
    }

    /// Resolves when the process has exited: how the daemon learns that dnsmasq
    /// died (and restarts it), without polling.
    pub async fn exited(&self) -> Result<(), NetError> {
        let pid = self.pid;
        let fd = self.pidfd.try_clone().map_err(|source| NetError::Watch { pid, source })?;
        let watch = watch(fd, pid)?;
        watch.readable().await.map_err(|source| NetError::Watch { pid, source })?.retain_ready();
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited after a few seconds. A
    /// dnsmasq that is already gone is fine. It is no child of ours: its exit is
    /// seen on the pidfd, and whoever adopted it (init) reaps it.
    pub async fn stop(self) -> Result<(), NetError> {
        let pid = self.pid;
        let watch = watch(self.pidfd, pid)?;
        for (signal, timeout) in [(Signal::TERM, TERM_TIMEOUT), (Signal::KILL, KILL_TIMEOUT)] {
            match rustix::process::pidfd_send_signal(watch.get_ref(), signal) {
                Ok(()) => {}
                Err(rustix::io::Errno::SRCH) => return Ok(()),
                Err(errno) => return Err(NetError::Signal { pid, source: errno.into() }),
            }
            if tokio::time::timeout(timeout, watch.readable()).await.is_ok() {
                return Ok(());
            }
            tracing::warn!(pid, ?signal, "dnsmasq did not exit in time");
        }
        Err(NetError::StillRunning { pid })
    }
}

/// Registers a pidfd with the runtime: it turns readable when the process exits.
fn watch(pidfd: OwnedFd, pid: u32) -> Result<AsyncFd<OwnedFd>, NetError> {
    // SAFETY: the OwnedFd owns its descriptor and never swaps it for another.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|err| NetError::Watch { pid, source: err.into_parts().1 })
}

/// `Ok(None)` when there is no pid file.
fn read_pid_file(path: &Path) -> Result<Option<u32>, NetError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(NetError::io("read", path)(err)),
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 1 => Ok(Some(pid)),
        _ => Err(NetError::PidFile { path: path.to_owned(), reason: format!("'{}' is not a pid", text.trim()) }),
    }
}

/// One DHCPv4 lease from dnsmasq's lease file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// None for an infinite lease.
    pub expires: Option<SystemTime>,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The name the client sent, if any.
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

/// Parses dnsmasq's lease file: one lease a line, `EXPIRY MAC IP HOSTNAME
/// CLIENT-ID`, with `*` for an absent host name or client id and expiry 0 for
/// an infinite lease. DHCPv6 entries (after the `duid` line) and leases of
/// non-Ethernet hardware are skipped, as is any line that does not parse: the
/// file is dnsmasq's, and one odd line must not hide the others.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines().filter_map(parse_lease).collect()
}

fn parse_lease(line: &str) -> Option<Lease> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [expiry, mac, ip, hostname, client_id] = fields.as_slice() else {
        return None;
    };
    let expiry: u64 = expiry.parse().ok()?;
    let present = |field: &str| (field != "*").then(|| field.to_owned());
    Some(Lease {
        expires: (expiry != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(expiry)),
        mac: mac.parse().ok()?,
        ip: ip.parse().ok()?,
        hostname: present(hostname),
        client_id: present(client_id),
    })
}

/// The leases in `config`'s lease file; none before dnsmasq first ran.
pub fn read_leases(config: &DnsmasqConfig) -> Result<Vec<Lease>, NetError> {
    let path = config.lease_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_leases(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(NetError::io("read", &path)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DnsmasqConfig {
        DnsmasqConfig::new("vbr-0123456789", "192.0.2.0/24".parse().unwrap(), "/run/vireo/networks/default")
    }

    fn args(config: &DnsmasqConfig) -> Vec<String> {
        dnsmasq_args(config).into_iter().map(|arg| arg.into_string().unwrap()).collect()
    }

    #[test]
    fn default_config_serves_dhcp_and_dns_on_the_gateway_only() {
        assert_eq!(
            args(&config()),
            [
                "--conf-file=/dev/null",
                "--pid-file=/run/vireo/networks/default/dnsmasq.pid",
                "--bind-interfaces",
                "--interface=vbr-0123456789",
                "--except-interface=lo",
                "--listen-address=192.0.2.1",
                "--dhcp-range=192.0.2.2,192.0.2.254,255.255.255.0,3600",
                "--dhcp-lease-max=253",
                "--dhcp-leasefile=/run/vireo/networks/default/dnsmasq.leases",
                "--dhcp-authoritative",
                "--dhcp-no-override",
                "--log-facility=/run/vireo/networks/default/dnsmasq.log",
                "--domain-needed",
                "--bogus-priv",
                "--no-hosts",
            ]
        );
    }

    #[test]
    fn dns_off_isolated_with_static_leases() {
        let mut config = config();
        config.dns = Dns::Off { servers: vec![Ipv4Addr::new(198, 51, 100, 53), Ipv4Addr::new(198, 51, 100, 54)] };
        config.default_route = DefaultRoute::None;
        config.lease_time = Duration::from_secs(600);
        config.static_leases = vec![
            StaticLease {
                mac: "52:54:00:00:00:01".parse().unwrap(),
                ip: Ipv4Addr::new(192, 0, 2, 10),
                hostname: Some("web1".into()),
            },
            StaticLease {
                mac: "52:54:00:00:00:02".parse().unwrap(),
                ip: Ipv4Addr::new(192, 0, 2, 11),
                hostname: Some("not_a_hostname".into()),
            },
        ];
        let argv = args(&config);
        assert!(argv.contains(&"--dhcp-range=192.0.2.2,192.0.2.254,255.255.255.0,600".to_owned()));
        let tail: Vec<&str> =
            argv.iter().skip_while(|arg| !arg.starts_with("--log-facility")).skip(1).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--dhcp-option=option:router",
                "--port=0",
                "--dhcp-option=option:dns-server,198.51.100.53,198.51.100.54",
                "--dhcp-host=52:54:00:00:00:01,192.0.2.10,web1",
                "--dhcp-host=52:54:00:00:00:02,192.0.2.11",
            ]
        );
    }

    #[test]
    fn domain_makes_guest_names_resolvable() {
        let mut config = config();
        config.dns = Dns::Gateway { domain: Some("vireo.internal".into()) };
        let argv = args(&config);
        let tail: Vec<&str> = argv.iter().skip_while(|arg| *arg != "--no-hosts").skip(1).map(String::as_str).collect();
        assert_eq!(tail, ["--domain=vireo.internal", "--local=/vireo.internal/", "--expand-hosts"]);
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        let reason = |config: &DnsmasqConfig| match config.check() {
            Err(NetError::DnsmasqConfig { reason, .. }) => reason,
            other => panic!("expected DnsmasqConfig, got {other:?}"),
        };
        let mut short = config();
        short.lease_time = Duration::from_secs(60);
        assert_eq!(reason(&short), "lease time must be at least 120 s");
        let mut domain = config();
        domain.dns = Dns::Gateway { domain: Some("bad domain".into()) };
        assert_eq!(reason(&domain), "'bad domain' is not a DNS domain name");
        let lease = |ip: [u8; 4]| StaticLease { mac: MacAddr::generate([0, 0, 1]), ip: ip.into(), hostname: None };
        for (ip, expected) in [
            ([192, 0, 2, 1], "static lease 192.0.2.1 is the gateway's address"),
            ([192, 0, 2, 255], "static lease 192.0.2.255 is not a host address of 192.0.2.0/24"),
            ([198, 51, 100, 7], "static lease 198.51.100.7 is not a host address of 192.0.2.0/24"),
        ] {
            let mut bad = config();
            bad.static_leases = vec![lease(ip)];
            assert_eq!(reason(&bad), expected);
        }
        config().check().unwrap();
    }

    #[test]
    fn parses_dnsmasq_lease_file() {
        let text = "\
1700003600 52:54:00:12:34:56 192.0.2.10 web1 01:52:54:00:12:34:56
0 52:54:00:ab:cd:ef 192.0.2.11 * *
1700000000 06-00:11:22:33:44:55 192.0.2.12 token-ring *
garbage line
1700000000 52:54:00:zz:00:00 192.0.2.13 * *
duid 00:01:00:01:2c:5f:8a:10:52:54:00:12:34:56
1700003600 3218951 fd00::10 web1 00:01:00:01:2c:5f:8a:10:52:54:00:12:34:56
";
        let leases = parse_leases(text);
        assert_eq!(
            leases,
            [
                Lease {
                    expires: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_003_600)),
                    mac: "52:54:00:12:34:56".parse().unwrap(),
                    ip: Ipv4Addr::new(192, 0, 2, 10),
                    hostname: Some("web1".into()),
                    client_id: Some("01:52:54:00:12:34:56".into()),
                },
                Lease {
                    expires: None,
                    mac: "52:54:00:ab:cd:ef".parse().unwrap(),
                    ip: Ipv4Addr::new(192, 0, 2, 11),
                    hostname: None,
                    client_id: None,
                },
            ]
        );
        assert!(parse_leases("").is_empty());
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("web-1"));
        assert!(!is_host_name("web_1"));
        assert!(!is_host_name("-web"));
        assert!(!is_host_name(""));
        assert!(is_domain_name("vireo.internal"));
        assert!(!is_domain_name("vireo..internal"));
    }
}
