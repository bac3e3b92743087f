//! `strata converse`: the conversational agent (see the `agent` crate).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use agent::{ConverseSettings, FollowUpServer, Format, RunOptions};
use anyhow::Context as _;
use clap::Args;
use engine::{ModelPool, Resolver};
use llm_server::{Application, EmbeddedBackend, ServerSettings};

use crate::config::Config;

#[derive(Args)]
pub struct ConverseArgs {
    /// The seed question
    #[arg(long)]
    seed: Option<String>,
    /// A file of seed questions, one per line (blank lines and lines starting with # are skipped); one conversation each
    #[arg(long, global = true)]
    seeds: Option<PathBuf>,
    /// Turn limit [default: converse.turns]
    #[arg(long, global = true)]
    turns: Option<u32>,
    /// Wall-clock limit of the run, e.g. 90s, 10m, 1h [default: converse.time_limit]
    #[arg(long, global = true)]
    time_limit: Option<String>,
    /// The answering side: an Ollama API base URL [default: converse.server, http://127.0.0.1:11434]
    #[arg(long, global = true)]
    server: Option<String>,
    /// Model on the answering side [default: converse.model]
    #[arg(long, global = true)]
    model: Option<String>,
    /// The follow-up side: `embedded` (the engine in this process), or any Ollama API base URL (a real Ollama works unchanged) [default: converse.follow_up_server, embedded]
    #[arg(long, global = true)]
    follow_up_server: Option<String>,
    /// Model that writes the follow-up questions [default: converse.follow_up_model, else the embedded engine's default model, or --model for a follow-up server URL]
    #[arg(long, global = true)]
    follow_up_model: Option<String>,
    /// Follow-up template name from [converse.templates] [default: converse.template]
    #[arg(long)]
    template: Option<String>,
    /// Output file; with several seeds, NAME-001.EXT, NAME-002.EXT, ... [default: conversation.FORMAT]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format [default: from the --out extension, else yaml]
    #[arg(long, value_parser = ["yaml", "csv", "jsonl"])]
    format: Option<String>,
    /// Conversations run at once (with --seeds)
    #[arg(long, default_value_t = 1, global = true)]
    parallel: usize,
    /// Continue the conversation(s) in the output file(s) instead of starting over
    #[arg(long, global = true)]
    resume: bool,
    /// Configuration file (TOML)
    #[arg(long, env = "STRATA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<ConverseCommand>,
}

#[derive(clap::Subcommand)]
enum ConverseCommand {
    /// Run every template over the seeds (--seeds FILE) and write a report comparing them (Markdown, CSV, SVG charts)
    Compare {
        /// Templates to compare, by name, comma-separated [default: every configured template]
        #[arg(long, value_delimiter = ',')]
        templates: Vec<String>,
        /// Directory for the report and the conversations
        #[arg(long, default_value = "template-report")]
        out_dir: PathBuf,
    },
}

fn numbered(out: &Path, n: usize, format: Format) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "conversation".into());
    out.with_file_name(format!(
        "{stem}-{n:03}.{}",
        out.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| format.extension().into())
    ))
}

