//! LLM Server settings (the `[server]` section of the config file).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::backend::chain::ChainSettings;
use crate::backend::instant::InstantConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The llama.cpp engine in this process.
    Embedded,
    /// A fixed reply, no model: for tests and overhead benchmarks.
    Instant,
    /// Amazon Bedrock (or a Bedrock emulator), configured by the `[bedrock]` section.
    Bedrock,
    /// The API Gateway -> MainService -> Lambda -> Bedrock chain, configured by `[server.chain]`.
    Chain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on. Ollama's default port is 11434.
    pub listen: SocketAddr,
    /// Connection timeouts of this listener: header read (slow clients) and idle keep-alive.
    pub connections: telemetry::ConnectionSettings,
    pub backend: BackendKind,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest total of request header bytes (`name: value` lines); larger ones get 431.
    pub max_header_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body; deeper ones get 400.
    pub max_json_depth: usize,
    /// Most chat messages in one request; more get 400.
    pub max_messages: usize,
    /// Longest model name in bytes; longer ones get 400.
    pub max_model_name_bytes: usize,
    /// Whether clients may name a `.gguf` file as their model. Off, model names are catalog
    /// names, `[models.models]` names or remote ids, and no client input reaches a file path.
    pub allow_model_paths: bool,
    /// Generations running at once (beyond the engine's own batching width they queue in the
    /// engine).
    pub max_concurrent_requests: usize,
    /// Requests waiting for a concurrency slot; beyond this, 503.
    pub max_queued_requests: usize,
    /// Longest a generation may take end to end; then it ends with a timeout error.
    pub request_timeout_secs: u64,
    /// On SIGINT/SIGTERM, how long in-flight streams may run before they are ended with an error.
    pub shutdown_grace_secs: u64,
    pub instant: InstantConfig,
    pub chain: ChainSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 11434)),
            connections: telemetry::ConnectionSettings::default(),
            backend: BackendKind::Embedded,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_json_depth: 64,
            max_messages: 1024,
            max_model_name_bytes: 256,
            allow_model_paths: false,
            max_concurrent_requests: 64,
            max_queued_requests: 256,
            request_timeout_secs: 600,
            shutdown_grace_secs: 10,
            instant: InstantConfig::default(),
            chain: ChainSettings::default(),
        }
    }
}
