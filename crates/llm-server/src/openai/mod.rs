//! OpenAI's API vocabulary and pure conversions to and from the contract.

pub mod convert;
pub mod embed;
pub mod types;
