//! Emulator settings (the `[bedrock_emulator]` section).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The model id the emulator serves by default, in Bedrock's naming style.
pub const DEFAULT_MODEL_ID: &str = "strata.smollm2-135m-instruct-v1:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    Embedded,
    Instant,
}

/// Which requests are let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No check at all.
    Off,
    /// A SigV4 `Authorization` header or a `Bearer` API key must be present (not verified).
    Any,
    /// Only `Bearer` API keys listed in `api_keys`.
    Keys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorSettings {
    pub listen: SocketAddr,
    /// Connection timeouts of this listener: header read (slow clients) and idle keep-alive.
    pub connections: telemetry::ConnectionSettings,
    pub generator: GeneratorKind,
    /// Bedrock model ids -> local model names. Other ids get ResourceNotFoundException.
    pub models: BTreeMap<String, String>,
    /// Bedrock embedding model ids (Titan Text Embeddings V2, Cohere Embed v3) -> the local
    /// models whose embeddings answer their InvokeModel requests.
    pub embedding_models: BTreeMap<String, String>,
    pub auth: AuthMode,
    /// Bedrock API keys accepted when `auth = "keys"`.
    pub api_keys: Vec<String>,
    /// A file with more keys, one per line (blank lines and lines starting with `#` are
    /// skipped), accepted as well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<std::path::PathBuf>,
    /// How often `api_keys_file` is checked for changes (milliseconds); a changed file replaces
    /// its keys without a restart. An unreadable or empty file keeps the previous keys. 0 = never.
    pub api_keys_reload_ms: u64,
    /// Serve a non-loopback `listen` address without `auth = "keys"`: only where nobody but
    /// the emulator's callers can reach it (a private container network).
    pub allow_unauthenticated: bool,
    /// Requests in progress at once; beyond this, ThrottlingException (429).
    pub max_concurrent_requests: usize,
    /// Largest request body; larger ones get ValidationException (413... as Bedrock: 400).
    pub max_body_bytes: usize,
    /// Largest request header block in bytes (`name: value\r\n` per field); larger ones get 431
    /// with a ValidationException.
    pub max_header_bytes: usize,
    /// Fault injection: a share of requests answered with a server-side error (off by default).
    pub faults: crate::faults::FaultSettings,
    pub instant: instant::InstantConfig,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        let mut models = BTreeMap::new();
        models.insert(DEFAULT_MODEL_ID.to_owned(), engine::DEFAULT_MODEL.to_owned());
        let embedding_models = [
            "amazon.titan-embed-text-v2:0",
            "cohere.embed-english-v3",
            "cohere.embed-multilingual-v3",
        ]
        .into_iter()
        .map(|id| (id.to_owned(), engine::DEFAULT_MODEL.to_owned()))
        .collect();
        EmulatorSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            connections: telemetry::ConnectionSettings::default(),
            generator: GeneratorKind::Embedded,
            models,
            embedding_models,
            auth: AuthMode::Any,
            api_keys: Vec::new(),
            api_keys_file: None,
            api_keys_reload_ms: 5000,
            allow_unauthenticated: false,
            max_concurrent_requests: 16,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            faults: crate::faults::FaultSettings::default(),
            instant: instant::InstantConfig {
                models: vec![engine::DEFAULT_MODEL.to_owned()],
                ..Default::default()
            },
        }
    }
}
