//! `strata serve`: the LLM Server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use engine::{ModelPool, Resolver};
use llm_server::{
    Application, Backend, BackendKind, BedrockBackend, ChainBackend, EmbeddedBackend,
    InstantBackend,
};

use crate::config::Config;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:11434]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Model to fetch (if needed) and load before accepting requests
    #[arg(long)]
    model: Option<String>,
    /// Backend: embedded (llama.cpp in this process), bedrock (Amazon Bedrock, see [bedrock]), chain (the API Gateway, see [server.chain]) or instant (fixed reply, no model)
    #[arg(long, value_parser = ["embedded", "bedrock", "chain", "instant"])]
    backend: Option<String>,
    /// Serve a non-loopback address without API keys (server.allow_unauthenticated): only when
    /// something in front of strata authenticates callers
    #[arg(long)]
    allow_unauthenticated: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.allow_unauthenticated {
        config.server.allow_unauthenticated = true;
    }
    match args.backend.as_deref() {
        Some("instant") => config.server.backend = BackendKind::Instant,
        Some("embedded") => config.server.backend = BackendKind::Embedded,
        Some("bedrock") => config.server.backend = BackendKind::Bedrock,
        Some("chain") => config.server.backend = BackendKind::Chain,
        _ => {}
    }
    telemetry::init(&config.log);
    let runtime = config.runtime.build()?;
    runtime.block_on(serve(config, args.model))
}

/// Fetches `name` if it is not in the cache yet, then loads it into `pool`, so that the first
/// request does not pay for either.
pub(crate) async fn fetch_and_load(pool: &ModelPool, name: &str) -> anyhow::Result<()> {
    let resolver = pool.resolver().clone();
    let owned = name.to_owned();
    tokio::task::spawn_blocking(move || resolver.pull(&owned, &mut |_| {}))
        .await?
        .with_context(|| format!("fetching model {name}"))?;
    pool.get(name).await.map_err(|e| anyhow::anyhow!("loading model {name}: {e}"))?;
    Ok(())
}

async fn serve(config: Config, model: Option<String>) -> anyhow::Result<()> {
    let backend: Arc<dyn Backend> = match config.server.backend {
        BackendKind::Instant => Arc::new(InstantBackend::new(config.server.instant.clone())),
        BackendKind::Bedrock => {
            Arc::new(BedrockBackend::new(bedrock::BedrockClient::new(config.bedrock.clone()).await))
        }
        BackendKind::Chain => Arc::new(
            ChainBackend::new(config.server.chain.clone())
                .context("reading the chain's API key file")?,
        ),
        BackendKind::Embedded => {
            let pool = Arc::new(ModelPool::new(
                Resolver::new(config.models.clone()),
                config.engine.clone(),
            ));
            if let Some(name) = &model {
                fetch_and_load(&pool, name).await?;
            }
            Arc::new(EmbeddedBackend::new(pool))
        }
    };
    let app = Application::build(config.server.clone(), backend)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    tracing::info!(addr = %app.local_addr(), backend = ?config.server.backend, "strata serve listening");
    app.run_until_stopped(llm_server::shutdown_signal()).await?;
    tracing::info!("strata serve stopped");
    Ok(())
}
