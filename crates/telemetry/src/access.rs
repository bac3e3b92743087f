//! The access log: one JSON line per request, written when the response body has been fully
//! sent or the client went away. Prompt bodies and keys never appear in it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http_body::{Frame, SizeHint};

use crate::trace::TraceContext;

/// Token counts a handler fills in for the access log.
#[derive(Debug, Default)]
pub struct TokenCounts {
    pub prompt: AtomicU64,
    pub completion: AtomicU64,
}

impl TokenCounts {
    pub fn record(&self, prompt: u64, completion: u64) {
        self.prompt.store(prompt, Ordering::Relaxed);
        self.completion.store(completion, Ordering::Relaxed);
    }
}

/// Per-request facts handlers can read from the request extensions.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub trace: TraceContext,
    pub request_id: String,
    pub tokens: Arc<TokenCounts>,
    /// The id (never the key) of the API key the caller authenticated with, for the log line.
    pub key_id: Arc<OnceLock<String>>,
}

/// Axum middleware: accepts or starts the trace, tags the response with `traceparent` and
/// `x-request-id`, and logs when the body ends. Use with
/// `axum::middleware::from_fn_with_state(hop_name, access_log)`.
pub async fn access_log(
    axum::extract::State(hop): axum::extract::State<&'static str>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let trace =
        TraceContext::from_header(req.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| trace.span_id.clone());
    let tokens = Arc::new(TokenCounts::default());
    let key_id = Arc::new(OnceLock::new());
    let info = RequestInfo {
        trace: trace.clone(),
        request_id: request_id.clone(),
        tokens: Arc::clone(&tokens),
        key_id: Arc::clone(&key_id),
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(info);
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&trace.header()) {
        headers.insert("traceparent", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let line = LogLine {
        hop,
        method,
        path,
        status,
        trace_id: trace.trace_id,
        request_id,
        started,
        tokens,
        key_id,
        logged: false,
    };
    response.map(|body| Body::new(LoggedBody { inner: body, line }))
}

struct LogLine {
    hop: &'static str,
    method: String,
    path: String,
    status: u16,
    trace_id: String,
    request_id: String,
    started: Instant,
    tokens: Arc<TokenCounts>,
    key_id: Arc<OnceLock<String>>,
    logged: bool,
}

impl LogLine {
    fn emit(&mut self, outcome: &'static str) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        tracing::info!(
            target: "access",
            hop = self.hop,
            trace_id = %self.trace_id,
            request_id = %self.request_id,
            method = %self.method,
            route = %self.path,
            status = self.status,
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            prompt_tokens = self.tokens.prompt.load(Ordering::Relaxed),
            completion_tokens = self.tokens.completion.load(Ordering::Relaxed),
            api_key_id = self.key_id.get().map_or("-", String::as_str),
            outcome,
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    struct LoggedBody {
        #[pin]
        inner: Body,
        line: LogLine,
    }
    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the end: the client went away mid-response.
            this.project().line.emit("client_closed");
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let poll = this.inner.as_mut().poll_frame(cx);
        match &poll {
            Poll::Ready(None) => this.line.emit("complete"),
            Poll::Ready(Some(Err(_))) => this.line.emit("body_error"),
            // Servers stop polling a body that reports its end, so a fixed-size body
            // completes here rather than at `None`.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.line.emit("complete"),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
