//! Fault injection (`[bedrock_emulator.faults]`, off by default): Bedrock answering a share of
//! requests with a server-side error, so that what every hop above does with Bedrock's
//! ServiceUnavailableException, InternalServerException, ThrottlingException or
//! ModelTimeoutException can be seen through the whole chain. Deterministic (one request in
//! `every`), so that a test knows which request fails and whether a retry will succeed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{AwsError, AwsErrorType};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// The AWS error type faulty requests get: `ServiceUnavailableException` (503),
    /// `InternalServerException` (500), `ThrottlingException` (429) or `ModelTimeoutException`
    /// (408). Empty: no faults.
    pub error: String,
    /// One request in `every` fails: the first, then the (every+1)th, and so on. 1 = all.
    pub every: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings { error: String::new(), every: 1 }
    }
}

/// The faults in force and how many requests have been counted.
#[derive(Debug)]
pub struct Faults {
    kind: Option<AwsErrorType>,
    every: u64,
    seen: AtomicU64,
}

impl Faults {
    pub fn new(s: &FaultSettings) -> Result<Faults, String> {
        let kind = match s.error.as_str() {
            "" => None,
            "ServiceUnavailableException" => Some(AwsErrorType::ServiceUnavailable),
            "InternalServerException" => Some(AwsErrorType::InternalServer),
            "ThrottlingException" => Some(AwsErrorType::Throttling),
            "ModelTimeoutException" => Some(AwsErrorType::ModelTimeout),
            other => return Err(format!("bedrock_emulator.faults.error: {other:?} is not one of ServiceUnavailableException, InternalServerException, ThrottlingException, ModelTimeoutException")),
        };
        if s.every == 0 {
            return Err("bedrock_emulator.faults.every must be at least 1".into());
        }
        if let Some(k) = kind {
            tracing::warn!(error = k.name(), every = s.every, "fault injection is on: one request in `every` fails");
        }
        Ok(Faults { kind, every: s.every, seen: AtomicU64::new(0) })
    }

    /// The error this request gets, if it is one of the faulty ones.
    pub fn next(&self) -> Option<AwsError> {
        let kind = self.kind?;
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(self.every).then(|| AwsError::new(kind, format!("injected fault: {} (bedrock_emulator.faults)", kind.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_in_every_fails_starting_with_the_first() {
        let f = Faults::new(&FaultSettings { error: "ServiceUnavailableException".into(), every: 3 }).unwrap();
        let failed: Vec<bool> = (0..7).map(|_| f.next().is_some()).collect();
        assert_eq!(failed, [true, false, false, true, false, false, true]);
        assert_eq!(f.next().map(|e| e.kind), None);
        assert_eq!(Faults::new(&FaultSettings { error: "InternalServerException".into(), every: 1 }).unwrap().next().unwrap().kind, AwsErrorType::InternalServer);
    }

    #[test]
    fn off_by_default_and_unknown_errors_are_refused() {
        let f = Faults::new(&FaultSettings::default()).unwrap();
        assert!((0..10).all(|_| f.next().is_none()));
        assert!(Faults::new(&FaultSettings { error: "Boom".into(), every: 1 }).is_err());
        assert!(Faults::new(&FaultSettings { error: "ThrottlingException".into(), every: 0 }).is_err());
    }
}
