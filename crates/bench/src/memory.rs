//! Resident memory and cold start: `strata serve` with the model loaded; every process of
//! `strata up` idle and under load, with the instant generator at the bottom so that no model
//! is loaded and the figures are strata's own; and `strata up` from spawn to its first answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::machine::rss_bytes;
use crate::procs::Usage;
use crate::report::{f1, Row, Section};
use crate::server::Spawned;
use crate::soak::{self, Generator, Outcome, SoakOptions, Tally, KINDS};
use crate::suites::{median, serve, BenchOptions, READY};

/// The target for a hop without a model, idle.
const IDLE_HOP_MB: f64 = 20.0;
const SERVE_WITH_MODEL_MB: f64 = 250.0;
/// Clients of the short load, and how often every process is sampled during it.
const LOAD_CLIENTS: usize = 16;
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// The bottom of the chain answers at once: the figures are the hops', not a model's.
const INSTANT: (&str, &str) = ("STRATA_BEDROCK_EMULATOR__GENERATOR", "instant");

/// Per role (`llm-server`, `gateway`, ..., `function`): how many processes, and the largest
/// RSS among them, in bytes.
type ByRole = BTreeMap<String, (usize, u64)>;

fn by_role(procs: impl IntoIterator<Item = (String, Usage)>) -> ByRole {
    let mut out = ByRole::new();
    for (role, u) in procs {
        let e = out.entry(role).or_insert((0, 0));
        e.0 += 1;
        e.1 = e.1.max(u.rss_bytes);
    }
    out
}

pub async fn memory(opts: &BenchOptions) -> anyhow::Result<Section> {
    let server = serve(opts, None).await?;
    let serve_rss = rss_bytes(server.pid()).context("reading the server's RSS")? as f64 / 1e6;
    drop(server);

    let load_for = if opts.quick { Duration::from_secs(5) } else { Duration::from_secs(15) };
    let (idle, loaded, requests) = chain_rss(opts, load_for).await?;
    let cold_reps = if opts.quick { 3 } else { 7 };
    let mut cold = Vec::new();
    for _ in 0..cold_reps {
        cold.push(up_cold_start(&opts.strata, &opts.model).await?.as_secs_f64() * 1000.0);
    }
    let cold_p50 = median(cold.clone());

    let mb = |b: u64| b as f64 / 1e6;
    let mut rows = vec![Row {
        cells: vec!["strata serve, model loaded".into(), "1".into(), f1(serve_rss), "".into()],
    }];
    let mut over = Vec::new();
    let mut hops = Vec::new();
    for (role, (n, rss)) in &idle {
        let under = loaded.get(role).map(|(_, r)| *r).unwrap_or(0);
        rows.push(Row {
            cells: vec![
                format!("`{role}` (strata up, no model)"),
                n.to_string(),
                f1(mb(*rss)),
                f1(mb(under)),
            ],
        });
        hops.push(
            json!({"role": role, "processes": n, "idle_rss_bytes": rss, "load_rss_bytes": under}),
        );
        if mb(*rss) > IDLE_HOP_MB {
            over.push(format!("{role} {:.1} MB", mb(*rss)));
        }
    }
    let worst_idle = idle.values().map(|(_, r)| mb(*r)).fold(0.0, f64::max);
    Ok(Section {
        title: "Memory and cold start".into(),
        notes: vec![
            "Resident set size (VmRSS). `strata serve` with the default configuration, after the model is loaded and one \
             request served, idle."
                .into(),
            format!(
                "`strata up` with the Bedrock emulator's instant generator (no model anywhere in the chain): every process \
                 found under it, per role (the Lambda function's environments are `function`; the figure is the largest of \
                 them). Idle: after one request of each kind (Ollama chat stream, Ollama generate, OpenAI chat streamed and \
                 not). Under load: the largest of samples taken every {} ms while {LOAD_CLIENTS} clients send that mix in a \
                 closed loop for {} s ({requests} requests, all answered completely).",
                SAMPLE_EVERY.as_millis(),
                load_for.as_secs()
            ),
            format!(
                "Cold start of `strata up` (instant generator): from spawning it to the first complete Ollama `/api/generate` \
                 answer through the whole chain, polled every 2 ms; median of {cold_reps} (all, ms: {}). The Lambda \
                 bootstrap's own cold start is in the Bedrock path section.",
                cold.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(", ")
            ),
        ],
        header: vec!["process".into(), "processes".into(), "idle RSS MB".into(), "under load RSS MB".into()],
        rows: rows.into_iter().chain([Row { cells: vec!["`strata up` cold start to first answer, ms".into(), "".into(), f1(cold_p50), "".into()] }]).collect(),
        targets: vec![
            (format!("idle RSS with the model loaded <= {SERVE_WITH_MODEL_MB} MB (measured {serve_rss:.0} MB)"), serve_rss <= SERVE_WITH_MODEL_MB),
            (
                format!(
                    "idle RSS of every process of `strata up` without a model <= {IDLE_HOP_MB} MB (largest {worst_idle:.1} MB{})",
                    if over.is_empty() { String::new() } else { format!("; over: {}", over.join(", ")) }
                ),
                over.is_empty() && !idle.is_empty(),
            ),
        ],
        data: json!({"serve_idle_rss_mb": serve_rss, "up_hops": hops, "up_load": {"clients": LOAD_CLIENTS, "seconds": load_for.as_secs_f64(), "requests": requests},
                     "up_cold_start_ms": cold, "up_cold_start_ms_p50": cold_p50, "idle_hop_target_mb": IDLE_HOP_MB}),
    })
}

