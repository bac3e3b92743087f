//! Verifying AWS Signature Version 4, as the Lambda service does, for callers that hold the
//! configured credentials. The canonical request is rebuilt from what arrived (the path as sent,
//! encoded once more as the signer does for every service but S3; the query decoded, encoded
//! and sorted; the signed headers; the body's sha256) with the same encoders the SDK's signer
//! uses, and the signature is computed with `aws-sigv4`'s own key derivation and HMAC.

use std::time::{Duration, SystemTime};

use aws_smithy_http::label::{fmt_string as encode_path, EncodingStrategy};
use aws_smithy_http::query::fmt_string as encode_query;
use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `x-amz-date` may be from now, either way (AWS: 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The credentials callers sign with.
pub struct Verifier {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub service: &'static str,
}

/// What arrived.
pub struct Signed<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Why a request was refused, in Lambda's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header (MissingAuthenticationTokenException).
    Missing,
    /// An access key id other than the configured one (UnrecognizedClientException).
    UnknownKey,
    /// Malformed, out of scope, expired or simply wrong (InvalidSignatureException).
    Invalid(String),
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refusal> {
    let invalid = |m: &str| Refusal::Invalid(m.to_owned());
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| invalid("Only AWS4-HMAC-SHA256 signatures are accepted."))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid(
            "Authorization header requires Credential, SignedHeaders and Signature.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(invalid(
            "Credential should be ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request.",
        ));
    };
    Ok(Authorization { access_key_id, date, region, service, signed_headers, signature })
}

/// `20261205T085235Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?.and_utc();
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Header values as the signer writes them: trimmed, runs of spaces made one, repeated
/// headers joined with commas.
fn canonical_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str().map(|s| {
                s.trim_matches(' ')
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .collect::<Result<_, _>>()
        .ok()?;
    (!values.is_empty()).then(|| values.join(","))
}

fn canonical_query(query: Option<&str>) -> String {
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (encode_query(k), encode_query(v)))
            .collect();
    params.sort();
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

impl Verifier {
    /// `Ok` when the request is signed with the configured credentials, for this region and
    /// service, within `MAX_SKEW` of `now`.
    pub fn verify(&self, req: &Signed<'_>, now: SystemTime) -> Result<(), Refusal> {
        let invalid = |m: String| Refusal::Invalid(m);
        let header = req.headers.get("authorization").ok_or(Refusal::Missing)?;
        let auth = parse_authorization(
            header
                .to_str()
                .map_err(|_| invalid("The Authorization header is not ASCII.".into()))?,
        )?;
        // Every configured key id is compared in full; the id is not a secret, the signature is.
        if auth.access_key_id != self.access_key_id {
            return Err(Refusal::UnknownKey);
        }
        if auth.region != self.region || auth.service != self.service {
            return Err(invalid(format!(
                "Credential should be scoped to a valid region and service ({}, {}), not ({}, {}).",
                self.region, self.service, auth.region, auth.service
            )));
        }
        let amz_date = req
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid("The request must carry x-amz-date.".into()))?;
        let time = parse_amz_date(amz_date)
            .ok_or_else(|| invalid(format!("x-amz-date {amz_date:?} is not YYYYMMDDTHHMMSSZ.")))?;
        if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
            return Err(invalid("The credential scope's date is not the request's date.".into()));
        }
        let skew =
            now.duration_since(time).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
        if skew > MAX_SKEW {
            return Err(invalid(format!(
                "Signature expired: {amz_date} is more than {} minutes from the service's time.",
                MAX_SKEW.as_secs() / 60
            )));
        }
        let names: Vec<&str> = auth.signed_headers.split(';').collect();
        if !names.contains(&"host")
            || !names.contains(&"x-amz-date")
            || names.iter().any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(invalid(
                "SignedHeaders must be lower case and include host and x-amz-date.".into(),
            ));
        }
        let mut canonical = format!(
            "{}\n{}\n{}\n",
            req.method,
            encode_path(req.path, EncodingStrategy::Greedy),
            canonical_query(req.query)
        );
        for name in &names {
            let value = canonical_value(req.headers, name)
                .ok_or_else(|| invalid(format!("The signed header {name} is missing.")))?;
            canonical.push_str(&format!("{name}:{value}\n"));
        }
        canonical.push_str(&format!(
            "\n{}\n{}",
            auth.signed_headers,
            hex::encode(Sha256::digest(req.body))
        ));
        let scope = format!("{}/{}/{}/aws4_request", auth.date, self.region, self.service);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = aws_sigv4::sign::v4::generate_signing_key(
            &self.secret_access_key,
            time,
            &self.region,
            self.service,
        );
        let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
        if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            Ok(())
        } else {
            Err(invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        Verifier {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "service",
        }
    }

    /// AWS's published test suite case `get-vanilla-query-order-key-case`.
    #[test]
    fn the_aws_test_suite_signature_verifies_and_nothing_else_does() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let signature = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let auth = |sig: &str, key: &str| {
            format!("AWS4-HMAC-SHA256 Credential={key}/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}")
        };
        headers.insert("authorization", auth(signature, "AKIDEXAMPLE").parse().unwrap());
        let now = parse_amz_date("20150830T123600Z").unwrap() + Duration::from_secs(60);
        let req = |h: &HeaderMap| (Method::GET, h.clone());
        let check = |h: &HeaderMap, query: Option<&str>, now: SystemTime| {
            let (m, h) = req(h);
            verifier().verify(&Signed { method: &m, path: "/", query, headers: &h, body: b"" }, now)
        };
        assert_eq!(check(&headers, Some("Param2=value2&Param1=value1"), now), Ok(()));
        // Another query, another time, a tampered signature, another key, no header at all.
        assert!(matches!(
            check(&headers, Some("Param2=value2&Param1=value3"), now),
            Err(Refusal::Invalid(_))
        ));
        assert!(
            matches!(check(&headers, Some("Param2=value2&Param1=value1"), now + MAX_SKEW + MAX_SKEW), Err(Refusal::Invalid(m)) if m.contains("expired"))
        );
        let mut tampered = headers.clone();
        tampered.insert(
            "authorization",
            auth(&signature.replace('b', "c"), "AKIDEXAMPLE").parse().unwrap(),
        );
        assert!(matches!(
            check(&tampered, Some("Param2=value2&Param1=value1"), now),
            Err(Refusal::Invalid(_))
        ));
        let mut other = headers.clone();
        other.insert("authorization", auth(signature, "AKIDOTHER").parse().unwrap());
        assert_eq!(
            check(&other, Some("Param2=value2&Param1=value1"), now),
            Err(Refusal::UnknownKey)
        );
        let mut none = headers.clone();
        none.remove("authorization");
        assert_eq!(check(&none, None, now), Err(Refusal::Missing));
        let mut bearer = headers.clone();
        bearer.insert("authorization", "Bearer x".parse().unwrap());
        assert!(matches!(check(&bearer, None, now), Err(Refusal::Invalid(_))));
    }
}
