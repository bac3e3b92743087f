//! What a caller asks the engine for, and what comes back.

use std::time::Duration;

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering an assistant's tool call.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Tools an assistant message called (its `content` may be empty then).
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: which tool answered.
    pub tool_name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into(), tool_calls: Vec::new(), tool_name: None }
    }
}

/// A tool the model may call: its arguments must match `parameters` (a JSON schema).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Whether and which tools the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model answers or calls tools, as it sees fit.
    #[default]
    Auto,
    /// The model must call at least one tool.
    Required,
    /// The model must call this tool.
    Named(String),
}

/// The tools offered to one request. `None` in [`GenerateParams`] means no tools (OpenAI's
/// `tool_choice: "none"` included).
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub specs: Vec<ToolSpec>,
    pub choice: ToolChoice,
    /// Several calls in one answer (OpenAI's `parallel_tool_calls`, on by default).
    pub parallel: bool,
}

/// A call the model made: `arguments` match the tool's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// What shape the answer text must have.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    /// One JSON object.
    Json,
    /// A JSON value matching this schema.
    Schema(serde_json::Value),
}

/// The text the model continues.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A conversation rendered with the model's chat template. A leading `System` message
    /// replaces the template's default system prompt.
    Chat(Vec<ChatMessage>),
    /// Text given to the model verbatim (no template).
    Raw(String),
}

/// Sampling options with Ollama's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at; 0 disables it, -1 means the whole context.
    pub repeat_last_n: i32,
    /// Random seed; `None` picks a fresh one per request.
    pub seed: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: None,
        }
    }
}

/// Everything that shapes one generation besides the prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    /// Maximum new tokens; `None` generates until end of turn or the context is full.
    pub max_tokens: Option<u32>,
    /// Context window for this request (prompt + answer), capped by the engine's limits.
    /// `None` uses the engine's default.
    pub num_ctx: Option<u32>,
    /// Generation stops before any of these strings; they are not returned.
    pub stop: Vec<String>,
    /// Constrain the output to JSON, or to a schema (llama.cpp grammar).
    pub format: OutputFormat,
    /// Tools the model may call; its answer is then constrained to a call or a reply.
    pub tools: Option<Tools>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineRequest {
    pub prompt: Prompt,
    pub params: GenerateParams,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of turn or an end-of-generation token.
    Stop,
    /// One of the request's stop strings (not included in the text).
    StopSequence,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The model called tools (the `Event::ToolCall`s before `Done`).
    ToolUse,
}

/// Counts and durations of one finished generation, all measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    /// Time spent evaluating the prompt.
    pub prompt_eval: Duration,
    pub completion_tokens: u32,
    /// Time from the end of prompt evaluation to the last token.
    pub eval: Duration,
    /// Time before prompt evaluation started: model load (first request only) and queueing.
    pub load: Duration,
}

/// One item of a generation stream: text pieces, then exactly one `Done` (or an error).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    ToolCall(ToolCall),
    Done(Completion),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("server busy, please try again: {depth} requests are already queued")]
    QueueFull { depth: usize },
    #[error("prompt is {tokens} tokens, more than the context window of {limit} tokens")]
    PromptTooLong { tokens: u32, limit: u32 },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("chat template error: {0}")]
    Template(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the engine has shut down")]
    ShutDown,
    /// The caller went away before the request was queued.
    #[error("the request was cancelled")]
    Cancelled,
    /// The reader fell so far behind that the text waiting for it passed the cap; the
    /// generation was stopped rather than buffered without bound.
    #[error("generation stopped: more than {limit} bytes of output were waiting for a reader that did not keep up")]
    ReaderBehind { limit: usize },
}
