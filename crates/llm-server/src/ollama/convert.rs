//! Pure conversions: Ollama requests -> contract requests, contract results -> Ollama
//! responses. No I/O, table-tested.

use chrono::{DateTime, SecondsFormat, Utc};
use contract::{ErrorKind, GenerateResponse as Final, ResponseFormat};

use super::types::*;
use crate::backend::{ModelDescriptor, ModelDetails as BackendDetails, RunningModel};
use crate::unsupported;

pub(crate) fn invalid(msg: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, msg)
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub fn options_to_contract(
    o: Option<Options>,
) -> Result<Option<contract::Options>, contract::Error> {
    let Some(o) = o else { return Ok(None) };
    unsupported::check(&o.extra, unsupported::OLLAMA_OPTIONS_IGNORED, "options.")?;
    let seed = match o.seed {
        None => None,
        // Ollama treats a negative seed as "random".
        Some(s) if s < 0 => None,
        Some(s) => {
            Some(u32::try_from(s).map_err(|_| invalid("option \"seed\" must fit in 32 bits"))?)
        }
    };
    let num_ctx = match o.num_ctx {
        None => None,
        Some(n) if n <= 0 => return Err(invalid("option \"num_ctx\" must be positive")),
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
    };
    Ok(Some(contract::Options {
        temperature: o.temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
        repeat_last_n: o.repeat_last_n,
        seed,
        num_predict: o.num_predict,
        num_ctx,
        stop: match o.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
    }))
}

/// `format`: `"json"` (any JSON object) or a JSON schema the answer must match; `""`/null is
/// text. Returns the format and the schema (as JSON text).
pub fn format_to_contract(
    format: &Option<serde_json::Value>,
) -> Result<(ResponseFormat, Option<String>), contract::Error> {
    match format {
        None | Some(serde_json::Value::Null) => Ok((ResponseFormat::Text, None)),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok((ResponseFormat::Text, None)),
        Some(serde_json::Value::String(s)) if s == "json" => Ok((ResponseFormat::Json, None)),
        Some(schema @ serde_json::Value::Object(_)) => {
            Ok((ResponseFormat::Json, Some(schema.to_string())))
        }
        Some(other) => {
            Err(invalid(format!("invalid format: {other}; expected \"json\" or a JSON schema")))
        }
    }
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
        if t.function.name.trim().is_empty() {
            return Err(invalid(format!("tools[{i}].function.name is required")));
        }
        let schema = match t.function.parameters {
            None | Some(serde_json::Value::Null) => {
                r#"{"type":"object","properties":{}}"#.to_owned()
            }
            Some(p @ serde_json::Value::Object(_)) => p.to_string(),
            Some(other) => {
                return Err(invalid(format!(
                    "tools[{i}].function.parameters must be a JSON schema object, not {other}"
                )))
            }
        };
        out.push(contract::ToolSpec {
            name: t.function.name,
            description: t.function.description,
            input_schema_json: schema,
        });
    }
    Ok(out)
}

/// A call in the history: its arguments as JSON object text.
fn call_to_contract(c: ToolCall, i: usize, j: usize) -> Result<contract::ToolUse, contract::Error> {
    let args = match c.function.arguments {
        serde_json::Value::Null => serde_json::json!({}),
        serde_json::Value::String(s) => serde_json::from_str(&s).map_err(|e| {
            invalid(format!("messages[{i}].tool_calls[{j}].function.arguments is not JSON: {e}"))
        })?,
        v => v,
    };
    if !args.is_object() {
        return Err(invalid(format!(
            "messages[{i}].tool_calls[{j}].function.arguments must be an object"
        )));
    }
    Ok(contract::ToolUse {
        id: c.id.unwrap_or_default(),
        name: c.function.name,
        input_json: args.to_string(),
    })
}

fn role(name: &str, i: usize) -> Result<contract::Role, contract::Error> {
    contract::Role::from_name(name).ok_or_else(|| {
        invalid(format!(
            "invalid role \"{name}\" in message {i}: must be system, user, assistant or tool"
        ))
    })
}

pub(crate) fn require_model(model: &str) -> Result<(), contract::Error> {
    if model.trim().is_empty() {
        Err(invalid("model is required"))
    } else {
        Ok(())
    }
}

