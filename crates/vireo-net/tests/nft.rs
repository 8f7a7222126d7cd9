//! nftables: golden files for the ruleset text, and real `nft` runs in a
//! network namespace of the test's own. Regenerate the golden files with
//! `VIREO_UPDATE_GOLDEN=1 cargo test -p vireo-net --test nft` and review the diff.

mod common;

use std::path::PathBuf;

use common::{SUBNET, in_netns};
use vireo_net::nft::{ip_forward_enabled, list_table};
use vireo_net::{Forwarding, NetError, NetworkRules, enable_ip_forward, remove_table, table_exists};

fn rules(forwarding: Forwarding) -> NetworkRules {
    NetworkRules {
        network: "default".into(),
        bridge: "vbr-0123456789".into(),
        subnet: SUBNET.parse().unwrap(),
        forwarding,
    }
}

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    if std::env::var_os("VIREO_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run with VIREO_UPDATE_GOLDEN=1 to create it", path.display()));
    assert_eq!(actual, expected, "ruleset differs from {}; VIREO_UPDATE_GOLDEN=1 regenerates it", path.display());
}

#[test]
fn nat_ruleset_golden() {
    check_golden("nat.nft", &rules(Forwarding::Nat).ruleset().unwrap());
}

#[test]
fn isolated_ruleset_golden() {
    check_golden("isolated.nft", &rules(Forwarding::Isolated).ruleset().unwrap());
}

#[test]
fn table_applied_listed_replaced_and_removed() {
    in_netns(&[], || async {
        // Per namespace. A new one copies the host's setting (IPv4's
        // devconf_inherit_init_net default), which a NAT network on the host
        // has turned on, so start from off in this namespace.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0\n").unwrap();
        assert!(!ip_forward_enabled().unwrap());
        enable_ip_forward().unwrap();
        assert!(ip_forward_enabled().unwrap());

        assert!(!table_exists("default").await.unwrap());
        assert_eq!(list_table("default").await.unwrap(), None);
        let nat = rules(Forwarding::Nat);
        nat.apply().await.unwrap();
        assert!(table_exists("default").await.unwrap());
        let listing = list_table("default").await.unwrap().unwrap();
        assert!(listing.starts_with("table ip vireo_default {"), "{listing}");
        assert!(listing.contains("type nat hook postrouting priority srcnat; policy accept;"), "{listing}");
        assert!(listing.contains("ip saddr 192.0.2.0/24 ip daddr != 192.0.2.0/24 masquerade"), "{listing}");
        assert!(listing.contains("iifname \"vbr-0123456789\" ip saddr 192.0.2.0/24 accept"), "{listing}");

        // Applying again replaces the table instead of adding a second copy of each rule.
        nat.apply().await.unwrap();
        assert_eq!(list_table("default").await.unwrap().unwrap(), listing);
        rules(Forwarding::Isolated).apply().await.unwrap();
        let isolated = list_table("default").await.unwrap().unwrap();
        assert!(!isolated.contains("masquerade") && !isolated.contains("postrouting"), "{isolated}");

        // Other networks' tables are separate.
        let other = NetworkRules { network: "lab-2".into(), ..rules(Forwarding::Nat) };
        other.apply().await.unwrap();
        remove_table("default").await.unwrap();
        assert!(!table_exists("default").await.unwrap());
        assert!(table_exists("lab-2").await.unwrap());
        remove_table("default").await.unwrap();
        remove_table("lab-2").await.unwrap();
        assert!(!table_exists("lab-2").await.unwrap());
    });
}

#[test]
fn bad_network_names_are_refused_before_nft_runs() {
    in_netns(&[], || async {
        match remove_table("x; flush ruleset").await {
            Err(err @ NetError::InvalidNetworkName { .. }) => assert_eq!(
                err.to_string(),
                "network name 'x; flush ruleset' contains ';'; use letters, digits, '-' and '_'"
            ),
            other => panic!("expected InvalidNetworkName, got {other:?}"),
        }
    });
}
