//! Errors of the Lambda service API itself (not function errors): status, `x-amzn-ErrorType`,
//! and Lambda's JSON body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    pub reason: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
            reason: None,
            retry_after_secs: None,
        }
    }

    pub fn function_not_found(arn: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {arn}"),
        )
    }

    pub fn too_many_requests() -> Self {
        ApiError {
            reason: Some("ReservedFunctionConcurrentInvocationLimitExceeded"),
            retry_after_secs: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "Rate Exceeded.",
            )
        }
    }

    pub fn request_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        )
    }

    /// For headers beyond `max_header_bytes` (`telemetry::header_limit` checks them).
    pub fn headers_too_large(size: usize, max: usize) -> Self {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestTooLargeException",
            telemetry::too_large_message(size, max),
        )
    }

    pub fn invalid_content(detail: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {detail}"),
        )
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
    }

    /// An unsigned request to a service that checks signatures.
    pub fn missing_authentication_token() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    /// A signature by an access key the service does not know.
    pub fn unrecognized_client() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    }

    pub fn invalid_signature(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "InvalidSignatureException", message)
    }

    pub fn unknown_operation() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation")
    }

    pub fn service(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", message)
    }
}

/// The refusal `telemetry::header_limit` sends, in Lambda's error shape.
pub fn header_refusal(_: &axum::extract::Request, size: usize, max: usize) -> Response {
    ApiError::headers_too_large(size, max).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "Type": "User", "message": self.message });
        if let Some(reason) = self.reason {
            body["Reason"] = reason.into();
        }
        if self.status.is_server_error() {
            body["Type"] = "Service".into();
        }
        let mut r = (self.status, Json(body)).into_response();
        r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(self.error_type));
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut().insert("Retry-After", HeaderValue::from(secs));
        }
        r
    }
}
