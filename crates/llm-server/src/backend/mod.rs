//! Where generations and embeddings come from. The API layer speaks only this trait; each
//! backend is one module (`embedded`: the llama.cpp engine in-process; `chain`: the API Gateway
//! of the cloud chain; `bedrock`: Amazon Bedrock through the AWS SDK; `instant`: a fixed reply
//! for tests and overhead benchmarks). A new backend is one module here plus its arm in the
//! CLI's `serve` command (`crates/cli/src/commands/serve.rs`), which picks one by `--backend`.

pub mod bedrock;
pub mod chain;
pub mod embedded;
pub mod instant;

use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contract::ChunkStream;

pub use crate::security::Caller;
use futures::Stream;

/// A model as `/api/tags` and `/v1/models` list it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescriptor {
    pub name: String,
    pub size: u64,
    /// `sha256:...` or another stable id.
    pub digest: String,
    pub modified_at: DateTime<Utc>,
    pub format: String,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
}

/// Everything `/api/show` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDetails {
    pub descriptor: ModelDescriptor,
    pub template: String,
    /// Default parameters, one `name value` per line as Ollama prints them.
    pub parameters: String,
    pub model_info: serde_json::Map<String, serde_json::Value>,
    pub context_length: u32,
    /// What the model can do through this backend, in Ollama's words (`completion`, `tools`).
    pub capabilities: Vec<&'static str>,
}

/// A model in memory, for `/api/ps`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningModel {
    pub descriptor: ModelDescriptor,
    pub expires_at: DateTime<Utc>,
    pub context_length: u32,
}

/// One line of `/api/pull` progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    pub status: String,
    pub digest: Option<String>,
    pub total: Option<u64>,
    pub completed: Option<u64>,
}

pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullEvent, contract::Error>> + Send>>;

/// Load figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    pub queued: usize,
    pub active_sequences: usize,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Streams a generation: deltas then exactly one `done` or `error` chunk. Errors that
    /// happen before any output (unknown model, invalid request, overload) are returned
    /// directly so the API can answer with the right status code.
    /// `caller` is who asked (their API key, for backends that pass it on).
    async fn generate(
        &self,
        req: contract::GenerateRequest,
        caller: &Caller,
    ) -> Result<ChunkStream, contract::Error>;
    /// Makes sure a model is ready (Ollama's "load" request with an empty prompt).
    async fn load(&self, model: &str) -> Result<(), contract::Error>;
    async fn list_models(&self) -> Result<Vec<ModelDescriptor>, contract::Error>;
    async fn show(&self, model: &str) -> Result<ModelDetails, contract::Error>;
    async fn running(&self) -> Result<Vec<RunningModel>, contract::Error>;
    async fn pull(&self, model: &str) -> Result<PullStream, contract::Error>;
    /// Frees a model's memory (Ollama's `keep_alive: 0`). Backends without local models
    /// have nothing to do.
    async fn unload(&self, _model: &str) -> Result<(), contract::Error> {
        Ok(())
    }
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
    /// Whether [`Backend::embed`] is served; when not, the embedding routes answer 501.
    fn embeds(&self) -> bool {
        false
    }
    /// One vector per input, in order.
    async fn embed(
        &self,
        _req: contract::EmbedRequest,
        _caller: &Caller,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        Err(contract::Error::new(
            contract::ErrorKind::Internal,
            "this backend does not serve embeddings",
        ))
    }
}
