//! A model stand-in: answers at once with a fixed reply, streamed word by word, honouring
//! `num_predict` (counted in words) and stop strings. Every hop can run on it, so tests need no
//! model and benchmarks measure only our own software.

pub mod embed;

use std::time::Instant;

use contract::{ChunkStream, ErrorKind, GenerateResponse, HopTiming, StreamChunk, Timings, Usage};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstantConfig {
    /// The reply to every request.
    pub reply: String,
    /// Model names this backend answers to.
    pub models: Vec<String>,
    /// Pause before each word, to imitate a model's pace (0: no pause).
    pub word_delay_ms: u64,
}

impl Default for InstantConfig {
    fn default() -> Self {
        InstantConfig {
            reply: "Hello from strata. This is an instant reply.".into(),
            models: vec!["instant".into()],
            word_delay_ms: 0,
        }
    }
}

pub struct InstantGenerator {
    config: InstantConfig,
}

impl InstantGenerator {
    pub fn new(config: InstantConfig) -> Self {
        InstantGenerator { config }
    }

    pub fn config(&self) -> &InstantConfig {
        &self.config
    }

    /// Whether this generator answers to `model` (`name` and `name:latest` are the same).
    pub fn knows(&self, model: &str) -> bool {
        self.config.models.iter().any(|m| {
            m == model
                || m.strip_suffix(":latest") == Some(model)
                || model.strip_suffix(":latest") == Some(m)
        })
    }

    fn check(&self, model: &str) -> Result<(), contract::Error> {
        if self.knows(model) {
            Ok(())
        } else {
            Err(contract::Error::new(
                ErrorKind::ModelNotFound,
                format!("model \"{model}\" not found, try pulling it first"),
            ))
        }
    }

    /// The reply cut by `num_predict` (counted in words) and the first stop string; with a
    /// JSON format, an example value of the schema (or `{}`) instead.
    fn answer(
        &self,
        req: &contract::GenerateRequest,
    ) -> Result<(Vec<Piece>, contract::DoneReason), contract::Error> {
        if let Some(schema) = &req.response_schema_json {
            let schema: serde_json::Value = serde_json::from_str(schema)
                .map_err(|e| invalid(format!("the response schema is not valid JSON: {e}")))?;
            return Ok((
                vec![Piece::Text(bounded_example(&schema).to_string())],
                contract::DoneReason::Stop,
            ));
        }
        if req.format() == contract::ResponseFormat::Json {
            return Ok((vec![Piece::Text("{}".into())], contract::DoneReason::Stop));
        }
        let (words, reason) = self.words(req);
        Ok((words.into_iter().map(Piece::Text).collect(), reason))
    }

    fn words(&self, req: &contract::GenerateRequest) -> (Vec<String>, contract::DoneReason) {
        let options = req.options.clone().unwrap_or_default();
        let mut words: Vec<String> =
            self.config.reply.split_inclusive(' ').map(str::to_owned).collect();
        let mut reason = contract::DoneReason::Stop;
        if let Some(n) = options.num_predict.filter(|n| *n >= 0) {
            if words.len() > n as usize {
                words.truncate(n as usize);
                reason = contract::DoneReason::Length;
            }
        }
        let text: String = words.concat();
        if let Some(cut) = options
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            let mut kept = Vec::new();
            let mut len = 0;
            for w in words {
                if len + w.len() <= cut {
                    len += w.len();
                    kept.push(w);
                } else {
                    kept.push(w[..cut - len].to_owned());
                    break;
                }
            }
            return (
                kept.into_iter().filter(|w| !w.is_empty()).collect(),
                contract::DoneReason::StopSequence,
            );
        }
        (words, reason)
    }

    /// The reply as a contract stream: one delta per word, then `done` with word counts.
    pub fn generate(&self, req: contract::GenerateRequest) -> Result<ChunkStream, contract::Error> {
        let started = Instant::now();
        self.check(&req.model)?;
        let (words, reason) = match tool_call(&req)? {
            Some(call) => (call_pieces(call), contract::DoneReason::ToolUse),
            None => self.answer(&req)?,
        };
        let prompt_tokens: usize =
            req.messages.iter().map(|m| m.content.split_whitespace().count()).sum::<usize>()
                + req.raw_prompt.as_deref().map_or(0, |p| p.split_whitespace().count());
        let completion_tokens = words.len() as u32;
        let model = req.model.clone();
        let mut chunks: Vec<StreamChunk> = words
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => StreamChunk::delta(t),
                Piece::Call(d) => StreamChunk::tool_use_delta(d),
            })
            .collect();
        let total = started.elapsed().as_nanos() as u64;
        chunks.push(StreamChunk::done(GenerateResponse {
            model,
            message: Some(contract::Message::assistant("")),
            done_reason: reason as i32,
            usage: Some(Usage { prompt_tokens: prompt_tokens as u32, completion_tokens }),
            timings: Some(Timings {
                total_ns: total,
                hops: vec![HopTiming { hop: "instant".into(), dur_ns: total }],
                ..Default::default()
            }),
        }));
        if self.config.word_delay_ms == 0 {
            return Ok(Box::pin(futures::stream::iter(chunks)));
        }
        let delay = std::time::Duration::from_millis(self.config.word_delay_ms);
        Ok(Box::pin(futures::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(delay).await;
            c
        })))
    }
}

