//! SDK errors -> contract errors, deciding what is worth retrying.

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use contract::ErrorKind;

/// Maps any SDK error. Service errors go by their AWS error code; transport failures and
/// timeouts are retryable upstream errors.
pub fn map_sdk_error<E, R>(e: &SdkError<E, R>) -> contract::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let message = err.message().unwrap_or("Bedrock returned an error").to_owned();
            from_code(err.code().unwrap_or(""), message)
        }
        SdkError::TimeoutError(_) => {
            contract::Error::new(ErrorKind::Timeout, "Bedrock did not answer in time")
        }
        other => contract::Error::new(
            ErrorKind::Upstream,
            format!("could not reach Bedrock: {}", contract::error_chain(other)),
        ),
    }
}

pub(crate) fn from_code(code: &str, message: String) -> contract::Error {
    let kind = match code {
        "ResourceNotFoundException" => ErrorKind::ModelNotFound,
        "ValidationException" => ErrorKind::InvalidRequest,
        "AccessDeniedException" | "UnrecognizedClientException" => ErrorKind::Unauthorized,
        "ThrottlingException"
        | "ServiceUnavailableException"
        | "ModelNotReadyException"
        | "ServiceQuotaExceededException" => ErrorKind::Overloaded,
        "ModelTimeoutException" => ErrorKind::Timeout,
        _ => ErrorKind::Upstream,
    };
    contract::Error::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_table() {
        let cases = [
            ("ResourceNotFoundException", ErrorKind::ModelNotFound, false),
            ("ValidationException", ErrorKind::InvalidRequest, false),
            ("AccessDeniedException", ErrorKind::Unauthorized, false),
            ("ThrottlingException", ErrorKind::Overloaded, true),
            ("ServiceUnavailableException", ErrorKind::Overloaded, true),
            ("ModelTimeoutException", ErrorKind::Timeout, true),
            ("InternalServerException", ErrorKind::Upstream, true),
        ];
        for (code, kind, retryable) in cases {
            let e = from_code(code, "m".into());
            assert_eq!((e.kind(), e.retryable), (kind, retryable), "{code}");
        }
    }
}
