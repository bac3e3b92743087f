//! Fault injection (`[lambda_service.faults]`, off by default): the Lambda service itself
//! answering one invocation in `every` with its own error (not a function error), so that what
//! MainService does with Lambda's 5xx and throttling can be seen through the whole chain. The
//! schedule is telemetry's.

use telemetry::InjectableFault;

use crate::errors::ApiError;

pub use telemetry::FaultSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaFault {
    Service,
    TooManyRequests,
}

impl InjectableFault for LambdaFault {
    const ALL: &'static [LambdaFault] = &[LambdaFault::Service, LambdaFault::TooManyRequests];
    fn name(self) -> &'static str {
        match self {
            LambdaFault::Service => "ServiceException",
            LambdaFault::TooManyRequests => "TooManyRequestsException",
        }
    }
}

/// The faults in force (one in `every`).
#[derive(Debug)]
pub struct Faults(telemetry::Faults<LambdaFault>);

impl Faults {
    pub fn new(s: &FaultSettings) -> Result<Faults, String> {
        telemetry::Faults::new("lambda_service.faults", s).map(Faults)
    }

    /// The error this invocation gets, if it is one of the faulty ones.
    pub fn next(&self) -> Option<ApiError> {
        Some(match self.0.next()? {
            LambdaFault::Service => {
                ApiError::service("injected fault: ServiceException (lambda_service.faults)")
            }
            LambdaFault::TooManyRequests => ApiError::too_many_requests(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_is_lambdas_own_error() {
        let e = Faults::new(&FaultSettings { error: "ServiceException".into(), every: 1 })
            .unwrap()
            .next()
            .unwrap();
        assert_eq!((e.status.as_u16(), e.error_type), (500, "ServiceException"));
        let e = Faults::new(&FaultSettings { error: "TooManyRequestsException".into(), every: 1 })
            .unwrap()
            .next()
            .unwrap();
        assert_eq!((e.status.as_u16(), e.error_type), (429, "TooManyRequestsException"));
        assert!(
            Faults::new(&FaultSettings { error: "ThrottlingException".into(), every: 1 }).is_err()
        );
    }
}
