//! Ollama's native API.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use chrono::Utc;
use contract::ChunkKind;
use futures::StreamExt;
use telemetry::RequestInfo;

use super::{ndjson, streaming};
use crate::backend::Caller;
use crate::edge;
use crate::error::{body_rejection, ApiError, Protocol};
use crate::generation::{self, collect, with_server_timing, with_timing_field, Started, ToolCalls};
use crate::ollama::{convert, types};
use crate::startup::AppState;

const P: Protocol = Protocol::Ollama;
const NDJSON: &str = "application/x-ndjson";

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| body_rejection(P, r))
}

fn err(e: contract::Error) -> ApiError {
    ApiError::new(P, e)
}

/// Which Ollama endpoint a generation answers: they differ only in the line shape.
#[derive(Clone, Copy)]
enum Shape {
    Generate,
    Chat,
}

impl Shape {
    fn chunk(self, model: &str, text: String) -> Bytes {
        match self {
            Shape::Generate => ndjson(&convert::generate_chunk(model, text, Utc::now())),
            Shape::Chat => ndjson(&convert::chat_chunk(model, text, Utc::now())),
        }
    }

    fn last(
        self,
        model: &str,
        text: String,
        done: &contract::GenerateResponse,
        total_ns: u64,
    ) -> Response {
        match self {
            Shape::Generate => with_server_timing(
                Json(convert::generate_final(model, text, done, total_ns, Utc::now()))
                    .into_response(),
                done,
            ),
            Shape::Chat => with_server_timing(
                Json(convert::chat_final(model, text, done, total_ns, Utc::now())).into_response(),
                done,
            ),
        }
    }

    fn last_line(self, model: &str, done: &contract::GenerateResponse, total_ns: u64) -> Bytes {
        match self {
            Shape::Generate => ndjson(&with_timing_field(
                &convert::generate_final(model, String::new(), done, total_ns, Utc::now()),
                done,
            )),
            Shape::Chat => ndjson(&with_timing_field(
                &convert::chat_final(model, String::new(), done, total_ns, Utc::now()),
                done,
            )),
        }
    }

    fn loaded(self, model: &str, reason: &str) -> Response {
        match self {
            Shape::Generate => {
                Json(convert::load_generate(model, reason, Utc::now())).into_response()
            }
            Shape::Chat => Json(convert::load_chat(model, reason, Utc::now())).into_response(),
        }
    }
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::GenerateRequest = edge::parse(&state.settings, P, body(b)?).await?;
    edge::model(&state.settings, P, &req.model)?;
    let model = req.model.clone();
    let unload = convert::keep_alive_is_zero(&req.keep_alive).map_err(err)?;
    let contract_req = convert::generate_to_contract(req).map_err(err)?;
    respond(state, info, caller, model, contract_req, unload, Shape::Generate).await
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::ChatRequest = edge::parse(&state.settings, P, body(b)?).await?;
    edge::model(&state.settings, P, &req.model)?;
    edge::messages(&state.settings, P, req.messages.len())?;
    let model = req.model.clone();
    let unload = convert::keep_alive_is_zero(&req.keep_alive).map_err(err)?;
    let contract_req = convert::chat_to_contract(req).map_err(err)?;
    respond(state, info, caller, model, contract_req, unload, Shape::Chat).await
}

/// `unload` is `keep_alive: 0`: the model leaves memory once this request is served (a
/// generation already started runs to its end), which is also how `ollama stop` works.
async fn respond(
    state: Arc<AppState>,
    info: RequestInfo,
    caller: Caller,
    model: String,
    req: Option<contract::GenerateRequest>,
    unload: bool,
    shape: Shape,
) -> Result<Response, ApiError> {
    let Some(req) = req else {
        if unload {
            state.backend.unload(&model).await.map_err(err)?;
            return Ok(shape.loaded(&model, "unload"));
        }
        state.backend.load(&model).await.map_err(err)?;
        return Ok(shape.loaded(&model, "load"));
    };
    let stream_out = req.stream;
    let Started { stream, started } = generation::start(&state, P, &info, &caller, req).await?;
    if unload {
        state.backend.unload(&model).await.map_err(err)?;
    }
    if !stream_out {
        let (text, done) = collect(stream).await.map_err(err)?;
        return Ok(shape.last(&model, text, &done, started.elapsed().as_nanos() as u64));
    }
    // Ollama sends each tool call whole (arguments as an object): pieces are gathered and
    // go out in one line just before the last.
    let mut calls = ToolCalls::default();
    let lines = stream.map(move |chunk| {
        Ok(match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                if let Some(piece) = d.tool_use {
                    calls.push(piece);
                }
                if d.content.is_empty() {
                    Bytes::new()
                } else {
                    shape.chunk(&model, d.content)
                }
            }
            Some(ChunkKind::Done(done)) => {
                let last = shape.last_line(&model, &done, started.elapsed().as_nanos() as u64);
                if calls.is_empty() {
                    last
                } else {
                    let mut both =
                        ndjson(&convert::chat_tool_calls_chunk(&model, &calls.take(), Utc::now()))
                            .to_vec();
                    both.extend_from_slice(&last);
                    Bytes::from(both)
                }
            }
            Some(ChunkKind::Error(e)) => ndjson(&types::ErrorResponse { error: e.message }),
            None => Bytes::new(),
        })
    });
    Ok(streaming(NDJSON, lines))
}

