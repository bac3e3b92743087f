//! The whole chain under `strata up` against `strata serve` on the embedded engine: generation
//! speed and the time to first token the chain adds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::lambda_path::through_serve;
use crate::report::{f1, f2, Row, Section};
use crate::server::Spawned;
use crate::suites::{median, serve, BenchOptions, READY};

/// Time to the first streamed token of a short answer.
async fn ttft(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    seed: u32,
) -> anyhow::Result<Duration> {
    let body = json!({"model": model, "prompt": "Name three colors.", "stream": true, "options": {"num_predict": 4, "seed": seed, "temperature": 0.8}});
    let started = Instant::now();
    let r = client.post(format!("{url}/api/generate")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "generate failed: {}", r.status());
    let mut body = r.bytes_stream();
    let mut first = None;
    while let Some(chunk) = body.next().await {
        chunk?;
        first.get_or_insert_with(|| started.elapsed());
    }
    first.ok_or_else(|| anyhow::anyhow!("no token"))
}

/// Targets of the performance issue: the chain's generation vs `strata serve`'s, and what it may
/// add to the time to first token (difference of the medians).
const GENERATION_TARGET: f64 = 0.95;
const TTFT_ADDED_MS: f64 = 5.0;

/// The hops of the chain, outermost first, as they name themselves in `Server-Timing`.
const HOPS: [&str; 5] = ["llm-server", "gateway", "main-service", "lambda", "bedrock"];

/// `Server-Timing` of a short non-streamed answer through the chain: each hop's wall time, ms,
/// in [`HOPS`] order. (On a stream the gateway's entry is its time to the response headers, so
/// hops could not be subtracted from one another.)
async fn hop_timings(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    seed: u32,
) -> anyhow::Result<[f64; 5]> {
    let body = json!({"model": model, "prompt": "Name three colors.", "stream": false, "options": {"num_predict": 4, "seed": seed}});
    let r = client.post(format!("{url}/api/generate")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "generate failed: {}", r.status());
    let header = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut out = [f64::NAN; 5];
    for entry in header.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let dur = parts.find_map(|p| p.strip_prefix("dur=")).and_then(|d| d.parse::<f64>().ok());
        if let (Some(i), Some(d)) = (HOPS.iter().position(|h| *h == name), dur) {
            out[i] = d;
        }
    }
    anyhow::ensure!(out.iter().all(|d| d.is_finite()), "Server-Timing lacks a hop: {header:?}");
    Ok(out)
}

pub async fn chain(opts: &BenchOptions) -> anyhow::Result<Section> {
    let run_dir = std::env::temp_dir().join(format!("strata-bench-up-{}", std::process::id()));
    let up = Spawned::start(
        &opts.strata,
        &["up", "--run-dir", &run_dir.display().to_string()],
        &[],
        READY,
    )
    .await?;
    let server = serve(opts, None).await?;
    let http = reqwest::Client::new();
    // Warm both (the chain's emulator loads the model on first use).
    through_serve(&http, &up.url, &opts.model, 0).await?;
    through_serve(&http, &server.url, &opts.model, 0).await?;
    let reps = if opts.quick { 3 } else { 9 };
    let (mut alone, mut chained) = (Vec::new(), Vec::new());
    for i in 0..reps {
        alone.push(through_serve(&http, &server.url, &opts.model, i + 1).await?);
        chained.push(through_serve(&http, &up.url, &opts.model, i + 1).await?);
    }
    let ttft_reps = if opts.quick { 5 } else { 21 };
    let (mut ttft_alone, mut ttft_chain) = (Vec::new(), Vec::new());
    for i in 0..ttft_reps {
        ttft_alone.push(ttft(&http, &server.url, &opts.model, i).await?.as_secs_f64() * 1000.0);
        ttft_chain.push(ttft(&http, &up.url, &opts.model, i).await?.as_secs_f64() * 1000.0);
    }
    let mut per_hop: [Vec<f64>; 5] = Default::default();
    for i in 0..ttft_reps {
        for (hop, d) in hop_timings(&http, &up.url, &opts.model, i).await?.into_iter().enumerate() {
            per_hop[hop].push(d);
        }
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&run_dir);
    // A hop's own share: its wall time minus the next hop's (which it waits on).
    let wall: Vec<f64> = per_hop.into_iter().map(median).collect();
    let own: Vec<f64> = (0..HOPS.len())
        .map(|i| (wall[i] - wall.get(i + 1).copied().unwrap_or(0.0)).max(0.0))
        .collect();
    let (a, c) = (median(alone), median(chained));
    let ratio = c / a.max(1e-9);
    let (ta, tc) = (median(ttft_alone), median(ttft_chain));
    let added = tc - ta;
    Ok(Section {
        title: "The whole chain: strata up vs strata serve".into(),
        notes: vec![format!(
            "`strata up` runs llm-server (chain backend) -> gateway -> main-service -> lambda-service + bootstrap -> \
             bedrock-emulator, five processes plus the function's, against `strata serve` on the embedded engine, both on \
             this machine, driven alternately with Ollama `/api/generate` streams. Generation: decode speed seen by the \
             client (tokens after the first / time from the first to the last) for a 128-token story, medians of {reps}. \
             Time to first token: a 4-token answer to a short prompt, medians of {ttft_reps}; the chain's addition is the \
             difference of the medians. Per hop: `Server-Timing` of a non-streamed 4-token answer through the chain, \
             medians of {ttft_reps}; wall is the hop's time for the request, own is wall minus the next hop's wall \
             (the hop's own work plus its network hop to the next; `bedrock` is the model itself)."
        )],
        header: vec!["measure".into(), "strata serve".into(), "strata up (chain)".into(), "chain vs serve".into()],
        rows: vec![
            Row { cells: vec!["generation tok/s".into(), f1(a), f1(c), f2(ratio)] },
            Row { cells: vec!["time to first token, ms".into(), f1(ta), f1(tc), format!("+{added:.1} ms")] },
        ]
        .into_iter()
        .chain(HOPS.iter().enumerate().map(|(i, hop)| Row { cells: vec![format!("`{hop}` wall / own ms"), "".into(), format!("{} / {}", f1(wall[i]), f1(own[i])), "".into()] }))
        .collect(),
        targets: vec![
            (format!("generation through the chain >= {GENERATION_TARGET}x strata serve (measured {ratio:.2}x)"), ratio >= GENERATION_TARGET),
            (format!("time to first token added by the chain <= {TTFT_ADDED_MS} ms median (measured {added:.1} ms)"), added <= TTFT_ADDED_MS),
        ],
        data: json!({"serve_tok_s": a, "chain_tok_s": c, "ratio": ratio, "ttft_ms_serve": ta, "ttft_ms_chain": tc, "ttft_added_ms": added,
                   "hops": HOPS.iter().enumerate().map(|(i, h)| json!({"hop": h, "wall_ms": wall[i], "own_ms": own[i]})).collect::<Vec<_>>()}),
    })
}
