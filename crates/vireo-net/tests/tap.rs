//! TAP devices for QEMU, each test in its own network namespace.

mod common;

use common::{eventually, in_netns};
use vireo_net::{NetError, Netlink, VnetHdr, open_tap, open_vhost_net, tap_name};

#[test]
fn tap_joins_the_bridge_and_vanishes_when_its_fd_closes() {
    let tap = tap_name("web1", 0);
    let host_check = tap.clone();
    in_netns(&["vbr-tap", &host_check], move || async move {
        let netlink = Netlink::connect().unwrap();
        netlink.create_bridge("vbr-tap").await.unwrap();
        netlink.set_up("vbr-tap").await.unwrap();

        let fd = open_tap(&tap, VnetHdr::On).unwrap();
        let link = netlink.link(&tap).await.unwrap().expect("the TAP exists while its fd is open");
        assert_eq!(link.kind.as_deref(), Some("tun"));
        assert!(!link.up);

        netlink.attach_port(&tap, "vbr-tap").await.unwrap();
        assert_eq!(netlink.bridge_ports("vbr-tap").await.unwrap(), vec![tap.clone()]);
        let link = netlink.link(&tap).await.unwrap().unwrap();
        assert!(link.up);
        let bridge = netlink.link("vbr-tap").await.unwrap().unwrap();
        assert_eq!(link.master, Some(bridge.index));

        // Not persistent: when the last fd (QEMU's, in production) closes, the TAP goes.
        drop(fd);
        assert!(eventually(|| async { !netlink.link_exists(&tap).await.unwrap() }).await, "TAP outlived its fd");
        assert!(netlink.bridge_ports("vbr-tap").await.unwrap().is_empty());
    });
}

#[test]
fn two_taps_cannot_share_a_name() {
    in_netns(&["vt-twice", "vt-novnet"], || async {
        let _first = open_tap("vt-twice", VnetHdr::On).unwrap();
        match open_tap("vt-twice", VnetHdr::On) {
            Err(err @ NetError::Tap { .. }) => {
                assert_eq!(err.to_string(), "cannot create TAP device vt-twice");
                let source = std::error::Error::source(&err).unwrap().to_string();
                assert!(source.contains("busy"), "{source}");
            }
            other => panic!("expected Tap, got {other:?}"),
        }
        // Without a virtio-net header works too.
        let _plain = open_tap("vt-novnet", VnetHdr::Off).unwrap();
    });
}

#[test]
fn vhost_net_is_optional() {
    // Present or not, asking never fails; when present it is a descriptor of the device.
    if let Some(fd) = open_vhost_net() {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).unwrap();
        assert_eq!(path, std::path::Path::new("/dev/vhost-net"));
    } else {
        assert!(!std::path::Path::new("/dev/vhost-net").exists() || cannot_open_vhost_net());
    }
}

/// The device exists but cannot be opened (not root, or a container without access).
fn cannot_open_vhost_net() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/vhost-net").is_err()
}
