//! Structured output: generation speed of a JSON-schema answer and of a tool call (both
//! grammar-constrained) against plain text on `strata serve`, the same conversation and
//! length. The grammar is applied to every sampled token, so this is its whole cost.

use serde_json::{json, Value};

use crate::report::{f1, f2, Row, Section};
use crate::suites::{median, serve, BenchOptions};

/// The bound: a schema or tool call keeps at least this share of plain tok/s.
const TARGET_RATIO: f64 = 0.9;
const TOKENS: u32 = 96;

fn body(model: &str, kind: &str, seed: u32) -> Value {
    let ask = |text: &str| json!([{"role": "user", "content": text}]);
    let options = json!({"num_predict": TOKENS, "seed": seed, "temperature": 0.8});
    match kind {
        "schema" => {
            json!({"model": model, "stream": false, "options": options, "messages": ask("Describe a city in detail."),
                           "format": {"type": "object", "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
                                      "required": ["name", "description"]}})
        }
        "tool call" => json!({"model": model, "stream": false, "options": options,
                              "messages": ask("Use the write_note tool to write a long note about a city."),
                              "tools": [{"type": "function", "function": {"name": "write_note", "description": "Save a note",
                                         "parameters": {"type": "object", "properties": {"title": {"type": "string"}, "text": {"type": "string"}},
                                                        "required": ["title", "text"]}}}]}),
        _ => {
            json!({"model": model, "stream": false, "options": options, "messages": ask("Describe a city in detail.")})
        }
    }
}

pub async fn structured(opts: &BenchOptions) -> anyhow::Result<Section> {
    let server = serve(opts, None).await?;
    let client = reqwest::Client::new();
    let reps = if opts.quick { 3 } else { 9 };
    let kinds = ["plain text", "schema", "tool call"];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut counts: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    // The kinds take turns, one repetition each, so drift hits all alike.
    for i in 0..reps {
        for (k, kind) in kinds.iter().enumerate() {
            let r = client
                .post(format!("{}/api/chat", server.url))
                .json(&body(&opts.model, kind, i))
                .send()
                .await?;
            let status = r.status();
            let v: Value = r.json().await?;
            anyhow::ensure!(status.is_success(), "{kind}: {status} {v}");
            let (n, ns) = (
                v["eval_count"].as_f64().unwrap_or(0.0),
                v["eval_duration"].as_f64().unwrap_or(0.0),
            );
            rates[k].push(if ns > 0.0 { n / (ns / 1e9) } else { 0.0 });
            counts[k].push(n);
        }
    }
    drop(server);
    let medians: Vec<f64> = rates.iter().cloned().map(median).collect();
    let plain = medians[0].max(f64::MIN_POSITIVE);
    let rows = kinds
        .iter()
        .zip(&medians)
        .zip(&counts)
        .map(|((kind, r), c)| Row {
            cells: vec![(*kind).into(), f1(*r), f2(r / plain), f1(median(c.clone()))],
        })
        .collect();
    let (schema_ratio, tool_ratio) = (medians[1] / plain, medians[2] / plain);
    Ok(Section {
        title: "Structured output: schema and tool-call generation vs plain text".into(),
        notes: vec![format!(
            "`strata serve` on the default model, Ollama `/api/chat`, temperature 0.8, up to {TOKENS} tokens: plain text, \
             `format` as a JSON schema, and `tools` (the generic, grammar-constrained tool format of a model whose template \
             has none). Generation tok/s from each answer's `eval_count` / `eval_duration`; kinds alternate; medians of {reps}."
        )],
        header: vec!["answer".into(), "tok/s".into(), "vs plain".into(), "tokens".into()],
        rows,
        targets: vec![
            (format!("schema answers at >= {TARGET_RATIO}x plain tok/s (measured {schema_ratio:.2}x)"), schema_ratio >= TARGET_RATIO),
            (format!("tool calls at >= {TARGET_RATIO}x plain tok/s (measured {tool_ratio:.2}x)"), tool_ratio >= TARGET_RATIO),
        ],
        data: json!({"tok_s": {"plain": medians[0], "schema": medians[1], "tool_call": medians[2]},
                     "ratio": {"schema": schema_ratio, "tool_call": tool_ratio}, "reps": reps}),
    })
}
