//! Only callers holding the configured credentials reach the service API: every request's
//! SigV4 signature is checked (`sigv4`) before any handler runs. The body is part of the
//! signature, so it is read here (within the payload limit) and handed on whole.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use telemetry::RequestInfo;

use crate::errors::ApiError;
use crate::sigv4::{Refusal, Signed};
use crate::startup::AppState;

pub async fn require_signature(
    State(app): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(verifier) = app.verifier.as_ref() else {
        return next.run(req).await;
    };
    let trace_id = req
        .extensions()
        .get::<RequestInfo>()
        .map_or_else(String::new, |i| i.trace.trace_id.clone());
    let refuse = |error: ApiError| {
        tracing::info!(trace_id = %trace_id, error_type = error.error_type, reason = %error.message, "request refused: not signed by a known caller");
        error.into_response()
    };
    // An unsigned request is refused before its body is read.
    if !req.headers().contains_key("authorization") {
        return refuse(ApiError::missing_authentication_token());
    }
    let (parts, body) = req.into_parts();
    let limit = app.settings.max_payload_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::request_too_large(limit).into_response()
        }
        Err(e) => return ApiError::invalid_content(e).into_response(),
    };
    let signed = Signed {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    match verifier.verify(&signed, SystemTime::now()) {
        Ok(()) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(Refusal::Missing) => refuse(ApiError::missing_authentication_token()),
        Err(Refusal::UnknownKey) => refuse(ApiError::unrecognized_client()),
        Err(Refusal::Invalid(message)) => refuse(ApiError::invalid_signature(message)),
    }
}
