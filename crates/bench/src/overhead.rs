//! `strata bench overhead`: what the software in the path costs, with the model taken out. The
//! bedrock emulator answers every request at once with a fixed reply (its instant generator),
//! and an open-loop load generator offers rising rates to: the emulator itself (the baseline),
//! `strata serve --backend bedrock`, the whole chain (`strata up`, with its own instant
//! emulator) and the LiteLLM proxy configured for Bedrock Converse against the same emulator.
//! Each rate is a step; a target's sustained rate is the highest step with P99 under the bound
//! and no errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use serde_json::{json, Value};

use crate::chart::{self, Series};
use crate::litellm::LiteLlm;
use crate::loadgen::{self, Load, Request};
use crate::relay::Relay;
use crate::report::{f1, f2, Row, Section};
use crate::server::Spawned;
use crate::suites::{BenchOptions, READY};
use crate::usage::{cpu_by_role, cpu_seconds, tree_cpu, RssPeak, RssSampler};

/// The local model name clients ask for, and the Bedrock model id it maps to.
const MODEL: &str = "smollm2:135m";
const MODEL_ID: &str = "strata.smollm2-135m-instruct-v1:0";
/// The emulator's fixed reply; every target must answer with it before it is measured.
const REPLY: &str = "Hello from the instant emulator.";
const PROMPT: &str = "Say hello.";
/// The one tool offered when the answer is a tool call.
const TOOL: &str = "get_weather";
const MAX_TOKENS: u32 = 16;
/// The rate at which every target's P50 is compared with the emulator's.
const COMMON_RATE: f64 = 50.0;
/// Requests the emulators take at once (their default, 16, is for a model, not for this).
const EMULATOR_CONCURRENCY: u32 = 4096;
/// The byte relay in front of the emulator, measured at [`COMMON_RATE`] only: the floor of
/// what one more party on the path adds on this machine.
const FLOOR: &str = "byte relay (floor)";
/// Processes that stand in for AWS's Bedrock rather than being strata's hops.
const NOT_A_HOP: [&str; 1] = ["bedrock-emulator"];
const LITELLM_READY: Duration = Duration::from_secs(300);

/// The rates offered, how long each is held, and the latency bound a step must keep
/// (`strata bench overhead --rates ... --step ... --bound-ms ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct OverheadPlan {
    /// Offered rates, requests per second, rising.
    pub rates: Vec<f64>,
    /// Load at each rate before it is measured (connections opened, pools filled).
    pub warmup: Duration,
    /// How long each rate is measured.
    pub step: Duration,
    /// A request not answered within this is an error.
    pub timeout: Duration,
    /// A step passes with P99 under this and no errors.
    pub bound_ms: f64,
    /// What every answer is.
    pub answer: Answer,
}

/// What the instant emulator answers every request with (`strata bench overhead --answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// Its fixed text reply.
    #[default]
    Text,
    /// A call of the one tool offered (`tool_choice` required / Converse `any`): the request
    /// carries a tool definition, and the call travels back through every hop's tool mapping.
    ToolCall,
}

impl Answer {
    pub fn parse(s: &str) -> Option<Answer> {
        match s {
            "text" => Some(Answer::Text),
            "tool-call" => Some(Answer::ToolCall),
            _ => None,
        }
    }
}

fn tool_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

impl OverheadPlan {
    /// The full ladder, or a short one for `--quick`.
    pub fn standard(quick: bool) -> OverheadPlan {
        if quick {
            OverheadPlan {
                rates: vec![25.0, 50.0, 100.0, 400.0, 1000.0, 2000.0, 4000.0],
                warmup: Duration::from_millis(300),
                step: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                bound_ms: 50.0,
                answer: Answer::Text,
            }
        } else {
            OverheadPlan {
                rates: vec![
                    25.0, 50.0, 100.0, 200.0, 400.0, 700.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0,
                    4000.0, 5000.0, 6000.0, 8000.0,
                ],
                warmup: Duration::from_secs(1),
                step: Duration::from_secs(4),
                timeout: Duration::from_secs(5),
                bound_ms: 50.0,
                answer: Answer::Text,
            }
        }
    }

    /// Measures each rate for `step`, after a warm-up of a quarter of it (at most a second).
    pub fn with_step(self, step: Duration) -> OverheadPlan {
        OverheadPlan { step, warmup: (step / 4).min(Duration::from_secs(1)), ..self }
    }

    /// A plan that can be run: rates positive and rising, a bound, a step and a timeout.
    pub fn validate(&self) -> Result<(), String> {
        if self.rates.is_empty() || self.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return Err(
                "the overhead rates must be one or more positive numbers of requests per second"
                    .into(),
            );
        }
        if self.rates.windows(2).any(|w| w[1] <= w[0]) {
            return Err("the overhead rates must rise".into());
        }
        if !self.bound_ms.is_finite() || self.bound_ms <= 0.0 {
            return Err("the overhead bound must be a positive number of milliseconds".into());
        }
        if self.step.is_zero() || self.timeout.is_zero() {
            return Err("the overhead step and timeout must be longer than zero".into());
        }
        Ok(())
    }

    fn lowest(&self) -> f64 {
        self.rates[0]
    }

    fn highest(&self) -> f64 {
        self.rates[self.rates.len() - 1]
    }
}

