//! The header-size limit every hop's edge applies: a request whose header fields add up to
//! more than the hop's `max_header_bytes` is refused with 431 before any handler runs. Each
//! hop writes the refusal in its own protocol's shape; the counting and the check are shared.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// The bytes a request's header block takes on the wire (`name: value\r\n` per field).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// A refusal in the hop's protocol: the request, the size of its headers and the limit.
pub type Refusal = fn(&Request, usize, usize) -> Response;

/// One hop's limit and how it answers a request beyond it.
#[derive(Clone, Copy)]
pub struct HeaderLimit {
    pub max_bytes: usize,
    pub refuse: Refusal,
}

/// Middleware (`axum::middleware::from_fn_with_state(limit, telemetry::header_limit)`):
/// requests within the limit go on; others get the hop's refusal (431).
pub async fn header_limit(State(limit): State<HeaderLimit>, req: Request, next: Next) -> Response {
    let size = header_bytes(req.headers());
    if size > limit.max_bytes {
        return (limit.refuse)(&req, size, limit.max_bytes);
    }
    next.run(req).await
}

/// The message every hop's refusal carries.
pub fn too_large_message(size: usize, max: usize) -> String {
    format!("request headers too large: {size} bytes; at most {max} are allowed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    fn refuse(_: &Request, size: usize, max: usize) -> Response {
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, too_large_message(size, max)).into_response()
    }

    #[tokio::test]
    async fn headers_beyond_the_limit_get_the_hops_refusal_and_others_pass() {
        let limit = HeaderLimit { max_bytes: 100, refuse };
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limit, header_limit));
        let small = Request::get("/").header("x-a", "b").body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(small).await.unwrap().status(), StatusCode::OK);
        // 3 + 97 + 4 = 104 bytes, over the limit by four.
        let big = Request::get("/").header("x-a", "b".repeat(97)).body(Body::empty()).unwrap();
        assert_eq!(
            app.oneshot(big).await.unwrap().status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