/// RSS per role of `strata up`'s processes idle and at the peak of a short load, and how many
/// requests the load made.
async fn chain_rss(
    opts: &BenchOptions,
    load_for: Duration,
) -> anyhow::Result<(ByRole, ByRole, u64)> {
    let run_dir = std::env::temp_dir().join(format!("strata-bench-memory-{}", std::process::id()));
    let env = [(INSTANT.0, INSTANT.1.to_owned())];
    let up = Spawned::start(
        &opts.strata,
        &["up", "--run-dir", &run_dir.display().to_string()],
        &env,
        READY,
    )
    .await?;
    let client = reqwest::Client::builder().timeout(READY).build()?;
    for (n, kind) in KINDS.into_iter().enumerate() {
        if let Outcome::Error(e) = soak::one(&client, &up.url, &opts.model, kind, n as u64).await {
            anyhow::bail!("the chain does not answer {}: {e}", kind.name());
        }
    }
    let root = up.pid();
    let started = Instant::now();
    let idle = by_role(soak::sample(root, started).procs.into_iter().map(|(p, u)| (p.role, u)));

    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                every.tick().await;
                let s = tokio::task::spawn_blocking(move || soak::sample(root, started))
                    .await
                    .expect("sampling");
                samples.lock().expect("samples lock").push(s);
            }
        })
    };
    let load = SoakOptions {
        duration: load_for,
        warmup: Duration::ZERO,
        concurrency: LOAD_CLIENTS,
        rate: None,
        generator: Generator::Instant,
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    soak::drive(
        client,
        up.url.as_str().into(),
        opts.model.as_str().into(),
        &load,
        Instant::now() + load_for,
        tally.clone(),
    )
    .await;
    samples.lock().expect("samples lock").push(soak::sample(root, started));
    sampler.abort();
    drop(up);
    let _ = std::fs::remove_dir_all(&run_dir);

    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let peaks = soak::peak(&samples, Duration::ZERO, started.elapsed());
    let loaded = by_role(peaks.into_values().map(|(p, u)| (p.role, u)));
    let tally = tally.lock().expect("tally lock");
    let count = |m: &BTreeMap<_, u64>| m.values().sum::<u64>();
    let errors = count(&tally.errors);
    anyhow::ensure!(errors == 0, "{errors} requests failed under load: {:?}", tally.messages);
    Ok((idle, loaded, count(&tally.ok) + count(&tally.refused)))
}

/// From spawning `strata up` (instant generator) to its first complete answer.
async fn up_cold_start(strata: &Path, model: &str) -> anyhow::Result<Duration> {
    let run_dir = std::env::temp_dir().join(format!(
        "strata-bench-cold-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let env = [(INSTANT.0, INSTANT.1.to_owned())];
    let client = reqwest::Client::new();
    let body =
        json!({"model": model, "prompt": "Hi", "stream": false, "options": {"num_predict": 1}});
    let started = Instant::now();
    let mut up =
        Spawned::launch(strata, &["up", "--run-dir", &run_dir.display().to_string()], &env)?;
    let deadline = started + READY;
    let ready = loop {
        up.ensure_running()?;
        let answered = client
            .post(format!("{}/api/generate", up.url))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = answered {
            if r.status().is_success()
                && r.json::<serde_json::Value>().await.is_ok_and(|v| v["done"] == true)
            {
                break started.elapsed();
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "strata up did not answer within {READY:?}");
        // Until the LLM server listens, each try is one refused connection: cheap to repeat.
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    drop(up);
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(ready)
}

/// Distinct run directories for the repetitions of one bench process.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_processes_by_role_keeping_the_largest() {
        let u = |rss| Usage { rss_bytes: rss, fds: 3 };
        let roles = by_role([
            ("function".to_owned(), u(5)),
            ("gateway".to_owned(), u(7)),
            ("function".to_owned(), u(9)),
        ]);
        assert_eq!(roles.get("function"), Some(&(2, 9)));
        assert_eq!(roles.get("gateway"), Some(&(1, 7)));
        assert_eq!(roles.len(), 2);
    }
}
