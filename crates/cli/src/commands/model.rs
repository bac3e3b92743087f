//! `strata model pull [NAME]` and `strata model list`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use engine::{PullProgress, Resolver, DEFAULT_MODEL};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

#[derive(Args)]
pub struct ModelArgs {
    /// Configuration file (TOML)
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Fetch a model into the cache (default: the embedded default model)
    Pull {
        #[arg(default_value = DEFAULT_MODEL)]
        name: String,
    },
    /// List models available locally
    List,
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let resolver = Resolver::new(config.models);
    match args.command {
        ModelCommand::Pull { name } => {
            // An explicit pull checks the cached file's every byte (a fraction of a second for
            // 100 MB), not just its stamp, and fetches it again if it is damaged. Other callers
            // (`up`, `serve --model`) trust the stamp so that starting stays quick.
            resolver.forget_verification(&name);
            pull(&resolver, &name)
        }
        ModelCommand::List => {
            list(&resolver);
            Ok(())
        }
    }
}

pub fn pull(resolver: &Resolver, name: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("static template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(format!("pulling {name}"));
    let mut sized = false;
    let resolved = resolver.pull(name, &mut |p| match p {
        PullProgress::Status(s) => bar.set_message(s.to_string()),
        PullProgress::Bytes { digest, total, completed } => {
            if !sized {
                sized = true;
                bar.set_length(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                bar.set_message(format!("pulling {}", &digest[..digest.len().min(19)]));
            }
            bar.set_position(completed);
        }
    });
    bar.finish_and_clear();
    let resolved = resolved?;
    println!("{} -> {}", resolved.name, resolved.path.display());
    Ok(())
}

fn list(resolver: &Resolver) {
    let models = resolver.list();
    println!("{:<24} {:>10}  {:<20} PATH", "NAME", "SIZE", "MODIFIED");
    for m in models {
        let modified: chrono::DateTime<chrono::Local> = m.modified.into();
        println!(
            "{:<24} {:>7} MB  {:<20} {}",
            m.name,
            m.size / 1_000_000,
            modified.format("%Y-%m-%d %H:%M"),
            m.path.display()
        );
    }
}
