//! Converse and ConverseStream as contract streams, with retries before the first byte.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::StalledStreamProtectionConfig;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConverseStreamOutput, StopReason,
};
use aws_sdk_bedrockruntime::Client;
use contract::{
    ChunkStream, DoneReason, ErrorKind, GenerateResponse, HopTiming, StreamChunk, Timings, Usage,
};
use rand::Rng;

use crate::embed::{self, Family};
use crate::errors::map_sdk_error;
use crate::mapping::to_converse_parts;
use crate::settings::BedrockSettings;
use aws_trace::{with_traceparent, TraceInterceptor};

/// Titan embedding calls in flight at once for one request.
const TITAN_CALLS_AT_ONCE: usize = 8;

#[derive(Clone, Debug)]
pub struct BedrockClient {
    client: Client,
    settings: BedrockSettings,
}

fn done_reason(r: Option<&StopReason>) -> DoneReason {
    match r {
        Some(StopReason::MaxTokens) => DoneReason::Length,
        Some(StopReason::StopSequence) => DoneReason::StopSequence,
        Some(StopReason::ToolUse) => DoneReason::ToolUse,
        Some(StopReason::GuardrailIntervened | StopReason::ContentFiltered) => {
            DoneReason::ContentFiltered
        }
        _ => DoneReason::Stop,
    }
}

fn final_chunk(
    model: &str,
    message: contract::Message,
    reason: DoneReason,
    usage: Usage,
    started: Instant,
) -> StreamChunk {
    let total = started.elapsed().as_nanos() as u64;
    StreamChunk::done(GenerateResponse {
        model: model.to_owned(),
        message: Some(message),
        done_reason: reason as i32,
        usage: Some(usage),
        timings: Some(Timings {
            total_ns: total,
            hops: vec![HopTiming { hop: "bedrock".into(), dur_ns: total }],
            ..Default::default()
        }),
    })
}

impl BedrockClient {
    /// Credentials come from the default chain (environment, profile, instance role), or a
    /// Bedrock API key in `AWS_BEARER_TOKEN_BEDROCK`, which the SDK prefers when present.
    pub async fn new(settings: BedrockSettings) -> Self {
        let mut loader = aws_config::from_env();
        if !settings.region.is_empty() {
            loader = loader.region(aws_config::Region::new(settings.region.clone()));
        }
        if !settings.endpoint_url.is_empty() {
            loader = loader.endpoint_url(settings.endpoint_url.clone());
        }
        let shared = loader.load().await;
        // Retries are ours (below), so that throttling backs off with jitter as configured.
        // So is the rule for a silent Bedrock: `chunk_timeout_secs` between stream events and
        // the server's request timeout around a whole answer. The SDK's stalled-stream
        // protection would be a second rule with a fixed 5 s grace (a model may think longer
        // than that before its first token), and watching throughput cost CPU on every call.
        let config = aws_sdk_bedrockruntime::config::Builder::from(&shared)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .interceptor(TraceInterceptor)
            .build();
        BedrockClient { client: Client::from_conf(config), settings }
    }

    pub fn settings(&self) -> &BedrockSettings {
        &self.settings
    }