fn refuse_images(images: &Option<Vec<String>>) -> Result<(), contract::Error> {
    match images {
        Some(i) if !i.is_empty() => Err(invalid("this model does not support images")),
        _ => Ok(()),
    }
}

/// Ollama's `keep_alive`: a number of seconds or a duration string ("5m", "0s", "-1").
/// strata keeps models loaded until told otherwise; only "unload now" (zero) changes anything.
pub fn keep_alive_is_zero(v: &Option<serde_json::Value>) -> Result<bool, contract::Error> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64() == Some(0.0)),
        Some(serde_json::Value::String(s)) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let value: f64 = digits
                .parse()
                .map_err(|_| invalid(format!("invalid keep_alive duration \"{s}\"")))?;
            Ok(value == 0.0)
        }
        Some(other) => Err(invalid(format!("invalid keep_alive {other}"))),
    }
}

/// `None` means "load the model and answer done" (an empty prompt).
pub fn generate_to_contract(
    r: GenerateRequest,
) -> Result<Option<contract::GenerateRequest>, contract::Error> {
    require_model(&r.model)?;
    unsupported::check(&r.extra, unsupported::OLLAMA_IGNORED, "")?;
    refuse_images(&r.images)?;
    if r.prompt.is_empty() {
        return Ok(None);
    }
    let (format, response_schema_json) = format_to_contract(&r.format)?;
    let format = format as i32;
    let options = options_to_contract(r.options)?;
    let stream = r.stream.unwrap_or(true);
    let req = if r.raw {
        contract::GenerateRequest {
            model: r.model,
            raw_prompt: Some(r.prompt),
            options,
            stream,
            format,
            response_schema_json,
            ..Default::default()
        }
    } else {
        contract::GenerateRequest {
            model: r.model,
            messages: vec![contract::Message::user(r.prompt)],
            system: r.system.filter(|s| !s.is_empty()),
            options,
            stream,
            format,
            response_schema_json,
            ..Default::default()
        }
    };
    Ok(Some(req))
}

/// `None` means "load the model and answer done" (no messages).
pub fn chat_to_contract(
    r: ChatRequest,
) -> Result<Option<contract::GenerateRequest>, contract::Error> {
    require_model(&r.model)?;
    unsupported::check(&r.extra, unsupported::OLLAMA_IGNORED, "")?;
    if r.messages.is_empty() {
        return Ok(None);
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        refuse_images(&m.images)?;
        let role = role(&m.role, i)?;
        let mut message = contract::Message::new(role, m.content);
        for (j, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
            if role != contract::Role::Assistant {
                return Err(invalid(format!(
                    "messages[{i}]: only assistant messages carry tool_calls"
                )));
            }
            message.blocks.push(contract::ContentBlock::tool_use(call_to_contract(c, i, j)?));
        }
        if role == contract::Role::Tool {
            message.blocks.push(contract::ContentBlock::tool_result(contract::ToolResult {
                tool_use_id: String::new(),
                content: message.content.clone(),
                is_error: false,
                name: m.tool_name.unwrap_or_default(),
            }));
        }
        messages.push(message);
    }
    let (format, response_schema_json) = format_to_contract(&r.format)?;
    Ok(Some(contract::GenerateRequest {
        model: r.model,
        messages,
        options: options_to_contract(r.options)?,
        stream: r.stream.unwrap_or(true),
        format: format as i32,
        response_schema_json,
        tools: tools_to_contract(r.tools)?,
        ..Default::default()
    }))
}

/// The counters of a final object. `total_ns` is measured by the API layer, the rest comes from
/// where the work happened.
pub fn metrics(done: &Final, total_ns: u64) -> Metrics {
    let usage = done.usage.unwrap_or_default();
    let t = done.timings.clone().unwrap_or_default();
    Metrics {
        total_duration: total_ns.max(t.total_ns),
        load_duration: t.load_ns,
        prompt_eval_count: usage.prompt_tokens,
        prompt_eval_duration: t.prompt_eval_ns,
        eval_count: usage.completion_tokens,
        eval_duration: t.eval_ns,
    }
}

pub fn generate_chunk(model: &str, text: String, now: DateTime<Utc>) -> GenerateResponse {
    GenerateResponse {
        model: model.into(),
        created_at: timestamp(now),
        response: text,
        done: false,
        done_reason: None,
        context: None,
        metrics: None,
    }
}

