//! IPv4 subnets of managed networks: parsing, validation, overlap, and the
//! addresses derived from them (gateway, DHCP range).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::NetError;

/// Shortest prefix a managed network may have: a /8 is already 16 M addresses.
pub const MIN_PREFIX: u8 = 8;
/// Longest prefix: a /30 still has a gateway and one guest.
pub const MAX_PREFIX: u8 = 30;

/// Ranges no managed network may overlap: packets there never reach a bridge as expected.
const RESERVED: [(Ipv4Addr, u8, &str); 5] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local (169.254.0.0/16)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
];

/// An IPv4 network in CIDR form: its network address (no host bits set) and a
/// prefix of [`MIN_PREFIX`]..=[`MAX_PREFIX`] bits, outside the reserved ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The addresses dnsmasq hands out, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl Ipv4Subnet {
    /// Checks that `network` is the network address of a usable `/prefix`.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Ipv4Subnet, NetError> {
        let invalid = |reason: String| NetError::InvalidSubnet { input: format!("{network}/{prefix}"), reason };
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(invalid(format!("prefix must be between {MIN_PREFIX} and {MAX_PREFIX}, got {prefix}")));
        }
        let subnet = Ipv4Subnet { network: Ipv4Addr::from(u32::from(network) & mask(prefix)), prefix };
        if subnet.network != network {
            return Err(invalid(format!("host bits are set; the network address is {subnet}")));
        }
        for (reserved, reserved_prefix, what) in RESERVED {
            if subnet.overlaps(&Ipv4Subnet { network: reserved, prefix: reserved_prefix }) {
                return Err(invalid(format!("overlaps {what}")));
            }
        }
        Ok(subnet)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two share any address (one contains the other's network address).
    pub fn overlaps(&self, other: &Ipv4Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The bridge's own address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// From the second host to the last one: everything but the gateway, like
    /// libvirt's default network (192.168.122.2–192.168.122.254).
    pub fn dhcp_range(&self) -> DhcpRange {
        DhcpRange { start: self.host(2), end: Ipv4Addr::from(u32::from(self.broadcast()) - 1) }
    }

    /// Addresses a guest or the gateway can have (network and broadcast excluded).
    pub fn host_count(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The first `/prefix` inside `pool` that is not `in_use`: how a network
    /// created without a subnet gets one (e.g. a /24 of 10.77.0.0/16 that
    /// overlaps no other network and no host address, see
    /// [`crate::HostAddress::overlaps`]).
    pub fn first_free(pool: Ipv4Subnet, prefix: u8, in_use: impl Fn(&Ipv4Subnet) -> bool) -> Option<Ipv4Subnet> {
        if prefix < pool.prefix || prefix > MAX_PREFIX {
            return None;
        }
        let step = 1u64 << (32 - prefix);
        let count = 1u64 << (prefix - pool.prefix);
        (0..count)
            .filter_map(|i| u32::try_from(u64::from(u32::from(pool.network)) + i * step).ok())
            .map(|network| Ipv4Subnet { network: Ipv4Addr::from(network), prefix })
            .find(|candidate| !in_use(candidate))
    }

    fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }
}

/// The netmask of a `/prefix` as a number (0 for /0).
pub(crate) fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Subnet {
    type Err = NetError;

    fn from_str(input: &str) -> Result<Ipv4Subnet, NetError> {
        let invalid = |reason: String| NetError::InvalidSubnet { input: input.to_owned(), reason };
        let Some((address, prefix)) = input.split_once('/') else {
            return Err(invalid("expected ADDRESS/PREFIX, e.g. 10.77.1.0/24".into()));
        };
        let network: Ipv4Addr = address.parse().map_err(|_| invalid(format!("'{address}' is not an IPv4 address")))?;
        let prefix: u8 = match prefix.parse::<u8>() {
            Ok(value) if value <= 32 && !prefix.starts_with('+') => value,
            _ => return Err(invalid(format!("prefix '{prefix}' is not a number from 0 to 32"))),
        };
        Ipv4Subnet::new(network, prefix).map_err(|err| match err {
            NetError::InvalidSubnet { reason, .. } => invalid(reason),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Ipv4Subnet {
        text.parse().unwrap()
    }

    fn reason(text: &str) -> String {
        match text.parse::<Ipv4Subnet>() {
            Err(NetError::InvalidSubnet { input, reason }) => {
                assert_eq!(input, text);
                reason
            }
            other => panic!("{text}: expected InvalidSubnet, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_derives_addresses() {
        let net = subnet("192.168.122.0/24");
        assert_eq!(net.network(), Ipv4Addr::new(192, 168, 122, 0));
        assert_eq!(net.prefix(), 24);
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(net.broadcast(), Ipv4Addr::new(192, 168, 122, 255));
        assert_eq!(net.gateway(), Ipv4Addr::new(192, 168, 122, 1));
        assert_eq!(
            net.dhcp_range(),
            DhcpRange { start: Ipv4Addr::new(192, 168, 122, 2), end: Ipv4Addr::new(192, 168, 122, 254) }
        );
        assert_eq!(net.host_count(), 254);
        assert_eq!(net.to_string(), "192.168.122.0/24");
    }

    #[test]
    fn smallest_and_largest_prefixes() {
        let tiny = subnet("10.0.0.4/30");
        assert_eq!(tiny.gateway(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(tiny.dhcp_range(), DhcpRange { start: Ipv4Addr::new(10, 0, 0, 6), end: Ipv4Addr::new(10, 0, 0, 6) });
        let huge = subnet("10.0.0.0/8");
        assert_eq!(huge.broadcast(), Ipv4Addr::new(10, 255, 255, 255));
        assert_eq!(huge.dhcp_range().end, Ipv4Addr::new(10, 255, 255, 254));
        assert_eq!(huge.host_count(), (1 << 24) - 2);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert!(reason("10.0.0.0").contains("expected ADDRESS/PREFIX"));
        assert!(reason("10.0.0/24").contains("'10.0.0' is not an IPv4 address"));
        assert!(reason("10.0.0.0/abc").contains("prefix 'abc' is not a number"));
        assert!(reason("10.0.0.0/33").contains("prefix '33' is not a number from 0 to 32"));
        assert!(reason("10.0.0.0/+24").contains("is not a number"));
        assert!(reason("10.0.0.0/7").contains("between 8 and 30, got 7"));
        assert!(reason("10.0.0.0/31").contains("between 8 and 30, got 31"));
        assert_eq!(reason("10.0.0.1/24"), "host bits are set; the network address is 10.0.0.0/24");
        assert!(reason("127.0.0.0/24").contains("loopback"));
        assert!(reason("169.254.10.0/24").contains("link-local"));
        assert!(reason("224.0.0.0/24").contains("multicast"));
        assert!(reason("240.0.0.0/8").contains("reserved"));
        assert!(reason("0.0.0.0/8").contains("this network"));
    }

    #[test]
    fn error_message_reads_well() {
        let err = "10.1.2.3/16".parse::<Ipv4Subnet>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid subnet '10.1.2.3/16': host bits are set; the network address is 10.1.0.0/16"
        );
    }

    #[test]
    fn overlap() {
        let a = subnet("10.77.0.0/16");
        assert!(a.overlaps(&subnet("10.77.5.0/24")));
        assert!(subnet("10.77.5.0/24").overlaps(&a));
        assert!(a.overlaps(&a));
        assert!(!a.overlaps(&subnet("10.78.0.0/16")));
        assert!(!subnet("192.168.1.0/25").overlaps(&subnet("192.168.1.128/25")));
        assert!(subnet("192.168.0.0/23").overlaps(&subnet("192.168.1.128/25")));
        assert!(subnet("10.0.0.0/8").overlaps(&subnet("10.255.255.252/30")));
    }

    #[test]
    fn contains() {
        let net = subnet("172.16.4.0/22");
        assert!(net.contains(Ipv4Addr::new(172, 16, 7, 255)));
        assert!(!net.contains(Ipv4Addr::new(172, 16, 8, 0)));
        assert!(!net.contains(Ipv4Addr::new(172, 16, 3, 255)));
    }

    #[test]
    fn first_free_skips_used_subnets() {
        let pool = subnet("10.77.0.0/16");
        let overlapping =
            |used: Vec<Ipv4Subnet>| move |candidate: &Ipv4Subnet| used.iter().any(|u| u.overlaps(candidate));
        assert_eq!(Ipv4Subnet::first_free(pool, 24, |_| false), Some(subnet("10.77.0.0/24")));
        let used = vec![subnet("10.77.0.0/24"), subnet("10.77.1.128/25"), subnet("192.168.0.0/16")];
        assert_eq!(Ipv4Subnet::first_free(pool, 24, overlapping(used)), Some(subnet("10.77.2.0/24")));
        // A host route covering the whole pool leaves nothing.
        assert_eq!(Ipv4Subnet::first_free(pool, 24, overlapping(vec![subnet("10.0.0.0/8")])), None);
        assert_eq!(Ipv4Subnet::first_free(pool, 12, |_| false), None);
        let last = subnet("10.77.255.0/24");
        let all_but_last: Vec<Ipv4Subnet> = (0..255).map(|i| subnet(&format!("10.77.{i}.0/24"))).collect();
        assert_eq!(Ipv4Subnet::first_free(pool, 24, overlapping(all_but_last)), Some(last));
    }
}
