//! The one handler: path check, route, API key, payload limit, usage plan, then the HTTP proxy integration
//! with both bodies streamed through unbuffered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_keys::GATEWAY_SECRET_HEADER;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt, TryStreamExt};
use rand::distributions::{Alphanumeric, DistString};
use telemetry::TraceContext;

use crate::access::{AccessLog, LoggedBody};
use crate::error::GatewayError;
use crate::request_path::RequestPath;
use crate::startup::AppState;
use crate::usage::Refusal;

/// Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded, in either direction.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// API Gateway's `extendedRequestId` / `x-amz-apigw-id` look like `Q2xYFGz2IAMEbJw=`.
fn extended_request_id() -> String {
    let mut id = Alphanumeric.sample_string(&mut rand::thread_rng(), 15);
    id.push('=');
    id
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let trace =
        TraceContext::from_header(req.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut log = AccessLog::new(
        request_id.clone(),
        extended_request_id(),
        peer.ip(),
        Utc::now().format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        req.method().to_string(),
        req.uri().path().to_owned(),
        format!("{:?}", req.version()),
        trace.trace_id.clone(),
        trace.header(),
        started,
    );
    let mut response = match proxy(&state, &mut log, peer, &trace, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    if let Ok(v) = HeaderValue::from_str(&log.extended_request_id) {
        h.insert("x-amz-apigw-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&log.traceparent) {
        h.insert("traceparent", v);
    }
    log.status = response.status().as_u16();
    response.map(|body| Body::new(LoggedBody::new(body, log)))
}

async fn proxy(
    state: &AppState,
    log: &mut AccessLog,
    peer: SocketAddr,
    trace: &TraceContext,
    req: Request,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let path = RequestPath::parse(parts.uri.path()).map_err(|refusal| {
        tracing::info!(request_id = %log.request_id, trace_id = %log.trace_id, reason = %refusal, "request path refused");
        GatewayError::InvalidPath
    })?;
    let matched = state
        .routes
        .find(&parts.method, &path, parts.uri.query())
        .ok_or(GatewayError::MissingAuthenticationToken)?;
    log.resource_path = matched.route.resource_path.clone();

    let key_id = if matched.route.api_key_required {
        let presented =
            parts.headers.get("x-api-key").map(HeaderValue::as_bytes).unwrap_or_default();
        let id = state.keys.keys().check(presented).ok_or(GatewayError::Forbidden)?.to_owned();
        log.api_key_id = Some(id.clone());
        Some(id)
    } else {
        None
    };

    let max_body = state.settings.max_body_bytes;
    let declared: Option<u64> = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(GatewayError::RequestTooLong);
    }

    if let Some(id) = &key_id {
        state.usage.admit(id, state.plan_for(id), Instant::now(), Utc::now()).map_err(
            |r| match r {
                Refusal::Throttled(d) => GatewayError::TooManyRequests(d),
                Refusal::QuotaExceeded(d) => GatewayError::LimitExceeded(d),
            },
        )?;
    }

    let headers = upstream_headers(&parts.headers, peer, trace, &state.integration_secret);
    let mut request = state.client.request(parts.method, matched.upstream).headers(headers);
    let over_limit = Arc::new(AtomicBool::new(false));
    let has_body =
        declared.map_or(parts.headers.contains_key(header::TRANSFER_ENCODING), |n| n > 0);
    if has_body {
        request = request.body(reqwest::Body::wrap_stream(limited(
            body.into_data_stream(),
            max_body,
            Arc::clone(&over_limit),
        )));
    }

    let sent = Instant::now();
    let upstream = match tokio::time::timeout(state.integration_timeout(), request.send()).await {
        Err(_) => return Err(GatewayError::IntegrationTimeout),
        Ok(Err(_)) if over_limit.load(Ordering::Relaxed) => {
            return Err(GatewayError::RequestTooLong)
        }
        Ok(Err(e)) => {
            tracing::warn!(request_id = %log.request_id, error = %e, "integration request failed");
            return Err(GatewayError::IntegrationFailure);
        }
        Ok(Ok(r)) => r,
    };
    log.integration_latency = Some(sent.elapsed());

    let mut response = Response::builder().status(upstream.status());
    let out = response.headers_mut().expect("a fresh builder has headers");
    copy_end_to_end(upstream.headers(), out, &[]);
    // Server-Timing: this hop's own entry appended to the integration's. `dur` is the time from
    // the request's arrival to the integration's response headers (gateway work + integration latency).
    let dur = log.started.elapsed().as_secs_f64() * 1000.0;
    let mut timing: Vec<String> = out
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    timing.push(format!("gateway;dur={dur:.1}"));
    out.remove("server-timing");
    if let Ok(v) = HeaderValue::from_str(&timing.join(", ")) {
        out.insert("server-timing", v);
    }
    let body = timed_stream(
        upstream.bytes_stream(),
        state.stream_timeout(),
        state.stream_idle_timeout(),
        log.request_id.clone(),
    );
    Ok(response
        .body(Body::from_stream(body))
        .expect("status and headers came from a valid response"))
}

/// Copies headers except hop-by-hop ones, those the `Connection` header names, and `skip`.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, skip: &[&str]) {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || skip.contains(&n) || named.iter().any(|c| c == n) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// The client's headers as the integration sees them: no hop-by-hop ones, no `x-api-key`, no
/// `Host` (the integration's own is used), no client-sent gateway secret, `X-Forwarded-For`
/// extended with the caller, `traceparent` naming this hop as the parent, and the gateway's
/// own secret (`secret`, when set).
fn upstream_headers(
    from: &HeaderMap,
    peer: SocketAddr,
    trace: &TraceContext,
    secret: &Option<HeaderValue>,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len() + 4);
    copy_end_to_end(
        from,
        &mut out,
        &["x-api-key", "host", "traceparent", "x-forwarded-for", "expect", GATEWAY_SECRET_HEADER],
    );
    if let Some(v) = secret {
        out.insert(HeaderName::from_static(GATEWAY_SECRET_HEADER), v.clone());
    }
    let xff = match from.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{}, {}", prev.trim(), peer.ip()),
        _ => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    out.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(&trace.header()) {
        out.insert(HeaderName::from_static("traceparent"), v);
    }
    out
}

/// The request body, passed on chunk by chunk, failing once more than `max` bytes went by.
fn limited(
    body: impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
    max: usize,
    over: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut seen = 0usize;
    body.map_err(std::io::Error::other).and_then(move |chunk| {
        seen = seen.saturating_add(chunk.len());
        let result = if seen > max {
            over.store(true, Ordering::Relaxed);
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request body over the payload limit",
            ))
        } else {
            Ok(chunk)
        };
        std::future::ready(result)
    })
}

/// The integration's response body, passed on chunk by chunk as it arrives, cut when it runs
/// longer than `total` or pauses longer than `idle`.
fn timed_stream(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    total: Duration,
    idle: Duration,
    request_id: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let deadline = tokio::time::Instant::now() + total;
    futures::stream::unfold(Some(Box::pin(body)), move |body| {
        let request_id = request_id.clone();
        async move {
            let mut body = body?;
            let until = deadline.min(tokio::time::Instant::now() + idle);
            match tokio::time::timeout_at(until, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    tracing::warn!(%request_id, error = %e, "integration response body failed");
                    Some((Err(std::io::Error::other(e)), None))
                }
                Err(_) => {
                    tracing::warn!(%request_id, "integration response stream timed out");
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "integration response stream timed out",
                        )),
                        None,
                    ))
                }
            }
        }
    })
}
