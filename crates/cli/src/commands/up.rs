//! `strata up`: the whole chain on this machine, every hop its own process:
//! llm-server (chain backend) -> gateway -> main-service -> lambda-service (+ bootstrap) ->
//! bedrock-emulator (embedded model).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use engine::Resolver;
use lambda_service::FunctionSettings;
use llm_server::BackendKind;

use crate::config::Config;

#[derive(Args)]
pub struct UpArgs {
    /// Where the LLM Server answers Ollama and OpenAI clients [default: 127.0.0.1:11434]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML); every hop reads its own section
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the hops' logs and the generated configuration
    /// [default: $XDG_STATE_HOME/strata/runs/<time>]
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Serve a non-loopback --listen address without API keys (server.allow_unauthenticated).
    /// Without it, such a chain generates a key for its clients and prints where it is
    #[arg(long)]
    allow_unauthenticated: bool,
}

/// The Lambda function's name in the local chain.
const FUNCTION: &str = "strata";
/// Credentials for the local stand-ins, which accept any signature.
const LOCAL_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "strata-local"),
    ("AWS_SECRET_ACCESS_KEY", "strata-local"),
    ("AWS_REGION", "us-east-1"),
];

fn default_run_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("strata/runs").join(chrono::Local::now().format("%Y%m%d-%H%M%S").to_string())
}

