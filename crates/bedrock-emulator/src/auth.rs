//! Request authentication per the configured policy. SigV4 signatures are not verified (no
//! secret is shared with clients); their presence and shape are.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::AuthMode;
use crate::error::{AwsError, AwsErrorType};

pub fn check(mode: AuthMode, keys: &[String], headers: &HeaderMap) -> Result<(), AwsError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let denied = |m: &str| Err(AwsError::new(AwsErrorType::AccessDenied, m));
    match mode {
        AuthMode::Off => Ok(()),
        AuthMode::Any => {
            if auth.starts_with("AWS4-HMAC-SHA256 Credential=") || auth.strip_prefix("Bearer ").is_some_and(|k| !k.is_empty()) {
                Ok(())
            } else {
                denied("Missing Authentication Token")
            }
        }
        AuthMode::Keys => match auth.strip_prefix("Bearer ") {
            Some(key) if matches_one_of(keys, key.as_bytes()) => Ok(()),
            _ => denied("The security token included in the request is invalid."),
        },
    }
}

/// Compares the sha256 digests of the presented key and of every configured key in constant
/// time, without stopping at a match: timing reveals neither how much of a key matched, nor
/// its length, nor which key it was.
fn matches_one_of(keys: &[String], presented: &[u8]) -> bool {
    let digest = Sha256::digest(presented);
    keys.iter().fold(Choice::from(0), |found, k| found | Sha256::digest(k.as_bytes()).ct_eq(&digest)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        if !v.is_empty() {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn policy_table() {
        let keys = vec!["k1".to_string()];
        let sig = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=abc";
        let cases = [
            (AuthMode::Off, "", true),
            (AuthMode::Any, "", false),
            (AuthMode::Any, sig, true),
            (AuthMode::Any, "Bearer x", true),
            (AuthMode::Any, "Basic x", false),
            (AuthMode::Keys, "Bearer k1", true),
            (AuthMode::Keys, "Bearer k2", false),
            (AuthMode::Keys, "Bearer k1x", false),
            (AuthMode::Keys, sig, false),
        ];
        for (mode, header, ok) in cases {
            assert_eq!(check(mode, &keys, &h(header)).is_ok(), ok, "{mode:?} {header:?}");
        }
    }

    #[test]
    fn every_configured_key_matches_and_nothing_else() {
        let keys: Vec<String> = ["first-key", "second-key", "third"].map(String::from).to_vec();
        for k in &keys {
            assert!(matches_one_of(&keys, k.as_bytes()), "{k}");
        }
        for wrong in ["", "first-ke", "first-key ", "third-key", "THIRD"] {
            assert!(!matches_one_of(&keys, wrong.as_bytes()), "{wrong}");
        }
        assert!(!matches_one_of(&[], b""));
    }
}