pub fn generate_final(
    model: &str,
    text: String,
    done: &Final,
    total_ns: u64,
    now: DateTime<Utc>,
) -> GenerateResponse {
    GenerateResponse {
        model: model.into(),
        created_at: timestamp(now),
        response: text,
        done: true,
        done_reason: Some(done.done_reason().as_name().into()),
        context: Some(Vec::new()),
        metrics: Some(metrics(done, total_ns)),
    }
}

/// Ollama's `tool_calls`: arguments as an object.
pub fn tool_calls(calls: &[contract::ToolUse]) -> Option<Vec<ToolCall>> {
    (!calls.is_empty()).then(|| {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| ToolCall {
                id: (!c.id.is_empty()).then(|| c.id.clone()),
                function: ToolCallFunction {
                    index: Some(i as u32),
                    name: c.name.clone(),
                    arguments: serde_json::from_str(&c.input_json)
                        .unwrap_or_else(|_| serde_json::json!({})),
                },
            })
            .collect()
    })
}

fn assistant(text: String, calls: Option<Vec<ToolCall>>) -> Message {
    Message {
        role: "assistant".into(),
        content: text,
        images: None,
        tool_calls: calls,
        tool_name: None,
    }
}

/// A line carrying the answer's tool calls (streamed, they come whole, just before the last line).
pub fn chat_tool_calls_chunk(
    model: &str,
    calls: &[contract::ToolUse],
    now: DateTime<Utc>,
) -> ChatResponse {
    ChatResponse {
        message: assistant(String::new(), tool_calls(calls)),
        ..chat_chunk(model, String::new(), now)
    }
}

pub fn chat_chunk(model: &str, text: String, now: DateTime<Utc>) -> ChatResponse {
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: assistant(text, None),
        done: false,
        done_reason: None,
        metrics: None,
    }
}

pub fn chat_final(
    model: &str,
    text: String,
    done: &Final,
    total_ns: u64,
    now: DateTime<Utc>,
) -> ChatResponse {
    let calls: Vec<contract::ToolUse> =
        done.message.iter().flat_map(|m| m.tool_uses().cloned()).collect();
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: assistant(text, tool_calls(&calls)),
        done: true,
        done_reason: Some(done.done_reason().as_name().into()),
        metrics: Some(metrics(done, total_ns)),
    }
}

/// The answer to a load request (empty prompt / no messages).
/// `reason` is "load", or "unload" for `keep_alive: 0`.
pub fn load_generate(model: &str, reason: &str, now: DateTime<Utc>) -> GenerateResponse {
    GenerateResponse {
        model: model.into(),
        created_at: timestamp(now),
        response: String::new(),
        done: true,
        done_reason: Some(reason.into()),
        context: None,
        metrics: None,
    }
}

pub fn load_chat(model: &str, reason: &str, now: DateTime<Utc>) -> ChatResponse {
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: assistant(String::new(), None),
        done: true,
        done_reason: Some(reason.into()),
        metrics: None,
    }
}

pub fn details(d: &ModelDescriptor) -> ModelDetails {
    ModelDetails {
        parent_model: String::new(),
        format: d.format.clone(),
        family: d.family.clone(),
        families: if d.family.is_empty() { vec![] } else { vec![d.family.clone()] },
        parameter_size: d.parameter_size.clone(),
        quantization_level: d.quantization_level.clone(),
    }
}

pub fn list_model(d: &ModelDescriptor) -> ListModel {
    ListModel {
        name: d.name.clone(),
        model: d.name.clone(),
        modified_at: timestamp(d.modified_at),
        size: d.size,
        digest: d.digest.clone(),
        details: details(d),
    }
}

pub fn process_model(r: &RunningModel) -> ProcessModel {
    let d = &r.descriptor;
    ProcessModel {
        name: d.name.clone(),
        model: d.name.clone(),
        size: d.size,
        digest: d.digest.clone(),
        details: details(d),
        expires_at: timestamp(r.expires_at),
        size_vram: 0,
        context_length: r.context_length,
    }
}

