//! A local Amazon Bedrock Runtime: `Converse` and `ConverseStream` over HTTP with AWS's JSON
//! shapes, error headers and event-stream framing, and `InvokeModel` for the Titan and Cohere
//! embedding models, answered by the embedded engine (or the instant generator). The official AWS SDKs talk to it through an endpoint override.

pub mod auth;
pub mod config;
pub mod converse;
pub mod error;
pub mod eventstream;
pub mod faults;
pub mod generator;
pub mod invoke;
pub mod routes;
pub mod startup;

pub use config::{AuthMode, EmulatorSettings, GeneratorKind};
pub use generator::Generator;
pub use startup::Application;
