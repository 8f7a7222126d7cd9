//! End-to-end managed networks: real bridges, TAPs, dnsmasq and nftables,
//! every daemon inside a network namespace the test creates and deletes, so
//! nothing touches the host's interfaces and no packet leaves the namespace.

mod support;

use std::time::{Duration, Instant};

use support::*;
use vireo_api::{ErrorCode, NetworkMode, NetworkSpec, NicSpec, StopRequest};
use vireo_client::Client;

fn nic_spec(name: &str, network: &str) -> vireo_api::VmSpec {
    let mut spec = guest_spec(name);
    spec.nics = vec![NicSpec { network: network.into(), ..NicSpec::default() }];
    spec
}

/// Waits until `vm` has booted, then until `vm show` reports the VM's first NIC
/// with an address from DHCP and the guest has configured that very address (a
/// lease is written at DHCPACK, a moment before the client acts on it).
async fn wait_for_lease(client: &Client, vm: &str) -> String {
    wait_for_log(client, vm, MARKER, BOOT_TIMEOUT).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let shown = client.get_vm(vm).await.expect("get vm");
        if let Some(ip) = shown.nics.first().and_then(|nic| nic.ip.clone()) {
            let configured = run_in_guest(client, vm, "ip -4 -o addr show").await;
            if configured.contains(&format!("inet {ip}/")) {
                return ip;
            }
        }
        assert!(Instant::now() < deadline, "{vm} got no DHCP lease it uses: {shown:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `vm` gets an answer from `address`. The lease file is written at
/// DHCPACK, a moment before the peer configures its address, so a few tries
/// are allowed; under TCG on a busy machine single packets may also be slow.
async fn ping(client: &Client, vm: &str, address: &str) -> bool {
    let command = format!("ping -c 2 -W 3 {address} >/dev/null 2>&1 && echo PING-OK || echo PING-FAILED");
    for _ in 0..3 {
        if run_in_guest(client, vm, &command).await.contains("PING-OK") {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_on_the_default_nat_network_get_leases_and_reach_each_other() {
    let daemon = Daemon::start_in_netns();
    let client = daemon.client();
    let default = client.get_network("default").await.expect("a default network exists after first start as root");
    assert_eq!(default.mode, NetworkMode::Nat);
    let gateway = default.gateway.clone().expect("gateway");

    for name in ["alpha", "beta"] {
        client.create_vm(&nic_spec(name, "default")).await.unwrap();
        client.start_vm(name).await.unwrap();
    }
    let macs: Vec<String> = [client.get_vm("alpha").await.unwrap(), client.get_vm("beta").await.unwrap()]
        .iter()
        .map(|vm| vm.nics[0].mac.clone())
        .collect();
    assert_ne!(macs[0], macs[1], "each NIC got its own MAC");
    assert!(macs.iter().all(|mac| mac.starts_with("52:54:00:")));

    let alpha_ip = wait_for_lease(&client, "alpha").await;
    let beta_ip = wait_for_lease(&client, "beta").await;
    let network = client.get_network("default").await.unwrap();
    assert!(network.leases.iter().any(|l| l.ip == alpha_ip && l.vm.as_deref() == Some("alpha")), "{network:?}");
    assert_eq!(network.used_by.len(), 2);

    wait_for_log(&client, "alpha", MARKER, BOOT_TIMEOUT).await;
    assert!(ping(&client, "alpha", &beta_ip).await, "alpha reaches beta at {beta_ip}");
    assert!(ping(&client, "beta", &gateway).await, "beta reaches the gateway {gateway}");

    // A network in use cannot go.
    assert_eq!(code(client.delete_network("default").await.unwrap_err()), ErrorCode::InUse);
    // A MAC another VM has is refused.
    let mut copy = nic_spec("copycat", "default");
    copy.nics[0].mac = Some(macs[0].clone());
    assert_eq!(code(client.create_vm(&copy).await.unwrap_err()), ErrorCode::InvalidSpec);
    for name in ["alpha", "beta"] {
        client.stop_vm(name, &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    }
    // A stopped (or crashed) VM leaves no TAP behind.
    let links = String::from_utf8_lossy(&daemon.in_netns(&["ip", "-o", "link"]).stdout).into_owned();
    assert!(!links.contains(" vt"), "TAPs are gone with their QEMU: {links}");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolated_networks_do_not_reach_each_other() {
    let daemon = Daemon::start_in_netns();
    let client = daemon.client();
    for (net, subnet) in [("iso1", "10.91.1.0/24"), ("iso2", "10.91.2.0/24")] {
        let spec = NetworkSpec {
            name: net.into(),
            mode: NetworkMode::Isolated,
            subnet: Some(subnet.into()),
            bridge: None,
            vlan: None,
        };
        client.create_network(&spec).await.unwrap();
    }
    client.create_vm(&nic_spec("left", "iso1")).await.unwrap();
    client.create_vm(&nic_spec("right", "iso2")).await.unwrap();
    client.start_vm("left").await.unwrap();
    client.start_vm("right").await.unwrap();
    let right_ip = wait_for_lease(&client, "right").await;
    wait_for_lease(&client, "left").await;
    assert!(ping(&client, "left", "10.91.1.1").await, "a guest reaches its own gateway");
    assert!(!ping(&client, "left", &right_ip).await, "left must not reach right across isolated networks");
}

#[tokio::test(flavor = "multi_thread")]
async fn networks_survive_a_daemon_restart_and_delete_cleans_the_host() {
    let mut daemon = Daemon::start_in_netns();
    let client = daemon.client();
    let spec = NetworkSpec {
        name: "lab".into(),
        mode: NetworkMode::Nat,
        subnet: Some("10.92.0.0/24".into()),
        bridge: None,
        vlan: None,
    };
    let lab = client.create_network(&spec).await.unwrap();
    assert_eq!(lab.gateway.as_deref(), Some("10.92.0.1"));
    let bridge = lab.bridge.clone();
    let pid_file = daemon.dir.path().join("networks/lab/dnsmasq.pid");
    let dnsmasq_pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert!(daemon.in_netns(&["ip", "link", "show", &bridge]).status.success());
    assert!(daemon.in_netns(&["nft", "list", "table", "ip", "vireo_lab"]).status.success());

    // Bad input changes nothing.
    let overlapping = NetworkSpec { name: "clash".into(), subnet: Some("10.92.0.128/25".into()), ..spec.clone() };
    assert_eq!(code(client.create_network(&overlapping).await.unwrap_err()), ErrorCode::InvalidSpec);
    let garbled = NetworkSpec { name: "bad".into(), subnet: Some("10.92.0/33".into()), ..spec.clone() };
    assert_eq!(code(client.create_network(&garbled).await.unwrap_err()), ErrorCode::InvalidSpec);
    assert_eq!(code(client.create_vm(&nic_spec("lost", "nowhere")).await.unwrap_err()), ErrorCode::InvalidSpec);
    let names: Vec<String> = client.list_networks().await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["default", "lab"]);

    // The daemon dies and comes back: the network and its dnsmasq are adopted, not rebuilt.
    daemon.kill9();
    daemon.spawn();
    let client = daemon.client();
    assert!(client.get_network("lab").await.is_ok());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), dnsmasq_pid, "the same dnsmasq serves on");

    client.delete_network("lab").await.unwrap();
    assert!(!daemon.in_netns(&["ip", "link", "show", &bridge]).status.success(), "bridge removed");
    assert!(!daemon.in_netns(&["nft", "list", "table", "ip", "vireo_lab"]).status.success(), "nftables table removed");
    assert!(
        !std::path::Path::new(&format!("/proc/{dnsmasq_pid}/cmdline")).exists() || is_gone(&dnsmasq_pid),
        "dnsmasq stopped"
    );
    assert_eq!(code(client.get_network("lab").await.unwrap_err()), ErrorCode::NetworkNotFound);
}

/// A process that exited may linger as a zombie until PID 1 reaps it.
fn is_gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn hotplugged_nic_appears_gets_a_lease_and_goes() {
    let daemon = Daemon::start_in_netns();
    let client = daemon.client();
    client.create_vm(&guest_spec("plugger")).await.unwrap();
    client.start_vm("plugger").await.unwrap();
    wait_for_log(&client, "plugger", MARKER, BOOT_TIMEOUT).await;
    assert!(!run_in_guest(&client, "plugger", "ls /sys/class/net").await.contains("eth0"));

    let vm = client.attach_nic("plugger", &NicSpec { network: "default".into(), ..NicSpec::default() }).await.unwrap();
    assert_eq!(vm.nics.len(), 1, "the spec keeps the new NIC");
    let mac = vm.nics[0].mac.clone();
    let ip = wait_for_lease(&client, "plugger").await;
    let gateway = client.get_network("default").await.unwrap().gateway.unwrap();
    assert!(run_in_guest(&client, "plugger", "ls /sys/class/net").await.contains("eth0"));
    assert!(ping(&client, "plugger", &gateway).await, "the hot-plugged NIC ({ip}) reaches the gateway");

    let vm = client.detach_nic("plugger", &mac).await.unwrap();
    assert!(vm.nics.is_empty());
    assert!(
        !run_in_guest(&client, "plugger", "ls /sys/class/net").await.contains("eth0"),
        "eth0 is gone from the guest"
    );
    let err = client.detach_nic("plugger", &mac).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NicNotFound);
    client.stop_vm("plugger", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}
