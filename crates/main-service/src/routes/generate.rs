//! `POST /v1/generate`: one contract request down to the Lambda function, its answer back
//! (whole, or streamed as it is produced).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use contract::GenerateRequest;
use telemetry::RequestInfo;

use crate::domain::ValidatedRequest;
use crate::error::ServiceError;
use crate::format;
use crate::routes::Exchange;
use crate::startup::AppState;

pub async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace_id = info.trace.trace_id.clone();
    match run(&state, info, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(trace_id = %trace_id, kind = ?e.kind, status = e.status().as_u16(), error = %e.message, "generate refused");
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
    let (ex, req): (Exchange, GenerateRequest) = Exchange::read(state, info, headers, body).await?;
    let trace = ex.trace(headers, req.trace.as_ref());
    let req = ValidatedRequest::try_from((req, &state.settings))?;
    let req = format::prepare(req, &state.settings, trace);
    tracing::debug!(trace_id = %ex.info.trace.trace_id, model = %req.model, stream = req.stream, messages = req.messages.len(), "invoking");
    if req.stream {
        let chunks = state.invoker.invoke_stream(&req).await?;
        Ok(ex.respond_stream(chunks))
    } else {
        let resp = state.invoker.invoke(&req).await?;
        Ok(ex.respond(resp))
    }
}
