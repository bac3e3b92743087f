//! The Lambda Runtime API one execution environment talks to (`AWS_LAMBDA_RUNTIME_API`):
//! `/next` hands out an invocation, `/response` (buffered or streaming) and `/error` end it,
//! `/init/error` reports a failed start.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use tokio::sync::mpsc;

use crate::function::{Current, Instance};
use crate::invocation::{FunctionFailure, Outcome, Sink, StreamEvent, Verdict};

const PREFIX: &str = "/2018-06-01/runtime";
/// Bodies posted to `/error` and `/init/error`.
const ERROR_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(instance: Arc<Instance>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/invocation/next"), get(next))
        .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(response))
        .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
        .route(&format!("{PREFIX}/init/error"), post(init_error))
        .with_state(instance)
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "errorType": error_type, "errorMessage": message })))
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "status": "OK" }))).into_response()
}

async fn next(State(instance): State<Arc<Instance>>) -> Response {
    let shared = Arc::clone(&instance.shared);
    let alive = {
        let mut s = instance.lock();
        if !s.initialized {
            s.initialized = true;
            if let Some(at) = s.spawned_at {
                let cold = at.elapsed();
                tracing::info!(function = %shared.name, instance = instance.index, cold_start_ms = cold.as_secs_f64() * 1000.0, "function environment ready");
                if let Ok(mut c) = shared.cold_starts.lock() {
                    c.push(cold);
                }
            }
        }
        // Asking for the next event ends whatever the runtime left unanswered.
        if let Some(c) = s.current.take() {
            let id = c.request_id.clone();
            c.fail(FunctionFailure::new("Runtime.NoResponse", format!("RequestId: {id} Error: the runtime asked for the next event without answering this one")));
        }
        s.alive.clone()
    };
    let invocation = tokio::select! {
        inv = shared.queue_rx.recv() => match inv {
            Ok(inv) => inv,
            Err(_) => return runtime_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceStopping", "the service is shutting down"),
        },
        _ = alive.cancelled() => return runtime_error(StatusCode::GONE, "EnvironmentGone", "this environment has ended"),
    };
    let deadline = SystemTime::now() + Duration::from_millis(shared.settings.timeout_ms);
    let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let request_id = invocation.request_id.clone();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &request_id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &shared.arn);
    if let Some(t) = &invocation.xray_trace_id {
        put("lambda-runtime-trace-id", t);
    }
    if let Some(c) = &invocation.client_context {
        put("lambda-runtime-client-context", c);
    }
    put("content-type", "application/json");
    let payload = invocation.payload.clone();
    {
        let mut s = instance.lock();
        if s.alive.is_cancelled() {
            // The process died while this request was in flight: the invocation goes back to
            // the queue for another environment.
            drop(s);
            let _ = shared.queue_tx.try_send(invocation);
            return runtime_error(
                StatusCode::GONE,
                "EnvironmentGone",
                "this environment has ended",
            );
        }
        let watchdog = tokio::spawn(Arc::clone(&instance).watch(request_id.clone())).abort_handle();
        s.current = Some(Current {
            request_id,
            sink: Sink::Waiting(invocation.reply),
            _permit: invocation.permit,
            watchdog,
        });
    }
    (StatusCode::OK, headers, payload).into_response()
}

/// Takes the caller's first-reply channel if `id` is the invocation this environment is on
/// and nothing answered it yet, leaving `then` in its place (under the same lock, so a
/// timeout or crash in between finds where to report).
fn take_reply(
    instance: &Instance,
    id: &str,
    then: Sink,
) -> Option<tokio::sync::oneshot::Sender<Outcome>> {
    let mut s = instance.lock();
    let c = s.current.as_mut().filter(|c| c.request_id == id)?;
    if !matches!(c.sink, Sink::Waiting(_)) {
        return None;
    }
    match std::mem::replace(&mut c.sink, then) {
        Sink::Waiting(reply) => Some(reply),
        _ => None,
    }
}

/// Takes the caller's reply channel if `id` is the invocation this environment is on.
fn take_sink(instance: &Instance, id: &str) -> Option<Sink> {
    let mut s = instance.lock();
    match &mut s.current {
        Some(c) if c.request_id == id => Some(std::mem::replace(&mut c.sink, Sink::Closed)),
        _ => None,
    }
}

fn invalid_id() -> Response {
    runtime_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
}

