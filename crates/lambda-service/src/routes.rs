//! The Lambda service API: Invoke, InvokeWithResponseStream, and enough of GetFunction /
//! ListFunctions for clients and health checks.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::errors::ApiError;
use crate::eventstream;
use crate::function::Function;
use crate::invocation::{FunctionFailure, Invocation, Outcome, StreamEvent};
use crate::startup::AppState;

#[derive(Deserialize, Default)]
pub struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// `name`, `name:qualifier`, `123456789012:function:name` or the full ARN.
fn parse_name(raw: &str) -> (&str, Option<&str>) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => (name, None),
        ["arn", _, "lambda", _, _, "function", name, q] => (name, Some(q)),
        [_, "function", name] => (name, None),
        [_, "function", name, q] => (name, Some(q)),
        [name, q] => (name, Some(q)),
        _ => (raw, None),
    }
}

impl AppState {
    fn resolve(&self, raw: &str, qualifier: Option<&str>) -> Result<Arc<Function>, ApiError> {
        let (name, q) = parse_name(raw);
        let unqualified = format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.settings.region, self.settings.account_id
        );
        let function = self
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::function_not_found(&unqualified))?;
        match q.or(qualifier) {
            None | Some("$LATEST") => Ok(function),
            Some(other) => Err(ApiError::function_not_found(&format!("{unqualified}:{other}"))),
        }
    }
}

async fn read_payload(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::request_too_large(limit))
        }
        Err(e) => return Err(ApiError::invalid_content(e)),
    };
    // Lambda only accepts JSON events; an empty body is the empty event.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(ApiError::invalid_content)?;
    Ok(bytes)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// An X-Ray trace header for the invocation: the caller's, or a new root.
fn xray_trace_id(headers: &HeaderMap) -> String {
    header(headers, "x-amzn-trace-id").unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("Root=1-{secs:08x}-{};Parent={};Sampled=0", &id[..24], &id[16..32])
    })
}

enum Mode {
    Sync,
    Event,
    DryRun,
}

fn invocation_type(headers: &HeaderMap, streaming: bool) -> Result<Mode, ApiError> {
    match header(headers, "x-amz-invocation-type").as_deref() {
        None | Some("RequestResponse") => Ok(Mode::Sync),
        Some("DryRun") => Ok(Mode::DryRun),
        Some("Event") if !streaming => Ok(Mode::Event),
        Some(other) => {
            Err(ApiError::invalid_parameter(format!("Unsupported invocation type: {other}")))
        }
    }
}

/// Admits and queues an invocation; the receiver gets the function's first answer.
fn start(
    function: &Function,
    payload: Bytes,
    headers: &HeaderMap,
) -> Result<(String, oneshot::Receiver<Outcome>), ApiError> {
    let permit = function.try_admit().ok_or_else(ApiError::too_many_requests)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let (reply, outcome) = oneshot::channel();
    function.submit(Invocation {
        request_id: request_id.clone(),
        payload,
        xray_trace_id: Some(xray_trace_id(headers)),
        client_context: header(headers, "x-amz-client-context"),
        reply,
        permit,
    });
    Ok((request_id, outcome))
}

fn lambda_headers(response: &mut Response, request_id: &str) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    h.insert("X-Amz-Executed-Version", HeaderValue::from_static("$LATEST"));
}

fn log_outcome(function: &Function, request_id: &str, started: Instant, error_type: Option<&str>) {
    tracing::info!(
        function = %function.shared.name,
        request_id = %request_id,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        function_error = error_type.unwrap_or(""),
        "invocation"
    );
}

/// `[lambda_service.faults]`: the service's own error instead of running the function.
fn injected_fault(app: &AppState) -> Result<(), ApiError> {
    app.faults.next().map_or(Ok(()), Err)
}

/// `POST /2015-03-31/functions/{name}/invocations`
pub async fn invoke(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let function = app.resolve(&name, q.qualifier.as_deref())?;
    let mode = invocation_type(&headers, false)?;
    let payload = read_payload(body, app.settings.max_payload_bytes).await?;
    if !matches!(mode, Mode::DryRun) {
        injected_fault(&app)?;
    }
    match mode {
        Mode::DryRun => return Ok(StatusCode::NO_CONTENT.into_response()),
        Mode::Event => {
            let (request_id, outcome) = start(&function, payload, &headers)?;
            let (f, id, started) = (Arc::clone(&function), request_id.clone(), Instant::now());
            tokio::spawn(async move {
                let error = match outcome.await {
                    Ok(Outcome::Failed(failure)) => Some(failure.error_type),
                    _ => None,
                };
                log_outcome(&f, &id, started, error.as_deref());
            });
            let mut r = StatusCode::ACCEPTED.into_response();
            lambda_headers(&mut r, &request_id);
            return Ok(r);
        }
        Mode::Sync => {}
    }
    let started = Instant::now();
    let (request_id, outcome) = start(&function, payload, &headers)?;
    let outcome = outcome.await.map_err(|_| ApiError::service("the invocation was lost"))?;
    let limit = app.settings.max_payload_bytes;
    let result: Result<Bytes, FunctionFailure> = match outcome {
        Outcome::Buffered { body, .. } => Ok(body),
        Outcome::Failed(failure) => Err(failure),
        // A streaming function invoked synchronously: its whole answer, within the sync limit.
        Outcome::Streaming { mut chunks, .. } => {
            let mut buf = BytesMut::new();
            let mut result = None;
            while let Some(event) = chunks.recv().await {
                match event {
                    StreamEvent::Data(d) if buf.len() + d.len() <= limit => {
                        buf.extend_from_slice(&d)
                    }
                    StreamEvent::Data(_) => {
                        result = Some(Err(FunctionFailure::new("Function.ResponseSizeTooLarge", format!("Response payload size exceeded maximum allowed payload size ({limit} bytes)."))));
                        break;
                    }
                    StreamEvent::Failed(f) => {
                        result = Some(Err(f));
                        break;
                    }
                }
            }
            result.unwrap_or(Ok(buf.freeze()))
        }
    };
    let mut response = match &result {
        Ok(body) => {
            (StatusCode::OK, [("content-type", "application/json")], body.clone()).into_response()
        }
        Err(failure) => {
            let mut r =
                (StatusCode::OK, [("content-type", "application/json")], failure.body.clone())
                    .into_response();
            r.headers_mut().insert("X-Amz-Function-Error", HeaderValue::from_static("Unhandled"));
            r
        }
    };
    log_outcome(
        &function,
        &request_id,
        started,
        result.as_ref().err().map(|f| f.error_type.as_str()),
    );
    lambda_headers(&mut response, &request_id);
    Ok(response)
}

