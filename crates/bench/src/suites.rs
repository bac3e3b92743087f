//! The benchmark suites. Each starts what it measures as a real process and drives it over
//! HTTP, the way a client would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::machine::Machine;
use crate::report::{f1, f2, Report, Row, Section};
use crate::server::Spawned;
use crate::soak::SoakOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suite {
    /// Prompt and generation tok/s: strata serve vs llama.cpp itself.
    Engine,
    /// Aggregate tok/s and time to first token at rising concurrency.
    Batching,
    /// Resident memory: strata serve with the model; every hop of `strata up` idle and under
    /// load; the cold start of `strata up`.
    Memory,
    /// The bootstrap's cold start, and generation through Lambda and the Bedrock emulator.
    Lambda,
    /// The whole chain (`strata up`) against `strata serve`.
    Chain,
    /// Software overhead with the model taken out: strata serve (bedrock backend), the whole
    /// chain and the LiteLLM proxy against an instant Bedrock emulator, at rising open-loop rates.
    Overhead,
    /// `/api/version` latency while a 10 MB chat is prepared, against idle.
    Responsiveness,
    /// Generation tok/s of JSON-schema answers and tool calls against plain text.
    Structured,
    /// Embedding inputs/s on serve against llama.cpp, and through the chain.
    Embeddings,
    /// The whole chain under sustained load for a bounded time; its targets are enforced.
    /// Not part of the default run: it takes as long as it is told to.
    Soak,
}

impl Suite {
    pub const ALL: [Suite; 9] = [
        Suite::Engine,
        Suite::Batching,
        Suite::Memory,
        Suite::Lambda,
        Suite::Chain,
        Suite::Overhead,
        Suite::Responsiveness,
        Suite::Structured,
        Suite::Embeddings,
    ];

    pub fn parse(s: &str) -> Option<Suite> {
        match s {
            "engine" => Some(Suite::Engine),
            "batching" => Some(Suite::Batching),
            "memory" => Some(Suite::Memory),
            "lambda" => Some(Suite::Lambda),
            "chain" => Some(Suite::Chain),
            "overhead" => Some(Suite::Overhead),
            "responsiveness" => Some(Suite::Responsiveness),
            "structured" => Some(Suite::Structured),
            "embeddings" => Some(Suite::Embeddings),
            "soak" => Some(Suite::Soak),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub suites: Vec<Suite>,
    /// Fewer repetitions, for a smoke run.
    pub quick: bool,
    pub out: PathBuf,
    /// The `strata` binary to benchmark.
    pub strata: PathBuf,
    pub model: String,
    /// The model file (for llama-bench).
    pub model_path: PathBuf,
    pub command: String,
    /// How `soak` runs.
    pub soak: SoakOptions,
    /// The rates `overhead` offers and the bound its steps must keep.
    pub overhead: crate::OverheadPlan,
    /// The LiteLLM proxy's `litellm` executable, the reference of `overhead`.
    pub litellm: PathBuf,
}

pub(crate) const READY: Duration = Duration::from_secs(120);
/// Tokens generated per measured answer.
const GENERATED: u32 = 128;
/// Targets of the performance issue: strata serve's generation vs llama.cpp's, and batching's
/// aggregate at 8 streams vs one.
const ENGINE_TARGET: f64 = 0.95;
const BATCHING_TARGET: f64 = 1.8;
pub(crate) const STORY: &str =
    "Write a long, detailed story about a lighthouse keeper who finds a map.";

pub async fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    let mut report = Report {
        machine: Machine::describe(),
        command: opts.command.clone(),
        sections: Vec::new(),
    };
    // Other suites report their targets; the soak's are pass/fail criteria.
    let mut missed = Vec::new();
    for suite in &opts.suites {
        eprintln!("strata bench: running {suite:?}");
        let section = match suite {
            Suite::Engine => engine(&opts).await?,
            Suite::Batching => batching(&opts).await?,
            Suite::Memory => crate::memory::memory(&opts).await?,
            Suite::Lambda => crate::lambda_path::lambda(&opts).await?,
            Suite::Chain => crate::chain::chain(&opts).await?,
            Suite::Overhead => crate::overhead::overhead(&opts).await?,
            Suite::Responsiveness => crate::responsiveness::responsiveness(&opts).await?,
            Suite::Structured => crate::structured::structured(&opts).await?,
            Suite::Embeddings => crate::embeddings::embeddings(&opts).await?,
            Suite::Soak => crate::soak::soak(&opts, &opts.soak).await?,
        };
        println!("{}", section.markdown());
        if *suite == Suite::Soak {
            missed.extend(section.targets.iter().filter(|(_, met)| !met).map(|(t, _)| t.clone()));
        }
        report.sections.push(section);
    }
    report.write(&opts.out)?;
    eprintln!(
        "strata bench: wrote {} and {}",
        opts.out.display(),
        opts.out.with_extension("json").display()
    );
    anyhow::ensure!(missed.is_empty(), "the soak failed: {}", missed.join("; "));
    Ok(report)
}

/// `strata serve`, with the default configuration or a given batching width.
pub(crate) async fn serve(
    opts: &BenchOptions,
    max_sequences: Option<u32>,
) -> anyhow::Result<Spawned> {
    let env: Vec<(&str, String)> = max_sequences
        .map(|n| ("STRATA_ENGINE__MAX_SEQUENCES", n.to_string()))
        .into_iter()
        .collect();
    let s = Spawned::start(&opts.strata, &["serve", "--model", &opts.model], &env, READY).await?;
    // Load the model before measuring anything.
    generate(&s.url, &opts.model, "Hi", 1, false, 0).await?;
    Ok(s)
}

/// One non-streaming Ollama generate; returns the final object.
async fn generate(
    url: &str,
    model: &str,
    prompt: &str,
    num_predict: u32,
    raw: bool,
    seed: u32,
) -> anyhow::Result<serde_json::Value> {
    let body = json!({"model": model, "prompt": prompt, "raw": raw, "stream": false,
                      "options": {"num_predict": num_predict, "seed": seed, "temperature": 0.8}});
    let r = reqwest::Client::new().post(format!("{url}/api/generate")).json(&body).send().await?;
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "generate failed: {status} {v}");
    Ok(v)
}

