//! The real `bootstrap` under the local Lambda service, calling the real emulator, driven by
//! the official Rust SDK (`aws-sdk-lambda`): what main-service will see.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_lambda::config::{Credentials, Region};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
use aws_sdk_lambda::Client;
use bedrock_emulator::{AuthMode, EmulatorSettings, GeneratorKind};
use contract::lambda_stream::{error_from_function, LineDecoder};
use contract::{ChunkKind, ErrorKind, Message, StreamChunk};
use lambda_service::{FunctionSettings, LambdaServiceSettings};

const MODEL_ID: &str = "test.instant-v1:0";

struct Chain {
    client: Client,
    service: Arc<lambda_service::Function>,
}

async fn chain(emulator_slots: usize, word_delay_ms: u64, concurrency: usize) -> Chain {
    let mut models = BTreeMap::new();
    models.insert(MODEL_ID.to_string(), "local".to_string());
    let instant = instant::InstantConfig {
        reply: "one two three four".into(),
        models: vec!["local".into()],
        word_delay_ms,
    };
    let emulator = EmulatorSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorKind::Instant,
        models,
        auth: AuthMode::Any,
        max_concurrent_requests: emulator_slots,
        instant: instant.clone(),
        ..Default::default()
    };
    let emulator = bedrock_emulator::Application::build(
        emulator,
        Arc::new(instant::InstantGenerator::new(instant)),
    )
    .await
    .unwrap();
    let emulator_url = format!("http://127.0.0.1:{}", emulator.port());
    tokio::spawn(emulator.run_until_stopped(std::future::pending()));

    let mut f = FunctionSettings {
        path: env!("CARGO_BIN_EXE_bootstrap").into(),
        concurrency,
        queue_depth: 8,
        timeout_ms: 30_000,
        ..Default::default()
    };
    for (k, v) in [
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator_url.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("STRATA_BEDROCK_MAX_ATTEMPTS", "2"),
    ] {
        f.env.insert(k.into(), v.into());
    }
    let mut functions = BTreeMap::new();
    functions.insert("strata".to_string(), f);
    let app = lambda_service::Application::build(LambdaServiceSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        functions,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let service = app.function("strata").unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .build();
    Chain { client: Client::from_conf(config), service }
}

fn event(model: &str, stream: bool) -> Blob {
    let req = contract::GenerateRequest {
        model: model.into(),
        messages: vec![Message::user("hi")],
        stream,
        ..Default::default()
    };
    Blob::new(serde_json::to_vec(&req).unwrap())
}

/// The stream's chunks, and when the first delta and the last chunk arrived.
async fn stream(c: &Chain, model: &str) -> (Vec<StreamChunk>, Option<String>) {
    let mut out = c
        .client
        .invoke_with_response_stream()
        .function_name("strata")
        .payload(event(model, true))
        .send()
        .await
        .unwrap();
    let mut decoder = LineDecoder::new(out.response_stream_content_type());
    let mut chunks = Vec::new();
    while let Some(e) = out.event_stream.recv().await.unwrap() {
        match e {
            Event::PayloadChunk(p) => chunks.extend(decoder.push(p.payload().unwrap().as_ref())),
            Event::InvokeComplete(done) => return (chunks, done.error_code().map(str::to_owned)),
            other => panic!("{other:?}"),
        }
    }
    panic!("no InvokeComplete")
}

#[tokio::test]
async fn invoke_returns_the_contract_response() {
    let c = chain(4, 0, 1).await;
    let out = c
        .client
        .invoke()
        .function_name("strata")
        .payload(event(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), None);
    let resp: contract::GenerateResponse =
        serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(resp.message.unwrap().content, "one two three four");
    assert_eq!(resp.usage.unwrap().completion_tokens, 4);
    let hops: Vec<String> = resp.timings.unwrap().hops.into_iter().map(|h| h.hop).collect();
    assert_eq!(hops, ["bedrock", "lambda"]);
}

