//! Where Bedrock is and how to talk to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BedrockSettings {
    /// AWS region; empty means the SDK's default chain (`AWS_REGION`, profile).
    pub region: String,
    /// Endpoint override (a local emulator); empty means AWS (or `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
    pub endpoint_url: String,
    /// Contract model names -> Bedrock model ids; names not listed are sent as they are.
    pub model_ids: BTreeMap<String, String>,
    /// Model names clients embed with -> Bedrock embedding model ids (Titan Text Embeddings
    /// V2, Cohere Embed v3). A Titan V2 or Cohere v3 id works as a name too; any other name
    /// is refused for embeddings (a generation model cannot embed).
    pub embedding_model_ids: BTreeMap<String, String>,
    /// Attempts per request for throttling and unavailability (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; each retry doubles it, up to `max_backoff_ms`, with full jitter.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Longest wait for the next event of a ConverseStream. A Bedrock (or network) that goes
    /// silent mid-stream ends the stream with a timeout error after this, rather than holding
    /// the caller until its own, whole-request timeout.
    pub chunk_timeout_secs: u64,
}

impl Default for BedrockSettings {
    fn default() -> Self {
        BedrockSettings {
            region: String::new(),
            endpoint_url: String::new(),
            model_ids: BTreeMap::new(),
            embedding_model_ids: [
                ("titan-embed-text-v2", "amazon.titan-embed-text-v2:0"),
                ("cohere-embed-english-v3", "cohere.embed-english-v3"),
                ("cohere-embed-multilingual-v3", "cohere.embed-multilingual-v3"),
            ]
            .into_iter()
            .map(|(name, id)| (name.to_owned(), id.to_owned()))
            .collect(),
            max_attempts: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 2000,
            chunk_timeout_secs: 300,
        }
    }
}
