//! The real server on a random port with the instant backend, driven over HTTP.

use std::sync::Arc;

use llm_server::{Application, InstantBackend, InstantConfig, ServerSettings};
use serde_json::{json, Value};

struct TestApp {
    url: String,
    client: reqwest::Client,
}

async fn spawn_app(settings: ServerSettings) -> TestApp {
    let settings = ServerSettings { listen: "127.0.0.1:0".parse().unwrap(), ..settings };
    let backend = Arc::new(InstantBackend::new(InstantConfig {
        reply: "one two three".into(),
        ..Default::default()
    }));
    let app = Application::build(settings, backend).await.expect("binds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp { url, client: reqwest::Client::new() }
}

impl TestApp {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("server answers")
    }
}

#[tokio::test]
async fn ollama_generate_streams_ndjson_then_a_final_object() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app.post("/api/generate", json!({"model": "instant", "prompt": "hi"})).await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let words: String = lines[..3].iter().map(|l| l["response"].as_str().unwrap()).collect();
    assert_eq!(words, "one two three");
    let last = &lines[3];
    assert_eq!(
        (last["done"].as_bool(), last["done_reason"].as_str(), last["eval_count"].as_u64()),
        (Some(true), Some("stop"), Some(3))
    );
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(last.get(key).is_some(), "final object lacks {key}");
    }
}

#[tokio::test]
async fn ollama_chat_without_streaming_is_one_object() {
    let app = spawn_app(ServerSettings::default()).await;
    let v: Value = app
        .post("/api/chat", json!({"model": "instant", "stream": false, "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 2}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["message"], json!({"role": "assistant", "content": "one two "}));
    assert_eq!(v["done_reason"], "length");
}

#[tokio::test]
async fn openai_streams_sse_and_ends_with_done() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app
        .post("/v1/chat/completions", json!({"model": "instant", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let usage: Value =
        serde_json::from_str(events[events.len() - 2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn errors_have_each_protocols_shape() {
    let app = spawn_app(ServerSettings { max_body_bytes: 64, ..Default::default() }).await;
    let cases: &[(&str, Value, u16)] = &[
        ("/api/generate", json!({"model": "missing", "prompt": "x"}), 404),
        ("/api/generate", json!({"prompt": "x"}), 400),
        (
            "/api/chat",
            json!({"model": "instant", "messages": [{"role": "robot", "content": "x"}]}),
            400,
        ),
        ("/api/generate", json!({"model": "instant", "prompt": "x".repeat(100)}), 413),
    ];
    for (path, body, status) in cases {
        let r = app.post(path, body.clone()).await;
        assert_eq!(r.status().as_u16(), *status, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    let r = app
        .post(
            "/v1/chat/completions",
            json!({"model": "missing", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    let r = app.client.post(format!("{}/api/show", app.url)).body("{oops").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn a_caller_trace_is_continued_and_echoed() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app
        .client
        .get(format!("{}/api/tags", app.url))
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .send()
        .await
        .unwrap();
    let tp = r.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert!(!tp.contains("b7ad6b7169203331"), "this hop has its own span id");
}

#[tokio::test]
async fn server_timing_names_every_hop_in_the_header_or_the_last_line() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app.post("/api/chat", json!({"model": "instant", "stream": false, "messages": [{"role": "user", "content": "x"}]})).await;
    let timing = r.headers()["server-timing"].to_str().unwrap().to_owned();
    // Outermost first: this server, then the backend's own hop.
    assert!(timing.starts_with("llm-server;dur="), "{timing}");
    assert!(timing.contains(", instant;dur="), "{timing}");
    let text = app
        .post("/api/generate", json!({"model": "instant", "prompt": "hi"}))
        .await
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["server_timing"].as_str().unwrap().starts_with("llm-server;dur="), "{last}");
    let sse = app.post("/v1/chat/completions", json!({"model": "instant", "stream": true, "messages": [{"role": "user", "content": "x"}]})).await.text().await.unwrap();
    assert!(sse.contains("\"server_timing\":\"llm-server;dur="), "{sse}");
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_protocol_of_the_path() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app.client.get(format!("{}/v1/chat/completions", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("invalid_request_error"), Some("method_not_allowed"))
    );
    let r = app.client.get(format!("{}/api/chat", app.url)).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<Value>().await.unwrap()),
        (405, json!({"error": "405 method not allowed"}))
    );
}

#[tokio::test]
async fn unsupported_ollama_routes_are_501_on_their_own_method_only() {
    let app = spawn_app(ServerSettings::default()).await;
    let r = app.post("/api/create", json!({"model": "x"})).await;
    assert_eq!(r.status(), 501);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "/api/create is not supported by strata"})
    );
    // The instant backend embeds (a fixed vector per input).
    let r = app.post("/api/embed", json!({"model": "instant", "input": ["x", "y"]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["embeddings"].as_array().unwrap().len(), 2);
    let r = app.client.delete(format!("{}/api/delete", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 501);
    for (method, path) in [
        ("GET", "/api/embed"),
        ("TRACE", "/api/create"),
        ("POST", "/api/delete"),
        ("GET", "/api/blobs/sha256-0"),
    ] {
        let r = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
    }
}