/// Requests outstanding at most at `rate`: half a second of arrivals, which a target meeting
/// the bound never comes near, within what one machine's descriptors allow.
fn max_in_flight(rate: f64) -> usize {
    ((rate * 0.5) as usize).clamp(64, 2048)
}

/// One rate held against one target.
#[derive(Debug, Clone, Serialize)]
struct Step {
    offered_rate: f64,
    achieved_rate: f64,
    due: u64,
    ok: u64,
    errors: u64,
    error_rate: f64,
    status_errors: u64,
    transport_errors: u64,
    timeouts: u64,
    overflows: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// CPU of the target's processes (strata's hops, not the emulator), per complete answer.
    cpu_ms_per_request: f64,
    /// The same by process role.
    cpu_ms_per_request_by_role: BTreeMap<String, f64>,
    rss_mb: f64,
    rss_mb_by_process: Vec<Value>,
    /// The load generator's own lag sending (P99) and CPU, to judge it by.
    generator_send_lag_p99_ms: f64,
    generator_cpu_ms_per_request: f64,
    first_error: Option<String>,
}

impl Step {
    fn passed(&self, bound_ms: f64) -> bool {
        self.ok > 0 && self.errors == 0 && self.p99_ms < bound_ms
    }

    /// Far enough past the bound that higher rates need not be tried.
    fn clearly_failed(&self, bound_ms: f64) -> bool {
        self.ok == 0 || self.error_rate > 0.01 || self.p99_ms > 4.0 * bound_ms
    }
}

/// Everything measured of one target.
struct Measured {
    name: &'static str,
    /// Why it was not measured, if it was not.
    missing: Option<String>,
    steps: Vec<Step>,
    rss: RssPeak,
}

impl Measured {
    fn not_measured(name: &'static str, why: String) -> Measured {
        Measured { name, missing: Some(why), steps: Vec::new(), rss: RssPeak::default() }
    }

    /// The highest passing step.
    fn sustained(&self, plan: &OverheadPlan) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.passed(plan.bound_ms))
            .max_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate))
    }

    /// The sustained rate as a number for ratios: a target that passed no step sustains less
    /// than the lowest rate tried, which then bounds it from above.
    fn sustained_rate(&self, plan: &OverheadPlan) -> f64 {
        self.sustained(plan).map_or(plan.lowest(), |s| s.offered_rate)
    }

    fn sustained_text(&self, plan: &OverheadPlan) -> String {
        match (self.sustained(plan), self.steps.last()) {
            (None, _) => format!("< {:.0}", plan.lowest()),
            (Some(s), Some(last))
                if s.offered_rate == last.offered_rate && last.offered_rate == plan.highest() =>
            {
                format!(">= {:.0}", s.offered_rate)
            }
            (Some(s), _) => format!("{:.0}", s.offered_rate),
        }
    }

    fn at(&self, rate: f64) -> Option<&Step> {
        self.steps.iter().find(|s| s.offered_rate == rate)
    }

    /// Largest resident memory of one of its processes other than the emulator's, MB.
    fn largest_hop_mb(&self) -> Option<(String, f64)> {
        self.rss.largest_process(&NOT_A_HOP).map(|(role, b)| (role.to_owned(), b as f64 / 1e6))
    }
}

fn openai_request(url: &str, answer: Answer) -> Request {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS, "stream": false});
    if answer == Answer::ToolCall {
        body["tools"] = json!([{"type": "function", "function": {"name": TOOL, "description": "Weather for a city", "parameters": tool_schema()}}]);
        body["tool_choice"] = json!("required");
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Request {
        url: format!("{url}/v1/chat/completions"),
        headers,
        body: Bytes::from(body.to_string()),
    }
}

