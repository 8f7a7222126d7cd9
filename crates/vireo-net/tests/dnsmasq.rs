//! dnsmasq on a bridge, each test in its own network namespace; the DHCP client
//! is busybox's udhcpc on a veth peer inside the same namespace.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{KillOnDrop, OTHER_SUBNET, SUBNET, in_netns};
use vireo_net::{
    DefaultRoute, Dns, Dnsmasq, DnsmasqConfig, Ipv4Subnet, MacAddr, NetError, Netlink, StaticLease, read_leases,
};

/// A bridge with the subnet's gateway address, up.
async fn bridge_with_gateway(netlink: &Netlink, bridge: &str, subnet: &Ipv4Subnet) {
    netlink.create_bridge(bridge).await.unwrap();
    netlink.add_address(bridge, subnet.gateway(), subnet.prefix()).await.unwrap();
    netlink.set_up(bridge).await.unwrap();
}

fn guard(dnsmasq: &Dnsmasq, config: &DnsmasqConfig) -> KillOnDrop {
    KillOnDrop { pid: dnsmasq.pid(), pid_file: config.pid_file() }
}

#[test]
fn dnsmasq_starts_is_readopted_and_stops() {
    in_netns(&["vbr-dns1"], || async {
        let netlink = Netlink::connect().unwrap();
        let subnet: Ipv4Subnet = OTHER_SUBNET.parse().unwrap();
        bridge_with_gateway(&netlink, "vbr-dns1", &subnet).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = DnsmasqConfig::new("vbr-dns1", subnet, dir.path().join("default"));
        config.dns = Dns::Off { servers: vec![Ipv4Addr::new(192, 0, 2, 53)] };
        config.default_route = DefaultRoute::None;

        let dnsmasq = Dnsmasq::spawn(&config).await.unwrap();
        let _guard = guard(&dnsmasq, &config);
        assert!(dnsmasq.is_running());
        assert!(dnsmasq.matches(&config));
        let pid_text = std::fs::read_to_string(config.pid_file()).unwrap();
        assert_eq!(pid_text.trim(), dnsmasq.pid().to_string());
        assert!(config.lease_file().exists());
        let log = std::fs::read_to_string(config.log_file()).unwrap();
        assert!(log.contains("DNS disabled"), "{log}");
        assert!(read_leases(&config).unwrap().is_empty());

        // As after a daemon restart: found again from the pid file.
        let adopted = Dnsmasq::adopt(&config).unwrap().expect("the running dnsmasq is re-adopted");
        assert_eq!(adopted.pid(), dnsmasq.pid());
        let mut changed = config.clone();
        changed.lease_time = Duration::from_secs(600);
        assert!(!adopted.matches(&changed));

        let exited = tokio::spawn(async move {
            dnsmasq.exited().await.unwrap();
            dnsmasq
        });
        adopted.stop().await.unwrap();
        let dnsmasq = tokio::time::timeout(Duration::from_secs(5), exited).await.unwrap().unwrap();
        assert!(!dnsmasq.is_running());
        assert!(Dnsmasq::adopt(&config).unwrap().is_none());
        // Stopping again is fine.
        dnsmasq.stop().await.unwrap();
    });
}

#[test]
fn dnsmasq_errors_say_why() {
    in_netns(&["vbr-nodns"], || async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DnsmasqConfig::new("vbr-nodns", SUBNET.parse().unwrap(), dir.path());
        match Dnsmasq::spawn(&config).await {
            Err(err @ NetError::DnsmasqStart { .. }) => {
                // With DNS on, binding port 53 on the gateway address is what fails first.
                assert_eq!(
                    err.to_string(),
                    "dnsmasq for vbr-nodns did not start: \
                     failed to create listening socket for 192.0.2.1: Cannot assign requested address"
                );
            }
            other => panic!("expected DnsmasqStart, got {other:?}"),
        }
        config.dns = Dns::Off { servers: Vec::new() };
        match Dnsmasq::spawn(&config).await {
            Err(err) => assert_eq!(err.to_string(), "dnsmasq for vbr-nodns did not start: unknown interface vbr-nodns"),
            Ok(dnsmasq) => panic!("dnsmasq {} started without its bridge", dnsmasq.pid()),
        }
        // A pid file naming some other process is not taken for our dnsmasq.
        std::fs::write(config.pid_file(), format!("{}\n", std::process::id())).unwrap();
        assert!(Dnsmasq::adopt(&config).unwrap().is_none());
        std::fs::write(config.pid_file(), "garbage\n").unwrap();
        assert!(Dnsmasq::adopt(&config).unwrap().is_none());
    });
}

