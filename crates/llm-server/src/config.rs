//! LLM Server settings (the `[server]` section of the config file).

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// API keys clients must present, as `Authorization: Bearer KEY` (what the openai package
    /// sends) or `x-api-key: KEY`. A list, or one comma-separated string
    /// (`STRATA_SERVER__API_KEYS=key1,key2`). Empty, with no `api_keys_file`: no authentication,
    /// which only a loopback listener (or `allow_unauthenticated`) accepts.
    pub api_keys: api_keys::KeyList,
    /// A file with more API keys, one per line (blank lines and `#` comments skipped), re-read
    /// while serving so keys rotate without a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    /// How often `api_keys_file` is checked for changes (milliseconds); 0 = never.
    pub api_keys_reload_ms: u64,
    /// Serve a non-loopback address without API keys. Off: such a server refuses to start.
    pub allow_unauthenticated: bool,
    /// Host names a loopback listener answers besides loopback ones (`localhost`, `*.localhost`,
    /// 127.0.0.0/8, `::1`); other `Host` headers get 403 (DNS rebinding). `*.example` patterns
    /// match subdomains. Non-loopback listeners answer every host name (they require keys).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the API (CORS); a request with another `Origin` gets 403.
    /// `*` in a pattern matches any characters; `["*"]` allows every origin.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest total of request header bytes (`name: value` lines); larger ones get 431.
    pub max_header_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body; deeper ones get 400.
    pub max_json_depth: usize,
    /// Most chat messages in one request; more get 400.
    pub max_messages: usize,
    /// Inputs in one embedding request (`/api/embed`, `/v1/embeddings`); OpenAI allows 2048.
    pub max_embed_inputs: usize,
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
            api_keys: api_keys::KeyList::default(),
            api_keys_file: None,
            api_keys_reload_ms: 5_000,
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
            allowed_origins: default_allowed_origins(),
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_json_depth: 64,
            max_messages: 1024,
            max_embed_inputs: 2048,
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

/// Ollama's default origins: local pages on any port, and the desktop-app and browser-extension
/// schemes Ollama allows, with `[::1]` in place of its `0.0.0.0`.
pub fn default_allowed_origins() -> Vec<String> {
    let mut origins = Vec::new();
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        for scheme in ["http", "https"] {
            origins.push(format!("{scheme}://{host}"));
            origins.push(format!("{scheme}://{host}:*"));
        }
    }
    for scheme in [
        "app",
        "file",
        "tauri",
        "vscode-webview",
        "vscode-file",
        "chrome-extension",
        "moz-extension",
        "safari-web-extension",
    ] {
        origins.push(format!("{scheme}://*"));
    }
    origins
}
