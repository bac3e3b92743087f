//! A local AWS Lambda service: the service API (Invoke, InvokeWithResponseStream) for callers,
//! and the Runtime API for the unmodified function processes it spawns, keeps warm, queues
//! for, times out and restarts. The official SDKs reach it through `AWS_ENDPOINT_URL_LAMBDA`.

mod caller_auth;
mod config;
mod errors;
mod eventstream;
mod faults;
mod function;
mod function_env;
mod invocation;
mod routes;
mod runtime_api;
mod sigv4;
mod startup;

pub use config::{
    FunctionSettings, LambdaServiceSettings, RoleCredentials, STREAM_RESPONSE_LIMIT,
    SYNC_PAYLOAD_LIMIT,
};
pub use function::{Function, FunctionStats};
pub use startup::Application;