/// A veth pair: `port` joins the bridge, `guest` is where the DHCP client runs.
async fn veth_into_bridge(netlink: &Netlink, port: &str, guest: &str, bridge: &str) -> MacAddr {
    let (connection, handle, _) = rtnetlink::new_connection().unwrap();
    tokio::spawn(connection);
    handle.link().add(rtnetlink::LinkVeth::new(port, guest).build()).execute().await.unwrap();
    netlink.attach_port(port, bridge).await.unwrap();
    netlink.set_up(guest).await.unwrap();
    netlink.link(guest).await.unwrap().unwrap().mac.unwrap()
}

/// One DHCP exchange by busybox udhcpc; the address it was given.
async fn udhcpc(interface: &str, hostname: &str) -> Ipv4Addr {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("busybox")
            .args(["udhcpc", "-f", "-q", "-n", "-B", "-t", "10", "-T", "1", "-s", "/bin/true", "-i", interface])
            .args(["-x", &format!("hostname:{hostname}")])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("udhcpc finishes")
    .expect("busybox runs (apt-get install busybox-static)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "udhcpc failed: {text}");
    // "udhcpc: lease of 192.0.2.57 obtained from 192.0.2.1, lease time 3600"
    let address = text.split("lease of ").nth(1).and_then(|rest| rest.split_whitespace().next());
    address.and_then(|address| address.parse().ok()).unwrap_or_else(|| panic!("no lease in: {text}"))
}

#[test]
fn dhcp_lease_dns_name_and_static_lease() {
    in_netns(&["vbr-dhcp", "vd-port", "vd-guest"], || async {
        let netlink = Netlink::connect().unwrap();
        let subnet: Ipv4Subnet = SUBNET.parse().unwrap();
        bridge_with_gateway(&netlink, "vbr-dhcp", &subnet).await;
        let guest_mac = veth_into_bridge(&netlink, "vd-port", "vd-guest", "vbr-dhcp").await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = DnsmasqConfig::new("vbr-dhcp", subnet, dir.path());
        config.dns = Dns::Gateway { domain: Some("vireo.test".into()) };
        let dnsmasq = Dnsmasq::spawn(&config).await.unwrap();
        let _guard = guard(&dnsmasq, &config);

        let address = udhcpc("vd-guest", "guest1").await;
        let range = subnet.dhcp_range();
        assert!((range.start..=range.end).contains(&address), "{address} outside {range:?}");
        let leases = read_leases(&config).unwrap();
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!((leases[0].mac, leases[0].ip), (guest_mac, address));
        assert_eq!(leases[0].hostname.as_deref(), Some("guest1"));
        assert!(leases[0].expires.is_some());

        // DNS on the gateway knows the DHCP client's name.
        let lookup = tokio::process::Command::new("busybox")
            .args(["nslookup", "guest1.vireo.test", "192.0.2.1"])
            .output()
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&lookup.stdout);
        assert!(answer.contains(&address.to_string()), "nslookup: {answer}");

        // A static lease for the guest: spawn restarts dnsmasq with it.
        let mut with_static = config.clone();
        let fixed = Ipv4Addr::new(192, 0, 2, 10);
        with_static.static_leases = vec![StaticLease { mac: guest_mac, ip: fixed, hostname: Some("guest1".into()) }];
        let restarted = Dnsmasq::spawn(&with_static).await.unwrap();
        let _guard2 = guard(&restarted, &with_static);
        assert_ne!(restarted.pid(), dnsmasq.pid());
        assert!(!dnsmasq.is_running());
        assert!(restarted.matches(&with_static));
        assert_eq!(udhcpc("vd-guest", "guest1").await, fixed);
        let leases = read_leases(&with_static).unwrap();
        assert!(leases.iter().any(|lease| lease.mac == guest_mac && lease.ip == fixed), "{leases:?}");

        restarted.stop().await.unwrap();
    });
}
