//! Names of host interfaces: bridges and TAP devices get short, stable names
//! derived from the network's or VM's name, since Linux allows only 15 bytes.

use crate::error::NetError;

/// Longest interface name Linux accepts (IFNAMSIZ less the terminating NUL).
pub const MAX_LINK_NAME: usize = 15;

/// The bridge of a managed network: `vbr-` and 10 hex digits of a hash of the
/// network's name (14 bytes). Stable across daemon restarts and Rust versions,
/// so an existing bridge is found again by name.
pub fn bridge_name(network: &str) -> String {
    let hash = fnv1a64(network.as_bytes());
    format!("vbr-{:010x}", hash >> 24)
}

/// The TAP device of a VM's NIC (`nic` is its index in the spec): `vt` and 8
/// hex digits of a hash of both, so `ip link` names the same TAP for the same
/// NIC on every start.
pub fn tap_name(vm: &str, nic: usize) -> String {
    let mut key = vm.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(nic.to_string().as_bytes());
    let hash = fnv1a64(&key);
    format!("vt{:08x}", (hash >> 32) as u32 ^ hash as u32)
}

/// What the kernel accepts as an interface name (`dev_valid_name`), so a bad
/// name fails here with a reason rather than as EINVAL from netlink.
pub fn validate_link_name(name: &str) -> Result<(), NetError> {
    let invalid = |reason: String| NetError::InvalidLinkName { name: name.to_owned(), reason };
    if name.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if name.len() > MAX_LINK_NAME {
        return Err(invalid(format!("must be at most {MAX_LINK_NAME} bytes, got {}", name.len())));
    }
    if name == "." || name == ".." {
        return Err(invalid("must not be '.' or '..'".into()));
    }
    if let Some(bad) = name.chars().find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("must not contain {bad:?}")));
    }
    Ok(())
}

/// FNV-1a, 64 bits: tiny, and its output is fixed forever (unlike std's `DefaultHasher`).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn bridge_names_are_short_stable_and_distinct() {
        let name = bridge_name("default");
        assert_eq!(name.len(), 14);
        assert!(name.starts_with("vbr-"));
        assert!(name[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(name, bridge_name("default"));
        // Pinned: a change would orphan every existing bridge.
        assert_eq!(bridge_name("default"), format!("vbr-{:010x}", fnv1a64(b"default") >> 24));
        assert_ne!(bridge_name("a-b"), bridge_name("a_b"));
        let long = "n".repeat(64);
        validate_link_name(&bridge_name(&long)).unwrap();
    }

    #[test]
    fn tap_names_fit_and_differ_per_nic() {
        let first = tap_name("web1", 0);
        assert_eq!(first.len(), 10);
        assert!(first.starts_with("vt"));
        validate_link_name(&first).unwrap();
        assert_eq!(first, tap_name("web1", 0));
        assert_ne!(first, tap_name("web1", 1));
        assert_ne!(first, tap_name("web2", 0));
        // The separator keeps ("web1", 10) and ("web11", 0) apart.
        assert_ne!(tap_name("web1", 10), tap_name("web11", 0));
    }

    #[test]
    fn link_name_errors_say_why() {
        let reason = |name: &str| match validate_link_name(name) {
            Err(NetError::InvalidLinkName { reason, .. }) => reason,
            other => panic!("{name}: expected InvalidLinkName, got {other:?}"),
        };
        assert_eq!(reason(""), "must not be empty");
        assert_eq!(reason("a-very-long-bridge"), "must be at most 15 bytes, got 18");
        assert_eq!(reason(".."), "must not be '.' or '..'");
        assert_eq!(reason("br/0"), "must not contain '/'");
        assert_eq!(reason("br 0"), "must not contain ' '");
        assert_eq!(reason("eth0:1"), "must not contain ':'");
        validate_link_name("virbr0").unwrap();
        validate_link_name("vbr-0123456789a").unwrap();
    }
}
