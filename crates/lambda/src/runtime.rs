//! The Lambda Runtime API loop of `bootstrap` (`AWS_LAMBDA_RUNTIME_API`): take the next event,
//! run the handler, post its answer (buffered, or streamed after the metadata prelude) or its
//! error, and ask for the next one.
//!
//! Why not `lambda_runtime::run`: its sequential loop publishes every invocation's X-Ray header
//! with `std::env::set_var("_X_AMZN_TRACE_ID", ..)`. glibc never frees an environment string
//! (a pointer `getenv` returned must stay valid), so every distinct header stayed in memory: a
//! long-lived environment grew by about 116 bytes per invocation (+23% RSS in the 10-minute
//! soak, docs/reliability.md). Writing the environment of a multi-threaded process also races
//! with the SDK reading it, which is why Rust 2024 made `set_var` unsafe. Here the header stays
//! with its invocation and reaches the SDK calls through `aws_trace::with_xray_trace_id`, as
//! the SDK's recursion detection would have sent it. The HTTP client underneath is the one
//! `lambda_runtime` uses (`lambda_runtime_api_client`).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use base64::Engine as _;
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{build_request, BoxError, PooledClient};
use serde::Serialize;

use crate::LineStream;

const PREFIX: &str = "/2018-06-01/runtime";
/// The streamed answer's content type: a metadata prelude, eight NUL bytes, then the lines.
const STREAM_CONTENT_TYPE: &str = contract::lambda_stream::HTTP_INTEGRATION_CONTENT_TYPE;
/// The prelude: what a Function URL would answer with; `InvokeWithResponseStream` callers get it
/// as is and skip it (`contract::lambda_stream::LineDecoder`).
const PRELUDE: &[u8] = b"{\"statusCode\":200,\"headers\":{\"content-type\":\"application/x-ndjson\"},\"cookies\":[]}\0\0\0\0\0\0\0\0";
const ERROR_TYPE_TRAILER: &str = "lambda-runtime-function-error-type";
const ERROR_BODY_TRAILER: &str = "lambda-runtime-function-error-body";

/// One event from `/next`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// `Lambda-Runtime-Trace-Id`: the invocation's X-Ray trace header.
    pub xray_trace_id: Option<String>,
    pub payload: Bytes,
}

/// What the handler answers with.
pub enum Answer<T> {
    /// One JSON document, posted whole.
    Buffered(T),
    /// Lambda response streaming: bytes posted as they come.
    Streaming(LineStream),
}

/// A failed invocation as the Runtime API takes it (`/error`, or the error trailers of a stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub error_type: String,
    pub error_message: String,
}

impl Failure {
    fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Failure {
            error_type: "Runtime.HandlerPanic".to_owned(),
            error_message: format!("the function panicked: {message}"),
        }
    }

    fn json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The runtime cannot go on: the Runtime API is unset, unreachable, or says the environment ended.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(String);

impl RuntimeError {
    fn new(message: impl Into<String>) -> Self {
        RuntimeError(message.into())
    }
}

/// Runs invocations one after the other until the Runtime API ends the environment.
pub async fn run<H, Fut, T, E>(mut handler: H) -> Result<(), RuntimeError>
where
    H: FnMut(Invocation) -> Fut,
    Fut: Future<Output = Result<Answer<T>, E>>,
    T: Serialize,
    E: Into<Failure>,
{
    let api = RuntimeApi::from_env()?;
    loop {
        let invocation = api.next().await?;
        let id = invocation.request_id.clone();
        let xray = invocation.xray_trace_id.clone();
        // A panic fails this invocation, not the environment, as with lambda_runtime.
        let outcome = aws_trace::with_xray_trace_id(
            xray,
            AssertUnwindSafe(handler(invocation)).catch_unwind(),
        )
        .await;
        let posted = match outcome {
            Ok(Ok(Answer::Buffered(value))) => match serde_json::to_vec(&value) {
                Ok(body) => api.respond(&id, Bytes::from(body)).await,
                Err(e) => {
                    api.fail(
                        &id,
                        &Failure {
                            error_type: "Runtime.SerializationError".into(),
                            error_message: e.to_string(),
                        },
                    )
                    .await
                }
            },
            Ok(Ok(Answer::Streaming(lines))) => api.stream(&id, lines).await,
            Ok(Err(e)) => api.fail(&id, &e.into()).await,
            Err(panic) => api.fail(&id, &Failure::panicked(panic.as_ref())).await,
        };
        // A refused answer (too large, or the caller went away) ended the invocation on the
        // service's side already; the environment goes on with the next one.
        if let Err(e) = posted {
            tracing::warn!(request_id = %id, error = %e, "the Runtime API did not take the answer");
        }
    }
}

