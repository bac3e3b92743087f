//! The shared Bedrock client (official Rust SDK underneath) against the real emulator process
//! logic on a random port, with the instant generator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bedrock::{BedrockClient, BedrockSettings};
use bedrock_emulator::{Application, AuthMode, EmulatorSettings, GeneratorKind};
use contract::{ChunkKind, ErrorKind, Message, Options};
use futures::StreamExt;

const MODEL_ID: &str = "test.instant-v1:0";

async fn emulator(max_concurrent: usize, word_delay_ms: u64) -> String {
    let mut models = BTreeMap::new();
    models.insert(MODEL_ID.to_string(), "local".to_string());
    let instant = instant::InstantConfig {
        reply: "one two three four".into(),
        models: vec!["local".into()],
        word_delay_ms,
    };
    let settings = EmulatorSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorKind::Instant,
        models,
        auth: AuthMode::Any,
        max_concurrent_requests: max_concurrent,
        instant: instant.clone(),
        ..Default::default()
    };
    let app = Application::build(settings, Arc::new(instant::InstantGenerator::new(instant)))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    url
}

async fn client(url: &str, max_attempts: u32) -> BedrockClient {
    // Static test credentials through the standard variables, as on any machine; set once,
    // before any test reads the environment.
    static CREDENTIALS: std::sync::Once = std::sync::Once::new();
    CREDENTIALS.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
        std::env::remove_var("AWS_BEARER_TOKEN_BEDROCK");
    });
    BedrockClient::new(BedrockSettings {
        region: "us-east-1".into(),
        endpoint_url: url.into(),
        max_attempts,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        ..Default::default()
    })
    .await
}

fn request(model: &str, stream: bool) -> contract::GenerateRequest {
    contract::GenerateRequest {
        model: model.into(),
        messages: vec![Message::user("hi")],
        stream,
        ..Default::default()
    }
}

#[tokio::test]
async fn converse_returns_the_whole_answer_with_usage() {
    let url = emulator(4, 0).await;
    let c = client(&url, 1).await;
    let chunks: Vec<_> = c.generate(request(MODEL_ID, false)).await.unwrap().collect().await;
    let Some(ChunkKind::Done(done)) = &chunks[0].kind else { panic!("{chunks:?}") };
    assert_eq!(done.message.as_ref().unwrap().content, "one two three four");
    assert_eq!(done.usage.unwrap().completion_tokens, 4);
    assert_eq!(done.done_reason(), contract::DoneReason::Stop);
}

#[tokio::test]
async fn converse_stream_delivers_deltas_as_they_are_made() {
    let url = emulator(4, 30).await;
    let c = client(&url, 1).await;
    let mut stream = c.generate(request(MODEL_ID, true)).await.unwrap();
    let started = Instant::now();
    let mut deltas = Vec::new();
    let mut first_at = None;
    while let Some(chunk) = stream.next().await {
        match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                first_at.get_or_insert(started.elapsed());
                deltas.push(d.content);
            }
            Some(ChunkKind::Done(done)) => {
                assert_eq!(done.usage.unwrap().completion_tokens, 4);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(deltas, vec!["one ", "two ", "three ", "four"]);
    // Four words 30 ms apart: the first arrived well before the last.
    assert!(started.elapsed() - first_at.unwrap() >= std::time::Duration::from_millis(60));
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_come_back_as_done_reasons() {
    let url = emulator(4, 0).await;
    let c = client(&url, 1).await;
    let mut req = request(MODEL_ID, true);
    req.options = Some(Options { num_predict: Some(2), ..Default::default() });
    let last = c.generate(req).await.unwrap().collect::<Vec<_>>().await.pop().unwrap();
    let Some(ChunkKind::Done(done)) = last.kind else { panic!() };
    assert_eq!(done.done_reason(), contract::DoneReason::Length);
    let mut req = request(MODEL_ID, false);
    req.options = Some(Options { stop: vec!["three".into()], ..Default::default() });
    let last = c.generate(req).await.unwrap().collect::<Vec<_>>().await.pop().unwrap();
    let Some(ChunkKind::Done(done)) = last.kind else { panic!() };
    assert_eq!(done.done_reason(), contract::DoneReason::StopSequence);
}

#[tokio::test]
async fn unknown_model_is_a_non_retryable_model_not_found() {
    let url = emulator(4, 0).await;
    let e = client(&url, 3)
        .await
        .generate(request("vendor.no-such-model-v1:0", false))
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::ModelNotFound);
    assert!(!e.retryable);
}

#[tokio::test]
async fn an_invalid_request_is_a_validation_error() {
    let url = emulator(4, 0).await;
    let mut req = request(MODEL_ID, false);
    req.options = Some(Options { temperature: Some(3.0), ..Default::default() });
    let e = client(&url, 3).await.generate(req).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
}

#[tokio::test]
async fn throttling_is_retried_then_reported_retryable() {
    let url = emulator(1, 200).await;
    let c = client(&url, 3).await;
    // Hold the emulator's only slot with a slow stream.
    let mut held = c.generate(request(MODEL_ID, true)).await.unwrap();
    assert!(matches!(held.next().await.unwrap().kind, Some(ChunkKind::Delta(_))));
    let started = Instant::now();
    let e = c.generate(request(MODEL_ID, false)).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert!(e.retryable);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(held);
    // Once the slot is free the same call succeeds.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(s) = c.generate(request(MODEL_ID, false)).await {
            ok = Some(s);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok.is_some());
}
