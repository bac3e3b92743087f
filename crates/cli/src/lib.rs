//! The `strata` commands and their configuration, shared by the `strata` binary (every
//! subcommand) and `strata-main-service` (the MainService alone; see src/bin/main_service.rs).

pub mod commands;
pub mod config;
pub mod runtime;

/// The process's exit status for a command's result, printing the error chain on failure.
pub fn exit(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
