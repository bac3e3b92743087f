//! A real upstream (an axum app on a random port) and the real gateway in front of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gateway::{Application, GatewaySettings, RouteSettings};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex, Notify};

pub const KEY1: &str = "test-key-one-0123456789";
pub const KEY2: &str = "test-key-two-9876543210";

/// Every wait in these tests is bounded, so a broken gateway fails a test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Upstream {
    /// Requests that reached the upstream.
    pub hits: AtomicUsize,
    /// Lets `/stream` write its second chunk.
    pub release: Notify,
    /// `/stream-in` sends the first request chunk it reads here.
    pub first_in: Mutex<Option<mpsc::Sender<Bytes>>>,
}

pub struct TestApp {
    pub upstream: Arc<Upstream>,
    pub upstream_url: String,
    pub gateway: String,
    pub client: reqwest::Client,
}

async fn echo(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let headers: BTreeMap<String, Vec<String>> = parts
        .headers
        .keys()
        .map(|k| {
            (
                k.to_string(),
                parts
                    .headers
                    .get_all(k)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?").to_owned())
                    .collect(),
            )
        })
        .collect();
    let status = if parts.method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
    let mut r = (status, Json(json!({"method": parts.method.as_str(), "uri": parts.uri.to_string(), "headers": headers, "body": String::from_utf8_lossy(&body)}))).into_response();
    r.headers_mut().insert("server-timing", "upstream;dur=1.5".parse().unwrap());
    r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
    r
}

async fn hang(State(up): State<Arc<Upstream>>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<Response>().await
}

/// One chunk, then waits for the test's signal, then the second.
async fn stream(State(up): State<Arc<Upstream>>) -> Response {
    let s = futures::stream::unfold(0u8, move |step| {
        let up = Arc::clone(&up);
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"{\"n\":1}\n")), 1)),
                1 => {
                    up.release.notified().await;
                    Some((Ok(Bytes::from_static(b"{\"n\":2}\n")), 2))
                }
                _ => None,
            }
        }
    });
    ([("content-type", "application/x-ndjson")], Body::from_stream(s)).into_response()
}

/// Headers at once, then two chunks with a pause between them (a delay, not a synchronisation).
async fn slow_stream() -> Response {
    let s = futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"first ")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok(Bytes::from_static(b"second")), 2))
            }
            _ => None,
        }
    });
    Body::from_stream(s).into_response()
}

/// One chunk, then nothing, forever.
async fn stall() -> Response {
    let s =
        futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"only chunk")) })
            .chain(futures::stream::pending());
    Body::from_stream(s).into_response()
}

/// Reports the first request chunk as soon as it arrives, then answers with the whole body.
async fn stream_in(State(up): State<Arc<Upstream>>, body: Body) -> Response {
    let mut s = body.into_data_stream();
    let mut all = Vec::new();
    let tx = up.first_in.lock().await.take();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap();
        if let Some(tx) = &tx {
            if all.is_empty() {
                tx.send(chunk.clone()).await.unwrap();
            }
        }
        all.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&all).into_owned().into_response()
}

pub async fn start_upstream() -> (Arc<Upstream>, String) {
    let up = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/hang", any(hang))
        .route("/stream", get(stream))
        .route("/slow-stream", get(slow_stream))
        .route("/stall", get(stall))
        .route("/stream-in", post(stream_in))
        .fallback(echo)
        .with_state(Arc::clone(&up));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (up, format!("http://{addr}"))
}

/// Settings with one greedy route to `upstream` and two keys.
pub fn settings(upstream: &str) -> GatewaySettings {
    GatewaySettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        routes: vec![RouteSettings { url: upstream.to_owned(), ..RouteSettings::default() }],
        api_keys: vec![KEY1.to_owned(), KEY2.to_owned()],
        ..GatewaySettings::default()
    }
}

pub async fn start_gateway(settings: GatewaySettings) -> String {
    let app = Application::build(settings).await.expect("gateway builds");
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    format!("http://{addr}")
}

/// Upstream + gateway, the settings adjusted by `tweak`.
pub async fn spawn_app(tweak: impl FnOnce(&mut GatewaySettings)) -> TestApp {
    let (upstream, upstream_url) = start_upstream().await;
    let mut s = settings(&upstream_url);
    tweak(&mut s);
    let gateway = start_gateway(s).await;
    TestApp { upstream, upstream_url, gateway, client: reqwest::Client::new() }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).header("x-api-key", KEY1)
    }

    pub fn hits(&self) -> usize {
        self.upstream.hits.load(Ordering::SeqCst)
    }
}

/// Status, headers and body of a response, read within `WAIT`.
pub async fn read(r: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, String) {
    tokio::time::timeout(WAIT, async {
        let r = r.send().await.expect("the gateway answers");
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        let headers = r.headers().clone();
        (status, headers, r.text().await.expect("a complete body"))
    })
    .await
    .expect("answered in time")
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}
