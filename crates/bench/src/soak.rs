//! `strata bench soak`: the whole chain (`strata up`) under sustained load for a bounded time,
//! with Ollama and OpenAI clients' requests, streamed and not, mixed. Every answer is checked
//! to the end (a stream must finish with its protocol's terminator); the only refusals allowed
//! are the designed 429/503 in the protocol's error shape. Each process of the chain (`up`,
//! every hop, every Lambda function environment) has its resident memory and open descriptors
//! sampled throughout; growth between the end of the warm-up and the end of the run fails it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::{self, Proc, Usage};
use crate::report::{f1, Row, Section};
use crate::server::Spawned;
use crate::suites::{BenchOptions, READY};

/// What answers at the bottom of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// The emulator's fixed reply: the load is on strata's own hops, not on the model.
    Instant,
    /// The embedded model: realistic, but the model's speed bounds the rate.
    Embedded,
}

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The whole run, warm-up included.
    pub duration: Duration,
    /// Load before the first memory and descriptor figures are taken.
    pub warmup: Duration,
    /// Requests in flight at most (closed loop: this many clients, each sending its next
    /// request when the last one is answered).
    pub concurrency: usize,
    /// Open loop: start this many requests per second whatever the answers' pace (still at
    /// most `concurrency` in flight; a start that finds none free is counted as skipped).
    pub rate: Option<f64>,
    pub generator: Generator,
}

impl SoakOptions {
    /// The warm-up when none is given: a fifth of the run, at most a minute.
    pub fn default_warmup(duration: Duration) -> Duration {
        (duration / 5).min(Duration::from_secs(60))
    }
}

/// Largest RSS growth of any process from the end of the warm-up to the end of the run.
pub const MAX_RSS_GROWTH: f64 = 0.05;
/// Descriptors a process may hold more at the end than after the warm-up. Under load every
/// hop holds one socket per request in flight plus a pool of idle keep-alive connections to
/// the next hop; the pools fill during the warm-up, but a pooled connection closed by its
/// idle timeout or by the peer is replaced by a new one, and the two can briefly coexist
/// (the old one in the middle of closing). A leak grows by one descriptor per request or per
/// connection, which over a run of thousands of requests is far beyond this.
pub const FD_TOLERANCE: u64 = 4;
/// Both figures of a process are the largest of its samples in a window this long at the end
/// of the warm-up and at the end of the run, so one sample taken mid-request does not decide.
const WINDOW: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    OllamaChatStream,
    OllamaGenerate,
    OpenAiChatStream,
    OpenAiChat,
}

pub(crate) const KINDS: [Kind; 4] =
    [Kind::OllamaChatStream, Kind::OllamaGenerate, Kind::OpenAiChatStream, Kind::OpenAiChat];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::OllamaChatStream => "ollama /api/chat stream",
            Kind::OllamaGenerate => "ollama /api/generate",
            Kind::OpenAiChatStream => "openai /v1/chat/completions stream",
            Kind::OpenAiChat => "openai /v1/chat/completions",
        }
    }

    fn is_openai(self) -> bool {
        matches!(self, Kind::OpenAiChatStream | Kind::OpenAiChat)
    }
}

pub(crate) enum Outcome {
    Ok,
    /// 429 or 503 in the protocol's error shape: a limit doing its job.
    Refused,
    Error(String),
}

/// One request of `kind`, read to its end and checked.
pub(crate) async fn one(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    kind: Kind,
    n: u64,
) -> Outcome {
    let prompt = format!("Soak request {n}: say something short.");
    let (path, body) = match kind {
        Kind::OllamaChatStream => (
            "/api/chat",
            json!({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": true, "options": {"num_predict": 8}}),
        ),
        Kind::OllamaGenerate => (
            "/api/generate",
            json!({"model": model, "prompt": prompt, "stream": false, "options": {"num_predict": 8}}),
        ),
        Kind::OpenAiChatStream => (
            "/v1/chat/completions",
            json!({"model": model, "messages": [{"role": "user", "content": prompt}], "stream": true, "max_tokens": 8}),
        ),
        Kind::OpenAiChat => (
            "/v1/chat/completions",
            json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}),
        ),
    };
    let response = match client.post(format!("{url}{path}")).json(&body).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("sending: {}", without_url(e))),
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) => return Outcome::Error(format!("{status}: reading the body: {}", without_url(e))),
    };
    if status == 429 || status == 503 {
        return match refusal_shape_ok(kind, &text) {
            true => Outcome::Refused,
            false => Outcome::Error(format!("{status} without the protocol's error shape")),
        };
    }
    if status != 200 {
        return Outcome::Error(format!("status {status}"));
    }
    match check_body(kind, &text) {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Error(e),
    }
}

