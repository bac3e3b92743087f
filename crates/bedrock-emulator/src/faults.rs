//! Fault injection (`[bedrock_emulator.faults]`, off by default): Bedrock answering one request
//! in `every` with a server-side error, so that what every hop above does with Bedrock's
//! ServiceUnavailableException, InternalServerException, ThrottlingException or
//! ModelTimeoutException can be seen through the whole chain. The schedule is telemetry's.

use telemetry::InjectableFault;

use crate::error::{AwsError, AwsErrorType};

pub use telemetry::FaultSettings;

/// The server-side errors Bedrock answers with; not the client's own (validation, access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BedrockFault(AwsErrorType);

impl InjectableFault for BedrockFault {
    const ALL: &'static [BedrockFault] = &[
        BedrockFault(AwsErrorType::ServiceUnavailable),
        BedrockFault(AwsErrorType::InternalServer),
        BedrockFault(AwsErrorType::Throttling),
        BedrockFault(AwsErrorType::ModelTimeout),
    ];
    fn name(self) -> &'static str {
        self.0.name()
    }
}

/// The faults in force (one in `every`).
#[derive(Debug)]
pub struct Faults(telemetry::Faults<BedrockFault>);

impl Faults {
    pub fn new(s: &FaultSettings) -> Result<Faults, String> {
        telemetry::Faults::new("bedrock_emulator.faults", s).map(Faults)
    }

    /// The error this request gets, if it is one of the faulty ones.
    pub fn next(&self) -> Option<AwsError> {
        let BedrockFault(kind) = self.0.next()?;
        Some(AwsError::new(
            kind,
            format!("injected fault: {} (bedrock_emulator.faults)", kind.name()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_is_bedrocks_own_error() {
        for (name, kind) in [
            ("ServiceUnavailableException", AwsErrorType::ServiceUnavailable),
            ("InternalServerException", AwsErrorType::InternalServer),
            ("ThrottlingException", AwsErrorType::Throttling),
            ("ModelTimeoutException", AwsErrorType::ModelTimeout),
        ] {
            let f = Faults::new(&FaultSettings { error: name.into(), every: 2 }).unwrap();
            assert_eq!(f.next().unwrap().kind, kind);
            assert!(f.next().is_none());
        }
        // A client-side error is not a fault Bedrock has.
        assert!(
            Faults::new(&FaultSettings { error: "ValidationException".into(), every: 1 }).is_err()
        );
    }
}
