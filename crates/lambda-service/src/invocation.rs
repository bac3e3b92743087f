//! One invocation's life: what the caller waits on, and how the function's answer (or its
//! failure) gets back to it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

/// An invocation waiting for (or running in) an execution environment.
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// `X-Amzn-Trace-Id` from the caller, passed on as `Lambda-Runtime-Trace-Id`.
    pub xray_trace_id: Option<String>,
    pub client_context: Option<String>,
    pub reply: oneshot::Sender<Outcome>,
    /// The function's concurrency: released when the invocation is over, whichever way.
    pub permit: OwnedSemaphorePermit,
}

/// What the caller of Invoke / InvokeWithResponseStream receives first.
pub enum Outcome {
    /// `/response` in the default (buffered) mode.
    Buffered { content_type: String, body: Bytes },
    /// `/response` in streaming mode: chunks as the function writes them.
    Streaming { content_type: String, chunks: mpsc::Receiver<StreamEvent> },
    /// `/error`, a crash, a timeout, an oversized response, or an init failure.
    Failed(FunctionFailure),
}

pub enum StreamEvent {
    Data(Bytes),
    /// The stream broke: a mid-stream error, the function died or timed out.
    Failed(FunctionFailure),
}

/// A function error as Lambda reports it: `X-Amz-Function-Error: Unhandled` and the body.
#[derive(Debug, Clone)]
pub struct FunctionFailure {
    pub error_type: String,
    pub error_message: String,
    /// The body as the function posted it, or one Lambda writes (`errorType`, `errorMessage`).
    pub body: Bytes,
}

impl FunctionFailure {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        let (error_type, error_message) = (error_type.into(), error_message.into());
        let body = serde_json::json!({ "errorType": error_type, "errorMessage": error_message })
            .to_string();
        FunctionFailure { error_type, error_message, body: Bytes::from(body) }
    }

    /// A body the function posted to `/error` or `/init/error`, with the header's error type
    /// taking precedence over the body's.
    pub fn from_posted(header_type: Option<&str>, body: Bytes) -> Self {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Posted {
            error_type: String,
            error_message: String,
        }
        let posted: Posted = serde_json::from_slice(&body).unwrap_or_default();
        let error_type =
            header_type.filter(|t| !t.is_empty()).map(str::to_owned).unwrap_or(posted.error_type);
        let error_type = if error_type.is_empty() { "Unhandled".to_owned() } else { error_type };
        if body.is_empty() || serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return FunctionFailure::new(error_type, String::from_utf8_lossy(&body).into_owned());
        }
        FunctionFailure { error_type, error_message: posted.error_message, body }
    }

    pub fn timeout(request_id: &str, timeout_ms: u64) -> Self {
        FunctionFailure::new(
            "Sandbox.Timedout",
            format!(
                "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                timeout_ms as f64 / 1000.0
            ),
        )
    }

    pub fn exited(request_id: &str, how: &str) -> Self {
        FunctionFailure::new(
            "Runtime.ExitError",
            format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
        )
    }
}

/// Where the function's answer goes: the caller's first reply, then (in streaming mode) the
/// verdict the response stream ends with.
pub enum Sink {
    Waiting(oneshot::Sender<Outcome>),
    /// The function is streaming its answer; the `/response` handler owns the chunk channel.
    Streaming(Verdict),
    /// The answer has been delivered; nothing more goes out.
    Closed,
}

/// How a streamed answer ends when something other than its own body ends it (a timeout, the
/// process exiting, `/error`). The `/response` handler sends it after every chunk the function
/// wrote before that, so a failure never overtakes data. The first verdict wins: a timeout is
/// not turned into the crash its kill causes.
#[derive(Clone, Default)]
pub struct Verdict(Arc<Mutex<Option<FunctionFailure>>>);

impl Verdict {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<FunctionFailure>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, failure: FunctionFailure) {
        self.slot().get_or_insert(failure);
    }

    pub fn take(&self) -> Option<FunctionFailure> {
        self.slot().take()
    }
}

impl Sink {
    /// Ends the invocation with a failure, wherever it stands. Never blocks.
    pub fn fail(self, failure: FunctionFailure) {
        match self {
            Sink::Waiting(tx) => {
                let _ = tx.send(Outcome::Failed(failure));
            }
            Sink::Streaming(verdict) => verdict.set(failure),
            Sink::Closed => {}
        }
    }
}
