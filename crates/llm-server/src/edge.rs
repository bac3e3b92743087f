//! The limits a request meets before any handler trusts it: header bytes, JSON nesting depth,
//! message count and model-name characters, each configurable in `[server]` and answered in the
//! protocol's own error shape. (Body size is axum's `DefaultBodyLimit`, see `startup.rs`.)

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::ErrorKind;

use crate::config::ServerSettings;
use crate::error::{parse_json, ApiError, Protocol};

fn invalid(protocol: Protocol, message: impl Into<String>) -> ApiError {
    ApiError::with_status(protocol, StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, message)
}

/// The protocol a path belongs to: OpenAI under `/v1/`, Ollama everywhere else.
pub fn protocol_of(path: &str) -> Protocol {
    if path.starts_with("/v1/") {
        Protocol::OpenAi
    } else {
        Protocol::Ollama
    }
}

/// Bodies at least this large are checked and parsed on a blocking thread: a 10 MB chat takes
/// tens of milliseconds to parse, which an async worker (often the only one) must not spend.
const PARSE_OFF_THREAD_BYTES: usize = 64 * 1024;

/// Parses a JSON body after checking how deep it nests (serde_json's own stop at 128 levels
/// would otherwise be the only limit, and recursion is what a deep body attacks).
pub async fn parse<T: serde::de::DeserializeOwned + Send + 'static>(
    settings: &ServerSettings,
    protocol: Protocol,
    body: Bytes,
) -> Result<T, ApiError> {
    let max_depth = settings.max_json_depth;
    if body.len() < PARSE_OFF_THREAD_BYTES {
        return parse_now(max_depth, protocol, &body);
    }
    tokio::task::spawn_blocking(move || parse_now(max_depth, protocol, &body)).await.unwrap_or_else(
        |e| {
            Err(ApiError::with_status(
                protocol,
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Internal,
                format!("parsing the request failed: {e}"),
            ))
        },
    )
}

fn parse_now<T: serde::de::DeserializeOwned>(
    max_depth: usize,
    protocol: Protocol,
    body: &[u8],
) -> Result<T, ApiError> {
    if contract::edge::json_nests_deeper_than(body, max_depth) {
        return Err(invalid(
            protocol,
            format!("invalid request body: JSON nests deeper than {max_depth} levels"),
        ));
    }
    parse_json(protocol, body)
}

/// A client's model name: refused before it reaches a backend (and so a model resolver or a
/// file system). An empty name is left to the "model is required" check of each endpoint.
pub fn model(settings: &ServerSettings, protocol: Protocol, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Ok(());
    }
    contract::edge::check_model_name(
        name,
        settings.max_model_name_bytes,
        settings.allow_model_paths,
    )
    .map_err(|e| invalid(protocol, e.to_string()))
}

/// Chat messages in one request (each one costs a template render when history is trimmed).
pub fn messages(
    settings: &ServerSettings,
    protocol: Protocol,
    count: usize,
) -> Result<(), ApiError> {
    if count > settings.max_messages {
        return Err(invalid(
            protocol,
            format!("too many messages: {count}; at most {} are allowed", settings.max_messages),
        ));
    }
    Ok(())
}

/// Inputs in one embedding request (each is tokenized and held until the vectors return).
pub fn embed_inputs(
    settings: &ServerSettings,
    protocol: Protocol,
    count: usize,
) -> Result<(), ApiError> {
    if count > settings.max_embed_inputs {
        return Err(invalid(
            protocol,
            format!("too many inputs: {count}; at most {} are allowed", settings.max_embed_inputs),
        ));
    }
    Ok(())
}

/// 431 Request Header Fields Too Large, in the protocol's shape, for headers beyond
/// `max_header_bytes` (the check itself is `telemetry::header_limit`, shared by every hop).
pub fn header_refusal(req: &Request, size: usize, max: usize) -> Response {
    let protocol = protocol_of(req.uri().path());
    ApiError::with_status(
        protocol,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorKind::InvalidRequest,
        telemetry::too_large_message(size, max),
    )
    .into_response()
}
