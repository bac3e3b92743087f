//! `/`, `/api/version`, `/metrics`, and the JSON answers for routes we do not serve.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;

use crate::startup::AppState;

pub async fn root() -> &'static str {
    "Ollama is running"
}

pub async fn version() -> Json<serde_json::Value> {
    // Clients gate features on this; report the Ollama API level we implement.
    Json(serde_json::json!({ "version": "0.12.0", "strata": env!("CARGO_PKG_VERSION") }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics;
    let stats = state.backend.stats();
    m.queued.set((state.limiter.waiting() + stats.queued) as i64);
    m.active_sequences.set(stats.active_sequences as i64);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render())
}

/// Ollama endpoints strata does not implement answer in Ollama's error shape.
pub async fn not_implemented(uri: Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(serde_json::json!({ "error": format!("{} is not supported by strata", uri.path()) })),
    )
}

/// An error for a request no handler took, in the shape of the protocol its path belongs to.
fn unrouted(
    uri: &Uri,
    status: StatusCode,
    ollama: &str,
    openai_message: String,
    openai_code: &str,
) -> (StatusCode, Json<serde_json::Value>) {
    let body = if uri.path().starts_with("/v1/") {
        serde_json::json!({ "error": { "message": openai_message, "type": "invalid_request_error", "param": null, "code": openai_code } })
    } else {
        serde_json::json!({ "error": ollama })
    };
    (status, Json(body))
}

pub async fn not_found(uri: Uri) -> impl IntoResponse {
    unrouted(
        &uri,
        StatusCode::NOT_FOUND,
        "404 page not found",
        format!("Unknown request URL: {}", uri.path()),
        "unknown_url",
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    unrouted(
        &uri,
        StatusCode::METHOD_NOT_ALLOWED,
        "405 method not allowed",
        format!("Method {method} is not allowed for {}", uri.path()),
        "method_not_allowed",
    )
}
