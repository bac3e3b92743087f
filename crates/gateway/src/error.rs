//! API Gateway's own responses ("gateway responses"): status, `{"message": ...}` body and,
//! where API Gateway sends one, `x-amzn-ErrorType`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// A path with dot-segments or a raw `\` (see `request_path`), refused before routing.
    InvalidPath,
    /// No resource/method matches (MISSING_AUTHENTICATION_TOKEN).
    MissingAuthenticationToken,
    /// Missing or unknown `x-api-key` (INVALID_API_KEY).
    Forbidden,
    /// Rate or burst exceeded (THROTTLED).
    TooManyRequests(Option<Duration>),
    /// Usage plan quota used up (QUOTA_EXCEEDED).
    LimitExceeded(Option<Duration>),
    /// Request body over the payload limit (REQUEST_TOO_LARGE).
    RequestTooLong,
    /// Request headers over `max_header_bytes`.
    RequestHeaderFieldsTooLarge,
    /// No response headers from the integration in time (INTEGRATION_TIMEOUT).
    IntegrationTimeout,
    /// The integration could not be reached or broke before answering.
    IntegrationFailure,
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::InvalidPath => StatusCode::BAD_REQUEST,
            GatewayError::MissingAuthenticationToken | GatewayError::Forbidden => {
                StatusCode::FORBIDDEN
            }
            GatewayError::TooManyRequests(_) | GatewayError::LimitExceeded(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::RequestTooLong => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestHeaderFieldsTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            GatewayError::IntegrationTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::IntegrationFailure => StatusCode::BAD_GATEWAY,
        }
    }

    /// The body, byte for byte as API Gateway writes it (the two 5xx ones have a space after the colon).
    pub fn body(self) -> &'static str {
        match self {
            GatewayError::InvalidPath => r#"{"message":"Invalid request path"}"#,
            GatewayError::MissingAuthenticationToken => {
                r#"{"message":"Missing Authentication Token"}"#
            }
            GatewayError::Forbidden => r#"{"message":"Forbidden"}"#,
            GatewayError::TooManyRequests(_) => r#"{"message":"Too Many Requests"}"#,
            GatewayError::LimitExceeded(_) => r#"{"message":"Limit Exceeded"}"#,
            GatewayError::RequestTooLong => r#"{"message":"Request Too Long"}"#,
            GatewayError::RequestHeaderFieldsTooLarge => {
                r#"{"message":"Request Header Fields Too Large"}"#
            }
            GatewayError::IntegrationTimeout => r#"{"message": "Endpoint request timed out"}"#,
            GatewayError::IntegrationFailure => r#"{"message": "Internal server error"}"#,
        }
    }

    pub fn error_type(self) -> Option<&'static str> {
        match self {
            GatewayError::InvalidPath => Some("BadRequestException"),
            GatewayError::MissingAuthenticationToken => Some("MissingAuthenticationTokenException"),
            GatewayError::Forbidden => Some("ForbiddenException"),
            GatewayError::TooManyRequests(_) => Some("TooManyRequestsException"),
            GatewayError::LimitExceeded(_) => Some("LimitExceededException"),
            GatewayError::RequestTooLong
            | GatewayError::RequestHeaderFieldsTooLarge
            | GatewayError::IntegrationTimeout
            | GatewayError::IntegrationFailure => None,
        }
    }

    fn retry_after(self) -> Option<Duration> {
        match self {
            GatewayError::TooManyRequests(d) | GatewayError::LimitExceeded(d) => d,
            _ => None,
        }
    }
}

/// The refusal `telemetry::header_limit` sends for headers beyond `max_header_bytes`.
pub fn header_refusal(_: &axum::extract::Request, _size: usize, _max: usize) -> Response {
    GatewayError::RequestHeaderFieldsTooLarge.into_response()
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut r = (self.status(), self.body()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(t) = self.error_type() {
            h.insert("x-amzn-ErrorType", HeaderValue::from_static(t));
        }
        if let Some(d) = self.retry_after() {
            // Whole seconds, rounded up, never 0 (a 0 would invite an immediate retry).
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        r
    }
}
