//! nftables rules of a managed network: one table of our own per network
//! (`table ip vireo_<network>`), so other firewalls' tables are never touched
//! and removing a network is deleting its table.
//!
//! The ruleset text is built by a pure function (golden-tested) and loaded with
//! `nft -f -` in one transaction that replaces the whole table atomically.
//!
//! A verdict in our table cannot override a drop in another table on the same
//! hook (nftables evaluates every base chain): on a host whose firewall drops
//! forwarded traffic, that firewall must let the bridge's traffic through too.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::NetError;
use crate::subnet::Ipv4Subnet;
use crate::tools::NFT;

const TABLE_PREFIX: &str = "vireo_";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// How a network's guests reach beyond their bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// Out through the host's uplinks, masqueraded behind the host's address;
    /// replies come back, new connections from outside do not get in.
    Nat,
    /// Not at all: guests reach each other and the host (DHCP, DNS), nothing else.
    Isolated,
}

/// The firewall rules of one managed network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRules {
    /// The network's name: the table is `vireo_<network>`.
    pub network: String,
    pub bridge: String,
    pub subnet: Ipv4Subnet,
    pub forwarding: Forwarding,
}

/// `vireo_<network>`. Network names are letters, digits, `-` and `_` (what nft
/// accepts in an identifier after its first letter), so the name maps one to one.
pub fn table_name(network: &str) -> Result<String, NetError> {
    let invalid = |reason: String| NetError::InvalidNetworkName { name: network.to_owned(), reason };
    if network.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if network.len() > 200 {
        return Err(invalid(format!("must be at most 200 characters, got {}", network.len())));
    }
    if let Some(bad) = network.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(invalid(format!("contains {bad:?}; use letters, digits, '-' and '_'")));
    }
    Ok(format!("{TABLE_PREFIX}{network}"))
}

impl NetworkRules {
    /// The nft script that (re)creates the table: declaring the table and deleting
    /// it first makes the load replace any earlier version in one transaction.
    pub fn ruleset(&self) -> Result<String, NetError> {
        let table = table_name(&self.network)?;
        crate::names::validate_link_name(&self.bridge)?;
        if let Some(bad) = self.bridge.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
            // It is quoted in the rules; keep quoting trivially safe.
            return Err(NetError::InvalidLinkName {
                name: self.bridge.clone(),
                reason: format!("contains {bad:?}, which the firewall rules do not accept"),
            });
        }
        let (bridge, subnet) = (&self.bridge, self.subnet);
        let mut text = format!(
            "# Vireo network {network}: generated, replaced whole on every start.\n\
             table ip {table}\n\
             delete table ip {table}\n\
             table ip {table} {{\n",
            network = self.network
        );
        // Forward: guest to guest on the bridge always; out and back only for NAT;
        // anything else entering or leaving the bridge is refused, so a guest
        // cannot spoof other sources and the outside cannot open connections in.
        text.push_str(&format!(
            "\tchain forward {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tiifname \"{bridge}\" oifname \"{bridge}\" accept\n"
        ));
        if self.forwarding == Forwarding::Nat {
            text.push_str(&format!(
                "\t\tiifname \"{bridge}\" ip saddr {subnet} accept\n\
                 \t\toifname \"{bridge}\" ip daddr {subnet} ct state established,related accept\n"
            ));
        }
        text.push_str(&format!(
            "\t\tiifname \"{bridge}\" reject\n\
             \t\toifname \"{bridge}\" reject\n\
             \t}}\n"
        ));
        if self.forwarding == Forwarding::Nat {
            // Masquerade what leaves the subnet, except multicast and broadcast
            // (never routed anyway); TCP/UDP source ports are kept unprivileged.
            text.push_str(&format!(
                "\n\tchain postrouting {{\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\tip saddr {subnet} ip daddr 224.0.0.0/24 return\n\
                 \t\tip saddr {subnet} ip daddr 255.255.255.255 return\n\
                 \t\tip saddr {subnet} ip daddr != {subnet} meta l4proto {{ tcp, udp }} masquerade to :1024-65535\n\
                 \t\tip saddr {subnet} ip daddr != {subnet} masquerade\n\
                 \t}}\n"
            ));
        }
        text.push_str("}\n");
        Ok(text)
    }

    /// Loads [`NetworkRules::ruleset`] into the calling thread's network namespace.
    pub async fn apply(&self) -> Result<(), NetError> {
        let ruleset = self.ruleset()?;
        run_nft_script(&format!("apply the rules of network {}", self.network), &ruleset).await
    }
}

