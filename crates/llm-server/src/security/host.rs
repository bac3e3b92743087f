//! DNS rebinding defence, as Ollama does it (CVE-2024-28224): a page on `evil.example`
//! whose name is re-pointed at 127.0.0.1 can reach a loopback listener from the victim's own
//! browser, but its requests still say `Host: evil.example`. A loopback listener therefore
//! answers only loopback host names (and those configured in `server.allowed_hosts`). A
//! non-loopback listener answers every name: it requires API keys instead.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use contract::ErrorKind;
use telemetry::RequestInfo;

#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Whether names are checked at all (loopback listeners only).
    enforce: bool,
    /// Lowercase exact names, and `*.suffix` patterns stored as `.suffix`.
    extra: Vec<String>,
}

impl HostPolicy {
    pub fn new(listener_is_loopback: bool, allowed_hosts: &[String]) -> Self {
        let extra = allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .map(|h| h.strip_prefix('*').map(str::to_owned).unwrap_or(h))
            .collect();
        HostPolicy { enforce: listener_is_loopback, extra }
    }

    /// Whether a request naming `host` (a `Host` header value, port included) is answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        if !self.enforce {
            return true;
        }
        // HTTP/1.0 requests may carry no Host at all; a browser always sends one.
        let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else { return true };
        let name = strip_port(host).to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(&name);
        if literal.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.extra.iter().any(|a| {
            if a.starts_with('.') {
                name.ends_with(a.as_str())
            } else {
                *a == name
            }
        })
    }
}

/// `name:port` -> `name`; `[v6]:port` -> `[v6]`; a bare name or v6 literal as it is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Middleware: 403 for host names a loopback listener does not answer.
pub async fn check(State(policy): State<Arc<HostPolicy>>, req: Request, next: Next) -> Response {
    // HTTP/2 carries the host in the URI's authority instead of a header.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    if policy.allows(host.as_deref()) {
        return next.run(req).await;
    }
    let trace = req.extensions().get::<RequestInfo>().map(|i| i.trace.trace_id.clone());
    let message = format!("host name {:?} is not allowed on this loopback listener; add it to server.allowed_hosts if it is yours", host.unwrap_or_default());
    super::refuse(
        req.uri().path(),
        StatusCode::FORBIDDEN,
        ErrorKind::InvalidRequest,
        trace.as_deref(),
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listeners_answer_loopback_names_only() {
        let p = HostPolicy::new(true, &["my.box".into(), "*.lan".into()]);
        for ok in [
            "localhost",
            "LOCALHOST:11434",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:11434",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:11434",
            "my.box",
            "My.Box:1",
            "x.lan",
            "a.b.lan:9",
        ] {
            assert!(p.allows(Some(ok)), "{ok}");
        }
        assert!(p.allows(None), "HTTP/1.0 without Host");
        for bad in [
            "evil.example",
            "evil.example:11434",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "0.0.0.0",
            "[::2]:1",
            "lan",
            "my.box.evil",
            "notlocalhost",
        ] {
            assert!(!p.allows(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn other_listeners_answer_every_name() {
        let p = HostPolicy::new(false, &[]);
        assert!(p.allows(Some("evil.example")));
    }

    #[test]
    fn ports_are_stripped_without_mangling_v6() {
        assert_eq!(strip_port("a:1"), "a");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a"), "a");
    }
}