#[tokio::test]
async fn invoke_with_response_stream_forwards_deltas_as_they_are_generated() {
    let c = chain(4, 40, 1).await;
    let started = Instant::now();
    let mut out = c
        .client
        .invoke_with_response_stream()
        .function_name("strata")
        .payload(event(MODEL_ID, true))
        .send()
        .await
        .unwrap();
    let mut decoder = LineDecoder::new(out.response_stream_content_type());
    let (mut text, mut first_delta, mut done) = (String::new(), None, None);
    while let Some(e) = out.event_stream.recv().await.unwrap() {
        match e {
            Event::PayloadChunk(p) => {
                for chunk in decoder.push(p.payload().unwrap().as_ref()) {
                    match chunk.kind {
                        Some(ChunkKind::Delta(d)) => {
                            first_delta.get_or_insert(started.elapsed());
                            text.push_str(&d.content);
                        }
                        Some(ChunkKind::Done(d)) => done = Some((d, started.elapsed())),
                        other => panic!("{other:?}"),
                    }
                }
            }
            Event::InvokeComplete(e) => {
                assert_eq!(e.error_code(), None);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (done, done_at) = done.expect("a done chunk");
    assert_eq!(text, "one two three four");
    assert_eq!(done.usage.unwrap().completion_tokens, 4);
    let hops = done.timings.unwrap().hops;
    assert_eq!(hops.iter().map(|h| h.hop.as_str()).collect::<Vec<_>>(), ["bedrock", "lambda"]);
    assert!(hops[1].dur_ns >= hops[0].dur_ns);
    // Four words 40 ms apart: the first reached us well before the end.
    assert!(
        done_at - first_delta.unwrap() >= Duration::from_millis(80),
        "{first_delta:?} {done_at:?}"
    );
}

#[tokio::test]
async fn an_unknown_model_is_a_non_retryable_function_error() {
    let c = chain(4, 0, 1).await;
    let out = c
        .client
        .invoke()
        .function_name("strata")
        .payload(event("vendor.none-v1:0", false))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), Some("Unhandled"));
    let body: serde_json::Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    let e = error_from_function(
        body["errorType"].as_str().unwrap(),
        body["errorMessage"].as_str().unwrap(),
    );
    assert_eq!(e.kind(), ErrorKind::ModelNotFound);
    assert!(!e.retryable);
    // Invalid options are the emulator's ValidationException, an invalid request for us.
    let req = serde_json::json!({"model": MODEL_ID, "messages": [{"role": 1, "content": "hi"}], "options": {"temperature": 5.0}});
    let out = c
        .client
        .invoke()
        .function_name("strata")
        .payload(Blob::new(req.to_string()))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["errorType"], "InvalidRequest", "{body}");
}

#[tokio::test]
async fn bedrock_throttling_is_retried_then_reported_as_retryable() {
    // One emulator slot, held by a slow stream; the function's second call is throttled.
    let c = chain(1, 300, 2).await;
    let mut held = c
        .client
        .invoke_with_response_stream()
        .function_name("strata")
        .payload(event(MODEL_ID, true))
        .send()
        .await
        .unwrap();
    let mut decoder = LineDecoder::new(held.response_stream_content_type());
    loop {
        let Some(Event::PayloadChunk(p)) = held.event_stream.recv().await.unwrap() else {
            panic!("expected a chunk")
        };
        if decoder
            .push(p.payload().unwrap().as_ref())
            .iter()
            .any(|c| matches!(c.kind, Some(ChunkKind::Delta(_))))
        {
            break;
        }
    }
    let out = c
        .client
        .invoke()
        .function_name("strata")
        .payload(event(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), Some("Unhandled"));
    let body: serde_json::Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    let e = error_from_function(
        body["errorType"].as_str().unwrap(),
        body["errorMessage"].as_str().unwrap(),
    );
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{body}");
    assert!(e.retryable);
}

#[tokio::test]
async fn killing_the_function_mid_stream_ends_the_stream_with_an_error_and_it_comes_back() {
    let c = chain(4, 200, 1).await;
    let mut out = c
        .client
        .invoke_with_response_stream()
        .function_name("strata")
        .payload(event(MODEL_ID, true))
        .send()
        .await
        .unwrap();
    let mut decoder = LineDecoder::new(out.response_stream_content_type());
    loop {
        let Some(Event::PayloadChunk(p)) = out.event_stream.recv().await.unwrap() else {
            panic!("expected a chunk")
        };
        if decoder
            .push(p.payload().unwrap().as_ref())
            .iter()
            .any(|c| matches!(c.kind, Some(ChunkKind::Delta(_))))
        {
            break;
        }
    }
    let pid = c.service.stats().pids[0];
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let code = loop {
        match out.event_stream.recv().await.unwrap() {
            Some(Event::InvokeComplete(done)) => break done.error_code().map(str::to_owned),
            Some(_) => continue,
            None => panic!("no InvokeComplete"),
        }
    };
    assert_eq!(code.as_deref(), Some("Runtime.ExitError"));
    let (chunks, error) = stream(&c, MODEL_ID).await;
    assert_eq!(error, None);
    assert!(matches!(chunks.last().unwrap().kind, Some(ChunkKind::Done(_))));
    assert_ne!(c.service.stats().pids[0], pid);
}
