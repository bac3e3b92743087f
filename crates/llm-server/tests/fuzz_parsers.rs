//! Property tests of the LLM Server's request parsing, through the real router (the Ollama and
//! OpenAI handlers, their parsers and the edge limits) with the instant backend: arbitrary
//! bytes and structurally mutated requests must get either a complete answer or an error in
//! the endpoint's protocol shape, never a panic, a 500 or a stream that looks finished when
//! it is not.
//!
//! A fast sample runs with `cargo test`; the dedicated run is
//! `PROPTEST_CASES=1000000 cargo test --release -p llm-server --test fuzz_parsers`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use llm_server::error::Protocol;
use llm_server::startup::{router, AppState};
use llm_server::{InstantBackend, InstantConfig, ServerSettings};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt as _;

const POST_ROUTES: [&str; 6] = [
    "/api/generate",
    "/api/chat",
    "/api/show",
    "/api/pull",
    "/v1/chat/completions",
    "/v1/completions",
];

fn settings() -> ServerSettings {
    ServerSettings {
        max_body_bytes: 64 * 1024,
        max_json_depth: 16,
        max_messages: 8,
        max_model_name_bytes: 64,
        ..Default::default()
    }
}

fn app() -> axum::Router {
    let settings = settings();
    let backend = Arc::new(InstantBackend::new(InstantConfig {
        reply: "one two three".into(),
        ..Default::default()
    }));
    let state =
        AppState::new(settings, backend, "127.0.0.1:0".parse().unwrap()).expect("valid settings");
    router(Arc::new(state))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// What one request got: status, content type and the whole body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn send(app: axum::Router, path: &str, body: Vec<u8>) -> Answer {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let r = app.oneshot(req).await.expect("the router is infallible");
    let status = r.status();
    let content_type =
        r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(r.into_body(), 16 * 1024 * 1024)
        .await
        .expect("the body is readable")
        .to_vec();
    Answer { status, content_type, body }
}

fn protocol_of(path: &str) -> Protocol {
    if path.starts_with("/v1/") {
        Protocol::OpenAi
    } else {
        Protocol::Ollama
    }
}

/// The properties every answer must have, whatever was sent.
fn check(path: &str, a: &Answer) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&a.body);
    prop_assert!(a.status != StatusCode::INTERNAL_SERVER_ERROR, "{path}: 500: {text}");
    if !a.status.is_success() {
        prop_assert!(
            [400, 404, 413, 431, 501, 503].contains(&a.status.as_u16()),
            "{path}: unexpected status {}: {text}",
            a.status
        );
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| {
            TestCaseError::fail(format!("{path}: error body is not JSON ({e}): {text}"))
        })?;
        check_error(path, &v)?;
        return Ok(());
    }
    // A success is complete: one object, or a stream whose last line says how it ended.
    if a.content_type.starts_with("application/x-ndjson") {
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{path}: bad NDJSON line: {e}")))?;
        let last =
            lines.last().ok_or_else(|| TestCaseError::fail(format!("{path}: empty stream")))?;
        prop_assert!(
            last.get("error").is_some() || last["done"] == true || last.get("status").is_some(),
            "{path}: stream ends with {last}"
        );
    } else if a.content_type.starts_with("text/event-stream") {
        prop_assert!(
            text.ends_with("data: [DONE]\n\n") || text.contains("\"error\""),
            "{path}: SSE stream without an end: {text}"
        );
    } else {
        let _: Value = serde_json::from_slice(&a.body).map_err(|e| {
            TestCaseError::fail(format!("{path}: 200 body is not JSON ({e}): {text}"))
        })?;
    }
    Ok(())
}

fn check_error(path: &str, v: &Value) -> Result<(), TestCaseError> {
    match protocol_of(path) {
        Protocol::Ollama => prop_assert!(
            v["error"].is_string() && v.as_object().is_some_and(|o| o.len() == 1),
            "{path}: not an Ollama error: {v}"
        ),
        Protocol::OpenAi => {
            let e = &v["error"];
            prop_assert!(
                e["message"].is_string() && e["type"].is_string(),
                "{path}: not an OpenAI error: {v}"
            );
            prop_assert!(
                e.get("param").is_some() && e.get("code").is_some(),
                "{path}: OpenAI error without param/code: {v}"
            );
        }
    }
    Ok(())
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String("instant".into())),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A well-formed request for `path`, the starting point of mutations.
fn valid(path: &str) -> Value {
    let messages =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    match path {
        "/api/generate" => {
            json!({"model": "instant", "prompt": "hi", "stream": false, "options": {"num_predict": 2, "temperature": 0.5, "stop": ["x"]}})
        }
        "/api/chat" => {
            json!({"model": "instant", "messages": messages, "stream": true, "options": {"seed": 1}})
        }
        "/api/show" => json!({"model": "instant"}),
        "/api/pull" => json!({"model": "instant", "stream": false}),
        "/v1/chat/completions" => {
            json!({"model": "instant", "messages": messages, "stream": true, "max_tokens": 3, "stop": "x"})
        }
        _ => json!({"model": "instant", "prompt": "hi", "max_tokens": 3, "stream": false}),
    }
}

