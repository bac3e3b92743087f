//! Request authentication per the configured policy. SigV4 signatures are not verified (no
//! secret is shared with clients); their presence and shape are.

use axum::http::HeaderMap;

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
            Some(key) if keys.iter().any(|k| constant_time_eq(k.as_bytes(), key.as_bytes())) => Ok(()),
            _ => denied("The security token included in the request is invalid."),
        },
    }
}

/// Compares without an early exit, so timing does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
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
}
