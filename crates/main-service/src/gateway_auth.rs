//! MainService answers only its API Gateway: when `gateway_secret` is set, every `/v1/` request
//! must carry it in `x-strata-gateway-secret` (the gateway adds it to each integration request;
//! on AWS the API's integration request header mapping does). `/healthz` and `/metrics` stay
//! open: load balancer health checks cannot send headers, and neither reveals a prompt.

use std::sync::Arc;

use api_keys::{ApiKeys, GATEWAY_SECRET_HEADER};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contract::ErrorKind;
use telemetry::RequestInfo;

use crate::error::ServiceError;

/// Axum middleware; `verifier` holds the secret's digest, or nothing when no secret is set.
pub async fn require_gateway(
    State(verifier): State<Arc<Option<ApiKeys>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(verifier) = verifier.as_ref() else {
        return next.run(req).await;
    };
    let presented = req.headers().get(GATEWAY_SECRET_HEADER).map(|v| v.as_bytes());
    if presented.is_some_and(|p| verifier.check(p).is_some()) {
        return next.run(req).await;
    }
    let trace_id = req
        .extensions()
        .get::<RequestInfo>()
        .map_or_else(String::new, |i| i.trace.trace_id.clone());
    let reason = if presented.is_some() { "wrong" } else { "missing" };
    tracing::info!(trace_id = %trace_id, reason, "request refused: not from the gateway");
    ServiceError::new(
        ErrorKind::Unauthorized,
        format!("{reason} {GATEWAY_SECRET_HEADER}: this service answers only its API gateway"),
    )
    .into_response()
}