pub fn show(d: &BackendDetails) -> ShowResponse {
    let modelfile = format!(
        "# Modelfile generated by \"strata show\"\nFROM {}\nTEMPLATE \"\"\"{}\"\"\"\n{}",
        d.descriptor.name,
        d.template,
        d.parameters.lines().map(|l| format!("PARAMETER {l}\n")).collect::<String>()
    );
    ShowResponse {
        license: String::new(),
        modelfile,
        parameters: d.parameters.clone(),
        template: d.template.clone(),
        details: details(&d.descriptor),
        model_info: d.model_info.clone(),
        capabilities: d.capabilities.iter().map(|c| (*c).to_owned()).collect(),
        modified_at: timestamp(d.descriptor.modified_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gen(v: serde_json::Value) -> Result<Option<contract::GenerateRequest>, contract::Error> {
        generate_to_contract(serde_json::from_value(v).unwrap())
    }

    fn chat(v: serde_json::Value) -> Result<Option<contract::GenerateRequest>, contract::Error> {
        chat_to_contract(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn generate_requests() {
        let r = gen(json!({"model": "m", "prompt": "hi", "system": "be brief"})).unwrap().unwrap();
        assert_eq!(r.messages, vec![contract::Message::user("hi")]);
        assert_eq!(r.system.as_deref(), Some("be brief"));
        assert!(r.stream, "Ollama streams by default");
        let r = gen(json!({"model": "m", "prompt": "hi", "raw": true, "stream": false}))
            .unwrap()
            .unwrap();
        assert_eq!((r.raw_prompt.as_deref(), r.messages.len(), r.stream), (Some("hi"), 0, false));
        let r = gen(json!({"model": "m", "prompt": "hi", "format": "json"})).unwrap().unwrap();
        assert_eq!(r.format(), ResponseFormat::Json);
        let r = gen(json!({"model": "m", "prompt": "hi", "format": {"type": "object"}}))
            .unwrap()
            .unwrap();
        assert_eq!(r.format(), ResponseFormat::Json);
        assert_eq!(r.response_schema_json.as_deref(), Some(r#"{"type":"object"}"#));
        assert!(gen(json!({"model": "m", "prompt": ""})).unwrap().is_none(), "empty prompt loads");
        assert_eq!(gen(json!({"prompt": "hi"})).unwrap_err().message, "model is required");
        assert_eq!(
            gen(json!({"model": "m", "prompt": "x", "format": "xml"})).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            gen(json!({"model": "m", "prompt": "x", "images": ["aGk="]})).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn keep_alive_zero_means_unload() {
        let cases = [
            (json!(0), true),
            (json!("0"), true),
            (json!("0s"), true),
            (json!("5m"), false),
            (json!(-1), false),
            (json!("-1"), false),
            (json!(300), false),
        ];
        for (v, want) in cases {
            assert_eq!(keep_alive_is_zero(&Some(v.clone())).unwrap(), want, "{v}");
        }
        assert!(!keep_alive_is_zero(&None).unwrap());
        assert!(keep_alive_is_zero(&Some(json!("soon"))).is_err());
        assert!(keep_alive_is_zero(&Some(json!([1]))).is_err());
    }

    #[test]
    fn options_map() {
        let r = gen(json!({"model": "m", "prompt": "x", "options": {"temperature": 0, "seed": 42, "num_predict": 5, "num_ctx": 512,
                                                                     "stop": ["\n"], "top_k": 3, "num_thread": 4}}))
        .unwrap()
        .unwrap();
        let o = r.options.unwrap();
        assert_eq!(
            (o.temperature, o.seed, o.num_predict, o.num_ctx, o.top_k),
            (Some(0.0), Some(42), Some(5), Some(512), Some(3))
        );
        assert_eq!(o.stop, vec!["\n".to_string()]);
        assert_eq!(
            gen(json!({"model": "m", "prompt": "x", "options": {"seed": -1}}))
                .unwrap()
                .unwrap()
                .options
                .unwrap()
                .seed,
            None
        );
        let one_stop =
            gen(json!({"model": "m", "prompt": "x", "options": {"stop": "END"}})).unwrap().unwrap();
        assert_eq!(one_stop.options.unwrap().stop, vec!["END".to_string()]);
        assert!(gen(json!({"model": "m", "prompt": "x", "options": {"num_ctx": 0}})).is_err());
        let e = gen(json!({"model": "m", "prompt": "x", "options": {"mirostat": 1}})).unwrap_err();
        assert!(e.message.starts_with("options.mirostat is not supported"), "{}", e.message);
        for field in [
            json!({"suffix": "end"}),
            json!({"template": "{{ .Prompt }}"}),
            json!({"context": [1, 2]}),
            json!({"think": true}),
        ] {
            let mut body = json!({"model": "m", "prompt": "x"});
            body.as_object_mut().unwrap().extend(field.as_object().unwrap().clone());
            assert_eq!(gen(body.clone()).unwrap_err().kind(), ErrorKind::InvalidRequest, "{body}");
        }
        assert!(gen(json!({"model": "m", "prompt": "x", "suffix": "", "context": [], "think": false, "truncate": true})).is_ok());
    }

    #[test]
    fn chat_requests() {
        let r = chat(json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})).unwrap().unwrap();
        assert_eq!(r.messages, vec![contract::Message::system("s"), contract::Message::user("u")]);
        assert!(chat(json!({"model": "m", "messages": []})).unwrap().is_none());
        let e = chat(json!({"model": "m", "messages": [{"role": "wizard", "content": "u"}]}))
            .unwrap_err();
        assert!(e.message.contains("invalid role \"wizard\""), "{}", e.message);
    }

    #[test]
    fn tools_and_tool_rounds_map() {
        let r = chat(json!({"model": "m",
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
            "messages": [{"role": "user", "content": "u"},
                         {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
                         {"role": "tool", "content": "42", "tool_name": "f"}]}))
        .unwrap()
        .unwrap();
        assert_eq!(
            r.tools,
            vec![contract::ToolSpec {
                name: "f".into(),
                description: "d".into(),
                input_schema_json: r#"{"type":"object"}"#.into()
            }]
        );
        let call: Vec<_> = r.messages[1].tool_uses().collect();
        assert_eq!((call[0].name.as_str(), call[0].input_json.as_str()), ("f", r#"{"x":1}"#));
        let result: Vec<_> = r.messages[2].tool_results().collect();
        assert_eq!((result[0].name.as_str(), result[0].content.as_str()), ("f", "42"));
        let bad = [
            json!({"model": "m", "messages": [{"role": "user", "content": "u"}], "tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "u"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
            json!({"model": "m", "messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{nope"}}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]}),
        ];
        for b in bad {
            assert_eq!(chat(b.clone()).unwrap_err().kind(), ErrorKind::InvalidRequest, "{b}");
        }
    }

    #[test]
    fn answers_carry_tool_calls_with_object_arguments() {
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
        let v = serde_json::to_value(chat_final("m", String::new(), &done, 1, Utc::now())).unwrap();
        assert_eq!(
            v["message"]["tool_calls"],
            json!([{"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}}])
        );
        assert_eq!(v["done_reason"], "stop", "Ollama says stop after tool calls");
    }

    #[test]
    fn final_objects_carry_measured_counters() {
        let done = Final {
            model: "m".into(),
            message: None,
            done_reason: contract::DoneReason::Length as i32,
            usage: Some(contract::Usage { prompt_tokens: 7, completion_tokens: 3 }),
            timings: Some(contract::Timings {
                load_ns: 1,
                prompt_eval_ns: 2,
                eval_ns: 3,
                total_ns: 4,
                hops: vec![],
            }),
        };
        let now = Utc::now();
        let v = serde_json::to_value(generate_final("m", String::new(), &done, 10, now)).unwrap();
        assert_eq!(v["done"], true);
        assert_eq!(v["done_reason"], "length");
        assert_eq!(
            (
                v["total_duration"].as_u64(),
                v["load_duration"].as_u64(),
                v["prompt_eval_count"].as_u64(),
                v["prompt_eval_duration"].as_u64(),
                v["eval_count"].as_u64(),
                v["eval_duration"].as_u64()
            ),
            (Some(10), Some(1), Some(7), Some(2), Some(3), Some(3))
        );
        let chunk = serde_json::to_value(chat_chunk("m", "hi".into(), now)).unwrap();
        assert_eq!(chunk["message"], json!({"role": "assistant", "content": "hi"}));
        assert!(chunk.get("eval_count").is_none());
    }
}
