//! API keys: checked in constant time, identified in logs only by a non-reversible id.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A key's public id: the first 8 hex digits of its sha256. Safe to log; names the key in the
/// gateway's `key_plans`.
pub fn key_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..4])
}

struct StoredKey {
    digest: [u8; 32],
    id: String,
}

/// The accepted keys. Only their digests are kept in memory.
pub struct ApiKeys {
    keys: Vec<StoredKey>,
}

impl ApiKeys {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Self {
        let mut stored: Vec<StoredKey> = Vec::new();
        for k in keys {
            let k = k.as_ref().trim();
            if k.is_empty() {
                continue;
            }
            let digest: [u8; 32] = Sha256::digest(k.as_bytes()).into();
            if !stored.iter().any(|s| s.digest == digest) {
                stored.push(StoredKey { digest, id: key_id(k) });
            }
        }
        ApiKeys { keys: stored }
    }

    /// Keys from a file, one per line; blank lines and `#` comments are skipped.
    pub fn read_file(path: &Path) -> std::io::Result<Vec<String>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The id of the matching key, if any. Digests of equal length are compared in constant
    /// time, and every stored key is compared, so timing tells neither which key nor how much of
    /// one matched.
    pub fn check(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found: Option<&str> = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(&k.id);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_exact_keys() {
        let keys = ApiKeys::new(["alpha-key-1", "beta-key-2", " ", "alpha-key-1"]);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.check(b"alpha-key-1"), Some(key_id("alpha-key-1").as_str()));
        assert_eq!(keys.check(b"beta-key-2"), Some(key_id("beta-key-2").as_str()));
        for wrong in [&b""[..], b"alpha-key-", b"alpha-key-12", b"ALPHA-KEY-1", b"beta-key-2 "] {
            assert_eq!(keys.check(wrong), None, "{wrong:?}");
        }
        assert_eq!(ApiKeys::new(Vec::<String>::new()).check(b""), None);
    }

    #[test]
    fn key_ids_are_short_and_not_the_key() {
        let id = key_id("secret-value");
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!"secret-value".contains(&id));
        assert_eq!(id, key_id("secret-value"));
        assert_ne!(id, key_id("secret-valuf"));
    }
}