/// reqwest's errors name the URL, which differs per run; the rest groups well.
pub(crate) fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn refusal_shape_ok(kind: Kind, text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    if kind.is_openai() {
        v["error"]["message"].is_string()
    } else {
        v["error"].is_string()
    }
}

/// A complete answer: a stream ends with its terminator (`done: true` / `data: [DONE]` after a
/// finish reason) and carries no error; a single answer is whole.
fn check_body(kind: Kind, text: &str) -> Result<(), String> {
    match kind {
        Kind::OllamaChatStream => {
            let mut done = false;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| format!("a stream line is not JSON: {e}"))?;
                if let Some(e) = v.get("error") {
                    return Err(format!("error in the stream: {e}"));
                }
                require(!done, "a line after done: true")?;
                done = v["done"] == true;
            }
            require(done, "the stream ended without done: true")
        }
        Kind::OllamaGenerate => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
            require(
                v["done"] == true && v["response"].is_string(),
                "the answer is not done or has no response",
            )
        }
        Kind::OpenAiChatStream => {
            let (mut finished, mut terminated) = (false, false);
            for data in text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim) {
                require(!terminated, "an event after [DONE]")?;
                if data == "[DONE]" {
                    terminated = true;
                    continue;
                }
                let v: Value =
                    serde_json::from_str(data).map_err(|e| format!("an event is not JSON: {e}"))?;
                if let Some(e) = v.get("error") {
                    return Err(format!("error in the stream: {e}"));
                }
                finished |= v["choices"][0]["finish_reason"].is_string();
            }
            require(finished && terminated, "the stream ended without a finish reason and [DONE]")
        }
        Kind::OpenAiChat => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
            let choice = &v["choices"][0];
            require(
                choice["message"]["content"].is_string() && choice["finish_reason"].is_string(),
                "the answer has no content or finish reason",
            )
        }
    }
}

fn require(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// What the load generator saw, per request kind.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: BTreeMap<Kind, u64>,
    pub(crate) refused: BTreeMap<Kind, u64>,
    pub(crate) errors: BTreeMap<Kind, u64>,
    /// Error messages by count (the first few distinct ones).
    pub(crate) messages: BTreeMap<String, u64>,
    /// Milliseconds of each completed request.
    latencies: Vec<f64>,
}

impl Tally {
    fn record(&mut self, kind: Kind, outcome: Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Ok => {
                *self.ok.entry(kind).or_default() += 1;
                self.latencies.push(elapsed.as_secs_f64() * 1000.0);
            }
            Outcome::Refused => *self.refused.entry(kind).or_default() += 1,
            Outcome::Error(message) => {
                *self.errors.entry(kind).or_default() += 1;
                let message = format!("{}: {message}", kind.name());
                if self.messages.len() < 20 || self.messages.contains_key(&message) {
                    *self.messages.entry(message).or_default() += 1;
                }
            }
        }
    }
}

/// One sample of every process of the chain.
pub(crate) struct Sample {
    at: Duration,
    pub(crate) procs: Vec<(Proc, Usage)>,
}

pub(crate) fn sample(root: u32, started: Instant) -> Sample {
    let procs =
        procs::tree(root).into_iter().filter_map(|p| procs::usage(p.pid).map(|u| (p, u))).collect();
    Sample { at: started.elapsed(), procs }
}