    fn model_id<'a>(&'a self, model: &'a str) -> &'a str {
        self.settings.model_ids.get(model).map_or(model, String::as_str)
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts. Only errors the
    /// contract marks retryable are retried; the wait is exponential with full jitter.
    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, contract::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, contract::Error>>,
    {
        let attempts = self.settings.max_attempts.max(1);
        let mut backoff = self.settings.initial_backoff_ms;
        for attempt in 1..=attempts {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable && attempt < attempts => {
                    let wait = rand::thread_rng().gen_range(0..=backoff.max(1));
                    tracing::debug!(attempt, wait_ms = wait, error = %e, "retrying Bedrock call");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff_ms);
                }
                Err(e) => return Err(e),
            }
        }
        Err(contract::Error::new(ErrorKind::Internal, "no attempt was made"))
    }

    /// Embeds through InvokeModel (`embed.rs`): the model name maps through
    /// `embedding_model_ids`, or is itself a Titan V2 / Cohere v3 id.
    pub async fn embed(
        &self,
        req: contract::EmbedRequest,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        use futures::{StreamExt, TryStreamExt};
        let started = Instant::now();
        let model_id = self
            .settings
            .embedding_model_ids
            .get(&req.model)
            .map_or(req.model.as_str(), String::as_str)
            .to_owned();
        let family = Family::of(&model_id).ok_or_else(|| {
            contract::Error::new(
                ErrorKind::InvalidRequest,
                format!("model \"{}\" is not a Bedrock embedding model; name a Titan Text Embeddings V2 or Cohere Embed v3 model, or map this name to one in bedrock.embedding_model_ids", req.model),
            )
        })?;
        embed::check_dimensions(family, req.dimensions, &model_id)?;
        let texts = embed::texts(&req)?;
        let traceparent = req.trace.as_ref().map(|t| t.traceparent.clone());
        let (vectors, tokens) = match family {
            Family::TitanV2 => {
                // One text per call; a few calls at once, so a long list neither crawls nor
                // sets off Bedrock's throttling.
                let calls: Vec<_> = texts
                    .iter()
                    .map(|t| {
                        let body = embed::titan_body(t, req.dimensions);
                        let (model_id, traceparent) = (model_id.clone(), traceparent.clone());
                        async move {
                            embed::titan_answer(&self.invoke(&model_id, &body, traceparent).await?)
                        }
                    })
                    .collect();
                let answers: Vec<(Vec<f32>, u32)> = futures::stream::iter(calls)
                    .buffered(TITAN_CALLS_AT_ONCE)
                    .try_collect()
                    .await?;
                let tokens = answers.iter().map(|(_, n)| *n).sum();
                (answers.into_iter().map(|(v, _)| v).collect::<Vec<_>>(), tokens)
            }
            Family::CohereV3 => {
                let mut vectors = Vec::with_capacity(texts.len());
                for batch in texts.chunks(embed::COHERE_BATCH) {
                    let answer = self
                        .invoke(
                            &model_id,
                            &embed::cohere_body(batch, req.truncate),
                            traceparent.clone(),
                        )
                        .await?;
                    vectors.extend(
                        embed::cohere_answer(&answer, batch.len())?
                            .into_iter()
                            .map(embed::normalized),
                    );
                }
                // Cohere's body reports no token count.
                (vectors, 0)
            }
        };
        let total = started.elapsed().as_nanos() as u64;
        Ok(contract::EmbedResponse {
            model: req.model,
            embeddings: vectors.into_iter().map(|values| contract::Embedding { values }).collect(),
            prompt_tokens: tokens,
            timings: Some(Timings {
                total_ns: total,
                hops: vec![HopTiming { hop: "bedrock".into(), dur_ns: total }],
                ..Default::default()
            }),
        })
    }

    /// One InvokeModel call with a JSON body, with retries; the answer's bytes.
    async fn invoke(
        &self,
        model_id: &str,
        body: &serde_json::Value,
        traceparent: Option<String>,
    ) -> Result<Vec<u8>, contract::Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| contract::Error::new(ErrorKind::Internal, e.to_string()))?;
        self.with_retries(|| {
            let call = self
                .client
                .invoke_model()
                .model_id(model_id)
                .content_type("application/json")
                .accept("application/json")
                .body(aws_sdk_bedrockruntime::primitives::Blob::new(bytes.clone()))
                .send();
            let traceparent = traceparent.clone();
            async move {
                with_traceparent(traceparent, call)
                    .await
                    .map(|o| o.body.into_inner())
                    .map_err(|e| map_sdk_error(&e))
            }
        })
        .await
    }

    /// Generates through Converse (one chunk of text then `done`) or ConverseStream (deltas as
    /// Bedrock sends them), depending on `req.stream`.
    pub async fn generate(
        &self,
        req: contract::GenerateRequest,
    ) -> Result<ChunkStream, contract::Error> {
        let started = Instant::now();
        let parts = to_converse_parts(&req)?;
        // Converse has no switch for one call per answer: the calls after the first are
        // dropped here, so `parallel_tool_calls: false` holds on every model.
        let one_call = req.parallel_tool_calls == Some(false);
        let model_id = self.model_id(&req.model).to_owned();
        // The W3C trace goes along as a header (see trace.rs).
        let traceparent = req.trace.as_ref().map(|t| t.traceparent.clone());
        if !req.stream {
            let out = self
                .with_retries(|| {
                    let call = self
                        .client
                        .converse()
                        .model_id(&model_id)
                        .set_messages(Some(parts.messages.clone()))
                        .set_system(Some(parts.system.clone()))
                        .inference_config(parts.inference.clone())
                        .set_tool_config(parts.tools.clone())
                        .set_output_config(parts.output.clone())
                        .send();
                    async {
                        with_traceparent(traceparent.clone(), call)
                            .await
                            .map_err(|e| map_sdk_error(&e))
                    }
                })
                .await?;
            let mut message = contract::Message::assistant("");
            for block in out
                .output()
                .and_then(|o| o.as_message().ok())
                .map(|m| m.content())
                .unwrap_or_default()
            {
                match block {
                    ContentBlock::Text(t) => message.content.push_str(t),
                    ContentBlock::ToolUse(_)
                        if one_call && message.tool_uses().next().is_some() => {}
                    ContentBlock::ToolUse(u) => {
                        message.blocks.push(contract::ContentBlock::tool_use(contract::ToolUse {
                            id: u.tool_use_id().to_owned(),
                            name: u.name().to_owned(),
                            input_json: crate::document::to_json(u.input()).to_string(),
                        }))
                    }
                    _ => {}
                }
            }
            let usage = out.usage().map_or_else(Usage::default, |u| Usage {
                prompt_tokens: u.input_tokens() as u32,
                completion_tokens: u.output_tokens() as u32,
            });
            let chunk = final_chunk(
                &req.model,
                message,
                done_reason(Some(out.stop_reason())),
                usage,
                started,
            );
            return Ok(Box::pin(futures::stream::iter([chunk])));
        }
        let out = self
            .with_retries(|| {
                let call = self
                    .client
                    .converse_stream()
                    .model_id(&model_id)
                    .set_messages(Some(parts.messages.clone()))
                    .set_system(Some(parts.system.clone()))
                    .inference_config(parts.inference.clone())
                    .set_tool_config(parts.tools.clone())
                    .set_output_config(parts.output.clone())
                    .send();
                async {
                    with_traceparent(traceparent.clone(), call).await.map_err(|e| map_sdk_error(&e))
                }
            })
            .await?;
        let model = req.model.clone();
        let chunk_timeout = Duration::from_secs(self.settings.chunk_timeout_secs);
        // Tool calls are numbered in the order they start; Bedrock numbers all content blocks.
        let state = (out.stream, DoneReason::Stop, Usage::default(), false, ToolIndex::default());
        let stream = futures::stream::unfold(
            state,
            move |(mut events, mut reason, mut usage, finished, mut tools)| {
                let model = model.clone();
                async move {
                    if finished {
                        return None;
                    }
                    loop {
                        let Ok(event) = tokio::time::timeout(chunk_timeout, events.recv()).await
                        else {
                            let e = contract::Error::new(ErrorKind::Timeout, format!("Bedrock sent nothing for {} s: timed out waiting for the next event", chunk_timeout.as_secs()));
                            return Some((
                                StreamChunk::error(e),
                                (events, reason, usage, true, tools),
                            ));
                        };
                        match event {
                            Ok(Some(ConverseStreamOutput::ContentBlockStart(s))) => {
                                if let Some(ContentBlockStart::ToolUse(u)) = s.start() {
                                    let index = tools.start(s.content_block_index());
                                    if one_call && index > 0 {
                                        continue;
                                    }
                                    let piece = contract::ToolUseDelta {
                                        index,
                                        id: u.tool_use_id().to_owned(),
                                        name: u.name().to_owned(),
                                        input_json: String::new(),
                                    };
                                    return Some((
                                        StreamChunk::tool_use_delta(piece),
                                        (events, reason, usage, false, tools),
                                    ));
                                }
                            }
                            Ok(Some(ConverseStreamOutput::ContentBlockDelta(d))) => match d.delta()
                            {
                                Some(ContentBlockDelta::Text(t)) => {
                                    return Some((
                                        StreamChunk::delta(t.clone()),
                                        (events, reason, usage, false, tools),
                                    ));
                                }
                                Some(ContentBlockDelta::ToolUse(u)) => {
                                    let Some(index) = tools
                                        .of(d.content_block_index())
                                        .filter(|i| !one_call || *i == 0)
                                    else {
                                        continue;
                                    };
                                    let piece = contract::ToolUseDelta {
                                        index,
                                        input_json: u.input().to_owned(),
                                        ..Default::default()
                                    };
                                    return Some((
                                        StreamChunk::tool_use_delta(piece),
                                        (events, reason, usage, false, tools),
                                    ));
                                }
                                _ => {}
                            },
                            Ok(Some(ConverseStreamOutput::MessageStop(s))) => {
                                reason = done_reason(Some(s.stop_reason()))
                            }
                            Ok(Some(ConverseStreamOutput::Metadata(m))) => {
                                if let Some(u) = m.usage() {
                                    usage = Usage {
                                        prompt_tokens: u.input_tokens() as u32,
                                        completion_tokens: u.output_tokens() as u32,
                                    };
                                }
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => {
                                let done = final_chunk(
                                    &model,
                                    contract::Message::assistant(""),
                                    reason,
                                    usage,
                                    started,
                                );
                                return Some((done, (events, reason, usage, true, tools)));
                            }
                            Err(e) => {
                                // Bedrock's own errors keep their meaning; anything else broke a
                                // stream that had been reached.
                                let error = match &e {
                                    SdkError::ServiceError(_) => map_sdk_error(&e),
                                    _ => contract::Error::new(
                                        ErrorKind::Upstream,
                                        format!(
                                            "the Bedrock stream broke: {}",
                                            contract::error_chain(&e)
                                        ),
                                    ),
                                };
                                let err = StreamChunk::error(error);
                                return Some((err, (events, reason, usage, true, tools)));
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }
}

/// Bedrock's content block index -> our tool call index.
#[derive(Debug, Default)]
struct ToolIndex {
    blocks: Vec<i32>,
}

impl ToolIndex {
    fn start(&mut self, block: i32) -> u32 {
        self.blocks.push(block);
        (self.blocks.len() - 1) as u32
    }

    fn of(&self, block: i32) -> Option<u32> {
        self.blocks.iter().position(|b| *b == block).map(|i| i as u32)
    }
}
