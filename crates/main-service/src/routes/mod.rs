//! The HTTP endpoints (one file each) and what they share: reading the request, the trace,
//! and finishing an answer with this hop's timing.

pub mod embed;
pub mod generate;
pub mod health;
pub mod summarize;

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use contract::{ChunkKind, ChunkStream, GenerateResponse, HopTiming};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use telemetry::{RequestInfo, TraceContext};

use crate::codec::{read_body, Encoding};
use crate::error::ServiceError;
use crate::lambda::terminated;
use crate::startup::{AppState, HOP};

/// A request being answered: its encoding, trace and start time.
pub struct Exchange {
    pub started: Instant,
    pub encoding: Encoding,
    pub info: RequestInfo,
}

impl Exchange {
    /// Reads and decodes the body.
    pub async fn read<T: prost::Message + Default + DeserializeOwned>(
        state: &AppState,
        info: RequestInfo,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Exchange, T), ServiceError> {
        let started = Instant::now();
        let encoding = Encoding::of(headers)?;
        let bytes = read_body(body, state.settings.max_body_bytes).await?;
        let msg = encoding.decode(&bytes, state.settings.max_json_depth)?;
        Ok((Exchange { started, encoding, info }, msg))
    }

    /// The trace context sent to the Lambda function: the caller's `traceparent` header, else
    /// the request's own `trace` field, else the trace this request started; this hop is the
    /// parent either way.
    pub fn trace(
        &self,
        headers: &HeaderMap,
        from_body: Option<&contract::TraceContext>,
    ) -> contract::TraceContext {
        let header_valid = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .is_some();
        let ctx = if header_valid {
            None
        } else {
            from_body.and_then(|t| TraceContext::parse(&t.traceparent))
        }
        .unwrap_or_else(|| self.info.trace.clone());
        let tracestate = headers
            .get("tracestate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| from_body.map(|t| t.tracestate.clone()))
            .unwrap_or_default();
        contract::TraceContext { traceparent: ctx.header(), tracestate }
    }

    fn dur_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Adds this hop's timing to a final response and records its token counts.
    fn finish_response(&self, resp: &mut GenerateResponse) {
        let dur_ns = self.dur_ns();
        resp.timings
            .get_or_insert_with(Default::default)
            .hops
            .push(HopTiming { hop: HOP.into(), dur_ns });
        let u = resp.usage.unwrap_or_default();
        self.info.tokens.record(u.prompt_tokens.into(), u.completion_tokens.into());
    }

    /// A whole answer, with `Server-Timing` listing every hop.
    pub fn respond(self, mut resp: GenerateResponse) -> Response {
        self.finish_response(&mut resp);
        let mut r = self.encoding.respond(StatusCode::OK, &resp);
        if let Ok(v) = HeaderValue::from_str(&server_timing(&resp)) {
            r.headers_mut().insert("server-timing", v);
        }
        r
    }

    /// Embeddings, with this hop's timing and `Server-Timing`.
    pub fn respond_embed(self, mut resp: contract::EmbedResponse) -> Response {
        let dur_ns = self.dur_ns();
        let timings = resp.timings.get_or_insert_with(Default::default);
        timings.hops.push(HopTiming { hop: HOP.into(), dur_ns });
        let header = server_timing_of(&timings.hops);
        self.info.tokens.record(resp.prompt_tokens.into(), 0);
        let mut r = self.encoding.respond(StatusCode::OK, &resp);
        if let Ok(v) = HeaderValue::from_str(&header) {
            r.headers_mut().insert("server-timing", v);
        }
        r
    }

    /// A streamed answer: chunks pass as they come, the `done` chunk gets this hop's timing, and
    /// the stream ends with exactly one `done` or `error`.
    pub fn respond_stream(self, chunks: ChunkStream) -> Response {
        let encoding = self.encoding;
        let trace_id = self.info.trace.trace_id.clone();
        let chunks = terminated(chunks).map(move |mut chunk| {
            match &mut chunk.kind {
                Some(ChunkKind::Done(done)) => self.finish_response(done),
                Some(ChunkKind::Error(e)) => tracing::warn!(trace_id = %trace_id, kind = ?e.kind(), error = %e.message, "the stream ended with an error"),
                _ => {}
            }
            chunk
        });
        encoding.respond_stream(Box::pin(chunks))
    }
}

/// `Server-Timing` from the response's hops, as listed there (innermost first):
/// `bedrock;dur=12.3, lambda;dur=15.0, main-service;dur=16.2` (milliseconds).
pub fn server_timing(resp: &GenerateResponse) -> String {
    server_timing_of(resp.timings.as_ref().map(|t| t.hops.as_slice()).unwrap_or_default())
}

fn server_timing_of(hops: &[HopTiming]) -> String {
    hops.iter()
        .filter(|h| {
            !h.hop.is_empty()
                && h.hop
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(|h| format!("{};dur={:.1}", h.hop, h.dur_ns as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(", ")
}
