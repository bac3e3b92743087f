//! Invoking the Lambda function with `aws-sdk-lambda`: `Invoke` for whole answers,
//! `InvokeWithResponseStream` for streams. The SDK's retries are off; ours retry throttling,
//! Lambda's 5xx answers and connection failures (before the first byte of an answer only),
//! with exponential backoff and full jitter. A semaphore bounds the invocations in flight.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::StalledStreamProtectionConfig;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::event_stream::EventReceiver;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::error::InvokeWithResponseStreamResponseEventError;
use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
use aws_sdk_lambda::Client;
use aws_trace::{with_traceparent, TraceInterceptor};
use contract::lambda_stream::{error_from_function, LineDecoder};
use contract::{ChunkKind, ChunkStream, ErrorKind, GenerateRequest, GenerateResponse, StreamChunk};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::LambdaSettings;
use crate::error::ServiceError;
use crate::metrics::{Metrics, INVOKE, INVOKE_STREAM};

pub struct Invoker {
    client: Client,
    settings: LambdaSettings,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// One failed attempt: the contract error, its metric outcome, and whether to try again.
#[derive(Debug)]
struct Failure {
    error: contract::Error,
    outcome: &'static str,
    retry: bool,
}

/// The request's W3C trace, sent as a header too (see `aws_trace`) so that the Lambda
/// service's own logs join it.
fn traceparent(req: &GenerateRequest) -> Option<String> {
    req.trace.as_ref().map(|t| t.traceparent.clone())
}

type EventRx = EventReceiver<Event, InvokeWithResponseStreamResponseEventError>;

impl Invoker {
    /// Credentials come from the default chain; region and endpoint from the settings when
    /// set, from the SDK's own resolution (`AWS_REGION`, `AWS_ENDPOINT_URL_LAMBDA`) otherwise.
    pub async fn new(settings: LambdaSettings, metrics: Arc<Metrics>) -> Invoker {
        let mut loader = aws_config::from_env();
        if !settings.region.is_empty() {
            loader = loader.region(aws_config::Region::new(settings.region.clone()));
        }
        if !settings.endpoint_url.is_empty() {
            loader = loader.endpoint_url(settings.endpoint_url.clone());
        }
        let shared = loader.load().await;
        let config = aws_sdk_lambda::config::Builder::from(&shared)
            .retry_config(RetryConfig::disabled())
            // Models may pause between tokens for longer than the SDK's stall grace period;
            // `invocation_timeout_ms` bounds a stream instead.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .interceptor(TraceInterceptor)
            .build();
        let slots = Arc::new(Semaphore::new(settings.max_concurrent_invocations.max(1)));
        Invoker { client: Client::from_conf(config), settings, slots, metrics }
    }

    fn overloaded(&self, message: impl Into<String>) -> ServiceError {
        ServiceError {
            retry_after_secs: Some(self.settings.retry_after_secs),
            ..ServiceError::new(ErrorKind::Overloaded, message)
        }
    }

    fn to_service_error(&self, e: contract::Error) -> ServiceError {
        if e.kind() == ErrorKind::Overloaded {
            return self.overloaded(e.message);
        }
        e.into()
    }