/// Deletes the network's table; one that does not exist is fine.
pub async fn remove_table(network: &str) -> Result<(), NetError> {
    let table = table_name(network)?;
    let script = format!("table ip {table}\ndelete table ip {table}\n");
    run_nft_script(&format!("remove table {table}"), &script).await
}

pub async fn table_exists(network: &str) -> Result<bool, NetError> {
    let table = table_name(network)?;
    let listing = run_nft(&format!("list the tables (looking for {table})"), &["list", "tables", "ip"]).await?;
    Ok(listing.lines().any(|line| line.trim() == format!("table ip {table}")))
}

/// `nft list table ip vireo_<network>`: the rules as the kernel has them; None
/// when there is no such table.
pub async fn list_table(network: &str) -> Result<Option<String>, NetError> {
    if !table_exists(network).await? {
        return Ok(None);
    }
    let table = table_name(network)?;
    run_nft(&format!("list table {table}"), &["list", "table", "ip", &table]).await.map(Some)
}

/// Turns on IPv4 forwarding, which NAT networks need. The setting belongs to
/// the network namespace of the calling thread (for the daemon: the host's,
/// where it is global, like libvirt does it).
pub fn enable_ip_forward() -> Result<(), NetError> {
    std::fs::write(IP_FORWARD, "1").map_err(NetError::io("write", IP_FORWARD))
}

pub fn ip_forward_enabled() -> Result<bool, NetError> {
    let text = std::fs::read_to_string(IP_FORWARD).map_err(NetError::io("read", IP_FORWARD))?;
    Ok(text.trim() == "1")
}

/// `nft -f -` with `script` on stdin.
async fn run_nft_script(action: &str, script: &str) -> Result<(), NetError> {
    let binary = NFT.find()?;
    let mut child = Command::new(&binary)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NetError::Spawn { binary: binary.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means nft exited early; its status and stderr say why.
        let _ = stdin.write_all(script.as_bytes()).await;
    }
    let output = child.wait_with_output().await.map_err(|source| NetError::Spawn { binary, source })?;
    check_output(action, &output).map(drop)
}

/// `nft ARGS…`; its stdout.
async fn run_nft(action: &str, args: &[&str]) -> Result<String, NetError> {
    let binary = NFT.find()?;
    let output = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| NetError::Spawn { binary, source })?;
    check_output(action, &output)
}

fn check_output(action: &str, output: &std::process::Output) -> Result<String, NetError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stderr = if stderr.is_empty() { output.status.to_string() } else { stderr };
    Err(NetError::Nft { action: action.to_owned(), stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(table_name("default").unwrap(), "vireo_default");
        assert_eq!(table_name("lab-2_a").unwrap(), "vireo_lab-2_a");
        let reason = |name: &str| match table_name(name) {
            Err(NetError::InvalidNetworkName { reason, .. }) => reason,
            other => panic!("{name}: expected InvalidNetworkName, got {other:?}"),
        };
        assert_eq!(reason(""), "must not be empty");
        assert_eq!(reason("a b"), "contains ' '; use letters, digits, '-' and '_'");
        assert_eq!(reason("x;flush ruleset"), "contains ';'; use letters, digits, '-' and '_'");
    }

    #[test]
    fn bridge_names_that_would_need_escaping_are_refused() {
        let rules = NetworkRules {
            network: "default".into(),
            bridge: "br\"0".into(),
            subnet: "192.0.2.0/24".parse().unwrap(),
            forwarding: Forwarding::Nat,
        };
        assert!(matches!(rules.ruleset(), Err(NetError::InvalidLinkName { .. })));
    }
}
