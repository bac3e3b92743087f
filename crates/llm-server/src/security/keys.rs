//! API keys at the front door, configured like the gateway's (`server.api_keys`,
//! `api_keys_file`, `api_keys_reload_ms`) and checked with the same `api-keys` crate: digests
//! only, constant-time comparison, key ids in logs. A client presents its key the way its
//! library does: `Authorization: Bearer KEY` (the openai package; ollama-python with
//! `headers=`) or `x-api-key: KEY`.

use std::sync::Arc;
use std::time::Duration;

use api_keys::KeySource;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use contract::ErrorKind;
use secrecy::SecretString;
use telemetry::RequestInfo;

use crate::config::ServerSettings;

/// Who is asking, as far as the backends need to know: the key the caller authenticated with,
/// which the chain backend passes on to the gateway so that its usage plans apply per client.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub api_key: Option<SecretString>,
}

/// The keys in force; `None` when the server has none (no authentication).
pub struct Keys {
    source: Option<Arc<KeySource>>,
    reload: Duration,
}

impl Keys {
    /// Reads `api_keys` and `api_keys_file` (an unreadable file is an error: a typo in its
    /// path must not start a server without its keys).
    pub fn load(settings: &ServerSettings) -> std::io::Result<Keys> {
        let reload = Duration::from_millis(settings.api_keys_reload_ms);
        if settings.api_keys.is_empty() && settings.api_keys_file.is_none() {
            return Ok(Keys { source: None, reload });
        }
        let source = KeySource::load(settings.api_keys.0.clone(), settings.api_keys_file.clone())?;
        Ok(Keys { source: Some(Arc::new(source)), reload })
    }

    pub fn required(&self) -> bool {
        self.source.is_some()
    }

    /// Key ids, for the startup log line.
    pub fn ids(&self) -> Vec<String> {
        self.source
            .as_ref()
            .map(|s| s.keys().ids().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Re-reads `api_keys_file` while the returned watcher lives.
    pub fn watch(&self) -> Option<api_keys::Watcher> {
        self.source.as_ref()?.watch_while_alive(self.reload)
    }
}

/// The key a request presents: `Authorization: Bearer KEY` first, then `x-api-key`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
        .filter(|k| !k.is_empty())
}

/// `GET /` and `HEAD /` answer "Ollama is running" to anyone: health checks and load balancers
/// probe it without keys, and it tells nothing.
fn is_liveness(req: &Request) -> bool {
    req.uri().path() == "/" && matches!(*req.method(), Method::GET | Method::HEAD)
}

/// Middleware: 401 in the protocol's shape unless the request carries a valid key (when keys
/// are configured); the key's id goes to the access log, the key itself to the backends only.
pub async fn check(State(keys): State<Arc<Keys>>, mut req: Request, next: Next) -> Response {
    let Some(source) = &keys.source else {
        req.extensions_mut().insert(Caller::default());
        return next.run(req).await;
    };
    if is_liveness(&req) {
        return next.run(req).await;
    }
    let info = req.extensions().get::<RequestInfo>().cloned();
    let trace = info.as_ref().map(|i| i.trace.trace_id.as_str());
    let Some(key) = presented(req.headers()) else {
        return unauthorized(
            &req,
            trace,
            "missing API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`",
        );
    };
    let keys = source.keys();
    let Some(id) = keys.check(key.as_bytes()) else {
        return unauthorized(&req, trace, "invalid API key");
    };
    if let Some(info) = &info {
        let _ = info.key_id.set(id.to_owned());
    }
    let caller = Caller { api_key: Some(SecretString::from(key.to_owned())) };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn unauthorized(req: &Request, trace: Option<&str>, message: &str) -> Response {
    let mut r = super::refuse(
        req.uri().path(),
        StatusCode::UNAUTHORIZED,
        ErrorKind::Unauthorized,
        trace,
        message.to_owned(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"strata\""));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    type Headers<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        let cases: &[(Headers, Option<&str>)] = &[
            (&[("authorization", "Bearer k1")], Some("k1")),
            (&[("authorization", "bearer  k1 ")], Some("k1")),
            (&[("x-api-key", "k2")], Some("k2")),
            (&[("authorization", "Bearer k1"), ("x-api-key", "k2")], Some("k1")),
            (&[("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", "k2")], Some("k2")),
            (&[("authorization", "Basic dXNlcjpwYXNz")], None),
            (&[("authorization", "Bearer ")], None),
            (&[], None),
        ];
        for (h, want) in cases {
            assert_eq!(presented(&headers(h)), *want, "{h:?}");
        }
    }
}
