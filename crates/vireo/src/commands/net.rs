//! `vireo net ...`

use anyhow::{anyhow, bail};
use vireo_api::{NetworkMode, NetworkSpec};
use vireo_client::{Client, Endpoint};

use crate::cli::{NetCommand, NetworkModeArg, OutputFormat};
use crate::output;

pub async fn run(command: NetCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    match command {
        NetCommand::Create { name, mode, subnet, bridge, vlan } => {
            let spec = network_spec(name, mode, subnet, bridge, vlan.as_deref())?;
            let network = client.create_network(&spec).await?;
            let mode = output::network_mode(network.mode);
            let reach = network.subnet.as_deref().unwrap_or(&network.bridge);
            output::print(&format!("{}: created ({mode}, {reach})\n", network.name))
        }
        NetCommand::List { output } => {
            let networks = client.list_networks().await?;
            match output.format {
                OutputFormat::Json => output::print_json(&networks),
                OutputFormat::Table => output::print(&output::network_table(&networks)),
            }
        }
        NetCommand::Show { name, output } => {
            check_network_name(&name)?;
            let network = client.get_network(&name).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&network),
                OutputFormat::Table => output::print(&output::network_details(&network)),
            }
        }
        NetCommand::Delete { name } => {
            check_network_name(&name)?;
            client.delete_network(&name).await?;
            output::print(&format!("{name}: deleted\n"))
        }
    }
}

/// The body of `net create`, refusing before any request what the daemon would refuse for sure:
/// a bad name or VLAN tag, and flags that do not go with the mode. The subnet itself is the daemon's
/// to judge (it also knows which ones are taken).
fn network_spec(
    name: String,
    mode: NetworkModeArg,
    subnet: Option<String>,
    bridge: Option<String>,
    vlan: Option<&str>,
) -> anyhow::Result<NetworkSpec> {
    check_network_name(&name)?;
    let vlan = vlan.map(parse_vlan).transpose()?;
    let mode = NetworkMode::from(mode);
    let mode_name = output::network_mode(mode);
    match mode {
        NetworkMode::Bridge => {
            if bridge.is_none() {
                bail!("--bridge: a bridge network needs the host bridge to join, e.g. --bridge br0");
            }
            if subnet.is_some() {
                bail!("--subnet: a bridge network takes its addresses from the host bridge's network");
            }
        }
        NetworkMode::Nat | NetworkMode::Isolated => {
            if bridge.is_some() {
                bail!("--bridge: only a bridge network joins a host bridge; a {mode_name} network has its own");
            }
            if vlan.is_some() {
                bail!("--vlan: only the NICs of a bridge network are tagged, not those of a {mode_name} network");
            }
        }
    }
    Ok(NetworkSpec { name, mode, subnet, bridge, vlan })
}

/// Refuses a network name the daemon would refuse, before asking it anything.
fn check_network_name(name: &str) -> anyhow::Result<()> {
    vireo_core::spec::validate_name(name).map_err(|reason| anyhow!("network name {reason}"))
}

/// A VLAN tag: 1 to 4094 (0 means untagged and 4095 is reserved).
fn parse_vlan(text: &str) -> anyhow::Result<u16> {
    match text.parse::<u16>() {
        Ok(tag @ 1..=4094) => Ok(tag),
        Ok(tag) => bail!("--vlan: must be between 1 and 4094, got {tag}"),
        Err(_) => bail!("--vlan: '{text}' is not a number between 1 and 4094"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: NetworkModeArg, subnet: Option<&str>, bridge: Option<&str>, vlan: Option<&str>) -> String {
        match network_spec("lan".into(), mode, subnet.map(Into::into), bridge.map(Into::into), vlan) {
            Ok(spec) => serde_json::to_string(&spec).unwrap(),
            Err(err) => format!("error: {err}"),
        }
    }

    #[test]
    fn flags_build_a_spec() {
        assert_eq!(spec(NetworkModeArg::Nat, None, None, None), r#"{"name":"lan","mode":"nat"}"#);
        assert_eq!(
            spec(NetworkModeArg::Isolated, Some("10.77.1.0/24"), None, None),
            r#"{"name":"lan","mode":"isolated","subnet":"10.77.1.0/24"}"#
        );
        assert_eq!(
            spec(NetworkModeArg::Bridge, None, Some("br0"), Some("4094")),
            r#"{"name":"lan","mode":"bridge","bridge":"br0","vlan":4094}"#
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let bridge = |vlan| spec(NetworkModeArg::Bridge, None, Some("br0"), Some(vlan));
        assert_eq!(bridge("5000"), "error: --vlan: must be between 1 and 4094, got 5000");
        assert_eq!(bridge("0"), "error: --vlan: must be between 1 and 4094, got 0");
        assert_eq!(bridge("ten"), "error: --vlan: 'ten' is not a number between 1 and 4094");
        assert!(spec(NetworkModeArg::Bridge, None, None, None).starts_with("error: --bridge: a bridge network needs"));
        assert!(spec(NetworkModeArg::Bridge, Some("10.0.0.0/24"), Some("br0"), None).starts_with("error: --subnet:"));
        assert!(spec(NetworkModeArg::Nat, None, Some("br0"), None).starts_with("error: --bridge: only a bridge"));
        assert!(spec(NetworkModeArg::Isolated, None, None, Some("10")).starts_with("error: --vlan: only the NICs"));
        let err = network_spec("my lan".into(), NetworkModeArg::Nat, None, None, None).unwrap_err();
        assert_eq!(err.to_string(), "network name 'my lan' contains ' '; use letters, digits, '-' and '_'");
    }
}
