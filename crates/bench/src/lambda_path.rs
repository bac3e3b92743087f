//! The Bedrock path: the bootstrap's cold start under lambda-service, and generation speed
//! through lambda-service + bootstrap + bedrock-emulator against `strata serve` alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_lambda::config::{Credentials, Region};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
use contract::lambda_stream::LineDecoder;
use contract::ChunkKind;
use futures::StreamExt;
use serde_json::json;

use crate::report::{f1, f2, Row, Section};
use crate::server::Spawned;
use crate::suites::{median, BenchOptions, READY, STORY};

/// The model id `strata bedrock-emulator` serves the default model as.
const MODEL_ID: &str = "strata.smollm2-135m-instruct-v1:0";
const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIDLOCAL"),
    ("AWS_SECRET_ACCESS_KEY", "local-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// Spawn to first `/next`, as lambda-service records it, over `rounds` fresh services.
async fn cold_starts(bootstrap: &Path, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let mut all = Vec::new();
    for _ in 0..rounds {
        let mut f = lambda_service::FunctionSettings {
            path: bootstrap.to_owned(),
            concurrency: 2,
            ..Default::default()
        };
        f.env.extend(CREDENTIALS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = lambda_service::LambdaServiceSettings {
            listen: "127.0.0.1:0".parse()?,
            functions: BTreeMap::from([("strata".to_string(), f)]),
            ..Default::default()
        };
        let app = lambda_service::Application::build(settings).await?;
        let function = app.function("strata").context("function")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        // Both environments report in, or the bootstrap is broken.
        let deadline = Instant::now() + READY;
        while function.stats().cold_starts.len() < 2 {
            anyhow::ensure!(Instant::now() < deadline, "bootstrap never asked for work");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        all.extend(function.stats().cold_starts);
        let _ = stop.send(());
        let _ = serving.await;
    }
    Ok(all)
}

/// Decode speed as the client sees it: tokens after the first / time from first to last.
fn client_rate(tokens: u64, first: Instant, last: Instant) -> f64 {
    let secs = last.duration_since(first).as_secs_f64();
    if tokens > 1 && secs > 0.0 {
        (tokens - 1) as f64 / secs
    } else {
        0.0
    }
}

/// One streamed Ollama generate from `strata serve`.
pub(crate) async fn through_serve(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    seed: u32,
) -> anyhow::Result<f64> {
    let body = json!({"model": model, "prompt": STORY, "stream": true, "options": {"num_predict": 128, "seed": seed, "temperature": 0.8}});
    let r = client.post(format!("{url}/api/generate")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "generate failed: {}", r.status());
    let (mut first, mut buf, mut body) = (None, Vec::new(), r.bytes_stream());
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if v["done"] == true {
                return Ok(client_rate(
                    v["eval_count"].as_u64().unwrap_or(0),
                    first.context("no token")?,
                    Instant::now(),
                ));
            }
            first.get_or_insert_with(Instant::now);
        }
    }
    anyhow::bail!("stream ended without done")
}

/// One InvokeWithResponseStream through lambda-service, the bootstrap and the emulator.
async fn through_lambda(client: &aws_sdk_lambda::Client, seed: u32) -> anyhow::Result<f64> {
    let req = json!({"model": MODEL_ID, "messages": [{"role": 2, "content": STORY}], "stream": true,
                     "options": {"numPredict": 128, "seed": seed, "temperature": 0.8}});
    let mut out = client
        .invoke_with_response_stream()
        .function_name("strata")
        .payload(Blob::new(req.to_string()))
        .send()
        .await?;
    let mut decoder = LineDecoder::new(out.response_stream_content_type());
    let mut first = None;
    while let Some(event) = out.event_stream.recv().await? {
        let Event::PayloadChunk(p) = event else { break };
        for chunk in decoder.push(p.payload().map(|b| b.as_ref()).unwrap_or_default()) {
            match chunk.kind {
                Some(ChunkKind::Delta(_)) => {
                    first.get_or_insert_with(Instant::now);
                }
                Some(ChunkKind::Done(done)) => {
                    let tokens = done.usage.map_or(0, |u| u.completion_tokens as u64);
                    return Ok(client_rate(tokens, first.context("no token")?, Instant::now()));
                }
                Some(ChunkKind::Error(e)) => anyhow::bail!("function error: {e}"),
                None => {}
            }
        }
    }
    anyhow::bail!("stream ended without done")
}

pub async fn lambda(opts: &BenchOptions) -> anyhow::Result<Section> {
    let bootstrap = opts.strata.with_file_name("bootstrap");
    anyhow::ensure!(
        bootstrap.is_file(),
        "{} is missing: build it with `cargo build --release --bins`",
        bootstrap.display()
    );
    let rounds = if opts.quick { 3 } else { 10 };
    let mut cold: Vec<f64> =
        cold_starts(&bootstrap, rounds).await?.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    cold.sort_by(|a, b| a.total_cmp(b));
    let cold_p50 = median(cold.clone());
    let cold_max = cold.last().copied().unwrap_or_default();

    let creds: Vec<(&str, String)> = CREDENTIALS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let emulator = Spawned::start(&opts.strata, &["bedrock-emulator"], &creds, READY).await?;
    let mut env = creds.clone();
    env.push(("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator.url.clone()));
    let function_arg = format!("strata={}", bootstrap.display());
    let service =
        Spawned::start(&opts.strata, &["lambda-service", "--function", &function_arg], &env, READY)
            .await?;
    let server = crate::suites::serve(opts, None).await?;
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&service.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDLOCAL", "local-secret", None, None, "bench"))
        .build();
    let lambda_client = aws_sdk_lambda::Client::from_conf(config);
    let http = reqwest::Client::new();
    // Warm both paths (the emulator loads the model on first use).
    through_lambda(&lambda_client, 0).await?;
    through_serve(&http, &server.url, &opts.model, 0).await?;
    let reps = if opts.quick { 3 } else { 9 };
    let (mut alone, mut chained) = (Vec::new(), Vec::new());
    for i in 0..reps {
        alone.push(through_serve(&http, &server.url, &opts.model, i + 1).await?);
        chained.push(through_lambda(&lambda_client, i + 1).await?);
    }
    let (a, c) = (median(alone), median(chained));
    let ratio = c / a.max(1e-9);
    Ok(Section {
        title: "The Bedrock path: Lambda cold start and generation through Lambda".into(),
        notes: vec![
            format!(
                "Cold start: `strata lambda-service` (as a library) spawns the release `bootstrap` and records the time from spawn \
                 to its first `GET /2018-06-01/runtime/invocation/next`; {} environments over {rounds} fresh services.",
                cold.len()
            ),
            format!(
                "Generation: decode speed seen by the client (tokens after the first / time from the first to the last), for a \
                 128-token story at temperature 0.8, streamed (a) from `strata serve` (Ollama `/api/generate`) and (b) with \
                 `aws-sdk-lambda` InvokeWithResponseStream through `strata lambda-service` -> `bootstrap` -> ConverseStream -> \
                 `strata bedrock-emulator`, same model, all processes on this machine. The two alternate; medians of {reps}."
            ),
        ],
        header: vec!["measure".into(), "value".into()],
        rows: vec![
            Row { cells: vec!["bootstrap cold start p50 (ms)".into(), f1(cold_p50)] },
            Row { cells: vec!["bootstrap cold start max (ms)".into(), f1(cold_max)] },
            Row { cells: vec!["strata serve alone (tok/s)".into(), f1(a)] },
            Row { cells: vec!["through Lambda + Bedrock emulator (tok/s)".into(), f1(c)] },
            Row { cells: vec!["ratio".into(), f2(ratio)] },
        ],
        targets: vec![
            (format!("bootstrap cold start <= 50 ms (p50 {cold_p50:.1} ms)"), cold_p50 <= 50.0),
            (format!("generation through Lambda >= 0.95x the engine alone (measured {ratio:.2}x)"), ratio >= 0.95),
        ],
        data: json!({"cold_start_ms": cold, "serve_tok_s": a, "lambda_tok_s": c, "ratio": ratio}),
    })
}
