//! Pure conversions between OpenAI shapes and the contract, in the spirit of Ollama's
//! `openai/openai.go`: requests in, completions, chunks, usage and errors out.

use contract::{ErrorKind, GenerateResponse as Final, ResponseFormat as Format};

use super::types::*;
use crate::backend::ModelDescriptor;
use crate::unsupported;

pub const FINGERPRINT: &str = "fp_strata";

pub(crate) fn invalid(msg: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, msg)
}

fn stops(stop: Option<Stop>) -> Vec<String> {
    match stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    }
}

fn seed(seed: Option<i64>) -> Result<Option<u32>, contract::Error> {
    seed.map(|s| u32::try_from(s.rem_euclid(1 << 32)).map_err(|_| invalid("seed out of range")))
        .transpose()
}

fn max_tokens(n: Option<i64>) -> Result<Option<i32>, contract::Error> {
    match n {
        None => Ok(None),
        Some(n) if n < 1 => Err(invalid("max_tokens must be at least 1")),
        Some(n) => Ok(Some(i32::try_from(n).unwrap_or(i32::MAX))),
    }
}

fn only_one_choice(n: Option<u32>) -> Result<(), contract::Error> {
    match n {
        None | Some(1) => Ok(()),
        Some(_) => Err(invalid("n must be 1: only one choice per request is supported")),
    }
}

/// OpenAI's repetition penalties have no exact llama.cpp twin here; they are accepted and,
/// when positive, mapped onto a mild `repeat_penalty` as Ollama's compatibility layer does.
fn repeat_penalty(freq: Option<f32>, pres: Option<f32>) -> Option<f32> {
    let p = freq.unwrap_or(0.0).max(pres.unwrap_or(0.0));
    (p > 0.0).then(|| 1.0 + p.min(2.0) / 2.0)
}

fn content_text(c: Option<Content>, i: usize) -> Result<String, contract::Error> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => out.push_str(&t),
                    (kind, _) => {
                        return Err(invalid(format!(
                            "messages[{i}]: content part type \"{kind}\" is not supported"
                        )))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn messages_to_contract(list: Vec<ChatMessage>) -> Result<Vec<contract::Message>, contract::Error> {
    // Tool results name only the call they answer; the call says which tool it was.
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut messages = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        // "developer" is the newer name for "system".
        let role = match m.role.as_str() {
            "developer" => contract::Role::System,
            other => contract::Role::from_name(other)
                .ok_or_else(|| invalid(format!("messages[{i}].role \"{other}\" is not supported (system, developer, user, assistant, tool)")))?,
        };
        let mut message = contract::Message::new(role, content_text(m.content, i)?);
        for (j, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
            if role != contract::Role::Assistant {
                return Err(invalid(format!(
                    "messages[{i}]: only assistant messages carry tool_calls"
                )));
            }
            let args: serde_json::Value = if c.function.arguments.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&c.function.arguments).map_err(|e| {
                    invalid(format!(
                        "messages[{i}].tool_calls[{j}].function.arguments is not valid JSON: {e}"
                    ))
                })?
            };
            names.insert(c.id.clone(), c.function.name.clone());
            message.blocks.push(contract::ContentBlock::tool_use(contract::ToolUse {
                id: c.id,
                name: c.function.name,
                input_json: args.to_string(),
            }));
        }
        if role == contract::Role::Tool {
            let Some(id) = m.tool_call_id.filter(|id| !id.is_empty()) else {
                return Err(invalid(format!("messages[{i}]: a tool message needs tool_call_id")));
            };
            let Some(name) = names.get(&id).cloned() else {
                return Err(invalid(format!(
                    "messages[{i}].tool_call_id \"{id}\" answers no earlier assistant tool call"
                )));
            };
            message.blocks.push(contract::ContentBlock::tool_result(contract::ToolResult {
                tool_use_id: id,
                content: message.content.clone(),
                is_error: false,
                name,
            }));
        }
        messages.push(message);
    }
    Ok(messages)
}

fn tools_to_contract(tools: Option<Vec<Tool>>) -> Result<Vec<contract::ToolSpec>, contract::Error> {
    let mut out = Vec::new();
    for (i, t) in tools.unwrap_or_default().into_iter().enumerate() {
        if t.kind != "function" {
            return Err(invalid(format!(
                "tools[{i}].type \"{}\" is not supported: only \"function\"",
                t.kind
            )));
        }
        let name = t.function.name;
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(format!("tools[{i}].function.name \"{name}\" must be 1-64 letters, digits, underscores or dashes")));
        }
        if out.iter().any(|s: &contract::ToolSpec| s.name == name) {
            return Err(invalid(format!("tools[{i}].function.name \"{name}\" is given twice")));
        }
        let schema = match t.function.parameters {
            None | Some(serde_json::Value::Null) => {
                r#"{"type":"object","properties":{}}"#.to_owned()
            }
            Some(p @ serde_json::Value::Object(_)) => p.to_string(),
            Some(_) => {
                return Err(invalid(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                )))
            }
        };
        out.push(contract::ToolSpec {
            name,
            description: t.function.description.unwrap_or_default(),
            input_schema_json: schema,
        });
    }
    Ok(out)
}