/// The Runtime API of this execution environment.
struct RuntimeApi {
    client: PooledClient,
}

/// `AWS_LAMBDA_RUNTIME_API` as Lambda sets it (`host:port`) or as local emulators such as
/// `cargo lambda watch` do (a URL, possibly with a path the API lives under).
fn runtime_api_base(api: &str) -> Result<Uri, RuntimeError> {
    let invalid = |why: &dyn std::fmt::Display| {
        RuntimeError::new(format!(
            "AWS_LAMBDA_RUNTIME_API={api:?} is neither host:port nor a URL: {why}"
        ))
    };
    let uri: Uri = api.parse().map_err(|e| invalid(&e))?;
    if uri.authority().is_none() {
        return Err(invalid(&"no host"));
    }
    Ok(uri)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_owned)
}

impl RuntimeApi {
    fn from_env() -> Result<Self, RuntimeError> {
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| RuntimeError::new("AWS_LAMBDA_RUNTIME_API is not set: bootstrap runs inside a Lambda execution environment"))?;
        Ok(RuntimeApi {
            client: PooledClient::builder().with_endpoint(runtime_api_base(&api)?).build(),
        })
    }

    async fn next(&self) -> Result<Invocation, RuntimeError> {
        let failed = |e: &dyn std::fmt::Display| {
            RuntimeError::new(format!("the Runtime API's /next failed: {e}"))
        };
        let req = build_request()
            .method(Method::GET)
            .uri(format!("{PREFIX}/invocation/next"))
            .body(Body::empty())
            .map_err(|e| failed(&e))?;
        let res = self.client.call(req).await.map_err(|e| failed(&e))?;
        let (parts, body) = res.into_parts();
        let payload = body.collect().await.map_err(|e| failed(&e))?.to_bytes();
        if parts.status != StatusCode::OK {
            return Err(failed(&format_args!(
                "{} {}",
                parts.status,
                String::from_utf8_lossy(&payload)
            )));
        }
        let request_id = header(&parts.headers, "lambda-runtime-aws-request-id")
            .ok_or_else(|| failed(&"no Lambda-Runtime-Aws-Request-Id"))?;
        Ok(Invocation {
            request_id,
            xray_trace_id: header(&parts.headers, "lambda-runtime-trace-id"),
            payload,
        })
    }

    /// Posts `req` and checks that the Runtime API accepted it.
    async fn post(&self, req: Request<Body>) -> Result<(), BoxError> {
        let res = self.client.call(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!("{status} {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    }

    async fn respond(&self, id: &str, body: Bytes) -> Result<(), BoxError> {
        let req = build_request()
            .method(Method::POST)
            .uri(format!("{PREFIX}/invocation/{id}/response"))
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        self.post(req).await
    }

    async fn fail(&self, id: &str, failure: &Failure) -> Result<(), BoxError> {
        let req = build_request()
            .method(Method::POST)
            .uri(format!("{PREFIX}/invocation/{id}/error"))
            .header(
                ERROR_TYPE_TRAILER,
                HeaderValue::from_str(&failure.error_type)
                    .unwrap_or(HeaderValue::from_static("Runtime.Unknown")),
            )
            .header("content-type", "application/json")
            .body(Body::from(failure.json()))?;
        self.post(req).await
    }

    /// Streams the prelude and then `lines` as the request body; a panic while producing them
    /// ends the body with the error trailers, so the caller sees a failure, not a short answer.
    async fn stream(&self, id: &str, lines: LineStream) -> Result<(), BoxError> {
        let req = build_request()
            .method(Method::POST)
            .uri(format!("{PREFIX}/invocation/{id}/response"))
            .header("lambda-runtime-function-response-mode", "streaming")
            .header("content-type", STREAM_CONTENT_TYPE)
            .header(
                "trailer",
                "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
            )
            .body(Body::new(StreamBody::new(frames(lines))))?;
        self.post(req).await
    }
}

/// The frames of a streamed answer: the prelude, each line, and trailers only on a panic.
fn frames(lines: LineStream) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let body = AssertUnwindSafe(lines).catch_unwind().map(|item| match item {
        Ok(Ok(bytes)) => Frame::data(bytes),
        Ok(Err(never)) => match never {},
        Err(panic) => Frame::trailers(error_trailers(&Failure::panicked(panic.as_ref()))),
    });
    // `catch_unwind` ends the stream after a panic, so the trailers are the last frame.
    futures::stream::once(async { Frame::data(Bytes::from_static(PRELUDE)) }).chain(body).map(Ok)
}

fn error_trailers(failure: &Failure) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&failure.error_type) {
        trailers.insert(ERROR_TYPE_TRAILER, v);
    }
    let body = base64::engine::general_purpose::STANDARD.encode(failure.json());
    if let Ok(v) = HeaderValue::from_str(&body) {
        trailers.insert(ERROR_BODY_TRAILER, v);
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: Vec<&'static str>, panic_after: bool) -> LineStream {
        let s =
            futures::stream::iter(items.into_iter().map(|l| Ok(Bytes::from_static(l.as_bytes()))));
        if panic_after {
            Box::pin(s.chain(futures::stream::poll_fn(|_| panic!("model went away"))))
        } else {
            Box::pin(s)
        }
    }

    async fn collect(lines: LineStream) -> (Vec<u8>, Option<HeaderMap>) {
        let mut data = Vec::new();
        let mut trailers = None;
        let mut frames = std::pin::pin!(frames(lines));
        while let Some(Ok(f)) = frames.next().await {
            match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        (data, trailers)
    }

    #[test]
    fn the_runtime_api_is_host_port_or_a_url() {
        assert_eq!(
            runtime_api_base("127.0.0.1:9001").unwrap().authority().unwrap(),
            "127.0.0.1:9001"
        );
        let url = runtime_api_base("http://127.0.0.1:9001/.rt").unwrap();
        assert_eq!((url.authority().unwrap().as_str(), url.path()), ("127.0.0.1:9001", "/.rt"));
        assert!(runtime_api_base("/just/a/path").is_err());
        assert!(runtime_api_base("not a uri").is_err());
    }

    #[tokio::test]
    async fn a_stream_is_the_prelude_then_its_lines() {
        let (data, trailers) = collect(lines(vec!["{\"a\":1}\n", "{\"b\":2}\n"], false)).await;
        let (prelude, rest) = data.split_at(PRELUDE.len());
        let (json, nuls) = prelude.split_at(prelude.len() - 8);
        assert_eq!(nuls, [0u8; 8]);
        let json: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(json["statusCode"], 200);
        assert_eq!(rest, b"{\"a\":1}\n{\"b\":2}\n");
        assert!(trailers.is_none());
    }

    #[tokio::test]
    async fn a_panic_mid_stream_ends_it_with_the_error_trailers() {
        let (data, trailers) = collect(lines(vec!["{\"a\":1}\n"], true)).await;
        assert_eq!(&data[PRELUDE.len()..], b"{\"a\":1}\n");
        let trailers = trailers.expect("error trailers");
        assert_eq!(trailers[ERROR_TYPE_TRAILER], "Runtime.HandlerPanic");
        let body = base64::engine::general_purpose::STANDARD
            .decode(trailers[ERROR_BODY_TRAILER].as_bytes())
            .unwrap();
        let failure: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(failure["errorType"], "Runtime.HandlerPanic");
        assert!(failure["errorMessage"].as_str().unwrap().contains("model went away"));
    }
}
