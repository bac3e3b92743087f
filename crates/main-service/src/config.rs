//! MainService settings (the `[main_service]` section).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MainServiceSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Connection timeouts of this listener: header read (slow clients) and idle keep-alive.
    pub connections: telemetry::ConnectionSettings,
    /// The secret the gateway sends in `x-strata-gateway-secret`; when set, `/v1/` requests
    /// without it get 403. Prefer `STRATA_MAIN_SERVICE__GATEWAY_SECRET` to the file.
    pub gateway_secret: api_keys::SharedSecret,
    /// Serve a non-loopback `listen` address without `gateway_secret` (only when a firewall or
    /// security group admits nobody but the gateway).
    pub allow_unauthenticated: bool,
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest request header block in bytes (`name: value\r\n` per field); larger ones get 431.
    pub max_header_bytes: usize,
    /// Largest single message (`messages[i].content`, `raw_prompt`, `system`) in bytes.
    pub max_message_bytes: usize,
    /// Largest sum of all message contents of one request, in bytes.
    pub max_total_bytes: usize,
    /// Most messages in one request.
    pub max_messages: usize,
    /// Most inputs in one embedding request (`/v1/embed`); each is at most
    /// `max_message_bytes`, and all of them together at most `max_total_bytes`.
    pub max_embed_inputs: usize,
    /// Deepest nesting of arrays and objects in a JSON request body.
    pub max_json_depth: usize,
    /// Most tool definitions in one request (OpenAI's own limit is 128).
    pub max_tools: usize,
    /// Largest JSON schema in bytes: each tool's parameters and the response schema.
    pub max_schema_bytes: usize,
    /// Longest model name in bytes (names are also limited to letters, digits and `. _ - : / @`,
    /// with no path segments that are empty, `.` or `..`).
    pub max_model_name_bytes: usize,
    /// Models callers may ask for; empty means every model.
    pub allowed_models: Vec<String>,
    /// Characters per token, for estimating token counts (history trimming, summarize chunks).
    pub chars_per_token: f64,
    /// How models are prompted when they have no entry in `models`.
    pub default_model: ModelSettings,
    /// Per-model prompting, by the model name callers use. Unset keys fall back to `default_model`.
    pub models: BTreeMap<String, ModelOverrides>,
    /// The Lambda function behind this service.
    pub lambda: LambdaSettings,
    /// The map-reduce summarization of `POST /v1/summarize`.
    pub summarize: SummarizeSettings,
}

impl Default for MainServiceSettings {
    fn default() -> Self {
        MainServiceSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            connections: telemetry::ConnectionSettings::default(),
            gateway_secret: api_keys::SharedSecret::default(),
            allow_unauthenticated: false,
            // Lambda's synchronous payload limit.
            max_body_bytes: 6 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_message_bytes: 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024,
            max_messages: 1024,
            max_embed_inputs: 2048,
            max_json_depth: 64,
            max_tools: 128,
            max_schema_bytes: 64 * 1024,
            max_model_name_bytes: 256,
            allowed_models: Vec::new(),
            chars_per_token: 4.0,
            default_model: ModelSettings::default(),
            models: BTreeMap::new(),
            lambda: LambdaSettings::default(),
            summarize: SummarizeSettings::default(),
        }
    }
}

impl MainServiceSettings {
    /// The prompting settings of `model`: its own entry over `default_model`.
    pub fn model(&self, model: &str) -> ModelSettings {
        let mut s = self.default_model.clone();
        if let Some(o) = self.models.get(model) {
            o.apply(&mut s);
        }
        s
    }
}

/// How one model is prompted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// System prompt template (minijinja; `{{ model }}` and `{{ date }}` are defined), used when
    /// the request has none. Empty: no system prompt is added.
    pub system_prompt: String,
    /// The model's context window in tokens; history is trimmed to fit it.
    pub context_tokens: u32,
    /// Tokens kept free for the answer when trimming history.
    pub answer_reserve_tokens: u32,
    /// Options filled in where the request leaves them unset.
    pub options: DefaultOptions,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            system_prompt: String::new(),
            context_tokens: 2048,
            answer_reserve_tokens: 512,
            options: DefaultOptions::default(),
        }
    }
}

/// A `[main_service.models."NAME"]` entry: every key optional, unset keys come from `default_model`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_reserve_tokens: Option<u32>,
    /// Merged key by key over `default_model.options`.
    pub options: DefaultOptions,
}

impl ModelOverrides {
    fn apply(&self, s: &mut ModelSettings) {
        if let Some(v) = &self.system_prompt {
            s.system_prompt = v.clone();
        }
        if let Some(v) = self.context_tokens {
            s.context_tokens = v;
        }
        if let Some(v) = self.answer_reserve_tokens {
            s.answer_reserve_tokens = v;
        }
        s.options = self.options.over(&s.options);
    }
}

