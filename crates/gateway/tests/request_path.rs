//! Paths with dot-segments are refused before routing, over a real socket. The requests are
//! written as raw bytes: HTTP client libraries resolve `..` and `%2e%2e` themselves, so they
//! could never send the paths this is about.

mod helpers;

use gateway::RouteSettings;
use helpers::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Sends `GET path` as written and returns the status and body of the answer.
async fn raw_get(gateway: &str, path: &str, api_key: Option<&str>) -> (u16, String) {
    let addr = gateway.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let key = api_key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A public resource beside a keyed one: the layout a dot-segment would escape from.
async fn public_and_private() -> TestApp {
    spawn_app(|s| {
        let url = s.routes[0].url.clone();
        s.routes.push(RouteSettings {
            method: "GET".into(),
            path: "/public/{proxy+}".into(),
            url: format!("{url}/public"),
            api_key_required: false,
        });
    })
    .await
}

#[tokio::test]
async fn dot_segments_raw_or_encoded_get_400_and_never_reach_the_integration() {
    let app = public_and_private().await;
    for path in [
        "/public/../admin",
        "/public/./x",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/..%2fadmin",
        "/public/x%2F..%2F..%2Fadmin",
        "/public/..\\admin",
        "/..",
    ] {
        for key in [None, Some(KEY1)] {
            let (status, body) = raw_get(&app.gateway, path, key).await;
            assert_eq!(
                (status, body.as_str()),
                (400, r#"{"message":"Invalid request path"}"#),
                "{path} key={key:?}"
            );
        }
    }
    assert_eq!(app.hits(), 0, "a refused path reached the integration");
}

#[tokio::test]
async fn the_routed_path_is_the_forwarded_path() {
    let app = public_and_private().await;
    // Without a key only the public resource answers, and it gets exactly what was routed.
    let (status, body) = raw_get(&app.gateway, "/public/a/...b/c", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["uri"], "/public/a/...b/c");
    let (status, _) = raw_get(&app.gateway, "/admin", None).await;
    assert_eq!(status, 403);
    let (status, body) = raw_get(&app.gateway, "/admin/x", Some(KEY1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["uri"], "/admin/x");
}