pub fn run(args: ConverseArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let mut settings = config.converse.clone();
    if let Some(v) = args.turns {
        settings.turns = v;
    }
    if let Some(v) = args.time_limit {
        settings.time_limit = v;
    }
    if let Some(v) = args.server {
        settings.server = v;
    }
    if let Some(v) = args.model {
        settings.model = v;
    }
    if let Some(v) = args.follow_up_server {
        settings.follow_up_server = v;
    }
    if let Some(v) = args.follow_up_model {
        settings.follow_up_model = v;
    }
    if let Some(v) = args.template {
        settings.template = v;
    }
    // The embedded follow-up side runs the engine's default model unless told otherwise: the
    // answering side's model may exist only over there (a Bedrock name, a larger Ollama model).
    if settings.follow_up_server() == FollowUpServer::Embedded
        && settings.follow_up_model.trim().is_empty()
    {
        settings.follow_up_model = engine::DEFAULT_MODEL.to_owned();
    }
    anyhow::ensure!(
        settings.templates.contains_key(&settings.template),
        "unknown template {:?} (known: {})",
        settings.template,
        settings.templates.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    if let Some(ConverseCommand::Compare { templates, out_dir }) = args.command {
        let seeds_file = args.seeds.context("compare needs --seeds FILE")?;
        let text = std::fs::read_to_string(&seeds_file)
            .with_context(|| format!("reading seeds from {}", seeds_file.display()))?;
        let seeds: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        anyhow::ensure!(!seeds.is_empty(), "{} holds no seeds", seeds_file.display());
        let time_limit = agent::parse_duration(&settings.time_limit)
            .map_err(anyhow::Error::msg)
            .context("--time-limit")?;
        let job = CompareJob {
            templates: if templates.is_empty() { None } else { Some(templates) },
            seeds,
            dir: out_dir,
            time_limit,
            parallel: args.parallel,
            resume: args.resume,
        };
        return compare(&config, settings, job);
    }
    let time_limit = agent::parse_duration(&settings.time_limit)
        .map_err(anyhow::Error::msg)
        .context("--time-limit")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (interrupt, signals) = catch_signals(&runtime)?;
    let format = match (&args.format, &args.out) {
        (Some(f), _) => Format::parse(f).map_err(anyhow::Error::msg)?,
        (None, Some(out)) => Format::from_path(out).unwrap_or(Format::Yaml),
        (None, None) => Format::Yaml,
    };
    let out =
        args.out.unwrap_or_else(|| PathBuf::from(format!("conversation.{}", format.extension())));

    let mut seeds: Vec<String> = Vec::new();
    if let Some(seed) = args.seed {
        seeds.push(seed);
    }
    if let Some(file) = &args.seeds {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading seeds from {}", file.display()))?;
        seeds.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if seeds.is_empty() {
        anyhow::ensure!(args.resume && out.exists(), "give a seed question (--seed TEXT or --seeds FILE), or --resume an existing conversation file");
        seeds.push(String::new()); // the file's own seed is used
    }
    let runs: Vec<RunOptions> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| RunOptions {
            settings: settings.clone(),
            seed: seed.clone(),
            out: if seeds.len() == 1 { out.clone() } else { numbered(&out, i + 1, format) },
            format,
            resume: args.resume,
            time_limit,
            embedded_follow_up: None,
            interrupt: interrupt.clone(),
        })
        .collect();

    let runs = runtime.block_on(with_embedded_follow_up(&config, &settings, runs))?;
    let embedded = runs.iter().any(|r| r.embedded_follow_up.is_some());
    let show_progress = std::io::stderr().is_terminal();
    let results = runtime.block_on(agent::run_many(runs, args.parallel, show_progress));
    let mut failures = 0;
    for result in results {
        match result {
            Ok(c) => {
                let reason = c
                    .record
                    .summary
                    .stop_reason
                    .and_then(|r| serde_json::to_value(r).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                println!(
                    "{}: {} turns, stopped: {reason}{}",
                    c.out.display(),
                    c.record.turns.len(),
                    c.record
                        .summary
                        .stop_detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
                if let Some(e) = c.error {
                    failures += 1;
                    eprintln!("strata: {}: {e:#}", c.out.display());
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("strata: {e:#}");
            }
        }
    }
    exit_if_interrupted(&signals);
    let result = if failures == 0 {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{failures} conversation(s) failed; finished turns are in the output file(s)"
        ))
    };
    finish(result, embedded)
}

// Linux's signal numbers, for the exit status.
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Turns SIGINT and SIGTERM into an interrupt of every conversation, and remembers which
/// arrived. The handlers are installed before this returns, so no signal during the run can
/// kill the process between two writes.
fn catch_signals(
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(agent::Interrupt, Arc<AtomicI32>)> {
    use tokio::signal::unix::{signal, SignalKind};
    let (handle, interrupt) = agent::Interrupt::new();
    let caught = Arc::new(AtomicI32::new(0));
    let _guard = runtime.enter();
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let seen = caught.clone();
    runtime.spawn(async move {
        let number = tokio::select! {
            _ = int.recv() => SIGINT,
            _ = term.recv() => SIGTERM,
        };
        seen.store(number, Ordering::SeqCst);
        eprintln!(
            "strata: interrupted; finishing the output file(s) with the turns completed so far"
        );
        handle.raise();
    });
    Ok((interrupt, caught))
}

/// After an interrupt the process ends as the signal's convention has it: 128 + its number.
fn exit_if_interrupted(caught: &AtomicI32) {
    let number = caught.load(Ordering::SeqCst);
    if number != 0 {
        eprintln!("strata: interrupted; finished turns are in the output file(s), `--resume` continues them");
        end_now(128 + number)
    }
}

/// Ends the process at once with `code`, once stdout is flushed. `_exit`, not `exit`: the
/// output files are complete, and an embedded follow-up side's engine threads are still
/// running; `exit`'s static destructors and atexit handlers (llama.cpp's, the OpenMP
/// runtime's) racing them crashed the process (SIGSEGV).
fn end_now(code: i32) -> ! {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: ends the process at once; nothing after this relies on any state.
    unsafe { libc::_exit(code) }
}

/// Ends a run whose output files are complete. With an embedded follow-up side the process
/// ends at once ([`end_now`]), after the message `cli::exit` gives every command.
fn finish(result: anyhow::Result<()>, embedded: bool) -> anyhow::Result<()> {
    if !embedded {
        return result;
    }
    let code = i32::from(result.is_err());
    let _ = crate::exit("strata", result);
    end_now(code)
}

/// For a follow-up side set to `embedded`: fetches the model if needed, loads it, and serves it
/// from an LLM Server on a free local port of this process, for as long as the runtime runs.
/// (One code path for both sides: the agent always speaks the Ollama API.)
async fn with_embedded_follow_up(
    config: &Config,
    settings: &ConverseSettings,
    mut runs: Vec<RunOptions>,
) -> anyhow::Result<Vec<RunOptions>> {
    if runs.is_empty() || settings.follow_up_server() != FollowUpServer::Embedded {
        return Ok(runs);
    }
    let pool =
        Arc::new(ModelPool::new(Resolver::new(config.models.clone()), config.engine.clone()));
    super::serve::fetch_and_load(&pool, settings.follow_up_model())
        .await
        .context("follow-up side (embedded)")?;
    let server =
        ServerSettings { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..config.server.clone() };
    let app = Application::build(server, Arc::new(EmbeddedBackend::new(pool)))
        .await
        .context("follow-up side (embedded): starting its server")?;
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending::<()>()));
    for run in &mut runs {
        run.embedded_follow_up = Some(url.clone());
    }
    Ok(runs)
}

/// What `strata converse compare` runs: every template over every seed.
struct CompareJob {
    /// None: every configured template.
    templates: Option<Vec<String>>,
    seeds: Vec<String>,
    dir: PathBuf,
    time_limit: std::time::Duration,
    parallel: usize,
    resume: bool,
}

/// With `resume`, conversations whose file already has a stop reason are measured as they are
/// and unfinished ones continue from their last turn.
fn compare(
    config: &Config,
    settings: agent::ConverseSettings,
    job: CompareJob,
) -> anyhow::Result<()> {
    use agent::compare;
    let CompareJob { templates, seeds, dir, time_limit, parallel, resume } = job;
    let templates = templates.unwrap_or_else(|| settings.templates.keys().cloned().collect());
    for t in &templates {
        anyhow::ensure!(
            settings.templates.contains_key(t),
            "unknown template {t:?} (known: {})",
            settings.templates.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let (interrupt, signals) = catch_signals(&runtime)?;
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    for t in &templates {
        for (i, seed) in seeds.iter().enumerate() {
            let out = compare::conversation_path(&dir, t, i + 1);
            if resume {
                if let Ok(record) = agent::Record::read(&out, Format::Jsonl) {
                    // An interrupted conversation is unfinished: it continues.
                    if record
                        .summary
                        .stop_reason
                        .is_some_and(|r| r != agent::StopReason::Interrupted)
                    {
                        rows.push(compare::measure(t, &out, &record));
                        continue;
                    }
                }
            }
            let mut s = settings.clone();
            s.template = t.clone();
            runs.push((
                t.clone(),
                RunOptions {
                    settings: s,
                    seed: seed.clone(),
                    out,
                    format: Format::Jsonl,
                    resume,
                    time_limit,
                    embedded_follow_up: None,
                    interrupt: interrupt.clone(),
                },
            ));
        }
    }
    let names: Vec<String> = runs.iter().map(|(t, _)| t.clone()).collect();
    let runs = runtime.block_on(with_embedded_follow_up(
        config,
        &settings,
        runs.into_iter().map(|(_, r)| r).collect(),
    ))?;
    let embedded = runs.iter().any(|r| r.embedded_follow_up.is_some());
    let results =
        runtime.block_on(agent::run_many(runs, parallel, std::io::stderr().is_terminal()));
    let mut errors = 0;
    for (t, result) in names.iter().zip(results) {
        let c = result?;
        if let Some(e) = &c.error {
            errors += 1;
            eprintln!("strata: {}: {e:#}", c.out.display());
        }
        rows.push(compare::measure(t, &c.out, &c.record));
    }
    // In template order, then seed order, however they were run.
    rows.sort_by_key(|r| (templates.iter().position(|t| *t == r.template), r.file.clone()));
    let header = format!(
        "# Template comparison\n\nGenerated by `strata converse compare` on {}: answering side `{}` at {}, follow-up side `{}` at {}; {} seeds, turn limit {}, time limit {}, repetition threshold {}, answer limit {} tokens, follow-up limit {} tokens, temperature {}. Conversations: `conversations/`.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        settings.model,
        settings.server,
        settings.follow_up_model(),
        settings.follow_up_server().label(),
        seeds.len(),
        settings.turns,
        settings.time_limit,
        settings.repetition_threshold,
        settings.answer_max_tokens,
        settings.follow_up_max_tokens,
        settings.temperature,
    );
    compare::write_report(&dir, &templates, &settings.templates, &rows, &header)?;
    println!("{}", dir.join("report.md").display());
    exit_if_interrupted(&signals);
    let result = if errors == 0 {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{errors} conversation(s) failed; see the report for the rest"))
    };
    finish(result, embedded)
}
