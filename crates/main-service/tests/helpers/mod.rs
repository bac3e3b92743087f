//! The real chain below MainService: the Bedrock emulator (instant generator) in-process, the
//! local Lambda service running the real `bootstrap`, and MainService itself on a random port.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bedrock_emulator::{AuthMode, EmulatorSettings, GeneratorKind};
use contract::{ChunkKind, StreamChunk};
use futures::StreamExt;
use lambda_service::{FunctionSettings, LambdaServiceSettings};
use main_service::{Application, MainServiceSettings};
use tokio::sync::watch;

pub const MODEL_ID: &str = "test.instant-v1:0";
pub const REPLY: &str = "one two three four";

/// Every wait is bounded, so a broken service fails a test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Options {
    pub reply: String,
    pub word_delay_ms: u64,
    pub concurrency: usize,
    pub queue_depth: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { reply: REPLY.into(), word_delay_ms: 0, concurrency: 1, queue_depth: 8 }
    }
}

pub struct Chain {
    pub url: String,
    pub client: reqwest::Client,
    pub function: Arc<lambda_service::Function>,
}

/// The `bootstrap` binary next to this test's own executable (`target/debug/deps/..` ->
/// `target/debug/bootstrap`).
fn bootstrap() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let path =
        exe.parent().and_then(|deps| deps.parent()).expect("a target directory").join("bootstrap");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build -p lambda --bin bootstrap` first",
        path.display()
    );
    path
}

/// Static test credentials for MainService's SDK default chain, set once before anything
/// reads them.
fn credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        logs();
    });
}

pub async fn chain(opts: Options, configure: impl FnOnce(&mut MainServiceSettings)) -> Chain {
    credentials();
    let mut models = BTreeMap::new();
    models.insert(MODEL_ID.to_string(), "local".to_string());
    let instant = instant::InstantConfig {
        reply: opts.reply.clone(),
        models: vec!["local".into()],
        word_delay_ms: opts.word_delay_ms,
    };
    let emulator = EmulatorSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorKind::Instant,
        models,
        auth: AuthMode::Any,
        max_concurrent_requests: 16,
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
        path: bootstrap(),
        concurrency: opts.concurrency,
        queue_depth: opts.queue_depth,
        timeout_ms: 30_000,
        ..Default::default()
    };
    for (k, v) in [
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator_url.as_str()),
        ("STRATA_BEDROCK_MAX_ATTEMPTS", "1"),
    ] {
        f.env.insert(k.into(), v.into());
    }
    // The function signs its Bedrock calls with its role's credentials, as on AWS.
    f.role_credentials = lambda_service::RoleCredentials {
        access_key_id: "AKIDFUNCTION".into(),
        secret_access_key: api_keys::SharedSecret::new("function-secret"),
        ..Default::default()
    };
    let mut functions = BTreeMap::new();
    functions.insert("strata".to_string(), f);
    let lambda = lambda_service::Application::build(LambdaServiceSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        functions,
        ..Default::default()
    })
    .await
    .unwrap();
    let lambda_url = format!("http://127.0.0.1:{}", lambda.port());
    let function = lambda.function("strata").unwrap();
    tokio::spawn(lambda.run_until_stopped(std::future::pending()));

    let mut settings =
        MainServiceSettings { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    settings.lambda.endpoint_url = lambda_url;
    settings.lambda.region = "us-east-1".into();
    settings.lambda.initial_backoff_ms = 5;
    settings.lambda.max_backoff_ms = 20;
    configure(&mut settings);
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Chain { url, client: reqwest::Client::new(), function }
}

impl Chain {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        tokio::time::timeout(
            WAIT,
            self.client.post(format!("{}{path}", self.url)).json(body).send(),
        )
        .await
        .expect("an answer in time")
        .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap()
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0)
    }
}

pub fn generate(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({ "model": model, "messages": [{ "role": 2, "content": "hi" }], "stream": stream })
}

/// Reads an NDJSON response chunk by chunk: each `next` is the next chunk.
pub struct NdjsonReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl NdjsonReader {
    pub fn new(resp: reqwest::Response) -> Self {
        NdjsonReader { body: resp.bytes_stream().boxed(), buf: Vec::new() }
    }

    pub async fn next(&mut self) -> Option<StreamChunk> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Some(
                    serde_json::from_slice(&line)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line))),
                );
            }
            match tokio::time::timeout(WAIT, self.body.next()).await.expect("a chunk in time") {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(e)) => panic!("the body broke: {e}"),
                None => {
                    assert!(
                        self.buf.iter().all(u8::is_ascii_whitespace),
                        "a partial line at the end"
                    );
                    return None;
                }
            }
        }
    }

    /// All remaining chunks.
    pub async fn rest(&mut self) -> Vec<StreamChunk> {
        let mut out = Vec::new();
        while let Some(c) = self.next().await {
            out.push(c);
        }
        out
    }
}

pub fn is_delta(c: &StreamChunk) -> bool {
    matches!(c.kind, Some(ChunkKind::Delta(_)))
}

/// Everything logged in this test process (JSON lines), including the function processes'
/// output as the Lambda service relays it; `changed` wakes on every write.
pub struct Logs {
    text: Mutex<String>,
    changed: watch::Sender<()>,
}

pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<&'static Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Logs = Box::leak(Box::new(Logs {
            text: Mutex::new(String::new()),
            changed: watch::channel(()).0,
        }));
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || LogWriter(logs))
            .try_init();
        logs
    })
}

struct LogWriter(&'static Logs);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.text.lock().unwrap().push_str(&String::from_utf8_lossy(buf));
        self.0.changed.send_replace(());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Waits until some logged line satisfies `pred`, and returns it.
    pub async fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
        let mut rx = self.changed.subscribe();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(line) = self.text.lock().unwrap().lines().find(|l| pred(l)) {
                    return line.to_owned();
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        found.expect("the expected log line in time")
    }
}