/// What a hop runs.
enum Command {
    /// `strata <subcommand>`.
    Strata(&'static str),
    /// An executable of its own, next to `strata`.
    Program(PathBuf),
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    let bin = std::env::current_exe().context("locating the strata binary")?;
    let sibling = |name: &str| {
        let path = bin.with_file_name(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: build it next to strata with `cargo build --release --bins`",
            path.display()
        );
        Ok(path)
    };
    let bootstrap = sibling("bootstrap")?;
    // The MainService runs from its own, smaller executable (see src/bin/main_service.rs).
    let main_service = sibling("strata-main-service")?;
    telemetry::init(&config.log);

    // The emulator's models are fetched now, so the first request does not wait for them.
    let resolver = Resolver::new(config.models.clone());
    for local in config.bedrock_emulator.models.values().collect::<std::collections::BTreeSet<_>>()
    {
        crate::commands::model::pull(&resolver, local)?;
    }

    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.allow_unauthenticated {
        config.server.allow_unauthenticated = true;
    }
    // `up` binds every hop's socket itself and passes it down (`up::Hop::listener`): the LLM
    // Server's where configured (port 0: any free port; or the socket `up` was itself handed,
    // as every hop is), the others on any free loopback port.
    let context = |addr: SocketAddr| move || format!("listening on {addr}");
    let server = telemetry::listen_std(config.server.listen)
        .map(Arc::new)
        .with_context(context(config.server.listen))?;
    let any = || {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        telemetry::bind(addr).map(Arc::new).with_context(context(addr))
    };
    let (emulator_l, lambda_l, main_l, gateway_l) = (any()?, any()?, any()?, any()?);
    let addr = |l: &TcpListener| l.local_addr().context("a bound socket's address");
    config.server.listen = addr(&server)?;
    let (emulator, lambda, main, gateway) =
        (addr(&emulator_l)?, addr(&lambda_l)?, addr(&main_l)?, addr(&gateway_l)?);
    let url = |a: SocketAddr| format!("http://{a}");
    config.bedrock_emulator.listen = emulator;
    config.lambda_service.listen = lambda;
    config.main_service.listen = main;
    config.gateway.listen = gateway;
    config.gateway.routes = vec![gateway::RouteSettings {
        method: "ANY".into(),
        path: "/{proxy+}".into(),
        url: url(main),
        api_key_required: true,
    }];
    config.server.backend = BackendKind::Chain;
    config.server.chain.gateway_url = url(gateway);
    config.server.chain.models = config
        .bedrock_emulator
        .models
        .values()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    // The function reaches the emulator as it would reach Bedrock: through the SDK's own
    // endpoint variable. Local names map to the emulator's model ids.
    let function = config
        .lambda_service
        .functions
        .entry(FUNCTION.into())
        .or_insert_with(FunctionSettings::default);
    function.path = bootstrap;
    let model_ids: Vec<String> =
        config.bedrock_emulator.models.iter().map(|(id, local)| format!("{local}={id}")).collect();
    function.env.insert("STRATA_MODEL_IDS".into(), model_ids.join(","));
    // Embedding with a local name goes to the first embedding model id the emulator answers
    // for that model (Titan's, by default).
    let mut embedding_ids: std::collections::BTreeMap<&str, &str> =
        std::collections::BTreeMap::new();
    for (id, local) in &config.bedrock_emulator.embedding_models {
        embedding_ids.entry(local.as_str()).or_insert(id.as_str());
    }
    let embedding_ids: Vec<String> =
        embedding_ids.iter().map(|(local, id)| format!("{local}={id}")).collect();
    function.env.insert("STRATA_EMBEDDING_MODEL_IDS".into(), embedding_ids.join(","));
    function.env.insert("AWS_ENDPOINT_URL_BEDROCK_RUNTIME".into(), url(emulator));
    // Credentials configured for the function (`[lambda_service.functions.strata.env]`) win
    // over the local ones.
    for (k, v) in LOCAL_CREDENTIALS {
        function.env.entry(k.into()).or_insert_with(|| v.into());
    }
    // The emulator answers only the function: unless its authentication was configured, it
    // checks a Bedrock API key fresh for this run, which the function sends as Bedrock's
    // SDKs do (AWS_BEARER_TOKEN_BEDROCK). Both live in the run's configuration file (0600).
    if config.bedrock_emulator.auth == bedrock_emulator::AuthMode::Any
        && config.bedrock_emulator.api_keys.is_empty()
        && config.bedrock_emulator.api_keys_file.is_none()
    {
        let key = up::private::secret()?;
        config.bedrock_emulator.auth = bedrock_emulator::AuthMode::Keys;
        config.bedrock_emulator.api_keys = vec![key.clone()];
        function.env.insert("AWS_BEARER_TOKEN_BEDROCK".into(), key);
    }

    let run_dir = args.run_dir.unwrap_or_else(default_run_dir);
    up::private::create_dir(&run_dir)?;

    // A chain served beyond this machine is keyed by default: with no keys of its own, the LLM
    // Server gets a generated client key, kept in a file only the user can read.
    let exposed = !config.server.listen.ip().is_loopback();
    let client_key_file = if exposed
        && config.server.api_keys.is_empty()
        && config.server.api_keys_file.is_none()
        && !config.server.allow_unauthenticated
    {
        let path = run_dir.join("api-key");
        up::private::write(&path, format!("{}\n", up::private::secret()?).as_bytes())?;
        config.server.api_keys_file = Some(path.clone());
        Some(path)
    } else {
        None
    };
    // The LLM Server passes its callers' keys on to the gateway (`server.chain.forward_caller_key`),
    // so the gateway accepts them too: the usage plans then apply per client.
    if config.server.chain.forward_caller_key {
        config.gateway.api_keys.extend(config.server.api_keys.0.iter().cloned());
        if config.gateway.api_keys_file.is_none() {
            config.gateway.api_keys_file = config.server.api_keys_file.clone();
        }
    }

    let config_path = run_dir.join("strata.toml");
    up::private::write(
        &config_path,
        toml::to_string(&config).context("writing the run's configuration")?.as_bytes(),
    )?;
    let config_arg = config_path.display().to_string();

    // The chain's own key (the LLM Server's to the gateway, for callers without a key of their
    // own) lives only in the environment of the two hops that need it. The gateway's variable
    // replaces its configured keys, so those are passed along with it.
    let key = up::private::secret()?;
    let gateway_keys: Vec<String> =
        std::iter::once(key.clone()).chain(config.gateway.api_keys.iter().cloned()).collect();
    let local_aws: Vec<(String, String)> =
        LOCAL_CREDENTIALS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let hop = |name: &str,
               command: Command,
               listener: &Arc<TcpListener>,
               health: &str,
               env: Vec<(String, String)>| {
        let (program, mut args) = match command {
            Command::Strata(sub) => (bin.clone(), vec![sub.to_owned()]),
            Command::Program(path) => (path, Vec::new()),
        };
        args.extend(["--config".to_owned(), config_arg.clone()]);
        up::Hop {
            name: name.into(),
            program,
            args,
            env,
            listener: Arc::clone(listener),
            health_path: health.into(),
        }
    };
    // Each inner hop accepts only the hop in front of it, with secrets fresh for this run.
    let inner = up::inner_secrets::InnerSecrets::generate()?;
    let mut lambda_env = local_aws.clone();
    lambda_env.extend(inner.lambda_service_env());
    // MainService signs its Lambda calls with its own credentials instead of the local ones.
    let mut main_env: Vec<(String, String)> = local_aws
        .iter()
        .filter(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY")
        .cloned()
        .collect();
    main_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), url(lambda)));
    main_env.extend(inner.main_service_env());
    let mut gateway_env = vec![("STRATA_GATEWAY__API_KEYS".into(), gateway_keys.join(","))];
    gateway_env.extend(inner.gateway_env());
    let hops = vec![
        hop("bedrock-emulator", Command::Strata("bedrock-emulator"), &emulator_l, "/", local_aws),
        hop(
            "lambda-service",
            Command::Strata("lambda-service"),
            &lambda_l,
            "/2015-03-31/functions/",
            lambda_env,
        ),
        hop("main-service", Command::Program(main_service), &main_l, "/healthz", main_env),
        hop("gateway", Command::Strata("gateway"), &gateway_l, "/", gateway_env),
        hop(
            "llm-server",
            Command::Strata("serve"),
            &server,
            "/",
            vec![("STRATA_SERVER__CHAIN__API_KEY".into(), key)],
        ),
    ];
    let settings = up::UpSettings {
        run_dir,
        ready_timeout: Duration::from_secs(120),
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs + 5),
    };
    if let Some(path) = &client_key_file {
        println!(
            "clients need the API key in {} (send it as `Authorization: Bearer KEY`)",
            path.display()
        );
    }
    println!("{:<16} {:<28} PID", "HOP", "URL");
    config.runtime.build()?.block_on(up::run(settings, hops, llm_server::shutdown_signal()))
}
