//! `strata`: one binary, one subcommand per job. Parsing and wiring only; the work lives in
//! the library crates named after each hop.

use clap::{Parser, Subcommand};
use cli::commands;

/// mimalloc rather than glibc malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Serve LLM queries from any Ollama or OpenAI client, locally or down a cloud chain to Amazon Bedrock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Run the whole chain locally, every hop its own process: llm-server -> gateway -> main-service -> lambda-service -> bedrock-emulator
    Up(commands::up::UpArgs),
    /// Run the LLM Server: Ollama and OpenAI APIs over the embedded engine
    Serve(commands::serve::ServeArgs),
    /// Run a local Amazon Bedrock Runtime (Converse, ConverseStream) backed by the engine
    BedrockEmulator(commands::bedrock_emulator::EmulatorArgs),
    /// Run a local AWS Lambda service (Invoke, InvokeWithResponseStream, Runtime API) over function processes
    LambdaService(commands::lambda_service::LambdaServiceArgs),
    /// Run a local API Gateway (REST API): routes, API keys, usage plans, streaming passthrough
    Gateway(commands::gateway::GatewayArgs),
    /// Run the MainService: validation, prompt formatting, summaries, Lambda invocation
    MainService(commands::main_service::MainServiceArgs),
    /// Hold an automatic conversation: seed question -> answer -> follow-up question -> ..., with statistics written as YAML, CSV or JSONL
    Converse(commands::converse::ConverseArgs),
    /// Manage local models (fetch, list)
    Model(commands::model::ModelArgs),
    /// Measure strata against its references and write docs/benchmarks.md
    Bench(commands::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => commands::up::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Model(args) => commands::model::run(args),
        Command::Converse(args) => commands::converse::run(args),
        Command::BedrockEmulator(args) => commands::bedrock_emulator::run(args),
        Command::Gateway(args) => commands::gateway::run(args),
        Command::MainService(args) => commands::main_service::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::LambdaService(args) => commands::lambda_service::run(args),
    };
    cli::exit("strata", result)
}