/// `POST /2021-11-15/functions/{name}/response-streaming-invocations`
pub async fn invoke_with_response_stream(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let function = app.resolve(&name, q.qualifier.as_deref())?;
    let mode = invocation_type(&headers, true)?;
    let payload = read_payload(body, app.settings.max_payload_bytes).await?;
    if let Mode::DryRun = mode {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    injected_fault(&app)?;
    let started = Instant::now();
    let (request_id, outcome) = start(&function, payload, &headers)?;
    let outcome = outcome.await.map_err(|_| ApiError::service("the invocation was lost"))?;
    let (content_type, frames): (String, futures::stream::BoxStream<'static, Bytes>) = match outcome
    {
        Outcome::Buffered { content_type, body } => {
            log_outcome(&function, &request_id, started, None);
            (
                content_type,
                futures::stream::iter([
                    eventstream::payload_chunk(&body),
                    eventstream::invoke_complete(None),
                ])
                .boxed(),
            )
        }
        Outcome::Failed(f) => {
            log_outcome(&function, &request_id, started, Some(&f.error_type));
            (
                "application/json".to_owned(),
                futures::stream::iter([eventstream::invoke_complete(Some((
                    &f.error_type,
                    &f.error_message,
                )))])
                .boxed(),
            )
        }
        Outcome::Streaming { content_type, chunks } => {
            let (function, id) = (Arc::clone(&function), request_id.clone());
            // Chunks until the first failure; the failure or a clean end closes the stream.
            let frames = futures::stream::unfold((chunks, false), move |(mut chunks, done)| {
                let (function, id) = (Arc::clone(&function), id.clone());
                async move {
                    if done {
                        return None;
                    }
                    match chunks.recv().await {
                        Some(StreamEvent::Data(d)) => {
                            Some((eventstream::payload_chunk(&d), (chunks, false)))
                        }
                        Some(StreamEvent::Failed(f)) => {
                            log_outcome(&function, &id, started, Some(&f.error_type));
                            Some((
                                eventstream::invoke_complete(Some((
                                    &f.error_type,
                                    &f.error_message,
                                ))),
                                (chunks, true),
                            ))
                        }
                        None => {
                            log_outcome(&function, &id, started, None);
                            Some((eventstream::invoke_complete(None), (chunks, true)))
                        }
                    }
                }
            });
            (content_type, frames.boxed())
        }
    };
    let mut response =
        Response::new(Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>)));
    // `ResponseStreamContentType` is the function's own content type, sent as Content-Type.
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    lambda_headers(&mut response, &request_id);
    Ok(response)
}

fn configuration(app: &AppState, function: &Function) -> serde_json::Value {
    let s = &function.shared;
    serde_json::json!({
        "FunctionName": s.name,
        "FunctionArn": s.arn,
        "Runtime": "provided.al2023",
        "Handler": s.settings.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        "Timeout": s.settings.timeout_ms.div_ceil(1000),
        "MemorySize": s.settings.memory_mb,
        "Version": "$LATEST",
        "State": "Active",
        "PackageType": "Zip",
        "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
        "Environment": { "Variables": s.settings.env },
        "ReservedConcurrentExecutions": s.settings.concurrency,
        "Region": app.settings.region,
    })
}

/// `GET /2015-03-31/functions/`
pub async fn list_functions(State(app): State<Arc<AppState>>) -> Response {
    let functions: Vec<_> = app.functions.values().map(|f| configuration(&app, f)).collect();
    Json(serde_json::json!({ "Functions": functions })).into_response()
}

/// `GET /2015-03-31/functions/{name}`
pub async fn get_function(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
) -> Result<Response, ApiError> {
    let function = app.resolve(&name, q.qualifier.as_deref())?;
    Ok(Json(serde_json::json!({ "Configuration": configuration(&app, &function) })).into_response())
}

pub async fn unknown() -> ApiError {
    ApiError::unknown_operation()
}
