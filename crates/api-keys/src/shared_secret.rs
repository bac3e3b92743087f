//! A secret two hops share so that the inner one answers only the outer one (the gateway adds
//! it to every request it forwards to MainService). As a setting it reads like a key (from a
//! TOML string, or an environment variable that may look like a number), is never shown by
//! `Debug`, and is checked in constant time.

use serde::{Deserialize, Deserializer, Serialize};

use crate::keys::ApiKeys;

/// The header that carries the gateway's secret to MainService. API Gateway's equivalent is an
/// integration request header mapping with a static value.
pub const GATEWAY_SECRET_HEADER: &str = "x-strata-gateway-secret";

/// A configured secret; empty means none.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SharedSecret(#[serde(deserialize_with = "text")] String);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

impl SharedSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        SharedSecret(secret.into().trim().to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A checker that holds only the secret's digest and compares in constant time.
    pub fn verifier(&self) -> ApiKeys {
        ApiKeys::new([self.0.as_str()])
    }
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // One key, read as `deserialize_list` reads keys (numbers as their text); commas are not
    // separators here, so the first and only item is the whole value.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Value::deserialize(d)? {
        Value::Text(s) => s.trim().to_owned(),
        Value::Unsigned(n) => n.to_string(),
        Value::Signed(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_or_numbers_never_debug_prints_and_checks_exactly() {
        let s: SharedSecret = serde_json::from_str(r#"" s3cret,with-comma ""#).unwrap();
        assert_eq!(s.expose(), "s3cret,with-comma");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(serde_json::from_str::<SharedSecret>("1234").unwrap().expose(), "1234");
        assert_eq!(format!("{:?}", SharedSecret::default()), "\"\"");
        let v = s.verifier();
        assert!(v.check(b"s3cret,with-comma").is_some());
        assert!(v.check(b"s3cret").is_none());
        assert!(SharedSecret::default().verifier().check(b"").is_none());
    }
}
