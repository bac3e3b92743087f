//! Ollama's API vocabulary (`api/types.go`) and pure conversions to and from the contract.

pub mod convert;
pub mod embed;
pub mod types;