    /// A free invocation slot, waiting at most `queue_timeout_ms` for one.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        let wait = Duration::from_millis(self.settings.queue_timeout_ms);
        match tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.overloaded(format!(
                "all {} invocation slots are busy",
                self.settings.max_concurrent_invocations
            ))),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.invocation_timeout_ms.max(1))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out.
    async fn with_retries<T, F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, contract::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.settings.max_attempts.max(1);
        let mut ceiling = self.settings.initial_backoff_ms;
        let mut n = 1;
        loop {
            let failure = match attempt().await {
                Ok(v) => {
                    self.metrics.invocation(operation, "ok");
                    return Ok(v);
                }
                Err(f) => f,
            };
            self.metrics.invocation(operation, failure.outcome);
            if !failure.retry || n >= attempts {
                return Err(failure.error);
            }
            let wait = rand::thread_rng().gen_range(0..=ceiling.max(1));
            tracing::debug!(operation, attempt = n, wait_ms = wait, error = %failure.error, "retrying the Lambda invocation");
            self.metrics.retry(operation);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            ceiling = ceiling.saturating_mul(2).min(self.settings.max_backoff_ms);
            n += 1;
        }
    }

    fn function_failure(&self, error_type: &str, message: &str) -> Failure {
        let error = error_from_function(error_type, message);
        let retry = self.settings.retry_function_errors && error.retryable;
        Failure { error, outcome: "function_error", retry }
    }

    /// `Invoke`: the function's whole answer.
    pub async fn invoke(&self, req: &GenerateRequest) -> Result<GenerateResponse, ServiceError> {
        self.invoke_json(req, traceparent(req), "GenerateResponse").await
    }

    /// `Invoke` with an embedding event (`{"embed": EmbedRequest}`): the function's vectors.
    pub async fn invoke_embed(
        &self,
        req: &contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, ServiceError> {
        let trace = req.trace.as_ref().map(|t| t.traceparent.clone());
        self.invoke_json(&serde_json::json!({ "embed": req }), trace, "EmbedResponse").await
    }

    /// One `Invoke` of `event`, its answer read as `R` (named `what` in errors).
    async fn invoke_json<E: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        event: &E,
        trace: Option<String>,
        what: &str,
    ) -> Result<R, ServiceError> {
        let _slot = self.slot().await?;
        let payload = Blob::new(
            serde_json::to_vec(event)
                .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?,
        );
        let result = self
            .with_retries(INVOKE, || async {
                let call = with_traceparent(
                    trace.clone(),
                    self.client
                        .invoke()
                        .function_name(&self.settings.function_name)
                        .payload(payload.clone())
                        .send(),
                );
                let out = match tokio::time::timeout(self.timeout(), call).await {
                    Err(_) => {
                        return Err(Failure {
                            error: contract::Error::new(
                                ErrorKind::Timeout,
                                "the Lambda function did not answer in time",
                            ),
                            outcome: "timeout",
                            retry: false,
                        })
                    }
                    Ok(Err(e)) => return Err(classify(&e, &self.settings.function_name)),
                    Ok(Ok(out)) => out,
                };
                let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
                if out.function_error().is_some() {
                    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                    return Err(self.function_failure(
                        v["errorType"].as_str().unwrap_or("Unhandled"),
                        v["errorMessage"].as_str().unwrap_or(""),
                    ));
                }
                serde_json::from_slice::<R>(body).map_err(|e| Failure {
                    error: contract::Error::new(
                        ErrorKind::Upstream,
                        format!("the function's answer is not a {what}: {e}"),
                    ),
                    outcome: "function_error",
                    retry: false,
                })
            })
            .await;
        result.map_err(|e| self.to_service_error(e))
    }

    /// `InvokeWithResponseStream`: the function's chunks as they arrive. Failures before the
    /// first byte of the answer (including a function error with no output) are an `Err`, so the
    /// caller can still answer with an error status; later ones are the stream's error chunk.
    pub async fn invoke_stream(&self, req: &GenerateRequest) -> Result<ChunkStream, ServiceError> {
        let slot = self.slot().await?;
        let payload = Blob::new(
            serde_json::to_vec(req)
                .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?,
        );
        let deadline = Instant::now() + self.timeout();
        let timed_out = || Failure {
            error: contract::Error::new(
                ErrorKind::Timeout,
                "the Lambda function did not answer in time",
            ),
            outcome: "timeout",
            retry: false,
        };
        let result = self
            .with_retries(INVOKE_STREAM, || async {
                let call = with_traceparent(
                    traceparent(req),
                    self.client
                        .invoke_with_response_stream()
                        .function_name(&self.settings.function_name)
                        .payload(payload.clone())
                        .send(),
                );
                let mut out = match tokio::time::timeout_at(deadline, call).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) => return Err(classify(&e, &self.settings.function_name)),
                    Ok(Ok(out)) => out,
                };
                let decoder = LineDecoder::with_max_line(
                    out.response_stream_content_type(),
                    self.settings.max_stream_line_bytes,
                );
                // Wait for the first event: output (we are past the first byte) or the end.
                let first = match tokio::time::timeout_at(deadline, out.event_stream.recv()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) => {
                        return Err(Failure {
                            error: contract::Error::new(
                                ErrorKind::Upstream,
                                format!("the Lambda stream broke: {}", contract::error_chain(&e)),
                            ),
                            outcome: "connection_error",
                            retry: true,
                        })
                    }
                    Ok(Ok(None)) => {
                        return Err(Failure {
                            error: contract::Error::new(
                                ErrorKind::Upstream,
                                "the Lambda stream ended before InvokeComplete",
                            ),
                            outcome: "service_error",
                            retry: true,
                        })
                    }
                    Ok(Ok(Some(Event::InvokeComplete(c)))) if c.error_code().is_some() => {
                        return Err(self.function_failure(
                            c.error_code().unwrap_or_default(),
                            c.error_details().unwrap_or_default(),
                        ));
                    }
                    Ok(Ok(Some(event))) => event,
                };
                Ok((out.event_stream, decoder, first))
            })
            .await;
        let (events, decoder, first) = result.map_err(|e| self.to_service_error(e))?;
        let mut state = StreamState {
            events,
            decoder,
            pending: VecDeque::new(),
            ended: false,
            deadline,
            _slot: slot,
        };
        state.take(first);
        Ok(Box::pin(futures::stream::unfold(state, StreamState::next)))
    }
}

