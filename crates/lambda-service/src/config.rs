//! What `strata lambda-service` runs: the functions, their limits, and the service's own limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Synchronous invocation payload limit, request and response (AWS: 6 MB).
pub const SYNC_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// Streamed response limit (AWS: 20 MB, a soft limit).
pub const STREAM_RESPONSE_LIMIT: usize = 20 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaServiceSettings {
    /// Address of the Lambda service API (`AWS_ENDPOINT_URL_LAMBDA` for clients).
    pub listen: SocketAddr,
    /// Connection timeouts of this listener: header read (slow clients) and idle keep-alive.
    pub connections: telemetry::ConnectionSettings,
    /// Region in the function ARNs this service reports, the region callers sign for, and the
    /// functions' `AWS_REGION`.
    pub region: String,
    /// Callers of the service API must sign their requests (SigV4, as the AWS SDKs do) with
    /// this access key id and `caller_secret_access_key`; others get 403 in Lambda's shape.
    /// Empty: requests are not checked, which only a loopback `listen` address (or
    /// `allow_unauthenticated`) accepts.
    pub caller_access_key_id: String,
    /// The secret of `caller_access_key_id`. Prefer `STRATA_LAMBDA_SERVICE__CALLER_SECRET_ACCESS_KEY`
    /// to the file.
    pub caller_secret_access_key: api_keys::SharedSecret,
    /// Serve a non-loopback `listen` address without caller credentials (only when a firewall
    /// admits nobody but MainService).
    pub allow_unauthenticated: bool,
    /// Account id in the function ARNs.
    pub account_id: String,
    /// Largest invocation request and synchronous response, in bytes.
    pub max_payload_bytes: usize,
    /// Largest streamed response, in bytes.
    pub max_stream_bytes: usize,
    /// Largest request header block in bytes (`name: value\r\n` per field); larger ones get 431
    /// with a RequestTooLargeException.
    pub max_header_bytes: usize,
    /// After a function process exits holding an invocation it has not answered, how long an
    /// answer it sent just before exiting (`/response`, `/error`, already on its way through
    /// the Runtime API) may still arrive before the invocation fails with `Runtime.ExitError`.
    pub exit_drain_ms: u64,
    /// Fault injection, for tests: the service's own errors on a share of invocations.
    pub faults: crate::faults::FaultSettings,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSettings>,
}

impl Default for LambdaServiceSettings {
    fn default() -> Self {
        LambdaServiceSettings {
            listen: "127.0.0.1:9001".parse().expect("valid default address"),
            connections: telemetry::ConnectionSettings::default(),
            region: "us-east-1".into(),
            caller_access_key_id: String::new(),
            caller_secret_access_key: api_keys::SharedSecret::default(),
            allow_unauthenticated: false,
            account_id: "000000000000".into(),
            max_payload_bytes: SYNC_PAYLOAD_LIMIT,
            max_stream_bytes: STREAM_RESPONSE_LIMIT,
            max_header_bytes: 32 * 1024,
            exit_drain_ms: 500,
            faults: crate::faults::FaultSettings::default(),
            functions: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionSettings {
    /// The executable (a custom runtime's `bootstrap`).
    pub path: PathBuf,
    /// The function's environment variables (GetFunction's `Environment.Variables`), on top of
    /// the variables Lambda defines. The service's own environment never reaches the function.
    pub env: BTreeMap<String, String>,
    /// The execution role's credentials, given to the function as Lambda gives it a role's
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and, unlike `env`,
    /// never shown by GetFunction. Empty: none.
    pub role_credentials: RoleCredentials,
    /// Execution environments kept warm; also the function's concurrency limit.
    pub concurrency: usize,
    /// Invocations that may wait for a free environment; beyond it TooManyRequestsException.
    pub queue_depth: usize,
    /// Function timeout in milliseconds (AWS allows up to 900000).
    pub timeout_ms: u64,
    /// Reported as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`; not enforced.
    pub memory_mb: u32,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        FunctionSettings {
            path: PathBuf::new(),
            env: BTreeMap::new(),
            role_credentials: RoleCredentials::default(),
            concurrency: 4,
            queue_depth: 64,
            timeout_ms: 300_000,
            memory_mb: 1024,
        }
    }
}

/// Credentials as an execution role gives them to a function.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: api_keys::SharedSecret,
    /// Empty for long-term keys.
    pub session_token: api_keys::SharedSecret,
}
