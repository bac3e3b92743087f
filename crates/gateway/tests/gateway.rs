//! The gateway as a client and an integration see it: real sockets on both sides.

mod helpers;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use gateway::{RouteSettings, UsagePlan};
use helpers::*;
use tokio::sync::mpsc;

fn header<'a>(h: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    h.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

fn assert_gateway_error(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &str,
    want_status: u16,
    want_body: &str,
) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body, want_body);
    assert_eq!(header(headers, "content-type"), "application/json");
    assert!(uuid::Uuid::parse_str(header(headers, "x-amzn-requestid")).is_ok());
}

#[tokio::test]
async fn proxies_method_path_query_body_and_headers() {
    let app = spawn_app(|_| {}).await;
    let (status, headers, body) = read(
        app.client
            .post(app.url("/api/chat/x?stream=true&q=a%20b"))
            .header("x-api-key", KEY1)
            .header("x-custom", "kept")
            .header("x-forwarded-for", "10.0.0.7")
            .header("content-type", "application/json")
            .body(r#"{"model":"m"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let seen = json(&body);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/api/chat/x?stream=true&q=a%20b");
    assert_eq!(seen["body"], r#"{"model":"m"}"#);
    let h = &seen["headers"];
    assert_eq!(h["x-custom"][0], "kept");
    assert_eq!(h["content-type"][0], "application/json");
    assert_eq!(h["content-length"][0], "13");
    assert_eq!(h["x-forwarded-for"][0], "10.0.0.7, 127.0.0.1");
    assert!(h.get("x-api-key").is_none(), "the key must not reach the integration: {h}");
    // The integration's own Host, as API Gateway sends.
    assert_eq!(h["host"][0].as_str().unwrap(), app.upstream_url.trim_start_matches("http://"));
    // Response: the integration's status, headers and body, plus API Gateway's ids.
    assert_eq!(header(&headers, "x-upstream"), "yes");
    assert!(uuid::Uuid::parse_str(header(&headers, "x-amzn-requestid")).is_ok());
    let apigw = header(&headers, "x-amz-apigw-id");
    assert!(apigw.len() == 16 && apigw.ends_with('='), "{apigw}");
    let timing = header(&headers, "server-timing");
    assert!(timing.starts_with("upstream;dur=1.5, gateway;dur="), "{timing}");

    // Other methods and an empty body.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE, reqwest::Method::PUT] {
        let (status, _, body) = read(
            app.client.request(method.clone(), app.url("/v1/models")).header("x-api-key", KEY1),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json(&body)["method"], method.as_str());
        assert_eq!(json(&body)["uri"], "/v1/models");
    }
    // Each request has its own id.
    let (_, h1, _) = read(app.get("/a")).await;
    let (_, h2, _) = read(app.get("/a")).await;
    assert_ne!(header(&h1, "x-amzn-requestid"), header(&h2, "x-amzn-requestid"));
}

#[tokio::test]
async fn traceparent_follows_the_request() {
    let app = spawn_app(|_| {}).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let (_, headers, body) =
        read(app.get("/t").header("traceparent", format!("00-{trace_id}-{client_span}-01"))).await;
    let sent = json(&body)["headers"]["traceparent"][0].as_str().unwrap().to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", trace_id, "01"), "{sent}");
    // The integration's parent is the gateway's span, not the client's.
    assert_ne!(parts[2], client_span);
    assert_eq!(header(&headers, "traceparent"), sent);

    // Without one, the gateway starts a trace.
    let (_, _, body) = read(app.get("/t")).await;
    let sent = json(&body)["headers"]["traceparent"][0].as_str().unwrap().to_owned();
    assert_eq!(sent.len(), 55, "{sent}");
    assert!(sent.starts_with("00-"));
}

#[tokio::test]
async fn missing_or_wrong_key_is_forbidden() {
    let app = spawn_app(|_| {}).await;
    for key in [
        None,
        Some(""),
        Some("nope"),
        Some(&KEY1[..KEY1.len() - 1]),
        Some("TEST-KEY-ONE-0123456789"),
    ] {
        let mut r = app.client.get(app.url("/x"));
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        let (status, headers, body) = read(r).await;
        assert_gateway_error(status, &headers, &body, 403, r#"{"message":"Forbidden"}"#);
        assert_eq!(header(&headers, "x-amzn-errortype"), "ForbiddenException");
    }
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn every_configured_key_works() {
    let app = spawn_app(|_| {}).await;
    for key in [KEY1, KEY2] {
        let (status, _, _) = read(app.client.get(app.url("/x")).header("x-api-key", key)).await;
        assert_eq!(status, StatusCode::OK, "{key}");
    }
    assert_eq!(app.hits(), 2);
}

#[tokio::test]
async fn keys_from_a_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# gateway keys\n\nfile-key-abc\n  file-key-def  ").unwrap();
    let path = file.path().to_owned();
    let app = spawn_app(move |s| {
        s.api_keys.clear();
        s.api_keys_file = Some(path);
    })
    .await;
    for (key, want) in
        [("file-key-abc", 200), ("file-key-def", 200), (KEY1, 403), ("# gateway keys", 403)]
    {
        let (status, _, _) = read(app.client.get(app.url("/x")).header("x-api-key", key)).await;
        assert_eq!(status.as_u16(), want, "{key}");
    }
}

#[tokio::test]
async fn unknown_routes_get_missing_authentication_token() {
    let app = spawn_app(|s| {
        let url = s.routes[0].url.clone();
        s.routes = vec![
            RouteSettings {
                method: "GET".into(),
                path: "/api/{proxy+}".into(),
                url: url.clone(),
                api_key_required: true,
            },
            RouteSettings {
                method: "POST".into(),
                path: "/open".into(),
                url,
                api_key_required: false,
            },
        ];
    })
    .await;
    for (method, path) in [
        ("POST", "/api/x"),
        ("GET", "/api"),
        ("GET", "/"),
        ("GET", "/other"),
        ("GET", "/open"),
        ("POST", "/open/x"),
    ] {
        // With or without a key: an unknown route is 403 either way.
        let r =
            app.client.request(method.parse().unwrap(), app.url(path)).header("x-api-key", KEY1);
        let (status, headers, body) = read(r).await;
        assert_gateway_error(
            status,
            &headers,
            &body,
            403,
            r#"{"message":"Missing Authentication Token"}"#,
        );
        assert_eq!(header(&headers, "x-amzn-errortype"), "MissingAuthenticationTokenException");
    }
    assert_eq!(app.hits(), 0);
    let (status, _, body) = read(app.get("/api/deep/path")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["uri"], "/deep/path");
    // A route that needs no key.
    let (status, _, body) = read(app.client.post(app.url("/open"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json(&body)["uri"], "/open");
}

fn plan(rate: f64, burst: u32, quota: u64) -> UsagePlan {
    UsagePlan {
        rate_limit: rate,
        burst_limit: burst,
        quota_limit: quota,
        quota_window_secs: 3600,
        ..UsagePlan::default()
    }
}

#[tokio::test]
async fn rate_and_burst_are_enforced_per_key() {
    // A burst of 3 and a refill far too slow to matter during the test.
    let app = spawn_app(|s| {
        s.usage_plans.insert("default".into(), plan(0.01, 3, 0));
    })
    .await;
    for _ in 0..3 {
        assert_eq!(read(app.get("/x")).await.0, StatusCode::OK);
    }
    let (status, headers, body) = read(app.get("/x")).await;
    assert_gateway_error(status, &headers, &body, 429, r#"{"message":"Too Many Requests"}"#);
    assert_eq!(header(&headers, "x-amzn-errortype"), "TooManyRequestsException");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    assert_eq!(app.hits(), 3);
    // Another key has its own bucket.
    assert_eq!(
        read(app.client.get(app.url("/x")).header("x-api-key", KEY2)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn quota_is_enforced_and_plans_are_assigned_per_key() {
    let app = spawn_app(|s| {
        s.usage_plans.insert("small".into(), plan(1000.0, 100, 2));
        s.key_plans = BTreeMap::from([(api_keys::key_id(KEY2), "small".to_owned())]);
    })
    .await;
    let key2 = || app.client.get(app.url("/x")).header("x-api-key", KEY2);
    assert_eq!(read(key2()).await.0, StatusCode::OK);
    assert_eq!(read(key2()).await.0, StatusCode::OK);
    for _ in 0..2 {
        let (status, headers, body) = read(key2()).await;
        assert_gateway_error(status, &headers, &body, 429, r#"{"message":"Limit Exceeded"}"#);
        assert_eq!(header(&headers, "x-amzn-errortype"), "LimitExceededException");
        let retry: u64 = header(&headers, "retry-after").parse().unwrap();
        assert!((3500..=3600).contains(&retry), "{retry}");
    }
    // KEY1 is on the default plan (no quota).
    for _ in 0..5 {
        assert_eq!(read(app.get("/x")).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn integration_timeout_is_504() {
    let app = spawn_app(|s| s.integration_timeout_ms = 200).await;
    let started = std::time::Instant::now();
    let (status, headers, body) = read(app.get("/hang")).await;
    assert_gateway_error(
        status,
        &headers,
        &body,
        504,
        r#"{"message": "Endpoint request timed out"}"#,
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.hits(), 1);
}

#[tokio::test]
async fn the_integration_timeout_does_not_cut_a_started_stream() {
    let app = spawn_app(|s| s.integration_timeout_ms = 200).await;
    let (status, _, body) = read(app.get("/slow-stream")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "first second");
}

#[tokio::test]
async fn a_stalled_stream_is_cut_after_the_idle_limit() {
    let app = spawn_app(|s| s.stream_idle_timeout_secs = 1).await;
    let mut r = tokio::time::timeout(WAIT, app.get("/stall").send()).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        tokio::time::timeout(WAIT, r.chunk()).await.unwrap().unwrap().unwrap(),
        "only chunk"
    );
    // The next read ends in an error (the connection is cut), not a hang.
    assert!(tokio::time::timeout(WAIT, r.chunk()).await.expect("cut within the limit").is_err());
}

#[tokio::test]
async fn bodies_over_the_payload_limit_are_413() {
    let app = spawn_app(|s| s.max_body_bytes = 1000).await;
    let (status, headers, body) =
        read(app.client.post(app.url("/x")).header("x-api-key", KEY1).body(vec![b'a'; 1001])).await;
    assert_gateway_error(status, &headers, &body, 413, r#"{"message":"Request Too Long"}"#);
    assert_eq!(app.hits(), 0);
    // Exactly at the limit is fine.
    let (status, _, body) =
        read(app.client.post(app.url("/x")).header("x-api-key", KEY1).body(vec![b'a'; 1000])).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json(&body)["body"].as_str().unwrap().len(), 1000);
    // A chunked body with no declared length is counted as it streams.
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; 400]))),
    );
    let (status, headers, body) = read(
        app.client
            .post(app.url("/x"))
            .header("x-api-key", KEY1)
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_gateway_error(status, &headers, &body, 413, r#"{"message":"Request Too Long"}"#);
}

#[tokio::test]
async fn an_unreachable_integration_is_502() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = spawn_app(move |s| s.routes[0].url = format!("http://{dead}")).await;
    let (status, headers, body) = read(app.get("/x")).await;
    assert_gateway_error(status, &headers, &body, 502, r#"{"message": "Internal server error"}"#);
}

#[tokio::test]
async fn response_chunks_pass_through_as_they_arrive() {
    let app = spawn_app(|_| {}).await;
    let mut r = tokio::time::timeout(WAIT, app.get("/stream").send())
        .await
        .expect("headers arrive")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    // The upstream holds its second chunk until we have the first: a buffering gateway never
    // delivers it and this times out.
    let first = tokio::time::timeout(WAIT, r.chunk())
        .await
        .expect("first chunk before the second is released")
        .unwrap()
        .unwrap();
    assert_eq!(first, "{\"n\":1}\n");
    app.upstream.release.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = tokio::time::timeout(WAIT, r.chunk()).await.unwrap().unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"{\"n\":2}\n");
}

#[tokio::test]
async fn request_chunks_pass_through_as_they_arrive() {
    let app = spawn_app(|_| {}).await;
    let (first_tx, mut first_rx) = mpsc::channel(1);
    *app.upstream.first_in.lock().await = Some(first_tx);
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(body_rx));
    let send = tokio::spawn(
        app.client.post(app.url("/stream-in")).header("x-api-key", KEY1).body(body).send(),
    );
    body_tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
    // The upstream sees the first chunk while the client still holds the rest.
    let first = tokio::time::timeout(WAIT, first_rx.recv())
        .await
        .expect("first request chunk reaches the upstream")
        .unwrap();
    assert_eq!(first, "hello ");
    body_tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
    drop(body_tx);
    let r = tokio::time::timeout(WAIT, send).await.unwrap().unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello world");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
