//! MainService: the hop between the API Gateway and the Lambda function. It validates contract
//! requests into domain values, formats them per model (system prompt, default options,
//! history trimmed to the context), runs workflows (map-reduce summaries), and invokes the
//! function with `aws-sdk-lambda`, whole or streamed, with its own retries and concurrency
//! bounds. Requests and answers are binary protobuf or JSON (see docs/contract.md).

pub mod codec;
pub mod config;
pub mod domain;
pub mod error;
pub mod format;
pub mod gateway_auth;
pub mod lambda;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod summarize;

pub use config::{
    DefaultOptions, LambdaSettings, MainServiceSettings, ModelOverrides, ModelSettings,
    SummarizeSettings,
};
pub use error::{FieldError, ServiceError};
pub use startup::Application;
