//! `POST /model/{modelId}/converse`, `/converse-stream` and (for embedding models) `/invoke`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use contract::ChunkKind;
use futures::StreamExt;
use telemetry::RequestInfo;
use tokio::sync::OwnedSemaphorePermit;

use crate::converse::{self, ConverseRequest};
use crate::error::{AwsError, AwsErrorType};
use crate::eventstream;
use crate::invoke::{self, Family};
use crate::startup::AppState;

/// What every operation does first: auth, injected faults, throttling, the body.
fn admit(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Bytes, OwnedSemaphorePermit), AwsError> {
    crate::auth::check(state.settings.auth, &state.keys.keys(), headers)?;
    if let Some(fault) = state.faults.next() {
        return Err(fault);
    }
    let permit = Arc::clone(&state.in_flight).try_acquire_owned().map_err(|_| {
        AwsError::new(
            AwsErrorType::Throttling,
            "Too many requests, please wait before trying again.",
        )
    })?;
    let body = body.map_err(|r| {
        let msg = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "Input is too long for requested model."
        } else {
            "Could not read the request body."
        };
        AwsError::new(AwsErrorType::Validation, msg)
    })?;
    Ok((body, permit))
}

/// Everything both Converse operations do before generating: admission, parsing, model lookup.
async fn prepare(
    state: &Arc<AppState>,
    info: &RequestInfo,
    model_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    stream: bool,
) -> Result<(contract::GenerateRequest, OwnedSemaphorePermit), AwsError> {
    let (body, permit) = admit(state, headers, body)?;
    let req: ConverseRequest = serde_json::from_slice(&body).map_err(|e| {
        AwsError::new(AwsErrorType::Validation, format!("Malformed input request: {e}"))
    })?;
    let local = state.settings.models.get(model_id).ok_or_else(|| {
        AwsError::new(
            AwsErrorType::ResourceNotFound,
            format!("Model not found: the model identifier '{model_id}' is not served here."),
        )
    })?;
    let mut req = converse::to_contract(req, local, stream)?;
    req.trace = Some(contract::TraceContext {
        traceparent: info.trace.header(),
        tracestate: String::new(),
    });
    Ok((req, permit))
}

pub async fn converse(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<converse::ConverseResponse>, AwsError> {
    let started = Instant::now();
    let (req, _permit) = prepare(&state, &info, &model_id, &headers, body, false).await?;
    let mut stream = state.generator.generate(req).await?;
    let mut text = String::new();
    let mut calls: Vec<contract::ToolUse> = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                text.push_str(&d.content);
                if let Some(piece) = d.tool_use {
                    match calls.get_mut(piece.index as usize) {
                        Some(call) => call.input_json.push_str(&piece.input_json),
                        None => calls.push(contract::ToolUse {
                            id: piece.id,
                            name: piece.name,
                            input_json: piece.input_json,
                        }),
                    }
                }
            }
            Some(ChunkKind::Done(done)) => {
                let u = done.usage.unwrap_or_default();
                info.tokens.record(u.prompt_tokens.into(), u.completion_tokens.into());
                return Ok(Json(converse::response(
                    text,
                    &calls,
                    &done,
                    started.elapsed().as_millis() as u64,
                )));
            }
            Some(ChunkKind::Error(e)) => return Err(e.into()),
            None => {}
        }
    }
    Err(AwsError::new(AwsErrorType::InternalServer, "the model stopped without finishing"))
}

pub async fn converse_stream(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AwsError> {
    let started = Instant::now();
    let (req, permit) = prepare(&state, &info, &model_id, &headers, body, true).await?;
    let inner = state.generator.generate(req).await?;
    let tokens = Arc::clone(&info.tokens);
    // The permit lives as long as the stream does.
    let mut blocks = eventstream::Blocks::default();
    let frames = futures::stream::once(async { eventstream::message_start() }).chain(
        inner.flat_map(move |chunk| {
            let _held = &permit;
            let out: Vec<Bytes> = match chunk.kind {
                Some(ChunkKind::Delta(d)) => {
                    let mut v = Vec::new();
                    if !d.content.is_empty() || d.tool_use.is_none() {
                        v.extend(blocks.text(&d.content));
                    }
                    if let Some(piece) = d.tool_use {
                        v.extend(blocks.tool_use(&piece));
                    }
                    v
                }
                Some(ChunkKind::Done(done)) => {
                    let usage = converse::usage(&done);
                    tokens.record(usage.input_tokens.into(), usage.output_tokens.into());
                    vec![
                        blocks.stop(),
                        eventstream::message_stop(converse::stop_reason(done.done_reason())),
                        eventstream::metadata(
                            usage,
                            converse::Metrics { latency_ms: started.elapsed().as_millis() as u64 },
                        ),
                    ]
                }
                Some(ChunkKind::Error(e)) => {
                    vec![eventstream::exception(AwsErrorType::from_kind(e.kind()), &e.message)]
                }
                None => vec![],
            };
            futures::stream::iter(out)
        }),
    );
    let mut r = Response::new(Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    Ok(r)
}

pub async fn not_found() -> impl IntoResponse {
    AwsError::new(
        AwsErrorType::ResourceNotFound,
        "The requested operation is not supported by this endpoint.",
    )
}

/// InvokeModel for the embedding models (`invoke.rs`).
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, AwsError> {
    let (body, _permit) = admit(&state, &headers, body)?;
    let family = Family::of(&model_id).ok_or_else(|| {
        AwsError::new(AwsErrorType::Validation, "The emulator's InvokeModel serves embedding models (Titan Text Embeddings V2, Cohere Embed v3); use Converse for text models.")
    })?;
    let local = state.settings.embedding_models.get(&model_id).ok_or_else(|| {
        AwsError::new(
            AwsErrorType::ResourceNotFound,
            format!("Model not found: the model identifier '{model_id}' is not served here."),
        )
    })?;
    let trace = Some(contract::TraceContext {
        traceparent: info.trace.header(),
        tracestate: String::new(),
    });
    let answer = match family {
        Family::TitanV2 => {
            let req = invoke::titan_request(&body, local)?;
            invoke::titan_response(
                state.generator.embed(contract::EmbedRequest { trace, ..req }).await?,
            )
        }
        Family::CohereV3 => {
            let (req, texts, by_type) = invoke::cohere_request(&body, local)?;
            invoke::cohere_response(
                state.generator.embed(contract::EmbedRequest { trace, ..req }).await?,
                texts,
                by_type,
            )
        }
    };
    Ok(Json(answer))
}
