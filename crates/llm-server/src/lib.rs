//! The strata LLM Server: Ollama's API and OpenAI's API in front of a pluggable backend.
//!
//! Layout: `ollama/` and `openai/` hold each protocol's types and pure conversions to the
//! internal contract; `routes/` the thin handlers; `backend/` one module per backend;
//! `generation.rs` the shared path every generation takes; `startup.rs` building and running.

pub mod backend;
pub mod config;
pub mod edge;
pub mod embedding;
pub mod error;
pub mod generation;
pub mod limits;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod routes;
pub mod security;
pub mod startup;
pub mod unsupported;

pub use backend::bedrock::BedrockBackend;
pub use backend::chain::{ChainBackend, ChainSettings};
pub use backend::embedded::EmbeddedBackend;
pub use backend::instant::{InstantBackend, InstantConfig};
pub use backend::Backend;
pub use config::{BackendKind, ServerSettings};
pub use startup::{shutdown_signal, Application};