async fn response(
    State(instance): State<Arc<Instance>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let streaming = header("lambda-runtime-function-response-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("streaming"));
    let verdict = Verdict::default();
    let Some(reply) = take_reply(
        &instance,
        &id,
        if streaming { Sink::Streaming(verdict.clone()) } else { Sink::Closed },
    ) else {
        return invalid_id();
    };
    let content_type = header("content-type").unwrap_or_else(|| "application/json".to_owned());
    let shared = &instance.shared;
    if !streaming {
        let limit = shared.max_payload_bytes;
        let result = Limited::new(body, limit).collect().await;
        let answer = match result {
            Ok(collected) => {
                let _ = reply.send(Outcome::Buffered { content_type, body: collected.to_bytes() });
                accepted()
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                );
                let _ = reply.send(Outcome::Failed(FunctionFailure::new(
                    "Function.ResponseSizeTooLarge",
                    message.clone(),
                )));
                runtime_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &message)
            }
            Err(e) => {
                let _ = reply.send(Outcome::Failed(FunctionFailure::exited(
                    &id,
                    &format!("the response was cut: {e}"),
                )));
                runtime_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidResponse",
                    "the response body could not be read",
                )
            }
        };
        instance.finish(&id);
        return answer;
    }

    let (tx, rx) = mpsc::channel(64);
    let _ = reply.send(Outcome::Streaming { content_type, chunks: rx });
    let mut body = body;
    let mut total = 0usize;
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // Whoever ended the process (the watchdog for a timeout, the supervisor for a
                // crash) left its verdict; the cut itself is the verdict when none came yet.
                let failure = verdict.take().unwrap_or_else(|| {
                    FunctionFailure::exited(&id, &format!("the response stream was cut: {e}"))
                });
                if !failed {
                    let _ = tx.send(StreamEvent::Failed(failure)).await;
                }
                failed = true;
                break;
            }
        };
        if failed {
            continue; // keep reading so the runtime is not stuck writing
        }
        match frame.into_data() {
            Ok(data) => {
                total += data.len();
                if total > shared.max_stream_bytes {
                    let message = format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        shared.max_stream_bytes
                    );
                    let _ = tx
                        .send(StreamEvent::Failed(FunctionFailure::new(
                            "Function.ResponseSizeTooLarge",
                            message,
                        )))
                        .await;
                    failed = true;
                } else if !data.is_empty() && tx.send(StreamEvent::Data(data)).await.is_err() {
                    // Waiting on `send` is the stream's flow control. When it fails the caller
                    // has gone: the rest of the answer would be generated for nobody, so the
                    // response is cut (the unread body closes the connection), which makes
                    // the function's writes fail and its upstream calls stop.
                    tracing::info!(function = %shared.name, request_id = %id, "the caller went away; cutting the function's response stream");
                    instance.finish(&id);
                    return runtime_error(
                        StatusCode::GONE,
                        "CallerGone",
                        "the caller of this invocation went away",
                    );
                }
            }
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(failure) = trailer_error(trailers) {
                        let _ = tx.send(StreamEvent::Failed(failure)).await;
                        failed = true;
                    }
                }
            }
        }
    }
    // The body ended cleanly, but `/error` may have been posted meanwhile.
    if let (false, Some(failure)) = (failed, verdict.take()) {
        let _ = tx.send(StreamEvent::Failed(failure)).await;
    }
    instance.finish(&id);
    accepted()
}

/// A mid-stream error reported in the `Lambda-Runtime-Function-Error-*` trailers.
fn trailer_error(trailers: &HeaderMap) -> Option<FunctionFailure> {
    let error_type = trailers.get("lambda-runtime-function-error-type")?.to_str().ok()?.to_owned();
    let body = trailers
        .get("lambda-runtime-function-error-body")
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.as_bytes()).ok())
        .map(Bytes::from)
        .unwrap_or_default();
    Some(FunctionFailure::from_posted(Some(&error_type), body))
}

async fn read_error_body(body: Body) -> Bytes {
    Limited::new(body, ERROR_BODY_LIMIT).collect().await.map(|c| c.to_bytes()).unwrap_or_default()
}

async fn error(
    State(instance): State<Arc<Instance>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_error_body(body).await;
    let Some(sink) = take_sink(&instance, &id) else { return invalid_id() };
    let mut failure = FunctionFailure::from_posted(error_type.as_deref(), body);
    // lambda_runtime sends the generic header value "unhandled"; the body's type says more.
    if failure.error_type.eq_ignore_ascii_case("unhandled") {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&failure.body) {
            if let Some(t) = v.get("errorType").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
                failure.error_type = t.to_owned();
            }
        }
    }
    sink.fail(failure);
    instance.finish(&id);
    accepted()
}

async fn init_error(
    State(instance): State<Arc<Instance>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_error_body(body).await;
    let failure = FunctionFailure::from_posted(error_type.as_deref(), body);
    tracing::warn!(function = %instance.shared.name, instance = instance.index, error_type = %failure.error_type, "function init failed");
    instance.lock().init_error = Some(failure);
    accepted()
}
