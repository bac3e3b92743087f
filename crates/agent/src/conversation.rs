//! The conversation loop: question -> answer -> follow-up question -> ..., until a stop rule.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::client::{ChatClient, ChatResult, Message, Side};
use crate::interrupt::Interrupt;
use crate::output::{Endpoint, Format, LatencyStats, Record, RunConfig, StopReason, Summary, Turn};
use crate::settings::{ConverseSettings, FollowUpServer};
use crate::text::{clean_question, fit_history, is_refusal, most_similar, render_template};

/// One conversation to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Settings after flags were applied (`template` names the template to use).
    pub settings: ConverseSettings,
    /// The first question (ignored when resuming an existing file: the file's seed wins).
    pub seed: String,
    pub out: PathBuf,
    pub format: Format,
    /// Continue the conversation in `out` if it exists.
    pub resume: bool,
    /// Wall-clock limit of this run.
    pub time_limit: Duration,
    /// The URL of the in-process LLM Server the caller started for a follow-up side set to
    /// `embedded`; the record names that side `embedded`, not its passing local port.
    pub embedded_follow_up: Option<String>,
    /// Raised on SIGINT/SIGTERM: the turn in flight is abandoned and the file finished.
    pub interrupt: Interrupt,
}

/// A finished (or failed) conversation: the record as written, and the error if one stopped it.
#[derive(Debug)]
pub struct Conversation {
    pub out: PathBuf,
    pub record: Record,
    pub error: Option<anyhow::Error>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

enum Step<T> {
    Done(T),
    Stop(StopReason, Option<String>, Option<anyhow::Error>),
}

const INTERRUPTED: &str = "interrupted by a signal; the turn in flight was not written";

async fn ask(
    client: &ChatClient,
    messages: &[Message],
    deadline: tokio::time::Instant,
    interrupt: &Interrupt,
    bar: &ProgressBar,
) -> Step<ChatResult> {
    let answering = client.side() == Side::Answering;
    // The bar's rate while the answer streams: each streamed piece is one token on Ollama's API.
    // The exact eval rate replaces it when the turn ends.
    let (mut first, mut pieces) = (None::<Instant>, 0u32);
    let chat = client.chat(messages, |_| {
        if answering {
            pieces += 1;
            let since = *first.get_or_insert_with(Instant::now);
            let secs = since.elapsed().as_secs_f64();
            if pieces > 1 && secs > 0.0 {
                bar.set_message(format!("{:.1} tok/s", f64::from(pieces - 1) / secs));
            }
            bar.tick();
        }
    });
    let answer = tokio::select! {
        answer = tokio::time::timeout_at(deadline, chat) => answer,
        _ = interrupt.raised() => return Step::Stop(StopReason::Interrupted, Some(INTERRUPTED.into()), None),
    };
    match answer {
        Err(_) => Step::Stop(
            StopReason::TimeLimit,
            Some(format!("time limit reached while waiting for the {}", client.side())),
            None,
        ),
        Ok(Err(e)) => Step::Stop(StopReason::Error, Some(e.to_string()), Some(e.into())),
        Ok(Ok(r)) => Step::Done(r),
    }
}

/// Runs one conversation, writing `opts.out` after every turn. Errors of either side end the
/// conversation with stop reason `error` (the file keeps every finished turn) and come back in
/// [`Conversation::error`]; only a file that cannot be read or written is an `Err`.
pub async fn run_conversation(
    opts: &RunOptions,
    bar: &ProgressBar,
) -> anyhow::Result<Conversation> {
    let s = &opts.settings;
    let template_text = s
        .templates
        .get(&s.template)
        .with_context(|| {
            format!(
                "unknown template {:?} (known: {})",
                s.template,
                s.templates.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?
        .clone();
    let timeout = Duration::from_secs(s.request_timeout_secs);
    let answering = ChatClient::new(
        Side::Answering,
        &s.server,
        &s.model,
        s.answer_max_tokens,
        s.temperature,
        timeout,
    );
    let side = s.follow_up_server();
    let follow_up_url = match side {
        FollowUpServer::Url(url) => url.to_owned(),
        FollowUpServer::Embedded => opts
            .embedded_follow_up
            .clone()
            .context("the follow-up side is `embedded` but no embedded engine was started")?,
    };
    let follow_up_label = side.label().to_owned();
    let follow_up = ChatClient::new(
        Side::FollowUp,
        &follow_up_url,
        s.follow_up_model(),
        s.follow_up_max_tokens,
        s.temperature,
        timeout,
    );
    let config = RunConfig {
        template: s.template.clone(),
        template_text: template_text.clone(),
        turn_limit: s.turns,
        time_limit: humanize(opts.time_limit),
        repetition_threshold: s.repetition_threshold,
        context_tokens: s.context_tokens,
        answer_max_tokens: s.answer_max_tokens,
        follow_up_max_tokens: s.follow_up_max_tokens,
        temperature: s.temperature,
    };
    let mut record = if opts.resume && opts.out.exists() {
        let mut r = Record::read(&opts.out, opts.format)
            .with_context(|| format!("resuming {}", opts.out.display()))?;
        r.turns.sort_by_key(|t| t.index);
        anyhow::ensure!(
            r.turns.iter().enumerate().all(|(i, t)| t.index == i as u32 + 1),
            "{}: turn indexes are not 1, 2, 3, ...; refusing to resume",
            opts.out.display()
        );
        r.summary.stop_reason = None;
        r.summary.stop_detail = None;
        r.summary.config = config;
        r
    } else {
        anyhow::ensure!(!opts.seed.trim().is_empty(), "the seed question is empty");
        let now = Utc::now();
        Record {
            summary: Summary {
                seed: opts.seed.clone(),
                turns: 0,
                stop_reason: None,
                stop_detail: None,
                started_at: now,
                updated_at: now,
                total_time_ms: 0.0,
                latency_ms: LatencyStats::default(),
                ttft_ms: LatencyStats::default(),
                tokens_in: 0,
                tokens_out: 0,
                mean_tokens_per_sec: None,
                answering: Endpoint {
                    server: answering.url().into(),
                    model: answering.model().into(),
                },
                follow_up: Endpoint {
                    server: follow_up_label.clone(),
                    model: follow_up.model().into(),
                },
                config,
            },
            turns: Vec::new(),
        }
    };
    record.summary.answering =
        Endpoint { server: answering.url().into(), model: answering.model().into() };
    record.summary.follow_up =
        Endpoint { server: follow_up_label, model: follow_up.model().into() };

    // Both sides' histories, rebuilt from the file when resuming.
    let mut answer_history = Vec::new();
    let mut follow_history = Vec::new();
    for (i, t) in record.turns.iter().enumerate() {
        if i > 0 {
            let text = s.templates.get(&t.template).unwrap_or(&template_text);
            follow_history.push(Message::user(render_template(text, &record.turns[i - 1].answer)));
            follow_history.push(Message::assistant(&t.question));
        }
        answer_history.push(Message::user(&t.question));
        answer_history.push(Message::assistant(&t.answer));
    }

    bar.set_length(s.turns as u64);
    bar.set_position(record.turns.len() as u64);
    let run_start = Instant::now();
    let earlier_total = record.summary.total_time_ms;
    let deadline = tokio::time::Instant::now() + opts.time_limit;
    let save = |record: &mut Record| -> anyhow::Result<()> {
        let turns = record.turns.clone();
        record.summary.update_stats(&turns);
        record.summary.total_time_ms = earlier_total + ms(run_start.elapsed());
        record.write(&opts.out, opts.format)
    };
    save(&mut record)?;

    let (reason, detail, error) = loop {
        let n = record.turns.len() as u32;
        if n >= s.turns {
            break (StopReason::TurnLimit, None, None);
        }
        if tokio::time::Instant::now() >= deadline {
            break (StopReason::TimeLimit, None, None);
        }
        if opts.interrupt.is_raised() {
            break (StopReason::Interrupted, Some(INTERRUPTED.into()), None);
        }
        let (question, template, follow_up_latency_ms) = match record.turns.last() {
            None => (record.summary.seed.clone(), "seed".to_string(), None),
            Some(last) => {
                let prompt = render_template(&template_text, &last.answer);
                let messages = fit_history(
                    &follow_history,
                    Message::user(&prompt),
                    s.context_tokens,
                    s.chars_per_token,
                );
                match ask(&follow_up, &messages, deadline, &opts.interrupt, bar).await {
                    Step::Stop(r, d, e) => break (r, d, e),
                    Step::Done(r) => {
                        let q = clean_question(&r.content);
                        if q.is_empty() {
                            break (
                                StopReason::EmptyFollowUp,
                                Some(format!(
                                    "the follow-up side wrote an empty question after turn {n}"
                                )),
                                None,
                            );
                        }
                        follow_history.push(Message::user(prompt));
                        follow_history.push(Message::assistant(&q));
                        (q, s.template.clone(), Some(ms(r.latency)))
                    }
                }
            }
        };
        let started_at = Utc::now();
        let messages = fit_history(
            &answer_history,
            Message::user(&question),
            s.context_tokens,
            s.chars_per_token,
        );
        let r = match ask(&answering, &messages, deadline, &opts.interrupt, bar).await {
            Step::Stop(r, d, e) => break (r, d, e),
            Step::Done(r) => r,
        };
        let answer = r.content.trim().to_string();
        let stop = if answer.is_empty() {
            Some((StopReason::EmptyAnswer, None))
        } else if is_refusal(&answer, &s.refusal_prefixes) {
            Some((StopReason::RefusedAnswer, None))
        } else {
            match most_similar(&answer, record.turns.iter().map(|t| (t.index, t.answer.as_str()))) {
                Some((turn, sim)) if sim >= s.repetition_threshold => Some((
                    StopReason::Repetition,
                    Some(format!(
                        "answer {} is {:.2} similar to answer {turn} (threshold {})",
                        n + 1,
                        sim,
                        s.repetition_threshold
                    )),
                )),
                _ => None,
            }
        };
        answer_history.push(Message::user(&question));
        answer_history.push(Message::assistant(&answer));
        bar.set_message(r.tokens_per_sec.map(|t| format!("{t:.1} tok/s")).unwrap_or_default());
        record.turns.push(Turn {
            index: n + 1,
            question,
            answer,
            template,
            started_at,
            latency_ms: ms(r.latency),
            ttft_ms: r.ttft.map(ms),
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            tokens_per_sec: r.tokens_per_sec.map(|t| (t * 100.0).round() / 100.0),
            follow_up_latency_ms,
            server_timing: r.server_timing,
        });
        save(&mut record)?;
        bar.set_position(n as u64 + 1);
        if let Some((reason, detail)) = stop {
            break (reason, detail, None);
        }
    };
    record.summary.stop_reason = Some(reason);
    record.summary.stop_detail = detail;
    save(&mut record)?;
    bar.finish_with_message(format!(
        "{} turns, {}",
        record.turns.len(),
        serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    ));
    Ok(Conversation { out: opts.out.clone(), record, error })
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() != 0.0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Runs many conversations, `parallel` at a time, with one progress bar each (turns and tok/s).
pub async fn run_many(
    runs: Vec<RunOptions>,
    parallel: usize,
    show_progress: bool,
) -> Vec<anyhow::Result<Conversation>> {
    let multi = MultiProgress::new();
    if !show_progress {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} turns {msg} {elapsed}")
            .unwrap()
            .progress_chars("=> ");
    let jobs = runs.into_iter().map(|opts| {
        let bar = multi.add(ProgressBar::new(opts.settings.turns as u64));
        bar.set_style(style.clone());
        bar.set_prefix(
            opts.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        );
        async move { run_conversation(&opts, &bar).await }
    });
    futures::stream::iter(jobs).buffered(parallel.max(1)).collect().await
}
