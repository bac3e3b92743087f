//! Running one generation for a handler: admission, the backend call, and a guard around the
//! stream so that it always ends with exactly one `done` or `error` chunk: on backend
//! failure, on the request timeout, on shutdown, or if the backend's stream just stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::{ChunkKind, ChunkStream, ErrorKind, GenerateResponse, StreamChunk};
use futures::StreamExt;
use telemetry::RequestInfo;

use crate::backend::Caller;
use crate::error::{ApiError, Protocol};
use crate::startup::AppState;

const HOP: &str = "llm-server";

/// The `Server-Timing` value for a finished generation: one entry per hop, outermost first,
/// each with its inclusive duration in milliseconds.
pub fn server_timing(done: &GenerateResponse) -> Option<String> {
    let hops = &done.timings.as_ref()?.hops;
    (!hops.is_empty()).then(|| {
        hops.iter()
            .rev()
            .map(|h| format!("{};dur={:.3}", h.hop, h.dur_ns as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Adds `Server-Timing` to a complete (non-streamed) answer.
pub fn with_server_timing(
    mut response: axum::response::Response,
    done: &GenerateResponse,
) -> axum::response::Response {
    if let Some(v) = server_timing(done).and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// A stream's last object with the timing as a field, since the headers left long ago.
pub fn with_timing_field<T: serde::Serialize>(v: &T, done: &GenerateResponse) -> serde_json::Value {
    let mut value = serde_json::to_value(v).unwrap_or_default();
    if let (Some(obj), Some(t)) = (value.as_object_mut(), server_timing(done)) {
        obj.insert("server_timing".into(), t.into());
    }
    value
}

/// A started generation: the guarded stream, and when it started (for `total_duration`).
pub struct Started {
    pub stream: ChunkStream,
    pub started: Instant,
}

pub async fn start(
    state: &Arc<AppState>,
    protocol: Protocol,
    info: &RequestInfo,
    caller: &Caller,
    mut req: contract::GenerateRequest,
) -> Result<Started, ApiError> {
    let started = Instant::now();
    let permit = state.limiter.acquire().await.map_err(|_| {
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
    let inner =
        state.backend.generate(req, caller).await.map_err(|e| ApiError::new(protocol, e))?;
    state.metrics.in_flight.inc();
    let guard = Guard {
        state: Arc::clone(state),
        tokens: Arc::clone(&info.tokens),
        _permit: permit,
        finished: false,
        first_token: None,
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.settings.request_timeout_secs);
    let shutdown = state.hard_stop.clone();
    let stream = futures::stream::unfold((inner, guard), move |(mut inner, mut guard)| {
        let shutdown = shutdown.clone();
        async move {
            if guard.finished {
                return None;
            }
            let next = tokio::select! {
                chunk = inner.next() => chunk,
                _ = tokio::time::sleep_until(deadline) => Some(StreamChunk::error(contract::Error::new(ErrorKind::Timeout, "request timed out"))),
                _ = shutdown.cancelled() => Some(StreamChunk::error(contract::Error::new(ErrorKind::Overloaded, "server is shutting down"))),
            };
            let mut chunk = next.unwrap_or_else(|| {
                StreamChunk::error(contract::Error::new(
                    ErrorKind::Upstream,
                    "the backend ended the stream without finishing it",
                ))
            });
            match &mut chunk.kind {
                Some(ChunkKind::Delta(_)) => {
                    guard.first_token.get_or_insert_with(Instant::now);
                }
                Some(ChunkKind::Done(done)) => {
                    let timings = done.timings.get_or_insert_with(Default::default);
                    // Remote backends (Bedrock, the chain) do not report prompt and decode
                    // times; measure them here: until the first token, then until the end. A
                    // whole answer arrives at once, so all of its time counts as generation.
                    if timings.prompt_eval_ns == 0 && timings.eval_ns == 0 {
                        let now = Instant::now();
                        let first = guard.first_token.unwrap_or(started);
                        timings.prompt_eval_ns = first.duration_since(started).as_nanos() as u64;
                        timings.eval_ns = now.duration_since(first).as_nanos() as u64;
                    }
                    timings.hops.push(contract::HopTiming {
                        hop: HOP.into(),
                        dur_ns: started.elapsed().as_nanos() as u64,
                    });
                }
                _ => {}
            }
            match &chunk.kind {
                Some(ChunkKind::Done(done)) => {
                    guard.finish(Some(done));
                }
                Some(ChunkKind::Error(_)) | None => guard.finish(None),
                Some(ChunkKind::Delta(_)) => {}
            }
            Some((chunk, (inner, guard)))
        }
    });
    Ok(Started { stream: Box::pin(stream), started })
}

/// Bookkeeping that must happen exactly once per generation, however it ends.
struct Guard {
    state: Arc<AppState>,
    tokens: Arc<telemetry::TokenCounts>,
    _permit: crate::limits::Permit,
    finished: bool,
    /// When the first text arrived, for backends that do not time their own prompt phase.
    first_token: Option<Instant>,
}

impl Guard {
    fn finish(&mut self, done: Option<&GenerateResponse>) {
        self.finished = true;
        if let Some(usage) = done.and_then(|d| d.usage) {
            self.tokens.record(usage.prompt_tokens.into(), usage.completion_tokens.into());
            self.state
                .metrics
                .tokens
                .with_label_values(&["prompt"])
                .inc_by(usage.prompt_tokens.into());
            self.state
                .metrics
                .tokens
                .with_label_values(&["completion"])
                .inc_by(usage.completion_tokens.into());
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.state.metrics.in_flight.dec();
    }
}

/// Tool calls assembled from their streamed pieces, in the order they started.
#[derive(Debug, Default)]
pub struct ToolCalls {
    calls: Vec<(u32, contract::ToolUse)>,
}

impl ToolCalls {
    pub fn push(&mut self, d: contract::ToolUseDelta) {
        match self.calls.iter_mut().find(|(i, _)| *i == d.index) {
            Some((_, call)) => {
                if call.id.is_empty() {
                    call.id = d.id;
                }
                if call.name.is_empty() {
                    call.name = d.name;
                }
                call.input_json.push_str(&d.input_json);
            }
            None => self.calls.push((
                d.index,
                contract::ToolUse { id: d.id, name: d.name, input_json: d.input_json },
            )),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn take(&mut self) -> Vec<contract::ToolUse> {
        std::mem::take(&mut self.calls).into_iter().map(|(_, c)| c).collect()
    }
}

/// Puts streamed tool calls into the final message, where complete answers carry them.
pub fn attach_tool_calls(done: &mut GenerateResponse, calls: Vec<contract::ToolUse>) {
    if calls.is_empty() {
        return;
    }
    let message = done.message.get_or_insert_with(|| contract::Message::assistant(""));
    message.blocks.extend(calls.into_iter().map(contract::ContentBlock::tool_use));
}

/// Reads a whole generation for a non-streaming answer: the text and the final record (its
/// message carrying any tool calls), or the error that ended it.
pub async fn collect(
    mut stream: ChunkStream,
) -> Result<(String, GenerateResponse), contract::Error> {
    let mut text = String::new();
    let mut calls = ToolCalls::default();
    while let Some(chunk) = stream.next().await {
        match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                text.push_str(&d.content);
                if let Some(t) = d.tool_use {
                    calls.push(t);
                }
            }
            Some(ChunkKind::Done(mut done)) => {
                // A backend may deliver the whole answer in the final message instead of deltas.
                if text.is_empty() {
                    if let Some(m) = &done.message {
                        text.push_str(&m.content);
                    }
                }
                attach_tool_calls(&mut done, calls.take());
                return Ok((text, done));
            }
            Some(ChunkKind::Error(e)) => return Err(e),
            None => {}
        }
    }
    Err(contract::Error::new(
        ErrorKind::Upstream,
        "the backend ended the stream without finishing it",
    ))
}
