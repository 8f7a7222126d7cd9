//! Random MAC addresses for guest NICs (the type itself is `vireo_core::mac::MacAddr`).

pub use vireo_core::mac::{MacAddr, QEMU_OUI};

use crate::error::NetError;

/// `52:54:00:xx:xx:xx` with the last three bytes from the kernel's random source.
pub fn random_mac() -> Result<MacAddr, NetError> {
    let mut random = [0u8; 3];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).map_err(|errno| NetError::Io {
        action: "read random bytes for",
        path: "a MAC".into(),
        source: errno.into(),
    })?;
    Ok(MacAddr::generate(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_differ() {
        let a = random_mac().unwrap();
        let b = random_mac().unwrap();
        assert_eq!(a.0[..3], QEMU_OUI);
        // 1 in 16 M of a false failure.
        assert_ne!(a, b);
    }
}