fn tool_choice_to_contract(
    choice: Option<ToolChoice>,
    tools: &[contract::ToolSpec],
) -> Result<Option<contract::ToolChoice>, contract::Error> {
    use contract::tool_choice::Mode;
    let (mode, name) = match choice {
        None => return Ok(None),
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "auto" => (Mode::Auto, String::new()),
            "none" => (Mode::None, String::new()),
            "required" => (Mode::Any, String::new()),
            other => {
                return Err(invalid(format!(
                    "tool_choice \"{other}\" is not one of auto, none, required"
                )))
            }
        },
        Some(ToolChoice::Named(n)) => {
            if n.kind != "function" {
                return Err(invalid(format!(
                    "tool_choice.type \"{}\" is not supported: only \"function\"",
                    n.kind
                )));
            }
            (Mode::Tool, n.function.name)
        }
    };
    if mode != Mode::None && mode != Mode::Auto && tools.is_empty() {
        return Err(invalid("tool_choice requires tools"));
    }
    if mode == Mode::Tool && !tools.iter().any(|t| t.name == name) {
        return Err(invalid(format!(
            "tool_choice names the function \"{name}\", which is not among the tools"
        )));
    }
    Ok(Some(contract::ToolChoice { mode: mode as i32, name }))
}

/// OpenAI's `tool_calls`: arguments as a JSON string.
pub fn tool_calls(done: &Final) -> Option<Vec<ToolCall>> {
    let calls: Vec<ToolCall> = done
        .message
        .iter()
        .flat_map(|m| m.tool_uses())
        .map(|c| ToolCall {
            id: c.id.clone(),
            kind: function_type(),
            function: FunctionCall { name: c.name.clone(), arguments: c.input_json.clone() },
        })
        .collect();
    (!calls.is_empty()).then_some(calls)
}

/// A streamed piece of a tool call, as the SDKs assemble them.
pub fn tool_call_delta(d: contract::ToolUseDelta) -> Delta {
    let first = !d.id.is_empty() || !d.name.is_empty();
    Delta {
        role: None,
        content: None,
        tool_calls: Some(vec![ToolCallDelta {
            index: d.index,
            id: (!d.id.is_empty()).then_some(d.id),
            kind: first.then_some("function"),
            function: FunctionDelta {
                name: (!d.name.is_empty()).then_some(d.name),
                arguments: d.input_json,
            },
        }]),
    }
}

