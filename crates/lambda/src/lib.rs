//! The Lambda function's logic, separate from the runtime loop so it can be tested in-process.
//!
//! The event is a contract `GenerateRequest` (JSON mapping, see docs/contract.md). Without
//! `stream`, the function returns one `GenerateResponse`. With `stream`, it answers in Lambda
//! response-streaming mode: one `StreamChunk` JSON object per line, written as Bedrock's
//! ConverseStream deltas arrive. An event `{"embed": EmbedRequest}` asks for embeddings
//! instead, answered with one `EmbedResponse` (Bedrock InvokeModel, Titan or Cohere).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Instant;

use bedrock::{BedrockClient, BedrockSettings};
use bytes::Bytes;
use contract::{ChunkKind, ErrorKind};
use futures::{Stream, StreamExt};

pub mod runtime;

/// The body of a streamed answer: NDJSON lines of `StreamChunk`.
pub type LineStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>>;

pub type Response = runtime::Answer<contract::GenerateResponse>;

/// A failure as Lambda reports it: `errorType` is the contract error kind, so callers can tell
/// a retryable failure from one that is not.
#[derive(Debug)]
pub struct FunctionError(pub contract::Error);

impl From<FunctionError> for runtime::Failure {
    fn from(e: FunctionError) -> runtime::Failure {
        runtime::Failure { error_type: format!("{:?}", e.0.kind()), error_message: e.0.message }
    }
}

/// Settings from the function's environment, as configured on AWS:
/// `AWS_REGION`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (read by the SDK itself), and
/// `STRATA_MODEL_IDS` = `name=bedrock-model-id,...` for names that are not Bedrock ids,
/// `STRATA_EMBEDDING_MODEL_IDS` likewise for embedding models (added to the defaults),
/// `STRATA_BEDROCK_MAX_ATTEMPTS` and `STRATA_BEDROCK_CHUNK_TIMEOUT_SECS`.
pub fn settings_from_env() -> BedrockSettings {
    let pairs = |var: &str| -> BTreeMap<String, String> {
        std::env::var(var)
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .collect()
    };
    let model_ids = pairs("STRATA_MODEL_IDS");
    let mut embedding_model_ids = BedrockSettings::default().embedding_model_ids;
    embedding_model_ids.extend(pairs("STRATA_EMBEDDING_MODEL_IDS"));
    let max_attempts = std::env::var("STRATA_BEDROCK_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BedrockSettings::default().max_attempts);
    let chunk_timeout_secs = std::env::var("STRATA_BEDROCK_CHUNK_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BedrockSettings::default().chunk_timeout_secs);
    BedrockSettings {
        model_ids,
        embedding_model_ids,
        max_attempts,
        chunk_timeout_secs,
        ..Default::default()
    }
}

fn line(chunk: &contract::StreamChunk) -> Bytes {
    let mut v = serde_json::to_vec(chunk).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The name this function reports in `timings.hops`.
pub const HOP: &str = "lambda";

/// Appends this function's hop to a final response: the time since `handle` began.
fn add_hop(done: &mut contract::GenerateResponse, started: Instant) {
    let dur_ns = started.elapsed().as_nanos() as u64;
    done.timings
        .get_or_insert_with(Default::default)
        .hops
        .push(contract::HopTiming { hop: HOP.into(), dur_ns });
}

/// The invocation payload as a contract request. A payload that is not one is the caller's
/// error (`InvalidRequest`), not the runtime's: the caller learns which field is wrong.
pub fn parse_payload(payload: &[u8]) -> Result<contract::GenerateRequest, FunctionError> {
    let value = serde_json::from_slice(payload).map_err(|e| {
        FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            format!("the event is not JSON: {e}"),
        ))
    })?;
    parse_event(value)
}

/// [`parse_payload`] for an event already read as JSON.
pub fn parse_event(payload: serde_json::Value) -> Result<contract::GenerateRequest, FunctionError> {
    if !payload.is_object() {
        return Err(FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            "the event must be a JSON object (a contract GenerateRequest)",
        )));
    }
    serde_json::from_value(payload).map_err(|e| {
        FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            format!("the event is not a GenerateRequest: {e}"),
        ))
    })
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Generate(Box<contract::GenerateRequest>),
    /// `{"embed": EmbedRequest}`.
    Embed(contract::EmbedRequest),
}

/// What a buffered invocation answers (the JSON of either response, as it is).
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Reply {
    Generated(contract::GenerateResponse),
    Embedded(contract::EmbedResponse),
}

/// The invocation payload as an [`Event`]: an object with an `embed` key is an embedding
/// request; any other is a `GenerateRequest` ([`parse_event`]).
pub fn parse_invocation(payload: &[u8]) -> Result<Event, FunctionError> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
        FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            format!("the event is not JSON: {e}"),
        ))
    })?;
    match value.get("embed") {
        Some(embed) => serde_json::from_value(embed.clone()).map(Event::Embed).map_err(|e| {
            FunctionError(contract::Error::new(
                ErrorKind::InvalidRequest,
                format!("the event's embed is not an EmbedRequest: {e}"),
            ))
        }),
        None => parse_event(value).map(|r| Event::Generate(Box::new(r))),
    }
}

/// Embeddings through Bedrock's InvokeModel, with this function's hop in the timings.
pub async fn embed(
    client: &BedrockClient,
    req: contract::EmbedRequest,
) -> Result<contract::EmbedResponse, FunctionError> {
    let started = Instant::now();
    if req.model.trim().is_empty() {
        return Err(FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            "model is required",
        )));
    }
    let trace = req.trace.as_ref().map(|t| t.traceparent.clone()).unwrap_or_default();
    tracing::info!(traceparent = %trace, model = %req.model, inputs = req.inputs.len(), "embed invocation");
    let mut resp = client.embed(req).await.map_err(FunctionError)?;
    let dur_ns = started.elapsed().as_nanos() as u64;
    resp.timings
        .get_or_insert_with(Default::default)
        .hops
        .push(contract::HopTiming { hop: HOP.into(), dur_ns });
    Ok(resp)
}

pub async fn handle(
    client: &BedrockClient,
    req: contract::GenerateRequest,
) -> Result<Response, FunctionError> {
    let started = Instant::now();
    if req.model.trim().is_empty() {
        return Err(FunctionError(contract::Error::new(
            ErrorKind::InvalidRequest,
            "model is required",
        )));
    }
    let trace = req.trace.as_ref().map(|t| t.traceparent.clone()).unwrap_or_default();
    tracing::info!(traceparent = %trace, model = %req.model, stream = req.stream, "invocation");
    let stream = req.stream;
    let mut chunks = client.generate(req).await.map_err(FunctionError)?;
    if stream {
        let lines = chunks.map(move |mut c| {
            if let Some(ChunkKind::Done(done)) = &mut c.kind {
                add_hop(done, started);
            }
            Ok(line(&c))
        });
        return Ok(runtime::Answer::Streaming(Box::pin(lines)));
    }
    let mut text = String::new();
    while let Some(chunk) = chunks.next().await {
        match chunk.kind {
            Some(ChunkKind::Delta(d)) => text.push_str(&d.content),
            Some(ChunkKind::Done(mut done)) => {
                if !text.is_empty() {
                    done.message = Some(contract::Message::assistant(text));
                }
                add_hop(&mut done, started);
                return Ok(runtime::Answer::Buffered(done));
            }
            Some(ChunkKind::Error(e)) => return Err(FunctionError(e)),
            None => {}
        }
    }
    Err(FunctionError(contract::Error::new(
        ErrorKind::Upstream,
        "Bedrock ended the answer without finishing it",
    )))
}
