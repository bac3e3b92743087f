//! Fault injection (`[lambda_service.faults]`, off by default): the Lambda service itself
//! answering a share of invocations with its own error (not a function error), so that what
//! MainService does with Lambda's 5xx and throttling can be seen through the whole chain.
//! Deterministic (one invocation in `every`), so that a test knows which call fails and
//! whether a retry will succeed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::errors::ApiError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// The error faulty invocations get: `ServiceException` (500) or
    /// `TooManyRequestsException` (429). Empty: no faults.
    pub error: String,
    /// One invocation in `every` fails: the first, then the (every+1)th, and so on. 1 = all.
    pub every: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings { error: String::new(), every: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Service,
    TooManyRequests,
}

/// The faults in force and how many invocations have been counted.
#[derive(Debug)]
pub struct Faults {
    kind: Option<Fault>,
    every: u64,
    seen: AtomicU64,
}

impl Faults {
    pub fn new(s: &FaultSettings) -> Result<Faults, String> {
        let kind = match s.error.as_str() {
            "" => None,
            "ServiceException" => Some(Fault::Service),
            "TooManyRequestsException" => Some(Fault::TooManyRequests),
            other => return Err(format!("lambda_service.faults.error: {other:?} is not one of ServiceException, TooManyRequestsException")),
        };
        if s.every == 0 {
            return Err("lambda_service.faults.every must be at least 1".into());
        }
        if kind.is_some() {
            tracing::warn!(error = %s.error, every = s.every, "fault injection is on: one invocation in `every` fails");
        }
        Ok(Faults { kind, every: s.every, seen: AtomicU64::new(0) })
    }

    /// The error this invocation gets, if it is one of the faulty ones.
    pub fn next(&self) -> Option<ApiError> {
        let kind = self.kind?;
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if !n.is_multiple_of(self.every) {
            return None;
        }
        Some(match kind {
            Fault::Service => ApiError::service("injected fault: ServiceException (lambda_service.faults)"),
            Fault::TooManyRequests => ApiError::too_many_requests(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_invocation_in_every_fails_starting_with_the_first() {
        let f = Faults::new(&FaultSettings { error: "ServiceException".into(), every: 3 }).unwrap();
        let failed: Vec<bool> = (0..7).map(|_| f.next().is_some()).collect();
        assert_eq!(failed, [true, false, false, true, false, false, true]);
        let e = Faults::new(&FaultSettings { error: "ServiceException".into(), every: 1 }).unwrap().next().unwrap();
        assert_eq!((e.status.as_u16(), e.error_type), (500, "ServiceException"));
        let e = Faults::new(&FaultSettings { error: "TooManyRequestsException".into(), every: 1 }).unwrap().next().unwrap();
        assert_eq!((e.status.as_u16(), e.error_type), (429, "TooManyRequestsException"));
    }

    #[test]
    fn off_by_default_and_unknown_errors_are_refused() {
        let f = Faults::new(&FaultSettings::default()).unwrap();
        assert!((0..10).all(|_| f.next().is_none()));
        assert!(Faults::new(&FaultSettings { error: "Boom".into(), every: 1 }).is_err());
        assert!(Faults::new(&FaultSettings { error: "ServiceException".into(), every: 0 }).is_err());
    }
}
