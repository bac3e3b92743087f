//! MainService over the real chain: reqwest -> main-service -> aws-sdk-lambda -> lambda-service
//! -> `bootstrap` -> aws-sdk-bedrockruntime -> Bedrock emulator.

mod helpers;

use std::time::{Duration, Instant};

use bytes::Buf;
use contract::{ChunkKind, ErrorKind, GenerateRequest, GenerateResponse, Message, StreamChunk};
use futures::StreamExt;
use helpers::*;
use prost::Message as _;
use serde_json::{json, Value};

fn hops(resp: &GenerateResponse) -> Vec<String> {
    resp.timings.as_ref().unwrap().hops.iter().map(|h| h.hop.clone()).collect()
}

#[tokio::test]
async fn generate_json_returns_the_answer_with_every_hop_timed() {
    let c = chain(Options::default(), |_| {}).await;
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let timing = resp.headers()["server-timing"].to_str().unwrap().to_owned();
    let body: GenerateResponse = resp.json().await.unwrap();
    assert_eq!(body.message.as_ref().unwrap().content, REPLY);
    assert_eq!(body.usage.unwrap().completion_tokens, 4);
    assert_eq!(hops(&body), ["bedrock", "lambda", "main-service"]);
    let names: Vec<&str> = timing.split(", ").map(|e| e.split(';').next().unwrap()).collect();
    assert_eq!(names, ["bedrock", "lambda", "main-service"], "{timing}");
    assert!(timing.contains("main-service;dur="));
}

#[tokio::test]
async fn generate_json_streams_deltas_as_they_are_produced() {
    let c = chain(Options { word_delay_ms: 40, ..Default::default() }, |_| {}).await;
    let started = Instant::now();
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut reader = NdjsonReader::new(resp);
    let (mut text, mut first, mut done) = (String::new(), None, None);
    while let Some(chunk) = reader.next().await {
        match chunk.kind {
            Some(ChunkKind::Delta(d)) => {
                first.get_or_insert(started.elapsed());
                text.push_str(&d.content);
            }
            Some(ChunkKind::Done(d)) => done = Some((d, started.elapsed())),
            other => panic!("{other:?}"),
        }
    }
    let (done, done_at) = done.expect("a done chunk");
    assert_eq!(text, REPLY);
    assert_eq!(hops(&done), ["bedrock", "lambda", "main-service"]);
    // Four words 40 ms apart: the first arrived well before the end.
    assert!(done_at - first.unwrap() >= Duration::from_millis(80), "{first:?} {done_at:?}");
}

