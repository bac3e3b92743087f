//! Request authentication per the configured policy. SigV4 signatures are not verified (no
//! secret is shared with clients); their presence and shape are.

use api_keys::ApiKeys;
use axum::http::HeaderMap;

use crate::config::AuthMode;
use crate::error::{AwsError, AwsErrorType};

/// `keys` are those in force now (`api_keys` and `api_keys_file`); only `auth = "keys"` uses them.
pub fn check(mode: AuthMode, keys: &ApiKeys, headers: &HeaderMap) -> Result<(), AwsError> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let denied = |m: &str| Err(AwsError::new(AwsErrorType::AccessDenied, m));
    match mode {
        AuthMode::Off => Ok(()),
        AuthMode::Any => {
            if auth.starts_with("AWS4-HMAC-SHA256 Credential=")
                || auth.strip_prefix("Bearer ").is_some_and(|k| !k.is_empty())
            {
                Ok(())
            } else {
                denied("Missing Authentication Token")
            }
        }
        AuthMode::Keys => match auth.strip_prefix("Bearer ") {
            // Digests compared in constant time with every key, without stopping at a match:
            // timing reveals neither how much of a key matched, nor its length, nor which key.
            Some(key) if keys.check(key.as_bytes()).is_some() => Ok(()),
            _ => denied("The security token included in the request is invalid."),
        },
    }
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
        let keys = ApiKeys::new(["k1"]);
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
        let keys = ApiKeys::new(["first-key", "second-key", "third"]);
        let bearer = |k: &str| h(&format!("Bearer {k}"));
        for k in ["first-key", "second-key", "third"] {
            assert!(check(AuthMode::Keys, &keys, &bearer(k)).is_ok(), "{k}");
        }
        for wrong in ["first-ke", "first-key ", "third-key", "THIRD"] {
            assert!(check(AuthMode::Keys, &keys, &bearer(wrong)).is_err(), "{wrong}");
        }
        assert!(check(AuthMode::Keys, &ApiKeys::new(Vec::<String>::new()), &h("Bearer ")).is_err());
    }
}