/// Default generation options (Ollama's names); unset keys leave the request as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// Stop strings, used when the request has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl DefaultOptions {
    /// `self`'s keys where set, `base`'s otherwise.
    fn over(&self, base: &DefaultOptions) -> DefaultOptions {
        DefaultOptions {
            temperature: self.temperature.or(base.temperature),
            top_k: self.top_k.or(base.top_k),
            top_p: self.top_p.or(base.top_p),
            min_p: self.min_p.or(base.min_p),
            repeat_penalty: self.repeat_penalty.or(base.repeat_penalty),
            repeat_last_n: self.repeat_last_n.or(base.repeat_last_n),
            seed: self.seed.or(base.seed),
            num_predict: self.num_predict.or(base.num_predict),
            num_ctx: self.num_ctx.or(base.num_ctx),
            stop: if self.stop.is_empty() { base.stop.clone() } else { self.stop.clone() },
        }
    }

    /// Fills the request's unset options from these defaults.
    pub fn fill(&self, o: &mut contract::Options) {
        o.temperature = o.temperature.or(self.temperature);
        o.top_k = o.top_k.or(self.top_k);
        o.top_p = o.top_p.or(self.top_p);
        o.min_p = o.min_p.or(self.min_p);
        o.repeat_penalty = o.repeat_penalty.or(self.repeat_penalty);
        o.repeat_last_n = o.repeat_last_n.or(self.repeat_last_n);
        o.seed = o.seed.or(self.seed);
        o.num_predict = o.num_predict.or(self.num_predict);
        o.num_ctx = o.num_ctx.or(self.num_ctx);
        if o.stop.is_empty() {
            o.stop = self.stop.clone();
        }
    }
}

/// The Lambda function and how it is invoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaSettings {
    /// Function name or ARN.
    pub function_name: String,
    /// AWS region; empty: the SDK's own resolution (`AWS_REGION`, profile).
    pub region: String,
    /// Lambda endpoint; empty: the SDK's own resolution (`AWS_ENDPOINT_URL_LAMBDA`, then AWS).
    pub endpoint_url: String,
    /// Attempts per invocation (1 = no retries). Retried: throttling (429), Lambda's 5xx and
    /// connection failures, only before the first byte of an answer.
    pub max_attempts: u32,
    /// First backoff ceiling; each retry waits a random time up to it, and it doubles.
    pub initial_backoff_ms: u64,
    /// The backoff ceiling never grows beyond this.
    pub max_backoff_ms: u64,
    /// Also retry function errors whose contract error is retryable (overload, timeout, upstream).
    pub retry_function_errors: bool,
    /// Longest one invocation may take, stream included; then 504 (or an error chunk).
    pub invocation_timeout_ms: u64,
    /// Invocations in flight at once from this service.
    pub max_concurrent_invocations: usize,
    /// How long a request waits for a free invocation slot before 429.
    pub queue_timeout_ms: u64,
    /// `Retry-After` seconds on 429 answers.
    pub retry_after_secs: u64,
    /// Longest line of a streamed answer (one `StreamChunk`) read from the function; a longer
    /// one ends the stream with an error chunk instead of being buffered.
    pub max_stream_line_bytes: usize,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        LambdaSettings {
            function_name: "strata".into(),
            region: String::new(),
            endpoint_url: String::new(),
            max_attempts: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 2000,
            retry_function_errors: false,
            invocation_timeout_ms: 300_000,
            max_concurrent_invocations: 64,
            queue_timeout_ms: 1000,
            retry_after_secs: 1,
            max_stream_line_bytes: contract::lambda_stream::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Map-reduce summarization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SummarizeSettings {
    /// Largest part of the document per map invocation, in tokens (also capped by the model's
    /// context budget).
    pub chunk_tokens: u32,
    /// Map invocations running at once for one request.
    pub map_concurrency: usize,
    /// Most parts (map invocations) one document may be cut into; a longer document is refused
    /// with 413 before any invocation, so one request cannot fan out into thousands.
    pub max_parts: usize,
    /// `num_predict` of each partial summary, unless the request sets one.
    pub partial_num_predict: i32,
    /// Prompt of the one invocation for a document that fits in one part (minijinja: `text`, `instructions`).
    pub single_prompt: String,
    /// Prompt of a map invocation (minijinja: `text`, `part`, `parts`, `instructions`).
    pub map_prompt: String,
    /// Prompt of a reduce invocation (minijinja: `summaries` (joined), `count`, `instructions`).
    pub reduce_prompt: String,
}

impl Default for SummarizeSettings {
    fn default() -> Self {
        SummarizeSettings {
            chunk_tokens: 1024,
            map_concurrency: 4,
            max_parts: 64,
            partial_num_predict: 256,
            single_prompt: "Summarize this document.{% if instructions %} {{ instructions }}{% endif %}\n\n{{ text }}".into(),
            map_prompt: "Summarize this part ({{ part }} of {{ parts }}) of a longer document. Keep names, numbers and conclusions.\n\n{{ text }}".into(),
            reduce_prompt: "Combine these {{ count }} summaries of consecutive parts of one document into a single summary.{% if instructions %} {{ instructions }}{% endif %}\n\n{{ summaries }}".into(),
        }
    }
}
