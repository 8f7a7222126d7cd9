//! The API bearer token: created once, stored 0600 in the data directory, never logged.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_FILE: &str = "api-token";

/// A secret that never prints itself.
#[derive(Clone)]
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// Reads `data_dir/api-token`, creating it with 256 random bits on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(ApiToken(text.trim().to_string())),
            Ok(_) => anyhow::bail!("{} is empty; delete it to get a new token", path.display()),
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the API token: {e}"))?;
        let token = to_hex(&bytes);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{token}")
            .and_then(|_| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(ApiToken(token))
    }

    #[cfg(test)]
    pub(crate) fn for_tests(token: &str) -> Self {
        ApiToken(token.to_string())
    }

    /// Compares in constant time so the token cannot be guessed byte by byte from response timings.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// What identifies this token in the audit log: the first 8 hex digits of
    /// its SHA-256, which cannot be turned back into the token.
    pub fn fingerprint(&self) -> TokenFingerprint {
        TokenFingerprint(to_hex(&Sha256::digest(self.0.as_bytes())[..4]))
    }
}

/// The short, non-reversible name of an accepted token (see [`ApiToken::fingerprint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFingerprint(String);

impl TokenFingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lower-case hex, two digits a byte.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn token_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiToken::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = ApiToken::load_or_create(dir.path()).unwrap();
        assert!(second.matches(&first.0));
        assert!(!second.matches("wrong"));
        assert_eq!(format!("{first:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn fingerprint_is_the_start_of_the_sha256_and_never_the_token() {
        // SHA-256("secret") = 2bb80d53...
        let fingerprint = ApiToken::for_tests("secret").fingerprint();
        assert_eq!(fingerprint.as_str(), "2bb80d53");
        let token = ApiToken(to_hex(&[0xab; 32]));
        let fingerprint = token.fingerprint();
        assert_eq!(fingerprint.as_str().len(), 8);
        assert!(!token.0.contains(fingerprint.as_str()));
    }
}