/// One streamed piece of an instant answer.
enum Piece {
    Text(String),
    Call(contract::ToolUseDelta),
}

/// A call streams as its start (id and name) then its arguments, as Bedrock streams it.
fn call_pieces(call: contract::ToolUse) -> Vec<Piece> {
    vec![
        Piece::Call(contract::ToolUseDelta {
            index: 0,
            id: call.id,
            name: call.name,
            input_json: String::new(),
        }),
        Piece::Call(contract::ToolUseDelta {
            index: 0,
            input_json: call.input_json,
            ..Default::default()
        }),
    ]
}

fn invalid(m: String) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, m)
}

/// With tools offered (and not refused by `tool_choice: none`), the instant answer is a call:
/// to the named tool, or the first one, with the simplest arguments its schema accepts.
fn tool_call(
    req: &contract::GenerateRequest,
) -> Result<Option<contract::ToolUse>, contract::Error> {
    use contract::tool_choice::Mode;
    let choice = req.tool_choice.clone().unwrap_or_default();
    if req.tools.is_empty() || choice.mode() == Mode::None {
        return Ok(None);
    }
    let tool = match choice.mode() {
        Mode::Tool => req.tools.iter().find(|t| t.name == choice.name).ok_or_else(|| {
            invalid(format!("tool_choice names \"{}\", which is not among the tools", choice.name))
        })?,
        _ => &req.tools[0],
    };
    let schema: serde_json::Value = if tool.input_schema_json.is_empty() {
        serde_json::json!({"type": "object"})
    } else {
        serde_json::from_str(&tool.input_schema_json).map_err(|e| {
            invalid(format!("the schema of tool \"{}\" is not valid JSON: {e}", tool.name))
        })?
    };
    // Arguments are always an object, whatever a loose schema (`{}`) would allow.
    let args = Some(bounded_example(&schema))
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    Ok(Some(contract::ToolUse {
        id: "call_instant_0".into(),
        name: tool.name.clone(),
        input_json: args.to_string(),
    }))
}

thread_local!(static BUDGET: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });

/// [`example`] with at most 4096 array elements in all, however the schema nests its counts.
fn bounded_example(schema: &serde_json::Value) -> serde_json::Value {
    BUDGET.with(|b| b.set(4096));
    example(schema)
}

/// The simplest value a schema accepts (required properties filled in, first enum value...).
fn example(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = ["anyOf", "oneOf"]
        .iter()
        .find_map(|k| schema.get(*k).and_then(Value::as_array).and_then(|a| a.first()))
    {
        return example(first);
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.first().and_then(Value::as_str).unwrap_or("object"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    if required.contains(&k.as_str()) {
                        out.insert(k.clone(), example(v));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            // Bounded: the example is built in memory and the count is the caller's, so nested
            // arrays share one budget of elements in all.
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let take = BUDGET.with(|b| {
                let take = n.min(b.get());
                b.set(b.get() - take);
                take
            });
            let item = schema.get("items").unwrap_or(&Value::Null);
            Value::Array((0..take).map(|_| example(item)).collect())
        }
        "string" => json!(""),
        "integer" | "number" => json!(0),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{GenerateRequest, Options};

    fn req(num_predict: Option<i32>, stop: &[&str]) -> GenerateRequest {
        GenerateRequest {
            model: "instant".into(),
            options: Some(Options {
                num_predict,
                stop: stop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn answer_table() {
        let b = InstantGenerator::new(InstantConfig {
            reply: "one two three four".into(),
            ..Default::default()
        });
        let cases: &[(Option<i32>, &[&str], &str, contract::DoneReason)] = &[
            (None, &[], "one two three four", contract::DoneReason::Stop),
            (Some(2), &[], "one two ", contract::DoneReason::Length),
            (Some(-1), &[], "one two three four", contract::DoneReason::Stop),
            (None, &["thr"], "one two ", contract::DoneReason::StopSequence),
            (None, &["o t"], "one tw", contract::DoneReason::StopSequence),
        ];
        for (n, stop, want, reason) in cases {
            let (words, r) = b.words(&req(*n, stop));
            assert_eq!((words.concat().as_str(), r), (*want, *reason), "{n:?} {stop:?}");
        }
    }
}
