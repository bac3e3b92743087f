//! The service's error answers: a contract error kind mapped to an HTTP status, with one body
//! shape for every failure (JSON, also for protobuf requests):
//! `{"error": {"kind": "INVALID_REQUEST", "message": "...", "fields": [{"field", "message"}]}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use contract::ErrorKind;
use serde::Serialize;

/// One invalid field of a request, named by its path (`messages[0].role`, `options.top_p`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Set where the status is not the kind's own (413, 415).
    pub status: Option<StatusCode>,
    /// `Retry-After` seconds, for overload answers.
    pub retry_after_secs: Option<u64>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            message: message.into(),
            fields: Vec::new(),
            status: None,
            retry_after_secs: None,
        }
    }

    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("invalid request: {}: {}", one.field, one.message),
            many => format!("invalid request: {} invalid fields", many.len()),
        };
        ServiceError { fields, ..ServiceError::new(ErrorKind::InvalidRequest, message) }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| status_of(self.kind))
    }

    /// The contract error behind this answer (for error chunks).
    pub fn to_contract(&self) -> contract::Error {
        contract::Error::new(self.kind, self.message.clone())
    }
}

/// The HTTP status of each contract error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLength => StatusCode::BAD_REQUEST,
        ErrorKind::ModelNotFound => StatusCode::NOT_FOUND,
        ErrorKind::Overloaded | ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unauthorized => StatusCode::FORBIDDEN,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal | ErrorKind::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `ERROR_KIND_MODEL_NOT_FOUND` -> `MODEL_NOT_FOUND`.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    kind.as_str_name().trim_start_matches("ERROR_KIND_")
}

impl From<contract::Error> for ServiceError {
    fn from(e: contract::Error) -> Self {
        ServiceError::new(e.kind(), e.message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    kind: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: Inner {
                kind: kind_name(self.kind),
                message: &self.message,
                fields: &self.fields,
            },
        })
        .unwrap_or_default();
        let mut r = (self.status(), body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.kind == ErrorKind::Overloaded {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_secs.unwrap_or(1)));
        }
        r
    }
}

/// 431 in the service's error shape, for headers beyond `max_header_bytes`
/// (`telemetry::header_limit` checks them).
pub fn header_refusal(_: &axum::extract::Request, size: usize, max: usize) -> Response {
    ServiceError::new(ErrorKind::InvalidRequest, telemetry::too_large_message(size, max))
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses_and_names() {
        for (kind, status, name) in [
            (ErrorKind::InvalidRequest, 400, "INVALID_REQUEST"),
            (ErrorKind::ModelNotFound, 404, "MODEL_NOT_FOUND"),
            (ErrorKind::Overloaded, 429, "OVERLOADED"),
            (ErrorKind::Timeout, 504, "TIMEOUT"),
            (ErrorKind::Upstream, 502, "UPSTREAM"),
            (ErrorKind::Unauthorized, 403, "UNAUTHORIZED"),
            (ErrorKind::Internal, 500, "INTERNAL"),
        ] {
            assert_eq!((status_of(kind).as_u16(), kind_name(kind)), (status, name));
        }
    }
}
