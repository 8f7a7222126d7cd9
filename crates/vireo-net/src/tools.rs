//! Finding the external programs this crate runs (dnsmasq, nft).

use std::path::PathBuf;

use crate::error::NetError;

/// A program we run, where to override it, and the Debian package that has it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tool {
    pub binary: &'static str,
    pub env: &'static str,
    pub package: &'static str,
}

pub(crate) const DNSMASQ: Tool = Tool { binary: "dnsmasq", env: "VIREO_DNSMASQ", package: "dnsmasq-base" };
pub(crate) const NFT: Tool = Tool { binary: "nft", env: "VIREO_NFT", package: "nftables" };

/// Both live in /usr/sbin, which a non-login or non-root PATH often lacks.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

impl Tool {
    /// `$ENV`, or the binary in `PATH`, then in /usr/sbin and /sbin.
    pub(crate) fn find(&self) -> Result<PathBuf, NetError> {
        let not_found =
            |reason: String| NetError::BinaryNotFound { binary: self.binary, package: self.package, reason };
        if let Some(path) = std::env::var_os(self.env) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(not_found(format!("{}={} is not a file", self.env, path.display())))
            };
        }
        let path_dirs: Vec<PathBuf> =
            std::env::var_os("PATH").map(|dirs| std::env::split_paths(&dirs).collect()).unwrap_or_default();
        let dirs = path_dirs.into_iter().chain(SBIN_DIRS.iter().map(PathBuf::from));
        dirs.map(|dir| dir.join(self.binary))
            .find(|path| path.is_file())
            .ok_or_else(|| not_found(format!("not in PATH, /usr/sbin or /sbin; {} overrides", self.env)))
    }
}
