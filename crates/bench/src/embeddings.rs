//! Embeddings: inputs per second for requests of 1, 16 and 128 short texts on `strata serve`
//! (Ollama `/api/embed`), beside llama.cpp itself on the same model in the same run (the
//! `llama-embedding` method, in-process: `engine::reference_embed_rate`), and through the whole
//! chain (`strata up`: gateway, MainService, Lambda, the emulator's Titan InvokeModel) for the
//! largest batch.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::report::{f1, f2, Row, Section};
use crate::server::Spawned;
use crate::suites::{median, serve, BenchOptions, READY};

const BATCHES: [usize; 3] = [1, 16, 128];
/// Inputs embedded per measurement, whatever the batch.
const INPUTS: usize = 128;
const TARGET_VS_LLAMA_CPP: f64 = 0.9;
const TARGET_CHAIN_VS_SERVE: f64 = 0.8;

fn texts() -> Vec<String> {
    let topics = [
        "cats",
        "the stock market",
        "rain in spring",
        "old lighthouses",
        "bread baking",
        "train timetables",
        "chess openings",
        "coral reefs",
    ];
    (0..INPUTS)
        .map(|i| {
            format!(
                "Note {i}: a short sentence about {}, written for a search index.",
                topics[i % topics.len()]
            )
        })
        .collect()
}

/// Inputs per second embedding `texts` through `url` in requests of `batch`.
async fn rate(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    texts: &[String],
    batch: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for group in texts.chunks(batch) {
        let r = client
            .post(format!("{url}/api/embed"))
            .json(&json!({"model": model, "input": group}))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "embed: {status} {v}");
        anyhow::ensure!(
            v["embeddings"].as_array().map(Vec::len) == Some(group.len()),
            "embed: wrong number of vectors: {v}"
        );
    }
    Ok(texts.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn embeddings(opts: &BenchOptions) -> anyhow::Result<Section> {
    let reps = if opts.quick { 3 } else { 7 };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i32;
    let texts = texts();
    let client = reqwest::Client::new();

    let server = serve(opts, None).await?;
    rate(&client, &server.url, &opts.model, &texts[..8], 8).await?;
    let mut served = Vec::new();
    for &batch in &BATCHES {
        let mut rates = Vec::new();
        for _ in 0..reps {
            rates.push(rate(&client, &server.url, &opts.model, &texts, batch).await?);
        }
        served.push(median(rates));
    }
    drop(server);

    let mut reference = Vec::new();
    for &batch in &BATCHES {
        let (path, texts) = (opts.model_path.clone(), texts.clone());
        let r = tokio::task::spawn_blocking(move || {
            engine::reference_embed_rate(&path, &texts, batch, threads, reps)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("llama.cpp reference: {e}"))?;
        reference.push(r);
        // Let llama.cpp's OpenMP workers park before anything else runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let run_dir = std::env::temp_dir().join(format!("strata-bench-embed-{}", std::process::id()));
    let up = Spawned::start(
        &opts.strata,
        &["up", "--run-dir", &run_dir.display().to_string()],
        &[],
        READY,
    )
    .await?;
    let largest = *BATCHES.last().expect("batches");
    rate(&client, &up.url, &opts.model, &texts[..8], 8).await?;
    let mut chained = Vec::new();
    for _ in 0..reps {
        chained.push(rate(&client, &up.url, &opts.model, &texts, largest).await?);
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&run_dir);
    let chain = median(chained);

    let rows = BATCHES
        .iter()
        .zip(served.iter().zip(&reference))
        .map(|(batch, (s, r))| {
            let chain_cells = if *batch == largest {
                vec![f1(chain), f2(chain / s)]
            } else {
                vec!["".into(), "".into()]
            };
            let mut cells = vec![batch.to_string(), f1(*s), f1(*r), f2(s / r)];
            cells.extend(chain_cells);
            Row { cells }
        })
        .collect();
    let mut targets: Vec<(String, bool)> = BATCHES
        .iter()
        .zip(served.iter().zip(&reference))
        .map(|(batch, (s, r))| {
            (
                format!(
                    "serve at batch {batch} >= {TARGET_VS_LLAMA_CPP}x llama.cpp (measured {:.2}x)",
                    s / r
                ),
                s / r >= TARGET_VS_LLAMA_CPP,
            )
        })
        .collect();
    let serve_largest = served.last().copied().unwrap_or(f64::MIN_POSITIVE);
    targets.push((
        format!(
            "the chain at batch {largest} >= {TARGET_CHAIN_VS_SERVE}x serve (measured {:.2}x)",
            chain / serve_largest
        ),
        chain / serve_largest >= TARGET_CHAIN_VS_SERVE,
    ));
    Ok(Section {
        title: "Embeddings: inputs per second, strata serve vs llama.cpp, and through the chain".into(),
        notes: vec![format!(
            "{INPUTS} short texts (about 20 tokens each) embedded in requests of 1, 16 and 128 inputs; inputs per second over all {INPUTS}, \
             median of {reps}. `strata serve` on the default model, Ollama `/api/embed`, one request at a time. llama.cpp: the same model \
             through the very llama.cpp build strata links, the `llama-embedding` method in-process (`engine::reference_embed_rate`: \
             a mean-pooled embedding context, the batch's texts decoded together as separate sequences, each vector read and \
             normalized), no HTTP. The chain: `strata up` (LLM Server -> gateway -> MainService -> Lambda -> the emulator's Titan \
             InvokeModel, answered by the same model; one call per input, 8 at once), batch {largest}."
        )],
        header: vec!["inputs per request".into(), "serve inputs/s".into(), "llama.cpp inputs/s".into(), "serve / llama.cpp".into(), "chain inputs/s".into(), "chain / serve".into()],
        rows,
        targets,
        data: json!({"batches": BATCHES, "serve": served, "llama_cpp": reference, "chain": chain, "reps": reps}),
    })
}
