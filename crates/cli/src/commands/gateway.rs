//! `strata gateway`: a local API Gateway (REST API) in front of the MainService.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use gateway::Application;

use crate::config::Config;

#[derive(Args)]
pub struct GatewayArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.gateway.listen = listen;
    }
    telemetry::init(&config.log);
    config.runtime.build()?.block_on(async move {
        let settings = config.gateway;
        let listen = settings.listen;
        let app = Application::build(settings)
            .await
            .with_context(|| format!("starting the gateway on {listen}"))?;
        tracing::info!(addr = %app.local_addr(), "strata gateway listening");
        app.run_until_stopped(llm_server::shutdown_signal()).await?;
        Ok(())
    })
}
