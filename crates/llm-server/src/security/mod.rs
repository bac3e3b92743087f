//! Who may talk to the LLM Server, checked before any handler runs, outermost first:
//!
//! 1. `host`: on a loopback listener, only loopback host names (DNS rebinding);
//! 2. `origin`: browser requests only from allowed origins, with their CORS answers;
//! 3. `keys`: the caller's API key, when keys are configured.
//!
//! A server that would serve the network without keys refuses to start (`check_exposure`).
//! Every refusal is in the protocol's own error shape and is logged at info with the trace id,
//! never with the key.

pub mod host;
pub mod keys;
pub mod origin;

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::ErrorKind;

use crate::config::ServerSettings;
use crate::edge::protocol_of;
use crate::error::ApiError;

pub use host::HostPolicy;
pub use keys::{Caller, Keys};
pub use origin::OriginPolicy;

/// Refuses to serve a non-loopback address without keys unless that is explicitly allowed.
/// `has_keys` counts keys from the file too.
pub fn check_exposure(
    settings: &ServerSettings,
    listen: SocketAddr,
    has_keys: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() || has_keys || settings.allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "refusing to serve {listen} without authentication: anyone who can reach it could use it. \
         Give clients API keys with `server.api_keys` (STRATA_SERVER__API_KEYS=key1,key2) or \
         `server.api_keys_file`, or pass --allow-unauthenticated (server.allow_unauthenticated = true) \
         if something in front of strata authenticates callers"
    ))
}

/// A refusal in the shape of the protocol the path belongs to, logged with the trace id.
pub(crate) fn refuse(
    path: &str,
    status: StatusCode,
    kind: ErrorKind,
    trace_id: Option<&str>,
    message: String,
) -> Response {
    tracing::info!(trace_id = trace_id.unwrap_or("-"), status = status.as_u16(), reason = %message, "request refused");
    ApiError::with_status(protocol_of(path), status, kind, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_keyed_or_explicitly_open_servers_start() {
        let s = ServerSettings::default();
        let public: SocketAddr = "0.0.0.0:11434".parse().unwrap();
        let e = check_exposure(&s, public, false).unwrap_err();
        assert!(
            e.contains("STRATA_SERVER__API_KEYS") && e.contains("--allow-unauthenticated"),
            "{e}"
        );
        assert!(check_exposure(&s, public, true).is_ok());
        assert!(check_exposure(&s, "127.0.0.1:1".parse().unwrap(), false).is_ok());
        assert!(check_exposure(&s, "[::1]:1".parse().unwrap(), false).is_ok());
        let open = ServerSettings { allow_unauthenticated: true, ..ServerSettings::default() };
        assert!(check_exposure(&open, public, false).is_ok());
    }
}