/// Each process's largest figures over the samples taken in `[from, to]`.
pub(crate) fn peak(
    samples: &[Sample],
    from: Duration,
    to: Duration,
) -> BTreeMap<u32, (Proc, Usage)> {
    let mut out: BTreeMap<u32, (Proc, Usage)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.at >= from && s.at <= to) {
        for (p, u) in &s.procs {
            let e = out.entry(p.pid).or_insert_with(|| (p.clone(), *u));
            e.1.rss_bytes = e.1.rss_bytes.max(u.rss_bytes);
            e.1.fds = e.1.fds.max(u.fds);
        }
    }
    out
}

/// The processes in the last sample taken at or before `at`.
fn alive_at(samples: &[Sample], at: Duration) -> Vec<Proc> {
    samples
        .iter()
        .rev()
        .find(|s| s.at <= at)
        .map(|s| s.procs.iter().map(|(p, _)| p.clone()).collect())
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        0.0
    } else {
        sorted[((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
    }
}

/// Drives the load until `end`: closed loop (`concurrency` clients) or open loop (`rate`).
pub(crate) async fn drive(
    client: reqwest::Client,
    url: Arc<str>,
    model: Arc<str>,
    soak: &SoakOptions,
    end: Instant,
    tally: Arc<Mutex<Tally>>,
) -> u64 {
    let counter = Arc::new(AtomicU64::new(0));
    let run = {
        let (client, url, model, counter, tally) =
            (client.clone(), url.clone(), model.clone(), counter.clone(), tally.clone());
        move || {
            let (client, url, model, counter, tally) =
                (client.clone(), url.clone(), model.clone(), counter.clone(), tally.clone());
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let kind = KINDS[(n % KINDS.len() as u64) as usize];
                let started = Instant::now();
                let outcome = match tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    one(&client, &url, &model, kind, n),
                )
                .await
                {
                    Ok(o) => o,
                    Err(_) => {
                        Outcome::Error(format!("no complete answer within {REQUEST_TIMEOUT:?}"))
                    }
                };
                tally.lock().expect("tally lock").record(kind, outcome, started.elapsed());
            }
        }
    };
    let mut skipped = 0;
    match soak.rate {
        None => {
            let clients = (0..soak.concurrency.max(1)).map(|_| {
                let run = run.clone();
                tokio::spawn(async move {
                    while Instant::now() < end {
                        run().await;
                    }
                })
            });
            for c in clients.collect::<Vec<_>>() {
                let _ = c.await;
            }
        }
        Some(rate) => {
            let slots = Arc::new(tokio::sync::Semaphore::new(soak.concurrency.max(1)));
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut running = tokio::task::JoinSet::new();
            while Instant::now() < end {
                ticks.tick().await;
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let run = run.clone();
                        running.spawn(async move {
                            run().await;
                            drop(permit);
                        });
                    }
                    Err(_) => skipped += 1,
                }
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        }
    }
    skipped
}

pub async fn soak(opts: &BenchOptions, soak: &SoakOptions) -> anyhow::Result<Section> {
    anyhow::ensure!(
        soak.warmup + WINDOW < soak.duration,
        "the run ({:?}) must be longer than the warm-up ({:?}) plus {WINDOW:?}",
        soak.duration,
        soak.warmup
    );
    let run_dir = std::env::temp_dir().join(format!("strata-soak-{}", std::process::id()));
    let env: Vec<(&str, String)> = match soak.generator {
        Generator::Instant => vec![("STRATA_BEDROCK_EMULATOR__GENERATOR", "instant".into())],
        Generator::Embedded => vec![],
    };
    let up = Spawned::start(
        &opts.strata,
        &["up", "--run-dir", &run_dir.display().to_string()],
        &env,
        READY,
    )
    .await?;
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
    // One answer of each kind before the clock starts: the chain is whole and the model loaded.
    for (n, kind) in KINDS.into_iter().enumerate() {
        if let Outcome::Error(e) = one(&client, &up.url, &opts.model, kind, n as u64).await {
            anyhow::bail!("the chain does not answer {}: {e}", kind.name());
        }
    }

    let started = Instant::now();
    let end = started + soak.duration;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (samples, root) = (samples.clone(), up.pid());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                every.tick().await;
                let s = tokio::task::spawn_blocking(move || sample(root, started))
                    .await
                    .expect("sampling");
                samples.lock().expect("samples lock").push(s);
            }
        })
    };
    let skipped =
        drive(client, up.url.as_str().into(), opts.model.as_str().into(), soak, end, tally.clone())
            .await;
    let load_time = started.elapsed();
    // The end window closes with one last sample, taken while every process still runs.
    samples.lock().expect("samples lock").push(sample(up.pid(), started));
    sampler.abort();
    drop(up);
    let _ = std::fs::remove_dir_all(&run_dir);

    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
    Ok(evaluate(soak, &samples, &tally, skipped, load_time))
}

