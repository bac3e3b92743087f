//! Browser requests: a page may call the API only from an allowed origin
//! (`server.allowed_origins`; Ollama's defaults), and gets the CORS answers it needs from
//! there. A cross-site page's request is refused with 403 before it runs, which also stops the
//! "simple" `text/plain` POSTs that CORS itself lets through unasked. Requests without an
//! `Origin` (every non-browser client) and same-origin ones pass untouched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contract::ErrorKind;
use telemetry::RequestInfo;

/// How long a browser may cache a preflight answer (Chromium caps it at two hours).
const PREFLIGHT_MAX_AGE_SECS: u32 = 7200;
const ALLOWED_METHODS: &str = "GET, POST, DELETE, HEAD, OPTIONS";
/// What a page may read of an answer besides the CORS-safelisted headers.
const EXPOSED_HEADERS: &str = "server-timing, traceparent, x-request-id";

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Lowercase patterns; `*` matches any run of characters.
    patterns: Vec<String>,
}

impl OriginPolicy {
    pub fn new(patterns: &[String]) -> Self {
        OriginPolicy {
            patterns: patterns
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.patterns.iter().any(|p| matches(p, &origin))
    }
}

/// A pattern ending in `:*` (after a literal scheme and host) stands for any port, digits only,
/// so `http://localhost:*` cannot match `http://localhost:1.evil.example`; other `*`s match any
/// characters.
fn matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_suffix('*').filter(|p| p.ends_with(':') && !p.contains('*')) {
        Some(prefix) => origin
            .strip_prefix(prefix)
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())),
        None => glob(pattern.as_bytes(), origin.as_bytes()),
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of bytes (none included).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // The classic linear backtracking match: remember the last `*` and retry from there.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether the page's origin is the server itself (`http://` + the `Host` it asked for).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// Middleware: refuses disallowed origins, answers preflights, and adds the CORS headers to
/// allowed cross-origin answers.
pub async fn check(State(policy): State<Arc<OriginPolicy>>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let text = origin.to_str().unwrap_or_default();
    if same_origin(text, req.headers()) {
        return next.run(req).await;
    }
    if !policy.allows(text) {
        let trace = req.extensions().get::<RequestInfo>().map(|i| i.trace.trace_id.clone());
        let message = format!("origin {text:?} is not allowed; add it to server.allowed_origins to let its pages call this server");
        return super::refuse(
            req.uri().path(),
            StatusCode::FORBIDDEN,
            ErrorKind::InvalidRequest,
            trace.as_deref(),
            message,
        );
    }
    if req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin, req.headers());
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// The answer to an allowed origin's preflight: the methods the API has, and the headers the
/// page asked to send (the origin is trusted, so whatever it asks for is allowed).
fn preflight(origin: HeaderValue, request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE_SECS));
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("http://localhost:*", "http://localhost:3000", true),
            ("http://localhost:*", "http://localhost", false),
            ("app://*", "app://anything", true),
            ("*", "https://evil.example", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("a*b*c", "abxbc", true),
            ("a*b*c", "acb", false),
            ("", "", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }

    #[test]
    fn default_origins_are_local_pages_and_apps_only() {
        let p = OriginPolicy::new(&crate::config::default_allowed_origins());
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:5173",
            "app://obsidian.md",
            "vscode-webview://abc",
            "chrome-extension://id",
            "HTTP://LOCALHOST:1",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://localhost:3000.evil.example",
            "http://localhost:",
            "null",
            "http://127.0.0.1.evil.example",
            "http://0.0.0.0:1",
            "https://evil.example/http://localhost",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }
}
