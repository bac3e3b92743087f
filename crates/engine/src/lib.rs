//! Embedded inference for strata: llama.cpp behind a channel, with continuous batching,
//! the GGUF's own chat template, Ollama-style sampling, and a model resolver/cache.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use engine::*;
//! let resolved = Resolver::new(ResolverConfig::default()).pull(DEFAULT_MODEL, &mut |_| {})?;
//! let engine = Engine::load(ModelSpec { name: resolved.name, path: resolved.path, chat_template: None }, EngineConfig::default())?;
//! let request = EngineRequest {
//!     prompt: Prompt::Chat(vec![ChatMessage::new(Role::User, "Hello!")]),
//!     params: GenerateParams::default(),
//! };
//! let (text, completion) = std::sync::Arc::new(engine).generate(request).await?.collect_text().await?;
//! # Ok(()) }
//! ```

mod catalog;
mod config;
mod embed;
mod engine;
mod grammar;
mod model_info;
mod outbox;
mod penalty;
mod pool;
mod prefix_index;
mod prompt;
mod reference;
mod request;
pub mod resolver;
mod sampling;
mod scheduler;
pub mod schema;
mod stop;
mod template;
mod tools;
mod utf8;

pub use catalog::{CatalogEntry, CATALOG, DEFAULT_MODEL};
pub use config::{EngineConfig, KvCacheType, ModelSpec};
pub use embed::{EmbedInput, EmbedRequest, Embeddings};
pub use engine::{Engine, EngineStats, Generation, LoadError};
pub use model_info::ModelInfo;
pub use pool::{Lease, Loaded, ModelPool, PoolError};
pub use reference::{
    model_footprint, reference_embed_rate, reference_rates, ModelFootprint, ReferenceRates,
};
pub use request::{
    ChatMessage, Completion, EngineError, EngineRequest, Event, FinishReason, GenerateParams,
    OutputFormat, Prompt, Role, SamplingParams, ToolCall, ToolChoice, ToolSpec, Tools,
};
pub use resolver::{LocalModel, PullProgress, ResolveError, Resolved, Resolver, ResolverConfig};
pub use stop::{StopMatcher, StopOutcome};
pub use template::ChatTemplate;
