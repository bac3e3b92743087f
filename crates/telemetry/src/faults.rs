//! Fault injection at a hop's edge (`[<hop>.faults]`, off by default): the hop answers a share
//! of requests with one of its service's own errors, so that what the hops above do with it can
//! be seen through the whole chain. Deterministic (one request in `every`, starting with the
//! first), so that a test knows which request fails and whether a retry will succeed. Each hop
//! names its errors and turns the chosen one into its own error answer.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// The service's error name that faulty requests get. Empty: no faults.
    pub error: String,
    /// One request in `every` fails: the first, then the (every+1)th, and so on. 1 = all.
    pub every: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings { error: String::new(), every: 1 }
    }
}

/// The error a hop can be made to answer with: its name in the service's own API.
pub trait InjectableFault: Copy + Sized + 'static {
    /// Every error of the kind, in the order the config error lists them.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// The fault in force and how many requests have been counted.
#[derive(Debug)]
pub struct Faults<F> {
    fault: Option<F>,
    every: u64,
    seen: AtomicU64,
}

impl<F: InjectableFault> Faults<F> {
    /// `section` is the config table, for the error message (`lambda_service.faults`).
    pub fn new(section: &str, s: &FaultSettings) -> Result<Faults<F>, String> {
        let fault = match s.error.as_str() {
            "" => None,
            name => match F::ALL.iter().copied().find(|f| f.name() == name) {
                Some(f) => Some(f),
                None => {
                    let names: Vec<&str> = F::ALL.iter().map(|f| f.name()).collect();
                    return Err(format!(
                        "{section}.error: {name:?} is not one of {}",
                        names.join(", ")
                    ));
                }
            },
        };
        if s.every == 0 {
            return Err(format!("{section}.every must be at least 1"));
        }
        if let Some(f) = fault {
            tracing::warn!(
                error = f.name(),
                every = s.every,
                "fault injection is on: one request in `every` fails"
            );
        }
        Ok(Faults { fault, every: s.every, seen: AtomicU64::new(0) })
    }

    /// The fault this request gets, if it is one of the faulty ones.
    pub fn next(&self) -> Option<F> {
        let fault = self.fault?;
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(self.every).then_some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Boom {
        Loud,
        Quiet,
    }

    impl InjectableFault for Boom {
        const ALL: &'static [Boom] = &[Boom::Loud, Boom::Quiet];
        fn name(self) -> &'static str {
            match self {
                Boom::Loud => "LoudException",
                Boom::Quiet => "QuietException",
            }
        }
    }

    fn faults(error: &str, every: u64) -> Result<Faults<Boom>, String> {
        Faults::new("hop.faults", &FaultSettings { error: error.into(), every })
    }

    #[test]
    fn one_request_in_every_fails_starting_with_the_first() {
        let f = faults("QuietException", 3).unwrap();
        let got: Vec<Option<Boom>> = (0..7).map(|_| f.next()).collect();
        let q = Some(Boom::Quiet);
        assert_eq!(got, [q, None, None, q, None, None, q]);
        assert_eq!(faults("LoudException", 1).unwrap().next(), Some(Boom::Loud));
    }

    #[test]
    fn off_by_default_and_unknown_errors_are_refused() {
        let f = Faults::<Boom>::new("hop.faults", &FaultSettings::default()).unwrap();
        assert!((0..10).all(|_| f.next().is_none()));
        assert_eq!(
            faults("Boom", 1).unwrap_err(),
            "hop.faults.error: \"Boom\" is not one of LoudException, QuietException"
        );
        assert_eq!(faults("LoudException", 0).unwrap_err(), "hop.faults.every must be at least 1");
    }
}