fn converse_request(url: &str, answer: Answer) -> Request {
    let mut body = json!({"messages": [{"role": "user", "content": [{"text": PROMPT}]}], "inferenceConfig": {"maxTokens": MAX_TOKENS}});
    if answer == Answer::ToolCall {
        body["toolConfig"] = json!({"tools": [{"toolSpec": {"name": TOOL, "description": "Weather for a city", "inputSchema": {"json": tool_schema()}}}], "toolChoice": {"any": {}}});
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The emulator's default `auth = "any"` wants a credential; a Bedrock API key is one.
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer bench"));
    Request {
        url: format!("{url}/model/{MODEL_ID}/converse"),
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// Sends `request` once and checks the answer carries the emulator's reply (or its call).
async fn check_reply(
    client: &reqwest::Client,
    request: &Request,
    answer: Answer,
) -> anyhow::Result<()> {
    let r = client
        .post(&request.url)
        .headers(request.headers.clone())
        .body(request.body.clone())
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.context("the answer is not JSON")?;
    anyhow::ensure!(status.is_success(), "status {status}: {v}");
    if answer == Answer::ToolCall {
        let openai = v["choices"][0]["message"]["tool_calls"][0]["function"]["name"].as_str();
        let converse = v["output"]["message"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|b| b["toolUse"]["name"].as_str());
        anyhow::ensure!(
            openai.or(converse) == Some(TOOL),
            "the answer is not a call of {TOOL:?}: {v}"
        );
        return Ok(());
    }
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .or_else(|| v["output"]["message"]["content"][0]["text"].as_str())
        .unwrap_or_default();
    anyhow::ensure!(
        text.contains(REPLY),
        "the answer does not carry the emulator's reply {REPLY:?}: {v}"
    );
    Ok(())
}

/// Offers every rate of the plan to one target until it clearly fails.
async fn ladder(
    name: &str,
    plan: &OverheadPlan,
    request: &Request,
    root: u32,
) -> anyhow::Result<(Vec<Step>, RssPeak)> {
    let client = loadgen::client();
    check_reply(&client, request, plan.answer)
        .await
        .with_context(|| format!("{name} does not answer"))?;
    let me = std::process::id();
    let (mut steps, mut peak) = (Vec::new(), RssPeak::default());
    let mut failed_in_a_row = 0;
    for &rate in &plan.rates {
        let load = |duration| Load {
            rate,
            duration,
            max_in_flight: max_in_flight(rate),
            timeout: plan.timeout,
        };
        // Warm-up at the same rate: connections opened, pools filled; not recorded.
        loadgen::run(&client, request, load(plan.warmup)).await;
        let (cpu_before, me_before) = (tree_cpu(root), cpu_seconds(me).unwrap_or(0.0));
        let sampler = RssSampler::start(root, Duration::from_millis(100));
        let o = loadgen::run(&client, request, load(plan.step)).await;
        let rss = sampler.finish();
        let (cpu_after, me_after) = (tree_cpu(root), cpu_seconds(me).unwrap_or(0.0));
        let per_request = |seconds: f64| seconds * 1000.0 / (o.ok.max(1) as f64);
        let by_role: BTreeMap<String, f64> = cpu_by_role(&cpu_before, &cpu_after)
            .into_iter()
            .map(|(r, s)| (r, per_request(s)))
            .collect();
        let step = Step {
            offered_rate: rate,
            achieved_rate: o.achieved_rate(),
            due: o.due,
            ok: o.ok,
            errors: o.errors(),
            error_rate: o.error_rate(),
            status_errors: o.status_errors,
            transport_errors: o.transport_errors,
            timeouts: o.timeouts,
            overflows: o.overflows,
            p50_ms: o.quantile_ms(0.5),
            p99_ms: o.quantile_ms(0.99),
            max_ms: o.max_ms(),
            // The emulator stands in for Bedrock below a hop, but is what is measured when it is the target.
            cpu_ms_per_request: by_role
                .iter()
                .filter(|(r, _)| *r == name || !NOT_A_HOP.contains(&r.as_str()))
                .map(|(_, c)| c)
                .sum(),
            cpu_ms_per_request_by_role: by_role,
            rss_mb: rss.total_bytes as f64 / 1e6,
            rss_mb_by_process: rss
                .by_process
                .iter()
                .map(
                    |((role, pid), b)| json!({"role": role, "pid": pid, "rss_mb": *b as f64 / 1e6}),
                )
                .collect(),
            generator_send_lag_p99_ms: o.send_lag_us.value_at_quantile(0.99) as f64 / 1000.0,
            generator_cpu_ms_per_request: per_request(me_after - me_before),
            first_error: o.first_error.clone(),
        };
        eprintln!(
            "strata bench overhead: {name:<22} {rate:>6.0} req/s offered, {:>7.1} achieved, p50 {:>7.2} ms, p99 {:>7.2} ms, max {:>7.1} ms, errors {:.2}%, cpu {:.2} ms/req, rss {:.0} MB{}",
            step.achieved_rate,
            step.p50_ms,
            step.p99_ms,
            step.max_ms,
            step.error_rate * 100.0,
            step.cpu_ms_per_request,
            step.rss_mb,
            step.first_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
        peak.merge(&rss);
        let (passed, clearly_failed) =
            (step.passed(plan.bound_ms), step.clearly_failed(plan.bound_ms));
        steps.push(step);
        failed_in_a_row = if passed { 0 } else { failed_in_a_row + 1 };
        if clearly_failed || failed_in_a_row >= 2 {
            break;
        }
    }
    Ok((steps, peak))
}

async fn measure(
    name: &'static str,
    plan: &OverheadPlan,
    request: &Request,
    root: u32,
) -> Measured {
    match ladder(name, plan, request, root).await {
        Ok((steps, rss)) => Measured { name, missing: None, steps, rss },
        Err(e) => Measured::not_measured(name, format!("{e:#}")),
    }
}

fn emulator_env(generator: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("STRATA_BEDROCK_EMULATOR__MAX_CONCURRENT_REQUESTS", EMULATOR_CONCURRENCY.to_string()),
        ("STRATA_BEDROCK_EMULATOR__INSTANT__REPLY", REPLY.to_owned()),
    ];
    if generator {
        env.push(("STRATA_BEDROCK_EMULATOR__GENERATOR", "instant".to_owned()));
    }
    env
}

/// `strata serve --backend bedrock` with the emulator as its Bedrock endpoint.
async fn start_serve(strata: &Path, emulator: &str, dir: &Path) -> anyhow::Result<Spawned> {
    let config = dir.join("serve.toml");
    std::fs::write(&config, format!("[bedrock]\nregion = \"us-east-1\"\nendpoint_url = \"{emulator}\"\n\n[bedrock.model_ids]\n\"{MODEL}\" = \"{MODEL_ID}\"\n"))?;
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    Spawned::start(
        strata,
        &["serve", "--backend", "bedrock", "--config", &config.display().to_string()],
        &env,
        READY,
    )
    .await
}

pub async fn overhead(opts: &BenchOptions) -> anyhow::Result<Section> {
    let plan = &opts.overhead;
    let dir = tempfile::tempdir()?;
    let emulator = Spawned::start(
        &opts.strata,
        &["bedrock-emulator", "--generator", "instant"],
        &emulator_env(false),
        READY,
    )
    .await
    .context("starting the emulator")?;
    let mut measured = Vec::new();

    measured.push(
        measure(
            "bedrock-emulator",
            plan,
            &converse_request(&emulator.url, plan.answer),
            emulator.pid(),
        )
        .await,
    );

    let at_common_rate = OverheadPlan { rates: vec![COMMON_RATE], ..plan.clone() };
    let upstream =
        emulator.url.trim_start_matches("http://").parse().context("the emulator's address")?;
    measured.push(match Relay::start(upstream) {
        Ok(relay) => {
            measure(
                FLOOR,
                &at_common_rate,
                &converse_request(&relay.url, plan.answer),
                std::process::id(),
            )
            .await
        }
        Err(e) => Measured::not_measured(FLOOR, e.to_string()),
    });

    measured.push(match start_serve(&opts.strata, &emulator.url, dir.path()).await {
        Ok(serve) => {
            measure(
                "strata serve (bedrock)",
                plan,
                &openai_request(&serve.url, plan.answer),
                serve.pid(),
            )
            .await
        }
        Err(e) => Measured::not_measured("strata serve (bedrock)", format!("{e:#}")),
    });

    let run_dir = dir.path().join("up");
    measured.push(
        match Spawned::start(
            &opts.strata,
            &["up", "--run-dir", &run_dir.display().to_string()],
            &emulator_env(true),
            READY,
        )
        .await
        {
            Ok(up) => {
                measure("strata up (chain)", plan, &openai_request(&up.url, plan.answer), up.pid())
                    .await
            }
            Err(e) => Measured::not_measured("strata up (chain)", format!("{e:#}")),
        },
    );

    let litellm = opts.litellm.clone();
    measured.push(if !litellm.is_file() {
        Measured::not_measured(
            "LiteLLM proxy",
            format!(
                "{} is missing (scripts/setup.sh: setup_litellm, or --litellm PATH)",
                litellm.display()
            ),
        )
    } else {
        match LiteLlm::start(&litellm, MODEL, MODEL_ID, &emulator.url, LITELLM_READY).await {
            Ok(proxy) => {
                let mut request = openai_request(&proxy.url, plan.answer);
                if plan.answer == Answer::ToolCall {
                    // LiteLLM sends tools only to Bedrock models it knows call them; ours is
                    // not in its list, so the request says so (LiteLLM's documented override).
                    let mut body: Value = serde_json::from_slice(&request.body)?;
                    body["allowed_openai_params"] = json!(["tools", "tool_choice"]);
                    request.body = Bytes::from(body.to_string());
                }
                request.headers.insert(
                    AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {}", proxy.key))?,
                );
                let m = measure("LiteLLM proxy", plan, &request, proxy.pid()).await;
                match m.missing.clone() {
                    Some(why) => Measured::not_measured(
                        "LiteLLM proxy",
                        format!("{why}; its log ends: {}", proxy.log_tail()),
                    ),
                    None => m,
                }
            }
            Err(e) => Measured::not_measured("LiteLLM proxy", format!("{e:#}")),
        }
    });
    drop(emulator);

    let chart_path = opts.out.with_file_name(match plan.answer {
        Answer::Text => "overhead.svg",
        Answer::ToolCall => "overhead-tool-call.svg",
    });
    let series: Vec<Series> = measured
        .iter()
        .filter(|m| !m.steps.is_empty() && m.name != FLOOR)
        .map(|m| Series {
            name: m.name.to_owned(),
            points: m
                .steps
                .iter()
                .filter(|s| s.ok > 0)
                .map(|s| (s.offered_rate, s.p50_ms, s.p99_ms))
                .collect(),
        })
        .collect();
    let chart_written =
        chart::latency_vs_load(&chart_path, &series, plan.bound_ms).map_err(|e| format!("{e:#}"));
    Ok(summarise(plan, &measured, &chart_path, chart_written))
}

fn summarise(
    plan: &OverheadPlan,
    measured: &[Measured],
    chart_path: &Path,
    chart_written: Result<(), String>,
) -> Section {
    let find = |name: &str| measured.iter().find(|m| m.name == name);
    let (emulator, serve, chain, litellm, floor) = (
        find("bedrock-emulator"),
        find("strata serve (bedrock)"),
        find("strata up (chain)"),
        find("LiteLLM proxy"),
        find(FLOOR),
    );
    let base_p50 = emulator.and_then(|m| m.at(COMMON_RATE)).map(|s| s.p50_ms);
    let litellm_rate = litellm.filter(|m| m.missing.is_none()).map(|m| m.sustained_rate(plan));
    let added = |m: &Measured| -> Option<f64> { Some(m.at(COMMON_RATE)?.p50_ms - base_p50?) };

    let mut rows = Vec::new();
    // The relay is measured at one rate and has no processes of its own: a note, not a row.
    for m in measured.iter().filter(|m| m.name != FLOOR) {
        if let Some(why) = &m.missing {
            rows.push(Row {
                cells: vec![
                    m.name.to_owned(),
                    format!("not measured: {why}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            });
            continue;
        }
        let vs = match (litellm_rate, m.name) {
            (_, "LiteLLM proxy") => "1".to_owned(),
            (Some(l), _) => format!("{:.0}x", m.sustained_rate(plan) / l),
            (None, _) => "n/a".into(),
        };
        let p50 = m.at(COMMON_RATE).map_or("n/a".into(), |s| f2(s.p50_ms));
        let plus = if m.name == "bedrock-emulator" {
            "(baseline)".into()
        } else {
            added(m).map_or("n/a".into(), |a| format!("{a:+.2}"))
        };
        let cpu = m.sustained(plan).map_or("n/a".into(), |s| {
            format!("{:.3} (at {:.0}/s)", s.cpu_ms_per_request, s.offered_rate)
        });
        let rss = m.largest_hop_mb().map_or("n/a".into(), |(role, mb)| {
            if m.name == "strata up (chain)" {
                format!("{mb:.1} (largest: {role})")
            } else {
                f1(mb)
            }
        });
        let total = f1(m.rss.total_bytes as f64 / 1e6);
        rows.push(Row {
            cells: vec![
                m.name.to_owned(),
                m.sustained_text(plan),
                vs,
                p50,
                plus,
                cpu,
                format!("{rss} / {total}"),
            ],
        });
    }

    let mut targets = Vec::new();
    let lite_missing =
        || litellm.and_then(|m| m.missing.clone()).unwrap_or_else(|| "not run".into());
    let ratio_target = |m: Option<&Measured>, what: &str, factor: f64| match (
        m.filter(|m| m.missing.is_none()),
        litellm_rate,
    ) {
        (Some(m), Some(l)) => {
            let r = m.sustained_rate(plan) / l;
            (format!("{what} sustains >= {factor:.0}x LiteLLM's rate (measured {} vs {} req/s, {r:.1}x)", m.sustained_text(plan), litellm.map(|l| l.sustained_text(plan)).unwrap_or_default()), r >= factor)
        }
        (None, _) => {
            (format!("{what} sustains >= {factor:.0}x LiteLLM's rate (not measured)"), false)
        }
        (_, None) => (
            format!(
                "{what} sustains >= {factor:.0}x LiteLLM's rate (LiteLLM not measured: {})",
                lite_missing()
            ),
            false,
        ),
    };
    targets.push(ratio_target(serve, "`strata serve --backend bedrock`", 40.0));
    let floor_added = floor.filter(|m| m.missing.is_none()).and_then(added);
    let beside_floor = floor_added
        .map_or(String::new(), |f| format!("; a relay that only copies bytes adds {f:+.2} ms"));
    match serve.and_then(added) {
        Some(a) => targets.push((format!("`strata serve --backend bedrock` adds <= 0.5 ms at P50 over the emulator at {COMMON_RATE:.0} req/s (measured {a:+.2} ms{beside_floor})"), a <= 0.5)),
        None => targets.push(("`strata serve --backend bedrock` adds <= 0.5 ms at P50 (not measured)".into(), false)),
    }
    match serve.and_then(|m| m.sustained(plan)) {
        Some(s) => targets.push((format!("`strata serve --backend bedrock` spends <= 0.3 ms CPU per request (measured {:.3} ms at {:.0} req/s)", s.cpu_ms_per_request, s.offered_rate), s.cpu_ms_per_request <= 0.3)),
        None => targets.push(("`strata serve --backend bedrock` spends <= 0.3 ms CPU per request (not measured)".into(), false)),
    }
    targets.push(ratio_target(chain, "the whole chain", 10.0));
    let lite_rss = litellm.filter(|m| m.missing.is_none()).map(|m| m.rss.total_bytes as f64 / 1e6);
    let hops: Vec<(String, f64)> = [serve, chain]
        .into_iter()
        .flatten()
        .filter(|m| m.missing.is_none())
        .filter_map(|m| m.largest_hop_mb())
        .collect();
    let largest = hops.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1));
    match (largest, lite_rss) {
        (Some((role, mb)), Some(l)) => targets.push((format!("RSS per hop under load <= 1/20 of LiteLLM's (largest hop {role} {mb:.1} MB vs LiteLLM {l:.0} MB, 1/{:.0})", l / mb), mb * 20.0 <= l)),
        (_, None) => targets.push((format!("RSS per hop under load <= 1/20 of LiteLLM's (LiteLLM not measured: {})", lite_missing()), false)),
        (None, _) => targets.push(("RSS per hop under load <= 1/20 of LiteLLM's (strata not measured)".into(), false)),
    }

    let mut notes = vec![
        format!(
            "Software overhead with the model taken out: `strata bedrock-emulator` with its instant generator answers every Converse \
             request at once with a fixed reply ({REPLY:?}, `max_concurrent_requests = {EMULATOR_CONCURRENCY}`). Targets, one at a \
             time: the emulator itself, spoken to directly with a Converse request (the baseline); `strata serve --backend bedrock` \
             (the official AWS SDK, SigV4, pointed at the emulator); the whole chain `strata up` (llm-server -> gateway -> \
             main-service -> lambda-service + bootstrap -> its own instant emulator, default configuration); and the LiteLLM proxy \
             (`litellm[proxy]` 1.108.7, `litellm --config ... --num_workers 2 --timeout_worker_healthcheck 120` with a \
             `LITELLM_MASTER_KEY` sent as the bearer token, model `bedrock/converse/{MODEL_ID}` with \
             `aws_bedrock_runtime_endpoint` at the same emulator, `LITELLM_LOCAL_MODEL_COST_MAP=True`, no database). Targets 2-4 get \
             the same OpenAI `/v1/chat/completions` request (non-streamed, {PROMPT:?}, `max_tokens` {MAX_TOKENS}); each must answer \
             with the emulator's reply before it is measured."
        ),
        format!(
            "Load: an open-loop generator in this process (`crates/bench/src/loadgen.rs`): requests are due at fixed intervals at \
             the offered rate, sent over pooled keep-alive HTTP/1.1 connections, and each latency counts from the time the request \
             was due to the end of its answer (no coordinated omission), into an HDR histogram. Non-2xx answers, transport \
             failures, timeouts ({:.0} s) and requests due while {}-{} were already in flight (half a second of arrivals) are \
             errors. Rates {}; each step {:.1} s after a {:.1} s warm-up at the same rate; a target stops rising after a step \
             with P99 over {:.0} ms or more than 1% errors, or two failing steps in a row. Sustained = the highest step with P99 \
             under {:.0} ms and no errors (\">=\" when that is the highest rate tried, \"<\" when none passed).",
            plan.timeout.as_secs_f64(),
            max_in_flight(0.0),
            max_in_flight(f64::MAX),
            plan.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
            plan.step.as_secs_f64(),
            plan.warmup.as_secs_f64(),
            4.0 * plan.bound_ms,
            plan.bound_ms
        ),
        format!(
            "CPU per request: utime + stime of every process of the target's tree (/proc/PID/stat) before and after the step, over \
             the complete answers; the chain's own emulator is left out (it stands in for Bedrock), LiteLLM's workers are counted. \
             Reported at the sustained step. Memory: VmRSS of every process of the tree sampled every 100 ms under load, the \
             largest over all steps: the largest single hop / the whole tree (LiteLLM: master and workers). P50 added: the target's \
             P50 minus the emulator's, both at {COMMON_RATE:.0} req/s. The load generator shares the machine's cores with every target."
        ),
    ];
    match &chart_written {
        Ok(()) => notes.push(format!(
            "![P50 and P99 latency against offered load]({}) P50 (solid) and P99 (dashed) latency against offered load, log scales; the dotted line is the {:.0} ms bound.",
            chart_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            plan.bound_ms
        )),
        Err(e) => notes.push(format!("The chart could not be written: {e}.")),
    }
    match (floor, floor_added) {
        (Some(f), Some(a)) if f.missing.is_none() => notes.push(format!(
            "The floor: the emulator behind a relay that only copies bytes (two blocking threads per connection in this process, no \
             parsing), at {COMMON_RATE:.0} req/s: P50 {:.2} ms, {a:+.2} ms over the emulator. That much of any hop's P50 added is \
             what this machine charges for one more party on the path (its wake-ups and socket copies), before any software runs.",
            f.at(COMMON_RATE).map_or(f64::NAN, |s| s.p50_ms)
        )),
        (Some(f), _) => notes.push(format!("The floor (a byte relay in front of the emulator) was not measured: {}.", f.missing.as_deref().unwrap_or("no step at the common rate"))),
        _ => {}
    }
    if let Some(c) = chain.filter(|m| m.missing.is_none()) {
        let per_hop: Vec<String> = c
            .rss
            .by_process
            .iter()
            .map(|((role, pid), b)| format!("{role} ({pid}) {:.1} MB", *b as f64 / 1e6))
            .collect();
        let cpu: Vec<String> = c
            .sustained(plan)
            .map(|s| {
                s.cpu_ms_per_request_by_role.iter().map(|(r, ms)| format!("{r} {ms:.3}")).collect()
            })
            .unwrap_or_default();
        notes.push(format!("The chain's processes, peak RSS under load: {}. CPU ms per request by role at the sustained step: {}.", per_hop.join(", "), if cpu.is_empty() { "n/a".into() } else { cpu.join(", ") }));
    }
    if let Some(l) = litellm.filter(|m| m.missing.is_none()) {
        let added = added(l).map_or("n/a".into(), |a| format!("{a:.1} ms"));
        let cpu =
            l.sustained(plan).map_or("n/a".into(), |s| format!("{:.1} ms", s.cpu_ms_per_request));
        notes.push(format!(
            "LiteLLM in this run: sustained {} req/s, added {added} at P50, {cpu} of CPU per request, {:.2} GiB of RSS with two workers \
             (measured before on this kind of machine: about 50 req/s, 15 ms, 15 ms and 1.1 GiB).",
            l.sustained_text(plan),
            l.rss.total_bytes as f64 / (1u64 << 30) as f64
        ));
    }
    let failures: Vec<String> = measured
        .iter()
        .flat_map(|m| {
            m.steps.iter().filter_map(move |s| {
                s.first_error
                    .as_ref()
                    .map(|e| format!("{} at {:.0}/s: {e}", m.name, s.offered_rate))
            })
        })
        .collect();
    if !failures.is_empty() {
        notes.push(format!("First error of each failing step: {}.", failures.join("; ")));
    }

    if plan.answer == Answer::ToolCall {
        notes.insert(
            1,
            format!(
                "Answer: a tool call. Every request offers one tool ({TOOL:?}, one required string argument) and demands a call \
                 (OpenAI `tool_choice: \"required\"`, Converse `toolChoice: {{\"any\": {{}}}}`); the instant generator answers with \
                 a `toolUse` block whose input matches the schema, and each target must return it as a call of {TOOL:?} \
                 (`message.tool_calls`) before it is measured. LiteLLM's request also carries `allowed_openai_params: [\"tools\", \
                 \"tool_choice\"]`: it passes tools only to Bedrock models in its own list, and refuses them (400) otherwise."
            ),
        );
    }
    Section {
        title: match plan.answer {
            Answer::Text => "Overhead: strata vs the LiteLLM proxy on an instant Bedrock".into(),
            Answer::ToolCall => "Overhead with a tool-call answer: strata vs the LiteLLM proxy on an instant Bedrock".into(),
        },
        notes,
        header: vec![
            "target".into(),
            format!("sustained req/s (P99 < {:.0} ms, no errors)", plan.bound_ms),
            "vs LiteLLM".into(),
            format!("P50 ms at {COMMON_RATE:.0} req/s"),
            "P50 added ms".into(),
            "CPU ms/request".into(),
            "peak RSS MB (hop / tree)".into(),
        ],
        rows,
        targets,
        data: json!({
            "bound_ms": plan.bound_ms, "answer": format!("{:?}", plan.answer), "rates": plan.rates, "common_rate": COMMON_RATE, "step_s": plan.step.as_secs_f64(), "warmup_s": plan.warmup.as_secs_f64(),
            "chart": chart_written.is_ok().then(|| chart_path.display().to_string()),
            "targets": measured.iter().map(|m| json!({
                "name": m.name, "not_measured": m.missing, "sustained_rate": m.sustained(plan).map(|s| s.offered_rate),
                "p50_added_ms": added(m), "rss_peak_mb": m.rss.total_bytes as f64 / 1e6,
                "steps": m.steps,
            })).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, p99: f64, errors: u64) -> Step {
        Step {
            offered_rate: rate,
            achieved_rate: rate,
            due: 100,
            ok: 100 - errors,
            errors,
            error_rate: errors as f64 / 100.0,
            status_errors: errors,
            transport_errors: 0,
            timeouts: 0,
            overflows: 0,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            max_ms: p99,
            cpu_ms_per_request: 0.1,
            cpu_ms_per_request_by_role: BTreeMap::new(),
            rss_mb: 10.0,
            rss_mb_by_process: Vec::new(),
            generator_send_lag_p99_ms: 0.0,
            generator_cpu_ms_per_request: 0.0,
            first_error: None,
        }
    }

    #[test]
    fn sustained_is_the_highest_step_within_the_bound_without_errors() {
        let plan = OverheadPlan::standard(true);
        let m = Measured {
            name: "x",
            missing: None,
            steps: vec![
                step(25.0, 2.0, 0),
                step(100.0, 3.0, 0),
                step(400.0, 49.0, 0),
                step(1000.0, 51.0, 0),
                step(2000.0, 10.0, 1),
            ],
            rss: RssPeak::default(),
        };
        assert_eq!(m.sustained(&plan).unwrap().offered_rate, 400.0);
        assert_eq!(m.sustained_text(&plan), "400");
        let none = Measured {
            name: "y",
            missing: None,
            steps: vec![step(25.0, 60.0, 0)],
            rss: RssPeak::default(),
        };
        assert_eq!((none.sustained_text(&plan), none.sustained_rate(&plan)), ("< 25".into(), 25.0));
        let top = Measured {
            name: "z",
            missing: None,
            steps: plan.rates.iter().map(|r| step(*r, 1.0, 0)).collect(),
            rss: RssPeak::default(),
        };
        assert_eq!(top.sustained_text(&plan), ">= 4000");
        assert!(
            step(100.0, 300.0, 0).clearly_failed(50.0)
                && step(100.0, 10.0, 2).clearly_failed(50.0)
                && !step(100.0, 60.0, 0).clearly_failed(50.0)
        );
    }

    #[test]
    fn a_plan_must_rise_through_positive_rates_within_a_positive_bound() {
        assert_eq!(OverheadPlan::standard(false).validate(), Ok(()));
        assert_eq!(OverheadPlan::standard(true).validate(), Ok(()));
        let with = |rates: Vec<f64>, bound_ms| {
            OverheadPlan { rates, bound_ms, ..OverheadPlan::standard(true) }.validate()
        };
        assert!(with(vec![], 50.0).is_err());
        assert!(with(vec![100.0, 50.0], 50.0).unwrap_err().contains("rise"));
        assert!(with(vec![0.0, 50.0], 50.0).is_err());
        assert!(with(vec![f64::NAN], 50.0).is_err());
        assert!(with(vec![100.0], 0.0).unwrap_err().contains("bound"));
        assert!(OverheadPlan { step: Duration::ZERO, ..OverheadPlan::standard(true) }
            .validate()
            .is_err());
        let warmup = |s| OverheadPlan::standard(true).with_step(Duration::from_secs(s)).warmup;
        assert_eq!((warmup(2), warmup(8)), (Duration::from_millis(500), Duration::from_secs(1)));
        // A tighter bound passes fewer steps.
        let m = Measured {
            name: "x",
            missing: None,
            steps: vec![step(25.0, 2.0, 0), step(100.0, 8.0, 0)],
            rss: RssPeak::default(),
        };
        let tight = OverheadPlan { bound_ms: 5.0, ..OverheadPlan::standard(true) };
        assert_eq!(
            (m.sustained_text(&OverheadPlan::standard(true)), m.sustained_text(&tight)),
            ("100".into(), "25".into())
        );
    }

    #[test]
    fn a_missing_reference_misses_its_targets_and_says_why() {
        let plan = OverheadPlan::standard(true);
        let serve = Measured {
            name: "strata serve (bedrock)",
            missing: None,
            steps: vec![step(25.0, 2.0, 0), step(50.0, 2.0, 0)],
            rss: RssPeak::default(),
        };
        let lite = Measured::not_measured("LiteLLM proxy", "litellm is missing".into());
        let s = summarise(
            &plan,
            &[serve, lite],
            Path::new("/nonexistent/overhead.svg"),
            Err("no".into()),
        );
        let ratio = s.targets.iter().find(|(t, _)| t.contains("40x")).unwrap();
        assert!(!ratio.1 && ratio.0.contains("litellm is missing"), "{ratio:?}");
        assert!(s.rows.iter().any(|r| r.cells[1].starts_with("not measured: litellm is missing")));
    }

    #[test]
    fn the_floor_is_a_note_and_beside_serves_p50_not_a_row() {
        let plan = OverheadPlan::standard(true);
        let at = |name, p99| Measured {
            name,
            missing: None,
            steps: vec![step(COMMON_RATE, p99, 0)],
            rss: RssPeak::default(),
        };
        // step() puts P50 at half the P99: emulator 0.4 ms, relay 0.6, serve 1.0.
        let measured =
            [at("bedrock-emulator", 0.8), at(FLOOR, 1.2), at("strata serve (bedrock)", 2.0)];
        let s =
            summarise(&plan, &measured, Path::new("/nonexistent/overhead.svg"), Err("no".into()));
        assert!(!s.rows.iter().any(|r| r.cells[0] == FLOOR));
        let p50 = s.targets.iter().find(|(t, _)| t.contains("at P50")).unwrap();
        assert!(
            p50.0.contains("measured +0.60 ms; a relay that only copies bytes adds +0.20 ms")
                && !p50.1,
            "{p50:?}"
        );
        assert!(
            s.notes
                .iter()
                .any(|n| n.starts_with("The floor:") && n.contains("P50 0.60 ms, +0.20 ms")),
            "{:?}",
            s.notes
        );
    }
}
