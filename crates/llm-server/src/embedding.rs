//! An embedding request from either API, after its protocol's parsing: the input count
//! limit, the concurrency limit (shared with generations), the trace, the request timeout,
//! then the backend.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use contract::ErrorKind;
use telemetry::RequestInfo;

use crate::backend::Caller;
use crate::edge;
use crate::error::{ApiError, Protocol};
use crate::startup::AppState;

pub async fn run(
    state: &Arc<AppState>,
    protocol: Protocol,
    info: &RequestInfo,
    caller: &Caller,
    mut req: contract::EmbedRequest,
) -> Result<contract::EmbedResponse, ApiError> {
    if !state.backend.embeds() {
        return Err(ApiError::with_status(
            protocol,
            StatusCode::NOT_IMPLEMENTED,
            ErrorKind::InvalidRequest,
            "this server's backend does not serve embeddings",
        ));
    }
    edge::embed_inputs(&state.settings, protocol, req.inputs.len())?;
    let _permit = state.limiter.acquire().await.map_err(|_| {
        ApiError::new(
            protocol,
            contract::Error::new(
                ErrorKind::Overloaded,
                "server busy, please try again.  maximum pending requests exceeded",
            ),
        )
    })?;
    req.trace = Some(contract::TraceContext {
        traceparent: info.trace.header(),
        tracestate: String::new(),
    });
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    match tokio::time::timeout(timeout, state.backend.embed(req, caller)).await {
        Ok(answer) => answer.map_err(|e| ApiError::new(protocol, e)),
        Err(_) => Err(ApiError::new(
            protocol,
            contract::Error::new(ErrorKind::Timeout, "request timed out"),
        )),
    }
}
