//! Ethernet MAC addresses of guest NICs: parsing, the canonical text, and the
//! rules a NIC's address must follow. (Random ones come from vireo-net, which
//! owns the I/O of reading random bytes.)

use std::fmt;
use std::str::FromStr;

/// A MAC address that is malformed, or that a NIC may not use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address '{input}': {reason}")]
pub struct InvalidMac {
    pub input: String,
    pub reason: String,
}

/// QEMU's and libvirt's prefix for generated MACs: 0x52 has the locally
/// administered bit set and the multicast bit clear.
pub const QEMU_OUI: [u8; 3] = [0x52, 0x54, 0x00];

/// A MAC address, written `52:54:00:ab:cd:ef` (lower case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `52:54:00:xx:xx:xx` with the last three bytes from `random`: the caller
    /// owns the randomness, so tests can pass fixed bytes.
    pub fn generate(random: [u8; 3]) -> MacAddr {
        let [a, b, c] = QEMU_OUI;
        let [x, y, z] = random;
        MacAddr([a, b, c, x, y, z])
    }

    /// Parses `input` and checks that a NIC may use it: unicast and not all zeros.
    /// Any locally administered or vendor MAC is accepted (a user may copy one).
    pub fn parse_nic(input: &str) -> Result<MacAddr, InvalidMac> {
        let mac: MacAddr = input.parse()?;
        let invalid = |reason: &str| InvalidMac { input: input.to_owned(), reason: reason.into() };
        if mac.is_multicast() {
            return Err(invalid(
                "is a multicast address (the lowest bit of the first byte is set); a NIC needs unicast",
            ));
        }
        if mac.0 == [0; 6] {
            return Err(invalid("is all zeros"));
        }
        Ok(mac)
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Six groups of two hex digits separated by `:` (or `-`), any case. Syntax
/// only: see [`MacAddr::parse_nic`] for what a NIC may use.
impl FromStr for MacAddr {
    type Err = InvalidMac;

    fn from_str(input: &str) -> Result<MacAddr, InvalidMac> {
        let invalid = |reason: String| InvalidMac { input: input.to_owned(), reason };
        let separator = if input.contains('-') { '-' } else { ':' };
        let groups: Vec<&str> = input.split(separator).collect();
        if groups.len() != 6 {
            return Err(invalid(format!(
                "expected 6 groups of 2 hex digits separated by ':', e.g. 52:54:00:12:34:56, got {} group{}",
                groups.len(),
                if groups.len() == 1 { "" } else { "s" }
            )));
        }
        let mut bytes = [0u8; 6];
        for (i, (group, byte)) in groups.iter().zip(&mut bytes).enumerate() {
            let hex = group.len() == 2 && group.bytes().all(|b| b.is_ascii_hexdigit());
            *byte = match u8::from_str_radix(group, 16) {
                Ok(value) if hex => value,
                _ => return Err(invalid(format!("group {} '{group}' is not two hex digits", i + 1))),
            };
        }
        Ok(MacAddr(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        let parsed = MacAddr::parse_nic(input);
        match parsed {
            Err(InvalidMac { input: got, reason }) => {
                assert_eq!(got, input);
                reason
            }
            other => panic!("{input}: expected InvalidMac, got {other:?}"),
        }
    }

    #[test]
    fn generated_macs_are_qemu_style_local_unicast() {
        let mac = MacAddr::generate([0xab, 0x01, 0xff]);
        assert_eq!(mac.to_string(), "52:54:00:ab:01:ff");
        assert!(mac.is_locally_administered());
        assert!(!mac.is_multicast());
        assert_eq!(MacAddr::parse_nic(&mac.to_string()).unwrap(), mac);
    }

    #[test]
    fn parses_any_case_and_dashes() {
        let expected = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!("52:54:00:AB:cd:Ef".parse::<MacAddr>().unwrap(), expected);
        assert_eq!("52-54-00-ab-cd-ef".parse::<MacAddr>().unwrap(), expected);
        // Vendor MACs are fine for a NIC.
        assert!(MacAddr::parse_nic("00:16:3e:00:00:01").is_ok());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert!(reason("").contains("got 1 group"));
        assert!(reason("52:54:00:ab:cd").contains("expected 6 groups"));
        assert!(reason("52:54:00:ab:cd").contains("got 5 groups"));
        assert!(reason("52:54:00:ab:cd:ef:01").contains("got 7 groups"));
        assert_eq!(reason("52:54:00:zz:cd:ef"), "group 4 'zz' is not two hex digits");
        assert_eq!(reason("52:54:00:abc:cd:ef"), "group 4 'abc' is not two hex digits");
        assert_eq!(reason("52:54:00:a:cd:ef"), "group 4 'a' is not two hex digits");
        assert_eq!(reason("52:54:00:+a:cd:ef"), "group 4 '+a' is not two hex digits");
        assert!(reason("01:00:5e:00:00:01").contains("multicast"));
        assert!(reason("ff:ff:ff:ff:ff:ff").contains("multicast"));
        assert_eq!(reason("00:00:00:00:00:00"), "is all zeros");
        let err = MacAddr::parse_nic("52:54:00:zz:00:01").unwrap_err();
        assert_eq!(err.to_string(), "invalid MAC address '52:54:00:zz:00:01': group 4 'zz' is not two hex digits");
    }
}