fn evaluate(
    soak: &SoakOptions,
    samples: &[Sample],
    tally: &Tally,
    skipped: u64,
    load_time: Duration,
) -> Section {
    let warm_end = soak.warmup;
    let run_end = samples.last().map_or(load_time, |s| s.at);
    let before = peak(samples, warm_end.saturating_sub(WINDOW), warm_end);
    let after = peak(samples, run_end.saturating_sub(WINDOW), run_end);
    let (alive_before, alive_after) = (alive_at(samples, warm_end), alive_at(samples, run_end));
    let gone: Vec<&Proc> = alive_before.iter().filter(|p| !alive_after.contains(p)).collect();
    let new: Vec<&Proc> = alive_after.iter().filter(|p| !alive_before.contains(p)).collect();

    let mut rows = Vec::new();
    let mut procs_data = Vec::new();
    let (mut worst_rss, mut worst_rss_role) = (f64::NEG_INFINITY, String::new());
    let (mut worst_fd, mut worst_fd_role) = (i64::MIN, String::new());
    for (pid, (p, b)) in &before {
        let Some((_, a)) = after.get(pid) else { continue };
        let growth = (a.rss_bytes as f64 - b.rss_bytes as f64) / (b.rss_bytes as f64).max(1.0);
        let fd_growth = a.fds as i64 - b.fds as i64;
        if growth > worst_rss {
            (worst_rss, worst_rss_role) = (growth, format!("{} {pid}", p.role));
        }
        if fd_growth > worst_fd {
            (worst_fd, worst_fd_role) = (fd_growth, format!("{} {pid}", p.role));
        }
        rows.push(Row {
            cells: vec![
                p.role.clone(),
                pid.to_string(),
                f1(b.rss_bytes as f64 / 1e6),
                f1(a.rss_bytes as f64 / 1e6),
                format!("{:+.1}%", growth * 100.0),
                b.fds.to_string(),
                a.fds.to_string(),
            ],
        });
        procs_data.push(json!({"role": p.role, "pid": pid, "rss_bytes_after_warmup": b.rss_bytes, "rss_bytes_at_end": a.rss_bytes,
                               "rss_growth": growth, "fds_after_warmup": b.fds, "fds_at_end": a.fds}));
    }

    let count = |m: &BTreeMap<Kind, u64>| m.values().sum::<u64>();
    let (ok, refused, errors) = (count(&tally.ok), count(&tally.refused), count(&tally.errors));
    let mut lat = tally.latencies.clone();
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let rps = (ok + refused + errors) as f64 / load_time.as_secs_f64().max(1e-9);
    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| {
            format!(
                "{}: {} ok, {} refused, {} errors",
                k.name(),
                tally.ok.get(k).unwrap_or(&0),
                tally.refused.get(k).unwrap_or(&0),
                tally.errors.get(k).unwrap_or(&0)
            )
        })
        .collect();
    let load = match soak.rate {
        None => format!("closed loop, {} clients", soak.concurrency),
        Some(r) => format!("open loop, {r} requests/s started, at most {} in flight ({skipped} starts skipped with none free)", soak.concurrency),
    };
    let generator = match soak.generator {
        Generator::Instant => {
            "the bedrock emulator's instant generator (load on strata, not on the model)"
        }
        Generator::Embedded => "the bedrock emulator's embedded model",
    };
    let mut notes = vec![
        format!(
            "`strata up` (llm-server -> gateway -> main-service -> lambda-service + bootstrap environments -> bedrock-emulator) on \
             {generator}, driven for {:.0} s ({load}) by a mix of Ollama `/api/chat` streams, `/api/generate`, and OpenAI \
             `/v1/chat/completions` streamed and not, in turn, each read to its end and checked (a stream must end with \
             `done: true` / a finish reason and `data: [DONE]`). 429 and 503 answers in the protocol's error shape are limits \
             at work, counted apart; anything else is an error.",
            load_time.as_secs_f64()
        ),
        format!(
            "{} requests ({rps:.0}/s): {ok} complete, {refused} refused (429/503), {errors} errors; latency of complete ones p50 \
             {p50:.1} ms, p99 {p99:.1} ms. {}.",
            ok + refused + errors,
            per_kind.join("; ")
        ),
        format!(
            "Every process of the chain was sampled every {} ms (VmRSS from /proc/PID/status, entries of /proc/PID/fd). \
             \"After warm-up\" is each figure's largest sample in the {} s before the warm-up ended ({:.0} s in); \"at end\" the \
             largest in the last {} s of the run. Descriptor tolerance: +{FD_TOLERANCE} (pooled keep-alive connections being \
             replaced).",
            SAMPLE_EVERY.as_millis(),
            WINDOW.as_secs(),
            warm_end.as_secs_f64(),
            WINDOW.as_secs()
        ),
    ];
    if !tally.messages.is_empty() {
        notes.push(format!(
            "Errors: {}.",
            tally.messages.iter().map(|(m, n)| format!("{n} x {m}")).collect::<Vec<_>>().join("; ")
        ));
    }
    let churn: Vec<String> = gone
        .iter()
        .map(|p| format!("{} {} exited", p.role, p.pid))
        .chain(new.iter().map(|p| format!("{} {} started", p.role, p.pid)))
        .collect();
    let every_kind = KINDS.iter().all(|k| tally.ok.get(k).copied().unwrap_or(0) > 0);
    let targets = vec![
        (format!("every kind of request answered completely (measured {ok} complete)"), every_kind),
        (format!("zero errors other than 429/503 refusals (measured {errors} errors, {refused} refusals)"), errors == 0),
        (
            format!("RSS growth after warm-up <= {:.0}% for every process (largest {:+.1}%, {worst_rss_role})", MAX_RSS_GROWTH * 100.0, worst_rss.max(0.0) * 100.0),
            !before.is_empty() && worst_rss <= MAX_RSS_GROWTH,
        ),
        (format!("no descriptor growth beyond +{FD_TOLERANCE} for any process (largest {worst_fd:+}, {worst_fd_role})"), !before.is_empty() && worst_fd <= FD_TOLERANCE as i64),
        (
            format!("no process exited or started between the warm-up and the end ({})", if churn.is_empty() { "none".into() } else { churn.join(", ") }),
            churn.is_empty(),
        ),
    ];
    Section {
        title: "Soak: the whole chain under sustained load".into(),
        notes,
        header: vec![
            "process".into(),
            "pid".into(),
            "RSS after warm-up MB".into(),
            "RSS at end MB".into(),
            "growth".into(),
            "fds after warm-up".into(),
            "fds at end".into(),
        ],
        rows,
        targets,
        data: json!({
            "duration_s": load_time.as_secs_f64(), "warmup_s": warm_end.as_secs_f64(), "concurrency": soak.concurrency, "rate": soak.rate,
            "generator": format!("{:?}", soak.generator).to_lowercase(),
            "requests": {"complete": ok, "refused": refused, "errors": errors, "skipped": skipped, "per_second": rps},
            "per_kind": KINDS.iter().map(|k| json!({"kind": k.name(), "complete": tally.ok.get(k).unwrap_or(&0), "refused": tally.refused.get(k).unwrap_or(&0), "errors": tally.errors.get(k).unwrap_or(&0)})).collect::<Vec<_>>(),
            "latency_ms": {"p50": p50, "p99": p99},
            "error_messages": tally.messages,
            "processes": procs_data,
            "exited": gone.iter().map(|p| json!({"role": p.role, "pid": p.pid})).collect::<Vec<_>>(),
            "started": new.iter().map(|p| json!({"role": p.role, "pid": p.pid})).collect::<Vec<_>>(),
            "rss_growth_limit": MAX_RSS_GROWTH, "fd_tolerance": FD_TOLERANCE,
            "passed": every_kind && errors == 0 && churn.is_empty() && worst_rss <= MAX_RSS_GROWTH && worst_fd <= FD_TOLERANCE as i64 && !before.is_empty(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_streams_are_errors() {
        let done = "{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"done\":true,\"done_reason\":\"stop\"}\n";
        assert!(check_body(Kind::OllamaChatStream, done).is_ok());
        assert!(check_body(
            Kind::OllamaChatStream,
            "{\"message\":{\"content\":\"a\"},\"done\":false}\n"
        )
        .is_err());
        assert!(check_body(Kind::OllamaChatStream, "{\"error\":\"boom\"}\n").is_err());
        let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        assert!(check_body(Kind::OpenAiChatStream, sse).is_ok());
        assert!(check_body(Kind::OpenAiChatStream, &sse.replace("data: [DONE]\n\n", "")).is_err());
        assert!(check_body(
            Kind::OpenAiChat,
            "{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}"
        )
        .is_ok());
        assert!(check_body(Kind::OpenAiChat, "{\"choices\":[]}").is_err());
        assert!(refusal_shape_ok(
            Kind::OpenAiChat,
            "{\"error\":{\"message\":\"busy\",\"type\":\"x\"}}"
        ));
        assert!(!refusal_shape_ok(Kind::OllamaGenerate, "{\"message\":\"Too Many Requests\"}"));
    }

    fn usage(rss: u64, fds: u64) -> Usage {
        Usage { rss_bytes: rss, fds }
    }

    fn run(samples: Vec<Sample>, errors: u64) -> Section {
        let soak = SoakOptions {
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(10),
            concurrency: 4,
            rate: None,
            generator: Generator::Instant,
        };
        let mut tally = Tally::default();
        for k in KINDS {
            tally.record(k, Outcome::Ok, Duration::from_millis(2));
        }
        for _ in 0..errors {
            tally.record(Kind::OpenAiChat, Outcome::Error("status 500".into()), Duration::ZERO);
        }
        evaluate(&soak, &samples, &tally, 0, Duration::from_secs(30))
    }

    fn at(secs: u64, procs: &[(u32, u64, u64)]) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            procs: procs
                .iter()
                .map(|&(pid, rss, fds)| (Proc { pid, role: "gateway".into() }, usage(rss, fds)))
                .collect(),
        }
    }

    #[test]
    fn growth_churn_and_errors_fail_the_run() {
        let passed = |s: &Section| s.targets.iter().all(|(_, ok)| *ok);
        let steady = run(vec![at(9, &[(1, 100_000_000, 20)]), at(29, &[(1, 104_000_000, 23)])], 0);
        assert!(passed(&steady), "{:?}", steady.targets);
        assert!(
            !passed(&run(vec![at(9, &[(1, 100_000_000, 20)]), at(29, &[(1, 106_000_000, 20)])], 0)),
            "RSS +6%"
        );
        assert!(
            !passed(&run(vec![at(9, &[(1, 100_000_000, 20)]), at(29, &[(1, 100_000_000, 25)])], 0)),
            "5 more fds"
        );
        assert!(
            !passed(&run(vec![at(9, &[(1, 100_000_000, 20)]), at(29, &[(2, 100_000_000, 20)])], 0)),
            "a restarted process"
        );
        assert!(
            !passed(&run(vec![at(9, &[(1, 100_000_000, 20)]), at(29, &[(1, 100_000_000, 20)])], 1)),
            "an error"
        );
        assert!(!passed(&run(vec![], 0)), "no samples");
    }
}
