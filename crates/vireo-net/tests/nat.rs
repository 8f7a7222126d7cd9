//! The NAT ruleset doing its job, across three network namespaces the test
//! makes itself: the host (bridge, rules; the test thread's namespace), a guest
//! on the bridge, and an "outside" peer on the host's uplink that has no route
//! back to the guests' subnet. Only masquerading lets the guest's ping come back.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use common::{OTHER_SUBNET, SUBNET, in_netns, new_netns, run_in};
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};
use vireo_net::{Forwarding, Ipv4Subnet, Netlink, NetworkRules, enable_ip_forward, remove_table};

const GUEST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// A veth pair whose `far` end is moved into `netns`.
async fn veth_to(handle: &rtnetlink::Handle, near: &str, far: &str, netns: &OwnedFd) {
    handle.link().add(LinkVeth::new(near, far).build()).execute().await.unwrap();
    let moved = LinkUnspec::new_with_name(far).setns_by_fd(netns.as_raw_fd()).build();
    handle.link().set(moved).execute().await.unwrap();
}

/// Brings `link` up with `address/prefix` (and `lo`), plus a default route via `gateway`.
async fn configure(link: &str, address: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) {
    let netlink = Netlink::connect().unwrap();
    netlink.set_up("lo").await.unwrap();
    netlink.add_address(link, address, prefix).await.unwrap();
    netlink.set_up(link).await.unwrap();
    if let Some(gateway) = gateway {
        let (connection, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(connection);
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        handle.route().add(route).execute().await.unwrap();
    }
}

/// One ping from the guest's namespace to the outside peer.
fn guest_reaches_outside(guest: &OwnedFd) -> bool {
    run_in(guest, || async {
        let status = tokio::process::Command::new("busybox")
            .args(["ping", "-c", "1", "-W", "2", &OUTSIDE.to_string()])
            .output()
            .await
            .expect("busybox runs (apt-get install busybox-static)")
            .status;
        status.success()
    })
}

#[test]
fn nat_lets_guests_out_and_isolated_does_not() {
    in_netns(&["vbr-nat", "vg-port", "vu-up"], || async {
        let guest = new_netns();
        let outside = new_netns();
        let netlink = Netlink::connect().unwrap();
        let (connection, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(connection);
        let subnet: Ipv4Subnet = SUBNET.parse().unwrap();
        let uplink: Ipv4Subnet = OTHER_SUBNET.parse().unwrap();

        netlink.create_bridge("vbr-nat").await.unwrap();
        netlink.add_address("vbr-nat", subnet.gateway(), subnet.prefix()).await.unwrap();
        netlink.set_up("vbr-nat").await.unwrap();
        veth_to(&handle, "vg-port", "vg-guest", &guest).await;
        netlink.attach_port("vg-port", "vbr-nat").await.unwrap();
        veth_to(&handle, "vu-up", "vu-out", &outside).await;
        netlink.add_address("vu-up", uplink.gateway(), uplink.prefix()).await.unwrap();
        netlink.set_up("vu-up").await.unwrap();
        run_in(&guest, move || configure("vg-guest", GUEST, 24, Some(subnet.gateway())));
        run_in(&outside, || configure("vu-out", OUTSIDE, 24, None));
        enable_ip_forward().unwrap();

        // Forwarded but not masqueraded: the outside cannot answer 192.0.2.50.
        assert!(
            !guest_reaches_outside(&guest),
            "the outside peer must have no route back for this test to mean anything"
        );

        let mut rules =
            NetworkRules { network: "natnet".into(), bridge: "vbr-nat".into(), subnet, forwarding: Forwarding::Nat };
        rules.apply().await.unwrap();
        assert!(guest_reaches_outside(&guest), "NAT rules did not let the guest out");

        rules.forwarding = Forwarding::Isolated;
        rules.apply().await.unwrap();
        assert!(!guest_reaches_outside(&guest), "an isolated network let the guest out");

        remove_table("natnet").await.unwrap();
    });
}
