//! `strata bench [SUITE...] [--quick] [--out FILE] [--litellm PATH]`, and `strata bench soak [--duration D]
//! [--concurrency N | --rate R] [--generator instant|embedded]`. The overhead ladder is set with
//! `--rates`, `--step` and `--bound-ms` (each also from `STRATA_BENCH_*`).

use std::path::PathBuf;

use anyhow::Context as _;
use bench::{BenchOptions, Generator, OverheadPlan, SoakOptions, Suite};
use clap::Args;
use engine::{Resolver, DEFAULT_MODEL};

use crate::config::Config;

#[derive(Args)]
pub struct BenchArgs {
    /// Suites to run: engine, batching, memory, lambda, chain, overhead, responsiveness, structured, embeddings (default: all of these), soak
    suites: Vec<String>,
    /// Fewer repetitions, for a quick check
    #[arg(long)]
    quick: bool,
    /// Markdown report; JSON is written beside it [default: docs/benchmarks.md, docs/soak.md for soak alone]
    #[arg(long)]
    out: Option<PathBuf>,
    /// soak: how long to drive the chain, warm-up included, e.g. 30s, 10m
    #[arg(long, default_value = "10m")]
    duration: String,
    /// soak: load before memory and descriptors are first measured [default: a fifth of --duration, at most 1m]
    #[arg(long)]
    warmup: Option<String>,
    /// soak: requests in flight at most (closed loop: this many clients)
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// soak: open loop instead, starting this many requests per second (at most --concurrency in flight)
    #[arg(long)]
    rate: Option<f64>,
    /// soak: what answers at the bottom of the chain: the emulator's instant generator, or the embedded model
    #[arg(long, default_value = "instant", value_parser = ["instant", "embedded"])]
    generator: String,
    /// overhead: the LiteLLM proxy's `litellm` executable, the reference [default: the one scripts/setup.sh installs, $STRATA_CACHE/litellm-venv/bin/litellm]
    #[arg(long, env = "STRATA_BENCH_LITELLM")]
    litellm: Option<PathBuf>,
    /// overhead: the offered rates, requests per second, rising, e.g. 100,1000,3000 [default: 25 to 8000 in 15 steps; --quick: 7 steps to 4000]
    #[arg(long, env = "STRATA_BENCH_RATES", value_delimiter = ',')]
    rates: Vec<f64>,
    /// overhead: how long each rate is measured, after a warm-up of a quarter of it (at most 1s) [default: 4s; --quick: 1s]
    #[arg(long, env = "STRATA_BENCH_STEP")]
    step: Option<String>,
    /// overhead: a rate is sustained when its P99 stays under this many milliseconds with no errors
    #[arg(long, env = "STRATA_BENCH_BOUND_MS", default_value_t = 50.0)]
    bound_ms: f64,
    /// overhead: what the instant Bedrock answers: its text reply, or a call of the one tool every request offers
    #[arg(long, default_value = "text", value_parser = ["text", "tool-call"])]
    answer: String,
    /// Model to benchmark
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let suites = if args.suites.is_empty() {
        Suite::ALL.to_vec()
    } else {
        args.suites
            .iter()
            .map(|s| Suite::parse(s).with_context(|| format!("unknown suite {s:?} (engine, batching, memory, lambda, chain, overhead, responsiveness, structured, embeddings, soak)")))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let duration =
        agent::parse_duration(&args.duration).map_err(anyhow::Error::msg).context("--duration")?;
    let warmup = match &args.warmup {
        Some(w) => agent::parse_duration(w).map_err(anyhow::Error::msg).context("--warmup")?,
        None => SoakOptions::default_warmup(duration),
    };
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.rate.is_none_or(|r| r.is_finite() && r > 0.0),
        "--rate must be a positive number of requests per second"
    );
    let soak = SoakOptions {
        duration,
        warmup,
        concurrency: args.concurrency,
        rate: args.rate,
        generator: if args.generator == "embedded" {
            Generator::Embedded
        } else {
            Generator::Instant
        },
    };
    let mut overhead = OverheadPlan::standard(args.quick);
    if !args.rates.is_empty() {
        overhead.rates = args.rates.clone();
    }
    if let Some(step) = &args.step {
        overhead = overhead
            .with_step(agent::parse_duration(step).map_err(anyhow::Error::msg).context("--step")?);
    }
    overhead.bound_ms = args.bound_ms;
    overhead.answer = bench::OverheadAnswer::parse(&args.answer).context("--answer")?;
    overhead.validate().map_err(anyhow::Error::msg).context("--rates, --step, --bound-ms")?;
    // The soak alone gets its own report, so a soak run never replaces the other figures.
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(if suites.iter().all(|s| *s == Suite::Soak) {
            "docs/soak.md"
        } else {
            "docs/benchmarks.md"
        })
    });
    let config = Config::load(args.config.as_deref())?;
    let resolver = Resolver::new(config.models);
    let model = resolver.pull(&args.model, &mut |_| {})?;
    let opts = BenchOptions {
        suites,
        quick: args.quick,
        out,
        strata: std::env::current_exe()?,
        model: model.name,
        model_path: model.path,
        soak,
        overhead,
        litellm: args.litellm.unwrap_or_else(bench::default_litellm),
        command: std::env::args()
            .map(
                |a| if a.contains('/') { a.rsplit('/').next().unwrap_or(&a).to_owned() } else { a },
            )
            .collect::<Vec<_>>()
            .join(" "),
    };
    tokio::runtime::Runtime::new()?.block_on(bench::run(opts))?;
    Ok(())
}
