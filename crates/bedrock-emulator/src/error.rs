//! Errors as Bedrock sends them: status code, `x-amzn-ErrorType`, `{"message": ...}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorType {
    Validation,
    ResourceNotFound,
    AccessDenied,
    Throttling,
    ModelTimeout,
    ServiceUnavailable,
    InternalServer,
}

impl AwsErrorType {
    pub fn name(self) -> &'static str {
        match self {
            AwsErrorType::Validation => "ValidationException",
            AwsErrorType::ResourceNotFound => "ResourceNotFoundException",
            AwsErrorType::AccessDenied => "AccessDeniedException",
            AwsErrorType::Throttling => "ThrottlingException",
            AwsErrorType::ModelTimeout => "ModelTimeoutException",
            AwsErrorType::ServiceUnavailable => "ServiceUnavailableException",
            AwsErrorType::InternalServer => "InternalServerException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            AwsErrorType::Validation => StatusCode::BAD_REQUEST,
            AwsErrorType::ResourceNotFound => StatusCode::NOT_FOUND,
            AwsErrorType::AccessDenied => StatusCode::FORBIDDEN,
            AwsErrorType::Throttling => StatusCode::TOO_MANY_REQUESTS,
            AwsErrorType::ModelTimeout => StatusCode::REQUEST_TIMEOUT,
            AwsErrorType::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            AwsErrorType::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The event-stream exception name used mid-stream (camelCase, as ConverseStream sends).
    pub fn stream_name(self) -> &'static str {
        match self {
            AwsErrorType::Validation => "validationException",
            AwsErrorType::Throttling => "throttlingException",
            AwsErrorType::ServiceUnavailable => "serviceUnavailableException",
            _ => "internalServerException",
        }
    }

    pub fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidRequest | ErrorKind::ContextLength => AwsErrorType::Validation,
            ErrorKind::ModelNotFound => AwsErrorType::ResourceNotFound,
            ErrorKind::Unauthorized => AwsErrorType::AccessDenied,
            ErrorKind::Overloaded | ErrorKind::RateLimited => AwsErrorType::Throttling,
            ErrorKind::Timeout => AwsErrorType::ModelTimeout,
            ErrorKind::Upstream => AwsErrorType::ServiceUnavailable,
            ErrorKind::Internal | ErrorKind::Unspecified => AwsErrorType::InternalServer,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AwsError {
    pub kind: AwsErrorType,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: AwsErrorType, message: impl Into<String>) -> Self {
        AwsError { kind, message: message.into() }
    }
}

impl From<contract::Error> for AwsError {
    fn from(e: contract::Error) -> Self {
        AwsError::new(AwsErrorType::from_kind(e.kind()), e.message)
    }
}

/// 431 with a ValidationException, for headers beyond `max_header_bytes`
/// (`telemetry::header_limit` checks them).
pub fn header_refusal(_: &axum::extract::Request, size: usize, max: usize) -> Response {
    let mut r = AwsError::new(AwsErrorType::Validation, telemetry::too_large_message(size, max))
        .into_response();
    *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    r
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let mut r = (self.kind.status(), Json(serde_json::json!({ "message": self.message })))
            .into_response();
        r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind.name()));
        r
    }
}
