//! `strata main-service`: the MainService between the API Gateway and the Lambda function.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use main_service::Application;

use crate::config::Config;

#[derive(Args)]
pub struct MainServiceArgs {
    /// Address to listen on [default: 127.0.0.1:8081]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: MainServiceArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.main_service.listen = listen;
    }
    telemetry::init(&config.log);
    config.runtime.build()?.block_on(async move {
        let settings = config.main_service;
        let listen = settings.listen;
        let app = Application::build(settings)
            .await
            .with_context(|| format!("starting the main-service on {listen}"))?;
        tracing::info!(addr = %app.local_addr(), "strata main-service listening");
        app.run_until_stopped(llm_server::shutdown_signal()).await?;
        Ok(())
    })
}
