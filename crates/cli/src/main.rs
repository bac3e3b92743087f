//! `strata`: one binary, one subcommand per job. Parsing and wiring only; the work lives in
//! the library crates named after each hop.

mod commands;
mod config;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata", version, about = "Serve LLM queries from any Ollama or OpenAI client, locally or down a cloud chain to Amazon Bedrock")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage local models (fetch, list)
    Model(commands::model::ModelArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(args) => commands::model::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