pub async fn tags(
    State(state): State<Arc<AppState>>,
) -> Result<Json<types::ListResponse>, ApiError> {
    let models = state.backend.list_models().await.map_err(err)?;
    Ok(Json(types::ListResponse { models: models.iter().map(convert::list_model).collect() }))
}

pub async fn ps(
    State(state): State<Arc<AppState>>,
) -> Result<Json<types::ProcessResponse>, ApiError> {
    let models = state.backend.running().await.map_err(err)?;
    Ok(Json(types::ProcessResponse { models: models.iter().map(convert::process_model).collect() }))
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<types::ShowResponse>, ApiError> {
    let req: types::ShowRequest = edge::parse(&state.settings, P, body(b)?).await?;
    let model = if req.model.is_empty() { req.name } else { req.model };
    edge::model(&state.settings, P, &model)?;
    if model.is_empty() {
        return Err(err(contract::Error::new(
            contract::ErrorKind::InvalidRequest,
            "model is required",
        )));
    }
    let details = state.backend.show(&model).await.map_err(err)?;
    Ok(Json(convert::show(&details)))
}

pub async fn pull(
    State(state): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: types::PullRequest = edge::parse(&state.settings, P, body(b)?).await?;
    let model = if req.model.is_empty() { req.name } else { req.model };
    edge::model(&state.settings, P, &model)?;
    if model.is_empty() {
        return Err(err(contract::Error::new(
            contract::ErrorKind::InvalidRequest,
            "model is required",
        )));
    }
    let events = state.backend.pull(&model).await.map_err(err)?;
    let to_line = |e: Result<crate::backend::PullEvent, contract::Error>| match e {
        Ok(p) => types::ProgressResponse {
            status: p.status,
            digest: p.digest,
            total: p.total,
            completed: p.completed,
        },
        Err(e) => types::ProgressResponse {
            status: format!("error: {}", e.message),
            digest: None,
            total: None,
            completed: None,
        },
    };
    if req.stream == Some(false) {
        let all: Vec<_> = events.collect().await;
        if let Some(Err(e)) = all.iter().find(|e| e.is_err()) {
            return Err(err(e.clone()));
        }
        return Ok(Json(types::ProgressResponse {
            status: "success".into(),
            digest: None,
            total: None,
            completed: None,
        })
        .into_response());
    }
    let lines = events.map(move |e| {
        Ok(match e {
            Err(e) => ndjson(&types::ErrorResponse { error: e.message }),
            ok => ndjson(&to_line(ok)),
        })
    });
    Ok(streaming(NDJSON, lines))
}

/// `POST /api/embed`. No input is Ollama's load request (an empty `embeddings` list back).
pub async fn embed(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req: crate::ollama::embed::EmbedRequest = edge::parse(&state.settings, P, body(b)?).await?;
    edge::model(&state.settings, P, &req.model)?;
    let model = req.model.clone();
    let unload = convert::keep_alive_is_zero(&req.keep_alive).map_err(err)?;
    let request = crate::ollama::embed::embed_to_contract(req).map_err(err)?;
    let out = match request {
        Some(request) => crate::embedding::run(&state, P, &info, &caller, request).await?,
        None => {
            state.backend.load(&model).await.map_err(err)?;
            contract::EmbedResponse { model: model.clone(), ..Default::default() }
        }
    };
    if unload {
        state.backend.unload(&model).await.map_err(err)?;
    }
    Ok(Json(crate::ollama::embed::embed_response(&model, out, started.elapsed().as_nanos() as u64))
        .into_response())
}

/// `POST /api/embeddings`, the older endpoint: one `prompt`, one `embedding`.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(info): Extension<RequestInfo>,
    Extension(caller): Extension<Caller>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: crate::ollama::embed::EmbeddingsRequest =
        edge::parse(&state.settings, P, body(b)?).await?;
    edge::model(&state.settings, P, &req.model)?;
    let model = req.model.clone();
    let unload = convert::keep_alive_is_zero(&req.keep_alive).map_err(err)?;
    let embedding = match crate::ollama::embed::embeddings_to_contract(req).map_err(err)? {
        Some(request) => {
            let out = crate::embedding::run(&state, P, &info, &caller, request).await?;
            out.embeddings.into_iter().next().map(|e| e.values).unwrap_or_default()
        }
        None => {
            state.backend.load(&model).await.map_err(err)?;
            Vec::new()
        }
    };
    if unload {
        state.backend.unload(&model).await.map_err(err)?;
    }
    Ok(Json(crate::ollama::embed::EmbeddingsResponse { embedding }).into_response())
}
