//! A local Amazon API Gateway (REST API) with HTTP proxy integrations: a route table of
//! resources and methods, API keys in `x-api-key`, usage plans (rate, burst, quota), the
//! integration timeout, the payload limit, and API Gateway's own error responses. Request and
//! response bodies stream through unbuffered, so NDJSON, SSE and event streams pass as produced.

pub mod access;
pub mod config;
pub mod error;
pub mod proxy;
pub mod request_path;
pub mod route_table;
pub mod startup;
pub mod usage;

pub use config::{GatewaySettings, QuotaPeriod, RouteSettings, UsagePlan};
pub use error::GatewayError;
pub use startup::Application;
