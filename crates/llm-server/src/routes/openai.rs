//! OpenAI-compatible API under `/v1`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use contract::ChunkKind;
use futures::StreamExt;
use telemetry::RequestInfo;

use super::{sse, streaming};
use crate::backend::Caller;
use crate::edge;
use crate::error::{body_rejection, ApiError, Protocol};
use crate::generation::{self, collect, with_server_timing, with_timing_field, Started};
use crate::openai::{convert, types};
use crate::startup::AppState;

const P: Protocol = Protocol::OpenAi;
const SSE: &str = "text/event-stream";

fn err(e: contract::Error) -> ApiError {
    ApiError::new(P, e)
}

fn id(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

fn done_event() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::ChatCompletionRequest =
        edge::parse(&state.settings, P, b.map_err(|r| body_rejection(P, r))?).await?;
    edge::model(&state.settings, P, &req.model)?;
    edge::messages(&state.settings, P, req.messages.len())?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let model = req.model.clone();
    let creq = convert::chat_to_contract(req).map_err(err)?;
    let stream_out = creq.stream;
    let Started { stream, .. } = generation::start(&state, P, &info, &caller, creq).await?;
    let (id, created) = (id("chatcmpl"), chrono::Utc::now().timestamp());
    if !stream_out {
        let (text, done) = collect(stream).await.map_err(err)?;
        return Ok(with_server_timing(
            Json(convert::chat_completion(&id, created, &model, text, &done)).into_response(),
            &done,
        ));
    }
    let first = sse(&convert::chat_chunk(
        &id,
        created,
        &model,
        types::Delta { role: Some("assistant"), content: Some(String::new()), tool_calls: None },
        None,
    ));
    let events = stream.flat_map(move |chunk| {
        let out: Vec<Bytes> = match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                let mut v = Vec::with_capacity(1);
                if !d.content.is_empty() || d.tool_use.is_none() {
                    v.push(sse(&convert::chat_chunk(
                        &id,
                        created,
                        &model,
                        types::Delta { role: None, content: Some(d.content), tool_calls: None },
                        None,
                    )));
                }
                if let Some(piece) = d.tool_use {
                    v.push(sse(&convert::chat_chunk(
                        &id,
                        created,
                        &model,
                        convert::tool_call_delta(piece),
                        None,
                    )));
                }
                v
            }
            Some(ChunkKind::Done(done)) => {
                let mut v = vec![sse(&with_timing_field(
                    &convert::chat_chunk(
                        &id,
                        created,
                        &model,
                        types::Delta::default(),
                        Some(convert::finish_reason(&done)),
                    ),
                    &done,
                ))];
                if include_usage {
                    v.push(sse(&convert::usage_chunk(&id, created, &model, &done)));
                }
                v.push(done_event());
                v
            }
            // No [DONE] after an error: clients must not take a cut stream for a complete one.
            Some(ChunkKind::Error(e)) => vec![sse(&ApiError::body(P, &e))],
            None => vec![],
        };
        futures::stream::iter(out.into_iter().map(Ok))
    });
    Ok(streaming(SSE, futures::stream::once(async move { Ok(first) }).chain(events)))
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::CompletionRequest =
        edge::parse(&state.settings, P, b.map_err(|r| body_rejection(P, r))?).await?;
    edge::model(&state.settings, P, &req.model)?;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let model = req.model.clone();
    let creq = convert::completion_to_contract(req).map_err(err)?;
    let stream_out = creq.stream;
    let Started { stream, .. } = generation::start(&state, P, &info, &caller, creq).await?;
    let (id, created) = (id("cmpl"), chrono::Utc::now().timestamp());
    if !stream_out {
        let (text, done) = collect(stream).await.map_err(err)?;
        return Ok(with_server_timing(
            Json(convert::completion(
                &id,
                created,
                &model,
                text,
                Some(convert::finish_reason(&done)),
                Some(convert::usage(&done)),
            ))
            .into_response(),
            &done,
        ));
    }
    let events = stream.flat_map(move |chunk| {
        let out: Vec<Bytes> = match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                vec![sse(&convert::completion(&id, created, &model, d.content, None, None))]
            }
            Some(ChunkKind::Done(done)) => {
                let mut v = vec![sse(&with_timing_field(
                    &convert::completion(
                        &id,
                        created,
                        &model,
                        String::new(),
                        Some(convert::finish_reason(&done)),
                        None,
                    ),
                    &done,
                ))];
                if include_usage {
                    let mut u = convert::completion(
                        &id,
                        created,
                        &model,
                        String::new(),
                        None,
                        Some(convert::usage(&done)),
                    );
                    u.choices.clear();
                    v.push(sse(&u));
                }
                v.push(done_event());
                v
            }
            Some(ChunkKind::Error(e)) => vec![sse(&ApiError::body(P, &e))],
            None => vec![],
        };
        futures::stream::iter(out.into_iter().map(Ok))
    });
    Ok(streaming(SSE, events))
}

pub async fn models(
    State(state): State<Arc<AppState>>,
) -> Result<Json<types::ModelList>, ApiError> {
    let models = state.backend.list_models().await.map_err(err)?;
    Ok(Json(types::ModelList { object: "list", data: models.iter().map(convert::model).collect() }))
}

pub async fn model(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<types::Model>, ApiError> {
    let models = state.backend.list_models().await.map_err(err)?;
    models
        .iter()
        .find(|m| m.name == name || m.name.strip_suffix(":latest") == Some(name.as_str()))
        .map(|m| Json(convert::model(m)))
        .ok_or_else(|| {
            err(contract::Error::new(
                contract::ErrorKind::ModelNotFound,
                format!("The model '{name}' does not exist"),
            ))
        })
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::openai::embed::EmbeddingsRequest =
        edge::parse(&state.settings, P, b.map_err(|r| body_rejection(P, r))?).await?;
    edge::model(&state.settings, P, &req.model)?;
    let model = req.model.clone();
    let (request, encoding) = crate::openai::embed::to_contract(req).map_err(err)?;
    let out = crate::embedding::run(&state, P, &info, &caller, request).await?;
    Ok(Json(crate::openai::embed::response(&model, out, encoding)).into_response())
}
