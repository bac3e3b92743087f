//! `POST /v1/embed`: a contract `EmbedRequest` checked at the edge, then down to the Lambda
//! function as an embedding event; its vectors back.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use contract::EmbedRequest;
use telemetry::RequestInfo;

use crate::domain::ValidatedEmbed;
use crate::error::ServiceError;
use crate::routes::Exchange;
use crate::startup::AppState;

pub async fn embed(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace_id = info.trace.trace_id.clone();
    match run(&state, info, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(trace_id = %trace_id, kind = ?e.kind, status = e.status().as_u16(), error = %e.message, "embed refused");
            e.into_response()
        }
    }
}

async fn run(
    state: &AppState,
    info: RequestInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    let (ex, req): (Exchange, EmbedRequest) = Exchange::read(state, info, headers, body).await?;
    let trace = ex.trace(headers, req.trace.as_ref());
    let mut req = ValidatedEmbed::try_from((req, &state.settings))?.into_inner();
    req.trace = Some(trace);
    tracing::debug!(trace_id = %ex.info.trace.trace_id, model = %req.model, inputs = req.inputs.len(), "invoking for embeddings");
    let resp = state.invoker.invoke_embed(&req).await?;
    Ok(ex.respond_embed(resp))
}
