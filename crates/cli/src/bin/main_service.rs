//! `strata-main-service`: `strata main-service` as an executable of its own, the one `strata up`
//! runs and the one to install on the MainService's instances.
//!
//! Why a second executable: a process's resident set includes every page of its executable it
//! touched, and the kernel maps file pages in 64 KB windows around each one touched. In the
//! `strata` executable (the engine, every hop, the benchmarks) the MainService's code and the
//! Lambda client's are spread across many windows; linked alone they fill few. Same code, same
//! flags and configuration as the subcommand.

use clap::Parser;

/// mimalloc rather than glibc malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run the MainService: validation, prompt formatting, summaries, Lambda invocation
#[derive(Parser)]
#[command(name = "strata-main-service", version)]
struct Cli {
    #[command(flatten)]
    args: cli::commands::main_service::MainServiceArgs,
}

fn main() -> std::process::ExitCode {
    cli::exit("strata-main-service", cli::commands::main_service::run(Cli::parse().args))
}