#[tokio::test]
async fn protobuf_requests_get_protobuf_answers_whole_and_streamed() {
    let c = chain(Options::default(), |_| {}).await;
    let req = GenerateRequest {
        model: MODEL_ID.into(),
        messages: vec![Message::user("hi")],
        ..Default::default()
    };
    let send = |req: GenerateRequest| {
        c.client
            .post(format!("{}/v1/generate", c.url))
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
    };
    let resp = send(req.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = GenerateResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body.message.unwrap().content, REPLY);

    let resp = send(GenerateRequest { stream: true, ..req }).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let mut bytes = resp.bytes().await.unwrap();
    let mut chunks = Vec::new();
    while bytes.has_remaining() {
        chunks.push(StreamChunk::decode_length_delimited(&mut bytes).unwrap());
    }
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            if let Some(ChunkKind::Delta(d)) = &c.kind {
                Some(d.content.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(text, REPLY);
    assert!(chunks.len() >= 2);
    assert!(matches!(chunks.last().unwrap().kind, Some(ChunkKind::Done(_))));
    assert_eq!(chunks.iter().filter(|c| !is_delta(c)).count(), 1);
}

#[tokio::test]
async fn invalid_requests_get_400_with_field_messages() {
    let c = chain(Options::default(), |_| {}).await;
    let cases = [
        (json!({"model": MODEL_ID, "messages": []}), vec!["messages"]),
        (
            json!({"model": "", "messages": [{"role": 0, "content": "hi"}]}),
            vec!["model", "messages[0].role"],
        ),
        (
            json!({"model": MODEL_ID, "messages": [{"role": 2, "content": "hi"}], "options": {"temperature": 3.0, "topP": 2.0, "numPredict": -5}}),
            vec!["options.temperature", "options.top_p", "options.num_predict"],
        ),
        (
            json!({"model": MODEL_ID, "messages": [{"role": 2, "content": "hi"}], "rawPrompt": "x"}),
            vec!["raw_prompt"],
        ),
    ];
    for (body, fields) in cases {
        let resp = c.post_json("/v1/generate", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "INVALID_REQUEST");
        let got: Vec<&str> = v["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{v}");
        assert!(v["error"]["fields"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Not JSON at all; an unknown content type; a protobuf request (errors are JSON either way).
    let resp = c
        .client
        .post(format!("{}/v1/generate", c.url))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .client
        .post(format!("{}/v1/generate", c.url))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let bad = GenerateRequest { model: MODEL_ID.into(), ..Default::default() };
    let resp = c
        .client
        .post(format!("{}/v1/generate", c.url))
        .header("content-type", "application/x-protobuf")
        .body(bad.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["fields"][0]["field"], "messages");
    // Nothing invalid reached the function.
    assert_eq!(
        c.metric("main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"ok\"}")
            .await,
        0
    );
}

#[tokio::test]
async fn models_outside_the_allow_list_and_large_bodies_are_refused() {
    let c = chain(Options::default(), |s| {
        s.allowed_models = vec![MODEL_ID.into()];
        s.max_body_bytes = 2048;
    })
    .await;
    let resp = c.post_json("/v1/generate", &generate("vendor.other-v1:0", false)).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "MODEL_NOT_FOUND");
    assert_eq!(v["error"]["fields"][0]["field"], "model");
    let big = json!({"model": MODEL_ID, "messages": [{"role": 2, "content": "x".repeat(4096)}]});
    let resp = c.post_json("/v1/generate", &big).await;
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "INVALID_REQUEST");
    assert_eq!(c.post_json("/v1/generate", &generate(MODEL_ID, false)).await.status(), 200);
}

#[tokio::test]
async fn function_errors_map_to_contract_errors_whole_and_streamed() {
    // No allow-list: the unknown model reaches Bedrock, whose ResourceNotFound comes back as
    // the function's ModelNotFound error.
    let c = chain(Options::default(), |_| {}).await;
    for stream in [false, true] {
        let resp = c.post_json("/v1/generate", &generate("vendor.none-v1:0", stream)).await;
        assert_eq!(resp.status(), 404, "stream={stream}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["kind"], "MODEL_NOT_FOUND", "{v}");
    }
    // Not retried: one attempt each.
    assert_eq!(c.metric("main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"function_error\"}").await, 1);
    assert_eq!(c.metric("main_service_lambda_invocations_total{operation=\"invoke_with_response_stream\",outcome=\"function_error\"}").await, 1);
    assert_eq!(c.metric("main_service_lambda_retries_total{operation=\"invoke\"}").await, 0);
}

/// Starts a slow stream and returns once its first delta arrived (the function is busy).
async fn hold(c: &Chain) -> NdjsonReader {
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, true)).await;
    assert_eq!(resp.status(), 200);
    let mut reader = NdjsonReader::new(resp);
    loop {
        let chunk = reader.next().await.expect("a chunk");
        if is_delta(&chunk) {
            return reader;
        }
    }
}

#[tokio::test]
async fn lambda_throttling_is_retried_then_answered_429_with_retry_after() {
    let c = chain(
        Options { word_delay_ms: 300, concurrency: 1, queue_depth: 0, ..Default::default() },
        |s| s.lambda.max_attempts = 3,
    )
    .await;
    let mut held = hold(&c).await;
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "OVERLOADED");
    assert_eq!(c.metric("main_service_lambda_retries_total{operation=\"invoke\"}").await, 2);
    assert_eq!(
        c.metric(
            "main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"throttled\"}"
        )
        .await,
        3
    );
    // The held stream was not disturbed.
    let rest = held.rest().await;
    assert!(matches!(rest.last().unwrap().kind, Some(ChunkKind::Done(_))));
}

#[tokio::test]
async fn a_full_invocation_pool_answers_429_after_the_queue_timeout() {
    let c = chain(Options { word_delay_ms: 300, concurrency: 2, ..Default::default() }, |s| {
        s.lambda.max_concurrent_invocations = 1;
        s.lambda.queue_timeout_ms = 50;
        s.lambda.retry_after_secs = 3;
    })
    .await;
    let _held = hold(&c).await;
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
}

#[tokio::test]
async fn a_slow_function_times_out_with_504() {
    let c = chain(Options { word_delay_ms: 300, concurrency: 2, ..Default::default() }, |s| {
        s.lambda.invocation_timeout_ms = 600
    })
    .await;
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, false)).await;
    assert_eq!(resp.status(), 504);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "TIMEOUT");
    // Four words 300 ms apart: a stream has begun by then, so it ends with an error chunk.
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, true)).await;
    assert_eq!(resp.status(), 200);
    let chunks = NdjsonReader::new(resp).rest().await;
    let Some(ChunkKind::Error(e)) = &chunks.last().unwrap().kind else { panic!("{chunks:?}") };
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // Timeouts are not retried.
    assert_eq!(c.metric("main_service_lambda_retries_total{operation=\"invoke\"}").await, 0);
}

