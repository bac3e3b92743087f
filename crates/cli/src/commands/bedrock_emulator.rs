//! `strata bedrock-emulator`: a local Bedrock Runtime backed by the embedded engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bedrock_emulator::{Application, Generator, GeneratorKind};
use clap::Args;
use engine::{ModelPool, Resolver};

use crate::config::Config;

#[derive(Args)]
pub struct EmulatorArgs {
    /// Address to listen on [default: 127.0.0.1:8090]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// What answers: embedded (llama.cpp) or instant (fixed reply, no model)
    #[arg(long, value_parser = ["embedded", "instant"])]
    generator: Option<String>,
}

pub fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    let settings = &mut config.bedrock_emulator;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    match args.generator.as_deref() {
        Some("instant") => settings.generator = GeneratorKind::Instant,
        Some("embedded") => settings.generator = GeneratorKind::Embedded,
        _ => {}
    }
    telemetry::init(&config.log);
    config.runtime.build()?.block_on(async move {
        let settings = config.bedrock_emulator.clone();
        let generator: Arc<dyn Generator> = match settings.generator {
            GeneratorKind::Instant => Arc::new(instant::InstantGenerator::new(settings.instant.clone())),
            GeneratorKind::Embedded => Arc::new(ModelPool::new(Resolver::new(config.models.clone()), config.engine.clone())),
        };
        let app = Application::build(settings.clone(), generator).await.with_context(|| format!("binding {}", settings.listen))?;
        tracing::info!(addr = %app.local_addr(), generator = ?settings.generator, "strata bedrock-emulator listening");
        app.run_until_stopped(llm_server::shutdown_signal()).await?;
        Ok(())
    })
}
