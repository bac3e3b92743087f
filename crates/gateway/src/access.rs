//! The access log: one JSON line per request with API Gateway's `$context` field names, written
//! when the response body has been fully sent (or the client went away), so streamed responses
//! log their real length and latency. Keys are logged only as their id.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::startup::HOP;

#[derive(Debug)]
pub struct AccessLog {
    pub request_id: String,
    pub extended_request_id: String,
    pub ip: IpAddr,
    /// `$context.requestTime`, in CLF format.
    pub request_time: String,
    pub http_method: String,
    /// The matched resource (`/{proxy+}`), or `-` when nothing matched.
    pub resource_path: String,
    pub path: String,
    pub status: u16,
    pub protocol: String,
    pub integration_latency: Option<Duration>,
    pub api_key_id: Option<String>,
    pub trace_id: String,
    /// The `traceparent` sent to the integration (this hop's span).
    pub traceparent: String,
    pub started: Instant,
    pub response_length: u64,
    logged: bool,
}

impl AccessLog {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: String,
        extended_request_id: String,
        ip: IpAddr,
        request_time: String,
        http_method: String,
        path: String,
        protocol: String,
        trace_id: String,
        traceparent: String,
        started: Instant,
    ) -> Self {
        AccessLog {
            request_id,
            extended_request_id,
            ip,
            request_time,
            http_method,
            resource_path: "-".into(),
            path,
            status: 0,
            protocol,
            integration_latency: None,
            api_key_id: None,
            trace_id,
            traceparent,
            started,
            response_length: 0,
            logged: false,
        }
    }

    fn emit(&mut self, outcome: &'static str) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        let response_latency = self.started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "access",
            hop = HOP,
            trace_id = %self.trace_id,
            request_id = %self.request_id,
            method = %self.http_method,
            route = %self.path,
            status = self.status,
            latency_ms = response_latency,
            outcome,
            requestId = %self.request_id,
            extendedRequestId = %self.extended_request_id,
            ip = %self.ip,
            requestTime = %self.request_time,
            httpMethod = %self.http_method,
            resourcePath = %self.resource_path,
            path = %self.path,
            protocol = %self.protocol,
            responseLength = self.response_length,
            integrationLatency = self.integration_latency.map(|d| d.as_millis() as u64),
            responseLatency = response_latency.round() as u64,
            apiKeyId = self.api_key_id.as_deref().unwrap_or("-"),
            traceparent = %self.traceparent,
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    /// The response body, counted and logged when it ends.
    pub struct LoggedBody {
        #[pin]
        inner: Body,
        log: AccessLog,
    }
    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the end: the client went away mid-response (an empty body may
            // never be polled at all, and is complete).
            let this = this.project();
            let outcome = if http_body::Body::is_end_stream(&*this.inner) { "complete" } else { "client_closed" };
            this.log.emit(outcome);
        }
    }
}

impl LoggedBody {
    pub fn new(inner: Body, log: AccessLog) -> Self {
        LoggedBody { inner, log }
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
            Poll::Ready(None) => this.log.emit("complete"),
            Poll::Ready(Some(Err(_))) => this.log.emit("body_error"),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.log.response_length += data.len() as u64;
                }
                // Servers stop polling a body that reports its end, so a fixed-size body
                // completes here rather than at `None`.
                if this.inner.is_end_stream() {
                    this.log.emit("complete");
                }
            }
            Poll::Pending => {}
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