/// One structural change to a request: a field replaced by any value, removed, or added;
/// a message's field changed; or a value nested deep.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    Add(String, Value),
    Message(usize, String, Value),
    Model(String),
    Deep(usize),
    ManyMessages(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(i, v)| Edit::Replace(i, v)),
        any::<usize>().prop_map(Edit::Remove),
        ("[a-z_]{1,12}", any_json()).prop_map(|(k, v)| Edit::Add(k, v)),
        (
            any::<usize>(),
            prop_oneof![
                Just("role".to_owned()),
                Just("content".to_owned()),
                Just("images".to_owned())
            ],
            any_json()
        )
            .prop_map(|(i, k, v)| Edit::Message(i, k, v)),
        prop_oneof![
            "[a-z0-9./:@_\\\\\\-\u{0}\n ~]{0,80}",
            Just("../../etc/passwd".to_owned()),
            Just("/etc/passwd".to_owned()),
            Just("x.gguf".to_owned()),
            ".{0,20}",
        ]
        .prop_map(Edit::Model),
        (1usize..40).prop_map(Edit::Deep),
        (0usize..20).prop_map(Edit::ManyMessages),
    ]
}

fn apply(mut v: Value, edits: &[Edit]) -> Value {
    for e in edits {
        let Some(obj) = v.as_object_mut() else { return v };
        let keys: Vec<String> = obj.keys().cloned().collect();
        match e.clone() {
            Edit::Replace(i, x) if !keys.is_empty() => {
                obj.insert(keys[i % keys.len()].clone(), x);
            }
            Edit::Remove(i) if !keys.is_empty() => {
                obj.remove(&keys[i % keys.len()]);
            }
            Edit::Add(k, x) => {
                obj.insert(k, x);
            }
            Edit::Message(i, k, x) => {
                if let Some(Value::Array(ms)) = obj.get_mut("messages") {
                    if !ms.is_empty() {
                        let n = ms.len();
                        if let Some(m) = ms[i % n].as_object_mut() {
                            m.insert(k, x);
                        }
                    }
                }
            }
            Edit::Model(m) => {
                obj.insert("model".into(), Value::String(m));
            }
            Edit::Deep(d) => {
                let mut x = Value::from(1);
                for _ in 0..d {
                    x = Value::Array(vec![x]);
                }
                obj.insert(
                    "options".into(),
                    Value::Object(Map::from_iter([("stop".to_owned(), x)])),
                );
            }
            Edit::ManyMessages(n) => {
                obj.insert(
                    "messages".into(),
                    Value::Array(vec![json!({"role": "user", "content": "x"}); n]),
                );
            }
            _ => {}
        }
    }
    v
}

proptest! {
    #[test]
    fn arbitrary_bytes_get_protocol_shaped_answers(route in 0..POST_ROUTES.len(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let path = POST_ROUTES[route];
        let a = runtime().block_on(send(app(), path, body));
        check(path, &a)?;
        prop_assert!(!a.status.is_success() || a.body.is_empty() || serde_json::from_slice::<Value>(&a.body).is_ok() || a.content_type.contains("stream"));
    }

    #[test]
    fn mutated_requests_get_protocol_shaped_answers(route in 0..POST_ROUTES.len(), edits in prop::collection::vec(edit(), 0..5)) {
        let path = POST_ROUTES[route];
        let body = serde_json::to_vec(&apply(valid(path), &edits)).unwrap();
        let a = runtime().block_on(send(app(), path, body));
        check(path, &a)?;
    }

    /// Valid JSON text cut or corrupted at the byte level.
    #[test]
    fn corrupted_json_text_gets_protocol_shaped_answers(route in 0..POST_ROUTES.len(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
        let path = POST_ROUTES[route];
        let mut body = serde_json::to_vec(&valid(path)).unwrap();
        let at = flip.0 % body.len();
        body[at] = flip.1;
        body.truncate(cut % (body.len() + 1));
        let a = runtime().block_on(send(app(), path, body));
        check(path, &a)?;
    }
}

/// The limits themselves, one request each, through the same router.
#[test]
fn each_limit_answers_in_the_protocols_shape() {
    let rt = runtime();
    let deep = |d: usize| {
        format!(
            "{{\"model\":\"instant\",\"prompt\":\"hi\",\"format\":{}1{}}}",
            "[".repeat(d),
            "]".repeat(d)
        )
        .into_bytes()
    };
    let a = rt.block_on(send(app(), "/api/generate", deep(20)));
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&a.body).contains("deeper than 16 levels"));
    let a = rt.block_on(send(app(), "/v1/completions", deep(30_000)));
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    check_error("/v1/completions", &serde_json::from_slice(&a.body).unwrap()).unwrap();

    let nine = json!({"model": "instant", "stream": false, "messages": vec![json!({"role": "user", "content": "x"}); 9]});
    for path in ["/api/chat", "/v1/chat/completions"] {
        let a = rt.block_on(send(app(), path, serde_json::to_vec(&nine).unwrap()));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            String::from_utf8_lossy(&a.body).contains("too many messages: 9; at most 8"),
            "{path}"
        );
    }
    let eight = json!({"model": "instant", "stream": false, "messages": vec![json!({"role": "user", "content": "x"}); 8]});
    assert_eq!(
        rt.block_on(send(app(), "/api/chat", serde_json::to_vec(&eight).unwrap())).status,
        StatusCode::OK
    );

    for model in ["../../etc/passwd", "/etc/passwd", "a\\b", "a\u{0}b", "x.gguf", &"m".repeat(65)] {
        for path in POST_ROUTES {
            let mut body = valid(path);
            body["model"] = Value::String(model.to_owned());
            let a = rt.block_on(send(app(), path, serde_json::to_vec(&body).unwrap()));
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path} {model:?}");
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            check_error(path, &v).unwrap();
            let message = v["error"].as_str().or(v["error"]["message"].as_str()).unwrap();
            assert!(message.starts_with("invalid model name"), "{path} {model:?}: {message}");
        }
    }
}
