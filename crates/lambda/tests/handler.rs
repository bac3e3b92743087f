//! The function's logic against the real emulator on a random port (instant generator): the
//! buffered answer, the streamed NDJSON lines, and errors as Lambda diagnostics.

use std::collections::BTreeMap;
use std::sync::Arc;

use bedrock::{BedrockClient, BedrockSettings};
use bedrock_emulator::{Application, AuthMode, EmulatorSettings, GeneratorKind};
use contract::{ChunkKind, Message};
use futures::StreamExt;
use lambda::runtime::{Answer, Failure};

const MODEL_ID: &str = "test.instant-v1:0";

async fn client() -> BedrockClient {
    let mut models = BTreeMap::new();
    models.insert(MODEL_ID.to_string(), "local".to_string());
    let instant = instant::InstantConfig {
        reply: "one two three".into(),
        models: vec!["local".into()],
        word_delay_ms: 0,
    };
    let settings = EmulatorSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorKind::Instant,
        models,
        auth: AuthMode::Any,
        instant: instant.clone(),
        ..Default::default()
    };
    let app = Application::build(settings, Arc::new(instant::InstantGenerator::new(instant)))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    static CREDENTIALS: std::sync::Once = std::sync::Once::new();
    CREDENTIALS.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
    });
    BedrockClient::new(BedrockSettings {
        region: "us-east-1".into(),
        endpoint_url: url,
        max_attempts: 1,
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
async fn a_buffered_request_returns_one_response_with_the_whole_text() {
    let c = client().await;
    let Ok(Answer::Buffered(done)) = lambda::handle(&c, request(MODEL_ID, false)).await else {
        panic!("expected a buffered response")
    };
    assert_eq!(done.message.unwrap().content, "one two three");
    assert_eq!(done.usage.unwrap().completion_tokens, 3);
}

#[tokio::test]
async fn a_streamed_request_writes_one_chunk_per_line_ending_with_done() {
    let c = client().await;
    let Ok(Answer::Streaming(s)) = lambda::handle(&c, request(MODEL_ID, true)).await else {
        panic!("expected a stream")
    };
    let bytes: Vec<u8> = s.map(|b| b.unwrap().to_vec()).concat().await;
    let chunks: Vec<contract::StreamChunk> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| match &c.kind {
            Some(ChunkKind::Delta(d)) => Some(d.content.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "one two three");
    assert!(matches!(chunks.last().unwrap().kind, Some(ChunkKind::Done(_))));
}

#[tokio::test]
async fn an_unknown_model_is_a_diagnostic_naming_the_contract_error_kind() {
    let c = client().await;
    let Err(e) = lambda::handle(&c, request("vendor.none-v1:0", false)).await else {
        panic!("expected an error")
    };
    let d: Failure = e.into();
    assert_eq!(d.error_type, "ModelNotFound");
    let Err(e) = lambda::handle(&c, request(" ", false)).await else { panic!("expected an error") };
    assert_eq!(Failure::from(e).error_type, "InvalidRequest");
}
