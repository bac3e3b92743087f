//! Errors in each protocol's own shape: Ollama `{"error": "..."}`, OpenAI
//! `{"error": {"message", "type", "param", "code"}}`, with the status code the kind calls for.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::ErrorKind;

use crate::openai;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ollama,
    OpenAi,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub protocol: Protocol,
    pub status: StatusCode,
    pub error: contract::Error,
}

pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLength => StatusCode::BAD_REQUEST,
        ErrorKind::ModelNotFound => StatusCode::NOT_FOUND,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal | ErrorKind::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn new(protocol: Protocol, error: contract::Error) -> Self {
        ApiError { protocol, status: status_for(error.kind()), error }
    }

    pub fn with_status(
        protocol: Protocol,
        status: StatusCode,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ApiError { protocol, status, error: contract::Error::new(kind, message) }
    }

    /// The error as one JSON value in this protocol's shape (also used mid-stream).
    pub fn body(protocol: Protocol, error: &contract::Error) -> serde_json::Value {
        match protocol {
            Protocol::Ollama => serde_json::json!({ "error": error.message }),
            Protocol::OpenAi => {
                serde_json::to_value(openai::convert::error(error)).unwrap_or_default()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.error.retry_after_ms;
        let mut r = (self.status, Json(Self::body(self.protocol, &self.error))).into_response();
        // A refusal that said when to come back keeps saying it (seconds, rounded up).
        if retry_after > 0 {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after.div_ceil(1000)),
            );
        }
        r
    }
}

/// Body extraction failures: 413 for oversized bodies, 408 for a body that did not arrive in
/// time (`connections.body_read_timeout_secs`), 400 for everything else.
pub fn body_rejection(
    protocol: Protocol,
    rejection: axum::extract::rejection::BytesRejection,
) -> ApiError {
    let status = rejection.status();
    if telemetry::is_body_read_timeout(&rejection) {
        return ApiError::with_status(
            protocol,
            StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Timeout,
            format!("request body read timed out: {}", rejection.body_text()),
        );
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::with_status(protocol, status, ErrorKind::InvalidRequest, "request body too large")
    } else {
        ApiError::with_status(
            protocol,
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            rejection.body_text(),
        )
    }
}

/// Parses a JSON body into a protocol type with a protocol-shaped 400 on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    protocol: Protocol,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let msg = match protocol {
            Protocol::Ollama => "missing request body",
            Protocol::OpenAi => "request body is empty; expected a JSON object",
        };
        return Err(ApiError::with_status(
            protocol,
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            msg,
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::with_status(
            protocol,
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRequest,
            format!("invalid request body: {e}"),
        )
    })
}
