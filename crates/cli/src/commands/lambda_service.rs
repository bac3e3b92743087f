//! `strata lambda-service`: the AWS Lambda service API and Runtime API, running functions
//! locally as their own processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use lambda_service::{Application, FunctionSettings};

use crate::config::Config;

#[derive(Args)]
pub struct LambdaServiceArgs {
    /// Address to listen on [default: 127.0.0.1:9001]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// A function to run, NAME=PATH to its executable (`bootstrap`); repeatable. Settings
    /// under [lambda_service.functions.NAME] apply to it.
    #[arg(long = "function", value_parser = parse_function)]
    functions: Vec<(String, PathBuf)>,
}

fn parse_function(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH")?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "invalid function name {name:?}: letters, digits, - and _ only, at most 64"
        ));
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

pub fn run(args: LambdaServiceArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    let settings = &mut config.lambda_service;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    for (name, path) in args.functions {
        settings.functions.entry(name).or_insert_with(FunctionSettings::default).path = path;
    }
    for (name, f) in &settings.functions {
        anyhow::ensure!(f.path.is_file(), "function {name}: {} is not a file", f.path.display());
    }
    anyhow::ensure!(
        !settings.functions.is_empty(),
        "no functions: give --function NAME=PATH or [lambda_service.functions.NAME]"
    );
    telemetry::init(&config.log);
    config.runtime.build()?.block_on(async move {
        let settings = config.lambda_service.clone();
        let app = Application::build(settings.clone()).await.with_context(|| format!("binding {}", settings.listen))?;
        tracing::info!(addr = %app.local_addr(), functions = ?settings.functions.keys().collect::<Vec<_>>(), "strata lambda-service listening");
        app.run_until_stopped(llm_server::shutdown_signal()).await?;
        Ok(())
    })
}
