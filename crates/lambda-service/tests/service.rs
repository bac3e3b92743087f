//! The service with the official Rust SDK (`aws-sdk-lambda`) in front and a hand-written
//! custom runtime (tests/fixtures/function.py) behind, so each failure mode can be provoked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_lambda::config::{Credentials, Region};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
use aws_sdk_lambda::Client;
use lambda_service::{Application, FunctionSettings, LambdaServiceSettings};
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/function.py")
}

struct Service {
    client: Client,
    app_url: String,
}

async fn service(f: FunctionSettings, max_payload_bytes: usize) -> Service {
    let mut functions = BTreeMap::new();
    functions.insert("fixture".to_string(), FunctionSettings { path: fixture(), ..f });
    let settings = LambdaServiceSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        functions,
        max_payload_bytes,
        ..Default::default()
    };
    let app = Application::build(settings).await.unwrap();
    let app_url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&app_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    Service { client: Client::from_conf(config), app_url }
}

fn settings(concurrency: usize, queue_depth: usize, timeout_ms: u64) -> FunctionSettings {
    FunctionSettings { concurrency, queue_depth, timeout_ms, ..Default::default() }
}

async fn invoke(s: &Service, event: Value) -> (Option<String>, Value) {
    let out = s
        .client
        .invoke()
        .function_name("fixture")
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.executed_version(), Some("$LATEST"));
    let body = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    (out.function_error().map(str::to_owned), body)
}

/// Every event of a streamed invocation: payload bytes, then the completion's error code.
async fn invoke_stream(s: &Service, event: Value) -> (Vec<Vec<u8>>, Option<String>) {
    let mut out = s
        .client
        .invoke_with_response_stream()
        .function_name("fixture")
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(e) = out.event_stream.recv().await.unwrap() {
        match e {
            Event::PayloadChunk(c) => chunks.push(c.payload().unwrap().as_ref().to_vec()),
            Event::InvokeComplete(c) => return (chunks, c.error_code().map(str::to_owned)),
            other => panic!("{other:?}"),
        }
    }
    panic!("the stream ended without InvokeComplete")
}

#[tokio::test]
async fn invoke_passes_the_event_and_lambda_context_to_the_function() {
    let mut f = settings(1, 4, 10_000);
    f.env.insert("FIXTURE_EXTRA".into(), "from-config".into());
    let s = service(f, lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (error, body) = invoke(&s, json!({"action": "echo", "n": 7})).await;
    assert_eq!(error, None);
    assert_eq!(body["event"]["n"], 7);
    assert_eq!(body["meta"]["arn"], "arn:aws:lambda:us-east-1:000000000000:function:fixture");
    assert_eq!(body["meta"]["name"], "fixture");
    assert_eq!(body["meta"]["extra"], "from-config");
    assert!(body["meta"]["trace"].as_str().unwrap().starts_with("Root=1-"));
    // The same function by ARN, and `$LATEST` as qualifier.
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:fixture";
    let out = s
        .client
        .invoke()
        .function_name(arn)
        .qualifier("$LATEST")
        .payload(Blob::new("{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.function_error(), None);
}

#[tokio::test]
async fn a_function_error_is_200_with_x_amz_function_error() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (error, body) = invoke(&s, json!({"action": "error"})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Fixture.Error");
    assert_eq!(body["errorMessage"], "asked to fail");
}

#[tokio::test]
async fn a_crash_is_runtime_exit_error_and_the_environment_is_replaced() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (_, before) = invoke(&s, json!({"action": "echo"})).await;
    let (error, body) = invoke(&s, json!({"action": "crash"})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Runtime.ExitError");
    assert!(body["errorMessage"].as_str().unwrap().contains("exit status 3"), "{body}");
    let (error, after) = invoke(&s, json!({"action": "echo"})).await;
    assert_eq!(error, None);
    assert_ne!(before["meta"]["pid"], after["meta"]["pid"]);
}

#[tokio::test]
async fn a_function_past_its_timeout_fails_with_lambdas_timeout_error_and_is_replaced() {
    let s = service(settings(1, 4, 300), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (error, body) = invoke(&s, json!({"action": "sleep", "seconds": 120})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Sandbox.Timedout");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("Task timed out after 0.30 seconds"),
        "{body}"
    );
    let (error, _) = invoke(&s, json!({"action": "echo"})).await;
    assert_eq!(error, None);
}

#[tokio::test]
async fn payload_limits_apply_to_requests_and_responses() {
    let s = service(settings(1, 4, 10_000), 4096).await;
    let big = json!({"action": "echo", "pad": "x".repeat(5000)});
    let e = s
        .client
        .invoke()
        .function_name("fixture")
        .payload(Blob::new(big.to_string()))
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_request_too_large_exception(), "{e:?}");
    let (error, body) = invoke(&s, json!({"action": "big", "bytes": 8000})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
}

#[tokio::test]
async fn unknown_functions_and_non_json_events_get_lambdas_errors() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let e = s.client.invoke().function_name("nope").send().await.unwrap_err();
    assert!(e.as_service_error().unwrap().is_resource_not_found_exception(), "{e:?}");
    let e = s
        .client
        .invoke()
        .function_name("fixture")
        .payload(Blob::new("not json"))
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_invalid_request_content_exception(), "{e:?}");
    let e = s.client.invoke().function_name("fixture").qualifier("7").send().await.unwrap_err();
    assert!(e.as_service_error().unwrap().is_resource_not_found_exception(), "{e:?}");
}

#[tokio::test]
async fn an_init_error_answers_the_invocation_and_is_retried_on_the_next() {
    let mut f = settings(1, 4, 10_000);
    f.env.insert("FIXTURE_INIT_ERROR".into(), "1".into());
    let s = service(f, lambda_service::SYNC_PAYLOAD_LIMIT).await;
    for _ in 0..2 {
        let (error, body) = invoke(&s, json!({"action": "echo"})).await;
        assert_eq!(error.as_deref(), Some("Unhandled"));
        assert_eq!(body["errorType"], "Fixture.InitFailed");
    }
}

#[tokio::test]
async fn invoke_with_response_stream_sends_payload_chunks_then_invoke_complete() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (chunks, error) =
        invoke_stream(&s, json!({"action": "stream", "parts": ["one ", "two ", "three"]})).await;
    assert_eq!(error, None);
    assert_eq!(chunks.concat(), b"one two three");
    // A buffered answer to a streaming invocation is one chunk.
    let (chunks, error) = invoke_stream(&s, json!({"action": "echo"})).await;
    assert_eq!(error, None);
    let body: Value = serde_json::from_slice(&chunks.concat()).unwrap();
    assert_eq!(body["event"]["action"], "echo");
    // Errors end the stream in InvokeComplete.
    let (_, error) = invoke_stream(&s, json!({"action": "error"})).await;
    assert_eq!(error.as_deref(), Some("Fixture.Error"));
}

#[tokio::test]
async fn mid_stream_failures_end_the_stream_with_their_error_code() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let (chunks, error) =
        invoke_stream(&s, json!({"action": "stream_crash", "parts": ["first", "second"]})).await;
    assert_eq!(chunks.concat(), b"first");
    assert_eq!(error.as_deref(), Some("Runtime.ExitError"));
    let (chunks, error) = invoke_stream(&s, json!({"action": "stream_error"})).await;
    assert_eq!(chunks.concat(), b"a");
    assert_eq!(error.as_deref(), Some("Fixture.StreamError"));
}

