//! `POST /v1/summarize`: map-reduce over a long document (see `crate::summarize`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use contract::SummarizeRequest;
use telemetry::RequestInfo;

use crate::domain::ValidatedSummarize;
use crate::error::ServiceError;
use crate::routes::Exchange;
use crate::startup::AppState;
use crate::summarize::{summarize as run_summary, Answer};

pub async fn summarize(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace_id = info.trace.trace_id.clone();
    match run(&state, info, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(trace_id = %trace_id, kind = ?e.kind, status = e.status().as_u16(), error = %e.message, "summarize refused");
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
    let (ex, req): (Exchange, SummarizeRequest) =
        Exchange::read(state, info, headers, body).await?;
    let trace = ex.trace(headers, req.trace.as_ref());
    let req = ValidatedSummarize::try_from((req, &state.settings))?;
    Ok(match run_summary(state, &req, trace).await? {
        Answer::Whole(resp) => ex.respond(resp),
        Answer::Stream(chunks) => ex.respond_stream(chunks),
    })
}