#[tokio::test]
async fn killing_the_function_mid_stream_ends_the_stream_with_an_error_chunk() {
    let c = chain(Options { word_delay_ms: 200, ..Default::default() }, |_| {}).await;
    let mut reader = hold(&c).await;
    let pid = c.function.stats().pids[0];
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let rest = reader.rest().await;
    let last = rest.last().expect("an end chunk");
    let Some(ChunkKind::Error(e)) = &last.kind else { panic!("{rest:?}") };
    assert_eq!(e.kind(), ErrorKind::Upstream, "{e:?}");
    assert_eq!(rest.iter().filter(|c| !is_delta(c)).count(), 1);
}

#[tokio::test]
async fn the_trace_reaches_the_function_and_comes_back() {
    let c = chain(Options::default(), |_| {}).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = c
        .client
        .post(format!("{}/v1/generate", c.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&generate(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("00-{trace_id}-")), "{back}");
    // The function logged the invocation under the same trace (its output, relayed by the
    // Lambda service), and main-service's access log has it too.
    logs()
        .wait_for(|l| {
            l.contains("\"function\"") && l.contains("invocation") && l.contains(trace_id)
        })
        .await;
    logs().wait_for(|l| l.contains("\"hop\":\"main-service\"") && l.contains(trace_id)).await;
    // A trace in the contract's own field is used when there is no header.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let body = json!({"model": MODEL_ID, "messages": [{"role": 2, "content": "hi"}], "trace": {"traceparent": format!("00-{other}-b7ad6b7169203331-01")}});
    assert_eq!(c.post_json("/v1/generate", &body).await.status(), 200);
    logs().wait_for(|l| l.contains("\"function\"") && l.contains(other)).await;
}

#[tokio::test]
async fn summarize_maps_the_parts_then_streams_the_reduce() {
    let c = chain(Options { reply: "a short partial summary".into(), ..Default::default() }, |s| {
        s.default_model.context_tokens = 256;
        s.default_model.answer_reserve_tokens = 64;
        s.summarize.chunk_tokens = 100;
    })
    .await;
    let document = (0..60)
        .map(|i| format!("Paragraph {i} says something about the subject at some length.\n\n"))
        .collect::<String>();
    let body = json!({"model": MODEL_ID, "document": document, "instructions": "Be brief.", "stream": true});
    let resp = c.post_json("/v1/summarize", &body).await;
    assert_eq!(resp.status(), 200);
    let chunks = NdjsonReader::new(resp).rest().await;
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            if let Some(ChunkKind::Delta(d)) = &c.kind {
                Some(d.content.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(text, "a short partial summary");
    let Some(ChunkKind::Done(done)) = &chunks.last().unwrap().kind else { panic!("{chunks:?}") };
    assert_eq!(hops(done), ["bedrock", "lambda", "main-service"]);
    // ~4000 characters at 100 tokens (400 characters) a part.
    let maps = c.metric("main_service_summarize_invocations_total{phase=\"map\"}").await;
    assert!(maps >= 8, "{maps}");
    assert_eq!(c.metric("main_service_summarize_invocations_total{phase=\"reduce\"}").await, 1);
    assert_eq!(
        c.metric("main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"ok\"}")
            .await,
        maps
    );
    assert_eq!(c.metric("main_service_lambda_invocations_total{operation=\"invoke_with_response_stream\",outcome=\"ok\"}").await, 1);
    // Usage counts every invocation: 4 words per map plus the reduce's.
    assert_eq!(done.usage.unwrap().completion_tokens as u64, 4 * (maps + 1));
}

#[tokio::test]
async fn summaries_too_long_to_combine_at_once_are_combined_in_groups() {
    // Each partial summary is ~60 tokens; the reduce budget holds about two of them.
    let reply = "word ".repeat(48);
    let c = chain(Options { reply: reply.trim().into(), ..Default::default() }, |s| {
        s.default_model.context_tokens = 256;
        s.default_model.answer_reserve_tokens = 64;
        s.summarize.chunk_tokens = 60;
        s.summarize.map_concurrency = 2;
    })
    .await;
    let document = "A sentence about the subject. ".repeat(100);
    let resp =
        c.post_json("/v1/summarize", &json!({"model": MODEL_ID, "document": document})).await;
    assert_eq!(resp.status(), 200);
    let body: GenerateResponse = resp.json().await.unwrap();
    assert_eq!(body.message.unwrap().content, reply.trim());
    assert!(c.metric("main_service_summarize_invocations_total{phase=\"combine\"}").await >= 1);
    assert_eq!(c.metric("main_service_summarize_invocations_total{phase=\"reduce\"}").await, 1);
}

#[tokio::test]
async fn a_document_beyond_max_parts_is_refused_with_413_before_any_invocation() {
    let c = chain(Options::default(), |s| {
        s.default_model.context_tokens = 256;
        s.default_model.answer_reserve_tokens = 64;
        s.summarize.chunk_tokens = 100;
        s.summarize.max_parts = 3;
    })
    .await;
    // ~4000 characters at 400 characters a part: about ten parts.
    let long = (0..60)
        .map(|i| format!("Paragraph {i} says something about the subject at some length.\n\n"))
        .collect::<String>();
    let resp = c.post_json("/v1/summarize", &json!({"model": MODEL_ID, "document": long})).await;
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "INVALID_REQUEST");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the limit is 3") && message.contains("summarize.max_parts"),
        "{message}"
    );
    assert_eq!(c.metric("main_service_summarize_invocations_total{phase=\"map\"}").await, 0);
    assert_eq!(
        c.metric("main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"ok\"}")
            .await,
        0
    );
    assert_eq!(
        c.metric("main_service_requests_total{route=\"/v1/summarize\",status=\"413\"}").await,
        1
    );

    // Within the limit, every map invocation is counted.
    let short = (0..12)
        .map(|i| format!("Paragraph {i} says something about the subject at some length.\n\n"))
        .collect::<String>();
    let resp = c.post_json("/v1/summarize", &json!({"model": MODEL_ID, "document": short})).await;
    assert_eq!(resp.status(), 200);
    let maps = c.metric("main_service_summarize_invocations_total{phase=\"map\"}").await;
    assert!((2..=3).contains(&maps), "{maps}");
    assert_eq!(
        c.metric("main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"ok\"}")
            .await,
        maps + 1
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let c = chain(Options::default(), |_| {}).await;
    let resp = c.client.get(format!("{}/healthz", c.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    assert_eq!(c.post_json("/v1/generate", &generate(MODEL_ID, false)).await.status(), 200);
    let text = c.metrics().await;
    assert!(
        text.contains("main_service_requests_total{route=\"/v1/generate\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("main_service_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE main_service_lambda_invocations_total counter"));
    // Every body chunk of a streamed answer is a complete line.
    let resp = c.post_json("/v1/generate", &generate(MODEL_ID, true)).await;
    let mut body = resp.bytes_stream();
    while let Some(bytes) = body.next().await {
        assert!(bytes.unwrap().ends_with(b"\n"));
    }
}