pub fn chat_to_contract(
    r: ChatCompletionRequest,
) -> Result<contract::GenerateRequest, contract::Error> {
    if r.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter"));
    }
    if r.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    only_one_choice(r.n)?;
    unsupported::check(&r.extra, unsupported::OPENAI_CHAT_IGNORED, "")?;
    let messages = messages_to_contract(r.messages)?;
    let (format, response_schema_json) = match r.response_format {
        None => (Format::Text, None),
        Some(f) => match (f.kind.as_str(), f.json_schema) {
            ("text", _) => (Format::Text, None),
            ("json_object", _) => (Format::Json, None),
            (
                "json_schema",
                Some(JsonSchemaFormat {
                    schema: Some(schema @ serde_json::Value::Object(_)), ..
                }),
            ) => (Format::Json, Some(schema.to_string())),
            ("json_schema", _) => return Err(invalid(
                "response_format.json_schema.schema is required and must be a JSON schema object",
            )),
            (other, _) => {
                return Err(invalid(format!("response_format type \"{other}\" is not supported")))
            }
        },
    };
    let tools = tools_to_contract(r.tools)?;
    let tool_choice = tool_choice_to_contract(r.tool_choice, &tools)?;
    Ok(contract::GenerateRequest {
        model: r.model,
        messages,
        stream: r.stream,
        format: format as i32,
        response_schema_json,
        tools,
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        options: Some(contract::Options {
            temperature: r.temperature,
            top_p: r.top_p,
            seed: seed(r.seed)?,
            num_predict: max_tokens(r.max_completion_tokens.or(r.max_tokens))?,
            stop: stops(r.stop),
            repeat_penalty: repeat_penalty(r.frequency_penalty, r.presence_penalty),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn completion_to_contract(
    r: CompletionRequest,
) -> Result<contract::GenerateRequest, contract::Error> {
    if r.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter"));
    }
    only_one_choice(r.n)?;
    unsupported::check(&r.extra, unsupported::OPENAI_COMPLETIONS_IGNORED, "")?;
    let prompt = match r.prompt {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        Some(serde_json::Value::Array(_)) => {
            return Err(invalid("prompt must be a string or a list of exactly one string"))
        }
        Some(_) => return Err(invalid("prompt must be a string")),
        None => return Err(invalid("prompt is required")),
    };
    if prompt.is_empty() {
        return Err(invalid("prompt must not be empty"));
    }
    Ok(contract::GenerateRequest {
        model: r.model,
        raw_prompt: Some(prompt),
        stream: r.stream,
        options: Some(contract::Options {
            temperature: r.temperature,
            top_p: r.top_p,
            seed: seed(r.seed)?,
            // The legacy completions API defaults to 16 tokens.
            num_predict: Some(max_tokens(r.max_tokens)?.unwrap_or(16)),
            stop: stops(r.stop),
            repeat_penalty: repeat_penalty(r.frequency_penalty, r.presence_penalty),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn usage(done: &Final) -> Usage {
    let u = done.usage.unwrap_or_default();
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}

pub fn finish_reason(done: &Final) -> String {
    done.done_reason().as_openai().to_owned()
}

pub fn chat_completion(
    id: &str,
    created: i64,
    model: &str,
    text: String,
    done: &Final,
) -> ChatCompletion {
    ChatCompletion {
        id: id.into(),
        object: "chat.completion",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![Choice {
            index: 0,
            message: match tool_calls(done) {
                Some(calls) => AssistantMessage {
                    role: "assistant",
                    content: (!text.is_empty()).then_some(text),
                    tool_calls: Some(calls),
                },
                None => {
                    AssistantMessage { role: "assistant", content: Some(text), tool_calls: None }
                }
            },
            finish_reason: Some(finish_reason(done)),
            logprobs: None,
        }],
        usage: usage(done),
    }
}

pub fn chat_chunk(
    id: &str,
    created: i64,
    model: &str,
    delta: Delta,
    finish_reason: Option<String>,
) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.into(),
        object: "chat.completion.chunk",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![ChunkChoice { index: 0, delta, finish_reason, logprobs: None }],
        usage: None,
    }
}

/// The extra chunk `stream_options.include_usage` asks for: no choices, only usage.
pub fn usage_chunk(id: &str, created: i64, model: &str, done: &Final) -> ChatCompletionChunk {
    ChatCompletionChunk {
        choices: Vec::new(),
        usage: Some(usage(done)),
        ..chat_chunk(id, created, model, Delta::default(), None)
    }
}

pub fn completion(
    id: &str,
    created: i64,
    model: &str,
    text: String,
    finish: Option<String>,
    usage: Option<Usage>,
) -> Completion {
    Completion {
        id: id.into(),
        object: "text_completion",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![CompletionChoice { text, index: 0, finish_reason: finish, logprobs: None }],
        usage,
    }
}

pub fn model(d: &ModelDescriptor) -> Model {
    Model {
        id: d.name.clone(),
        object: "model",
        created: d.modified_at.timestamp(),
        owned_by: "library".into(),
    }
}

/// OpenAI's error body for a contract error.
pub fn error(e: &contract::Error) -> ErrorResponse {
    let (kind, code) = match e.kind() {
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::ContextLength => ("invalid_request_error", Some("context_length_exceeded")),
        ErrorKind::ModelNotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::Unauthorized => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        ErrorKind::Timeout => ("server_error", Some("timeout")),
        ErrorKind::RateLimited => ("requests", Some("rate_limit_exceeded")),
        ErrorKind::Internal | ErrorKind::Upstream | ErrorKind::Unspecified => {
            ("server_error", None)
        }
    };
    ErrorResponse { error: ErrorBody { message: e.message.clone(), kind, param: None, code } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: serde_json::Value) -> Result<contract::GenerateRequest, contract::Error> {
        chat_to_contract(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn chat_requests() {
        let r = chat(json!({"model": "m", "messages": [{"role": "developer", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                           "max_tokens": 5, "stop": "x", "seed": 3, "temperature": 0.5, "response_format": {"type": "json_object"}}))
        .unwrap();
        assert_eq!(r.messages, vec![contract::Message::system("s"), contract::Message::user("ab")]);
        let o = r.options.clone().unwrap();
        assert_eq!(
            (o.num_predict, o.seed, o.temperature, o.stop.clone()),
            (Some(5), Some(3), Some(0.5), vec!["x".to_string()])
        );
        assert_eq!(r.format(), Format::Json);
        assert!(!r.stream, "OpenAI does not stream by default");
        let r = chat(json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 9, "max_completion_tokens": 4, "stop": ["p", "q"]})).unwrap();
        assert_eq!(r.options.as_ref().unwrap().num_predict, Some(4));
        assert_eq!(r.options.unwrap().stop.len(), 2);
    }

    #[test]
    fn chat_request_errors() {
        let cases = [
            json!({"messages": [{"role": "user", "content": "a"}]}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": [{"role": "tool", "content": "a"}]}),
            json!({"model": "m", "messages": [{"role": "tool", "content": "a", "tool_call_id": "nope"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": "required"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "tool_choice": {"type": "function", "function": {"name": "g"}}, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "response_format": {"type": "json_schema"}}),
            json!({"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{x"}}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "n": 2}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 0}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "response_format": {"type": "yaml"}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "logit_bias": {"1": 5}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "logprobs": true}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "functions": [{"name": "f"}]}),
        ];
        for c in cases {
            assert_eq!(chat(c.clone()).unwrap_err().kind(), ErrorKind::InvalidRequest, "{c}");
        }
    }

    #[test]
    fn tool_rounds_and_schemas_map() {
        let r = chat(json!({"model": "m",
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
            "messages": [{"role": "user", "content": "u"},
                         {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "42"}]}))
        .unwrap();
        assert_eq!(
            r.tool_choice,
            Some(contract::ToolChoice {
                mode: contract::tool_choice::Mode::Tool as i32,
                name: "f".into()
            })
        );
        assert_eq!(
            (r.parallel_tool_calls, r.response_schema_json.as_deref()),
            (Some(false), Some(r#"{"type":"object"}"#))
        );
        let result: Vec<_> = r.messages[2].tool_results().collect();
        assert_eq!(
            (result[0].tool_use_id.as_str(), result[0].name.as_str(), result[0].content.as_str()),
            ("c1", "f", "42")
        );
        let call: Vec<_> = r.messages[1].tool_uses().collect();
        assert_eq!(call[0].input_json, r#"{"x":1}"#);
    }

    #[test]
    fn tool_call_answers_and_deltas() {
        let mut message = contract::Message::assistant("");
        message.blocks.push(contract::ContentBlock::tool_use(contract::ToolUse {
            id: "c1".into(),
            name: "f".into(),
            input_json: r#"{"x":1}"#.into(),
        }));
        let done = Final {
            message: Some(message),
            done_reason: contract::DoneReason::ToolUse as i32,
            ..Default::default()
        };
        let v = serde_json::to_value(chat_completion("id", 1, "m", String::new(), &done)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]})
        );
        let first = serde_json::to_value(tool_call_delta(contract::ToolUseDelta {
            index: 0,
            id: "c1".into(),
            name: "f".into(),
            input_json: String::new(),
        }))
        .unwrap();
        assert_eq!(
            first,
            json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
        );
        let more = serde_json::to_value(tool_call_delta(contract::ToolUseDelta {
            index: 0,
            id: String::new(),
            name: String::new(),
            input_json: "{\"x\"".into(),
        }))
        .unwrap();
        assert_eq!(
            more,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\""}}]})
        );
    }

    #[test]
    fn completions_requests() {
        let r = completion_to_contract(
            serde_json::from_value(json!({"model": "m", "prompt": "once"})).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (r.raw_prompt.as_deref(), r.options.unwrap().num_predict),
            (Some("once"), Some(16))
        );
        let r = completion_to_contract(
            serde_json::from_value(json!({"model": "m", "prompt": ["x"], "max_tokens": 3}))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.options.unwrap().num_predict, Some(3));
        assert!(completion_to_contract(
            serde_json::from_value(json!({"model": "m", "prompt": ["a", "b"]})).unwrap()
        )
        .is_err());
        assert!(
            completion_to_contract(serde_json::from_value(json!({"model": "m"})).unwrap()).is_err()
        );
    }

    #[test]
    fn responses_and_errors() {
        let done = Final {
            done_reason: contract::DoneReason::Length as i32,
            usage: Some(contract::Usage { prompt_tokens: 2, completion_tokens: 3 }),
            ..Default::default()
        };
        let v = serde_json::to_value(chat_completion("id", 1, "m", "hi".into(), &done)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
        );
        let u = serde_json::to_value(usage_chunk("id", 1, "m", &done)).unwrap();
        assert_eq!(u["choices"], json!([]));
        let e =
            serde_json::to_value(error(&contract::Error::new(ErrorKind::ModelNotFound, "nope")))
                .unwrap();
        assert_eq!(
            e,
            json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": "model_not_found"}})
        );
    }
}
