//! The one Bedrock client every strata component uses (the Lambda function, the LLM Server's
//! `bedrock` backend): Converse and ConverseStream through the official SDK, mapped to and
//! from the contract, and embeddings through InvokeModel, with our own retries (exponential
//! backoff, full jitter) on throttling.

mod client;
mod document;
pub mod embed;
mod errors;
mod mapping;
mod settings;

pub use client::BedrockClient;
pub use errors::map_sdk_error;
pub use mapping::{to_converse_parts, ConverseParts};
pub use settings::BedrockSettings;
