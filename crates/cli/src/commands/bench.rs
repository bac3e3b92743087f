//! `strata bench [SUITE...] [--quick] [--out FILE]`.

use std::path::PathBuf;

use anyhow::Context as _;
use bench::{BenchOptions, Suite};
use clap::Args;
use engine::{Resolver, DEFAULT_MODEL};

use crate::config::Config;

#[derive(Args)]
pub struct BenchArgs {
    /// Suites to run: engine, batching, memory (default: all)
    suites: Vec<String>,
    /// Fewer repetitions, for a quick check
    #[arg(long)]
    quick: bool,
    /// Markdown report; JSON is written beside it
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
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
            .map(|s| Suite::parse(s).with_context(|| format!("unknown suite {s:?} (engine, batching, memory)")))
            .collect::<anyhow::Result<_>>()?
    };
    let config = Config::load(args.config.as_deref())?;
    let resolver = Resolver::new(config.models);
    let model = resolver.pull(&args.model, &mut |_| {})?;
    let opts = BenchOptions {
        suites,
        quick: args.quick,
        out: args.out,
        strata: std::env::current_exe()?,
        model: model.name,
        model_path: model.path,
        command: std::env::args().map(|a| if a.contains('/') { a.rsplit('/').next().unwrap_or(&a).to_owned() } else { a }).collect::<Vec<_>>().join(" "),
    };
    tokio::runtime::Runtime::new()?.block_on(bench::run(opts))?;
    Ok(())
}