/// A stream being read: Lambda's events, decoded into chunks. Holds its invocation slot.
struct StreamState {
    events: EventRx,
    decoder: LineDecoder,
    pending: VecDeque<StreamChunk>,
    ended: bool,
    deadline: Instant,
    _slot: OwnedSemaphorePermit,
}

impl StreamState {
    /// Turns one event into chunks; `InvokeComplete` ends the stream (with an error chunk when
    /// it carries an error code).
    fn take(&mut self, event: Event) {
        match event {
            Event::PayloadChunk(p) => {
                let chunks = self.decoder.push(p.payload().map(|b| b.as_ref()).unwrap_or_default());
                self.pending.extend(chunks);
            }
            Event::InvokeComplete(c) => {
                self.pending.extend(self.decoder.finish());
                if let Some(code) = c.error_code() {
                    self.pending.push_back(StreamChunk::error(error_from_function(
                        code,
                        c.error_details().unwrap_or_default(),
                    )));
                }
                self.ended = true;
            }
            other => tracing::debug!(event = ?other, "ignoring an unknown Lambda stream event"),
        }
    }

    fn fail(&mut self, error: contract::Error) {
        self.pending.push_back(StreamChunk::error(error));
        self.ended = true;
    }

    async fn next(mut self) -> Option<(StreamChunk, StreamState)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((chunk, self));
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Err(_) => self.fail(contract::Error::new(
                    ErrorKind::Timeout,
                    "the Lambda function did not finish in time",
                )),
                Ok(Ok(Some(event))) => self.take(event),
                Ok(Ok(None)) => {
                    self.pending.extend(self.decoder.finish());
                    self.ended = true;
                }
                Ok(Err(e)) => self.fail(contract::Error::new(
                    ErrorKind::Upstream,
                    format!("the Lambda stream broke: {}", contract::error_chain(&e)),
                )),
            }
        }
    }
}

/// Ensures a stream ends with exactly one `done` or `error` chunk: nothing after the first
/// one passes, and a stream that ends without one gets an error chunk.
pub fn terminated(stream: ChunkStream) -> ChunkStream {
    use futures::StreamExt;
    let state = (stream, false);
    Box::pin(futures::stream::unfold(state, |(mut inner, finished)| async move {
        if finished {
            return None;
        }
        match inner.next().await {
            Some(chunk) => {
                let last =
                    matches!(chunk.kind, Some(ChunkKind::Done(_)) | Some(ChunkKind::Error(_)));
                Some((chunk, (inner, last)))
            }
            None => Some((
                StreamChunk::error(contract::Error::new(
                    ErrorKind::Upstream,
                    "the answer ended without finishing",
                )),
                (inner, true),
            )),
        }
    }))
}

/// An SDK error as a failed attempt: throttling, 5xx and connection failures are retried.
fn classify<E>(
    e: &SdkError<E, aws_sdk_lambda::config::http::HttpResponse>,
    function: &str,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("").to_owned();
            match (code, status) {
                ("TooManyRequestsException", _) | (_, 429) => Failure {
                    error: contract::Error::new(
                        ErrorKind::Overloaded,
                        format!("Lambda is throttling invocations: {message}"),
                    ),
                    outcome: "throttled",
                    retry: true,
                },
                (_, 500..) => Failure {
                    error: contract::Error::new(
                        ErrorKind::Upstream,
                        format!("Lambda failed ({code}): {message}"),
                    ),
                    outcome: "service_error",
                    retry: true,
                },
                ("RequestTooLargeException", _) | (_, 413) => Failure {
                    error: contract::Error::new(
                        ErrorKind::InvalidRequest,
                        format!("the request is too large for Lambda: {message}"),
                    ),
                    outcome: "service_error",
                    retry: false,
                },
                ("ResourceNotFoundException", _) => Failure {
                    error: contract::Error::new(
                        ErrorKind::Upstream,
                        format!("the Lambda function {function} does not exist: {message}"),
                    ),
                    outcome: "service_error",
                    retry: false,
                },
                _ => Failure {
                    error: contract::Error::new(
                        ErrorKind::Upstream,
                        format!("Lambda refused the invocation ({code}): {message}"),
                    ),
                    outcome: "service_error",
                    retry: false,
                },
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Failure {
            error: contract::Error::new(
                ErrorKind::Upstream,
                format!("could not reach Lambda: {}", contract::error_chain(e)),
            ),
            outcome: "connection_error",
            retry: true,
        },
        other => Failure {
            error: contract::Error::new(
                ErrorKind::Upstream,
                format!("Lambda's answer could not be read: {}", contract::error_chain(other)),
            ),
            outcome: "service_error",
            retry: false,
        },
    }
}