#[tokio::test]
async fn chunks_arrive_as_written_and_a_busy_function_throttles_beyond_its_queue() {
    let s = service(settings(1, 0, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let event = json!({"action": "stream_wait", "parts": ["first", "second"], "release": release});
    let mut out = s
        .client
        .invoke_with_response_stream()
        .function_name("fixture")
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .unwrap();
    // The first chunk arrives while the function is still holding the stream open.
    let Some(Event::PayloadChunk(first)) = out.event_stream.recv().await.unwrap() else {
        panic!("expected a chunk")
    };
    assert_eq!(first.payload().unwrap().as_ref(), b"first");
    // Its only environment is busy and nothing may queue: throttled.
    let e = s
        .client
        .invoke()
        .function_name("fixture")
        .payload(Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    let e = e.into_service_error();
    assert!(e.is_too_many_requests_exception(), "{e:?}");
    std::fs::write(&release, b"").unwrap();
    let mut rest = Vec::new();
    while let Some(e) = out.event_stream.recv().await.unwrap() {
        match e {
            Event::PayloadChunk(c) => rest.extend_from_slice(c.payload().unwrap().as_ref()),
            Event::InvokeComplete(c) => {
                assert_eq!(c.error_code(), None);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rest, b"second");
}

#[tokio::test]
async fn invocations_beyond_the_environments_wait_in_the_queue() {
    let s = service(settings(1, 8, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let calls = (0..4).map(|i| invoke(&s, json!({"action": "echo", "n": i})));
    let results = futures::future::join_all(calls).await;
    for (i, (error, body)) in results.into_iter().enumerate() {
        assert_eq!(error, None);
        assert_eq!(body["event"]["n"], i);
    }
}

#[tokio::test]
async fn raw_http_errors_carry_the_aws_error_type_header() {
    let s = service(settings(1, 4, 10_000), lambda_service::SYNC_PAYLOAD_LIMIT).await;
    let r = reqwest::Client::new()
        .post(format!("{}/2015-03-31/functions/none/invocations", s.app_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceNotFoundException");
    assert!(r.headers().contains_key("x-amzn-RequestId"));
    let r = reqwest::Client::new()
        .post(format!("{}/2015-03-31/functions/fixture/invocations", s.app_url))
        .header("X-Amz-Invocation-Type", "DryRun")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}