fn rate(v: &serde_json::Value, count: &str, dur: &str) -> f64 {
    let n = v[count].as_f64().unwrap_or(0.0);
    let ns = v[dur].as_f64().unwrap_or(0.0);
    if ns > 0.0 {
        n / (ns / 1e9)
    } else {
        0.0
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        0.0
    } else {
        xs[xs.len() / 2]
    }
}

/// The streaming read the bandwidth bound is measured with: far larger than any cache.
const BANDWIDTH_BUFFER: usize = 1 << 30;

async fn engine(opts: &BenchOptions) -> anyhow::Result<Section> {
    let reps = if opts.quick { 3 } else { 9 };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Measured first, before the server starts, on an otherwise idle process.
    let bandwidth_runs = if opts.quick { 3 } else { 5 };
    let bandwidth = tokio::task::spawn_blocking(move || {
        crate::bandwidth::read_bandwidth(BANDWIDTH_BUFFER, threads, bandwidth_runs)
    })
    .await?;
    let path = opts.model_path.clone();
    let footprint = tokio::task::spawn_blocking(move || engine::model_footprint(&path))
        .await?
        .map_err(|e| anyhow::anyhow!("reading the model: {e}"))?;
    let server = serve(opts, None).await?;
    // A raw prompt of about 512 tokens, like llama-bench's pp512.
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(50);
    let (mut prompt_rates, mut gen_rates, mut ref_prompt, mut ref_gen) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut prompt_tokens = 0.0;
    // Reference and server take turns, one repetition each, so drift in this noisy machine's
    // speed hits both alike. The idle server uses no CPU while the reference runs.
    for i in 0..reps {
        let (path, t) = (opts.model_path.clone(), threads as i32);
        let r = tokio::task::spawn_blocking(move || {
            engine::reference_rates(&path, 512, GENERATED, t, 1)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("llama.cpp reference: {e}"))?;
        ref_prompt.push(r.prompt);
        ref_gen.push(r.generation);
        // llama.cpp's OpenMP workers keep spinning for a moment after the reference's last
        // decode; let them park so they do not steal the server's cores.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v =
            generate(&server.url, &opts.model, &format!("{i} {long_prompt}"), 1, true, i).await?;
        prompt_tokens = v["prompt_eval_count"].as_f64().unwrap_or(0.0);
        prompt_rates.push(rate(&v, "prompt_eval_count", "prompt_eval_duration"));
        let v = generate(&server.url, &opts.model, STORY, GENERATED, false, i).await?;
        gen_rates.push(rate(&v, "eval_count", "eval_duration"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reference =
        engine::ReferenceRates { prompt: median(ref_prompt), generation: median(ref_gen) };
    drop(server);
    let (pp, tg) = (median(prompt_rates), median(gen_rates));
    let (pr, gr) = (pp / reference.prompt, tg / reference.generation);
    // The reference's generation runs from position 0 to GENERATED: on average a token attends
    // to half that many positions.
    let bytes_per_token = footprint.weights_bytes as f64
        + footprint.kv_bytes_per_position as f64 * f64::from(GENERATED) / 2.0;
    let bound = bandwidth / bytes_per_token;
    let mb = |b: f64| b / 1e6;
    Ok(Section {
        title: "Engine: strata serve vs llama.cpp".into(),
        notes: vec![
            format!(
                "The reference is llama.cpp itself, measured the way `llama-bench -p 512 -n {GENERATED} -t {threads} -r {reps}` measures \
                 (random tokens, one 512-token prompt batch, {GENERATED} single-token decodes, no sampling, f16 KV cache, one warm-up \
                 round) through the very llama.cpp build strata links (`engine::reference_rates`). The `llama-bench` program \
                 itself cannot be built from that source: the `llama-cpp-sys-2` crate vendors llama.cpp without \
                 `tools/llama-bench`. strata's figures are the `prompt_eval_*` and `eval_*` counters of Ollama `/api/generate` \
                 answers from `strata serve` with its defaults (q8_0 KV cache, full sampling chain), a raw \
                 ~{prompt_tokens:.0}-token prompt and a {GENERATED}-token story. Reference and server alternate, one repetition \
                 each; medians of {reps}."
            ),
            format!(
                "Memory-bandwidth bound: generating a token reads every weight once, so no engine generates faster than memory \
                 bandwidth / bytes read per token. Bandwidth: {:.1} GB/s, a streaming read by {threads} threads over {} MiB \
                 (far beyond the caches), best of {bandwidth_runs}. Bytes per token: {:.1} MB of weights (llama.cpp's model size) \
                 + {:.1} MB of f16 KV cache ({:.1} kB per position, at the reference's average of {} positions) = {:.1} MB. \
                 Prompt processing does many tokens per weight read and is bound by arithmetic, not bandwidth.",
                bandwidth / 1e9,
                BANDWIDTH_BUFFER >> 20,
                mb(footprint.weights_bytes as f64),
                mb(footprint.kv_bytes_per_position as f64 * f64::from(GENERATED) / 2.0),
                footprint.kv_bytes_per_position as f64 / 1e3,
                GENERATED / 2,
                mb(bytes_per_token),
            ),
        ],
        header: vec![
            "".into(),
            "llama.cpp tok/s".into(),
            "strata serve tok/s".into(),
            "strata / llama.cpp".into(),
            "memory-bandwidth bound tok/s".into(),
        ],
        rows: vec![
            Row { cells: vec!["prompt".into(), f1(reference.prompt), f1(pp), f2(pr), "compute-bound".into()] },
            Row { cells: vec!["generation".into(), f1(reference.generation), f1(tg), f2(gr), f1(bound)] },
        ],
        targets: vec![(format!("generation >= {ENGINE_TARGET}x llama.cpp (measured {gr:.2}x)"), gr >= ENGINE_TARGET)],
        data: json!({"llama_cpp": {"prompt": reference.prompt, "generation": reference.generation},
                     "strata": {"prompt": pp, "generation": tg},
                     "bound": {"prompt": "compute-bound", "generation": bound, "bandwidth_bytes_per_s": bandwidth,
                               "weights_bytes": footprint.weights_bytes, "kv_bytes_per_position": footprint.kv_bytes_per_position,
                               "bytes_per_token": bytes_per_token},
                     "ratio": {"prompt": pr, "generation": gr}, "target": ENGINE_TARGET}),
    })
}

/// Streams one generation and returns (time to first token, tokens generated).
async fn stream_one(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    seed: u32,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let body = json!({"model": model, "prompt": STORY, "stream": true, "options": {"num_predict": 128, "seed": seed}});
    let r = client.post(format!("{url}/api/generate")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "generate failed: {}", r.status());
    let mut ttft = None;
    let mut buf = Vec::new();
    let mut count = 0;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if ttft.is_none() {
            ttft = Some(started.elapsed());
        }
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(e) = v.get("error") {
                anyhow::bail!("stream error: {e}");
            }
            if v["done"] == true {
                count = v["eval_count"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok((ttft.unwrap_or_default(), count))
}

/// Rounds of the batching ladder: every level once per round, rounds one after another, so
/// that a slow moment of the host falls on one figure of each level rather than on all of one.
fn batching_rounds(quick: bool) -> usize {
    if quick {
        1
    } else {
        3
    }
}

async fn batching(opts: &BenchOptions) -> anyhow::Result<Section> {
    let levels: &[usize] = if opts.quick { &[1, 2, 4, 8] } else { &[1, 2, 4, 8, 16] };
    let rounds = batching_rounds(opts.quick);
    let server = serve(opts, Some(8)).await?;
    let client = reqwest::Client::new();
    // Per level: aggregate tok/s of each round, time to first token of every stream, tokens.
    let mut aggregates = vec![Vec::new(); levels.len()];
    let mut ttfts = vec![Vec::new(); levels.len()];
    let mut tokens = vec![0u64; levels.len()];
    for round in 0..rounds {
        for (l, &n) in levels.iter().enumerate() {
            let started = Instant::now();
            let seeds = (0..n).map(|i| (round * n + i) as u32);
            let results = futures::future::join_all(
                seeds.map(|seed| stream_one(&client, &server.url, &opts.model, seed)),
            )
            .await;
            let wall = started.elapsed().as_secs_f64();
            let mut generated = 0;
            for r in results {
                let (t, c) = r?;
                ttfts[l].push(t.as_secs_f64() * 1000.0);
                generated += c;
            }
            tokens[l] += generated;
            aggregates[l].push(generated as f64 / wall);
        }
    }
    let agg: Vec<f64> = aggregates.iter().map(|a| median(a.clone())).collect();
    let single = agg[0];
    let at8 = levels.iter().position(|&n| n == 8).map_or(0.0, |l| agg[l]);
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for (l, &n) in levels.iter().enumerate() {
        let mut t = ttfts[l].clone();
        t.sort_by(|a, b| a.total_cmp(b));
        let p50 = t[t.len() / 2];
        let p95 = t[((t.len() as f64 * 0.95).ceil() as usize).saturating_sub(1).min(t.len() - 1)];
        rows.push(Row {
            cells: vec![
                n.to_string(),
                tokens[l].to_string(),
                f1(agg[l]),
                f2(agg[l] / single.max(1e-9)),
                f1(p50),
                f1(p95),
            ],
        });
        data.push(json!({"streams": n, "tokens": tokens[l], "aggregate_tok_s": agg[l], "aggregate_tok_s_by_round": aggregates[l], "ttft_ms_p50": p50, "ttft_ms_p95": p95}));
    }
    let ratio = at8 / single.max(1e-9);
    Ok(Section {
        title: "Continuous batching: aggregate throughput".into(),
        notes: vec![
            format!(
                "`strata serve` with `max_sequences = 8`; N streaming Ollama `/api/generate` clients start together, each asking \
                 for 128 tokens of a story. Aggregate = generated tokens / wall time from the first request to the last `done`; \
                 the median of {rounds} round{} (each round runs every level once, in order), tokens summed over them, time to \
                 first token over every stream of every round. Beyond 8 streams requests queue for a slot.",
                if rounds == 1 { "" } else { "s" }
            ),
        ],
        header: vec!["streams".into(), "tokens".into(), "aggregate tok/s".into(), "vs 1 stream".into(), "TTFT p50 ms".into(), "TTFT p95 ms".into()],
        rows,
        targets: vec![(format!("8 streams >= {BATCHING_TARGET}x one stream (measured {ratio:.2}x)"), ratio >= BATCHING_TARGET)],
        data: json!({"levels": data, "rounds": rounds, "ratio_8_vs_1": ratio, "target": BATCHING_TARGET}),
    })
}
