//! The engine seen through the internal contract: pure conversions between
//! `contract::GenerateRequest` / `StreamChunk` and the engine's own types, so every hop that
//! serves the embedded model (the LLM Server's `embedded` backend, the Bedrock emulator) maps
//! them the same way.

use std::time::Instant;

use contract::{ErrorKind, GenerateResponse, HopTiming, StreamChunk, Timings, Usage};

use engine::{
    ChatMessage, Completion, EngineError, EngineRequest, Event, FinishReason, GenerateParams,
    OutputFormat, Prompt, Role, SamplingParams, ToolCall, ToolChoice, ToolSpec, Tools,
};

/// Contract request -> engine request. Validation of ranges happens in the engine.
pub fn to_engine_request(
    req: &contract::GenerateRequest,
) -> Result<EngineRequest, contract::Error> {
    let invalid = |m: String| contract::Error::new(ErrorKind::InvalidRequest, m);
    let prompt = match &req.raw_prompt {
        Some(raw) => {
            if !req.messages.is_empty() {
                return Err(invalid("raw_prompt and messages are mutually exclusive".into()));
            }
            Prompt::Raw(raw.clone())
        }
        None => {
            let mut messages = Vec::with_capacity(req.messages.len() + 1);
            if let Some(system) = &req.system {
                messages.push(ChatMessage::new(Role::System, system.clone()));
            }
            for (i, m) in req.messages.iter().enumerate() {
                let role = match m.role() {
                    contract::Role::System => Role::System,
                    contract::Role::User => Role::User,
                    contract::Role::Assistant => Role::Assistant,
                    contract::Role::Tool => Role::Tool,
                    contract::Role::Unspecified => {
                        return Err(invalid(format!("messages[{i}].role is missing or unknown")))
                    }
                };
                messages.extend(message_to_engine(role, m, i)?);
            }
            Prompt::Chat(messages)
        }
    };
    let defaults = SamplingParams::default();
    let o = req.options.clone().unwrap_or_default();
    let max_tokens = match o.num_predict {
        None => None,
        Some(n) if n < 0 => None,
        Some(n) => Some(n as u32),
    };
    Ok(EngineRequest {
        prompt,
        params: GenerateParams {
            sampling: SamplingParams {
                temperature: o.temperature.unwrap_or(defaults.temperature),
                top_k: o.top_k.unwrap_or(defaults.top_k),
                top_p: o.top_p.unwrap_or(defaults.top_p),
                min_p: o.min_p.unwrap_or(defaults.min_p),
                repeat_penalty: o.repeat_penalty.unwrap_or(defaults.repeat_penalty),
                repeat_last_n: o.repeat_last_n.unwrap_or(defaults.repeat_last_n),
                seed: o.seed,
            },
            max_tokens,
            num_ctx: o.num_ctx,
            stop: o.stop,
            format: format_to_engine(req)?,
            tools: tools_to_engine(req)?,
        },
    })
}

fn invalid(m: String) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, m)
}

fn json_text(text: &str, what: &str) -> Result<serde_json::Value, contract::Error> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

/// One contract message becomes one engine message, or several where tool results ride in
/// a user message (Converse's shape): each result is then a tool message of its own.
fn message_to_engine(
    role: Role,
    m: &contract::Message,
    i: usize,
) -> Result<Vec<ChatMessage>, contract::Error> {
    let mut out = Vec::new();
    let mut main = ChatMessage::new(role, m.content.clone());
    for u in m.tool_uses() {
        let arguments =
            json_text(&u.input_json, &format!("messages[{i}] tool call \"{}\" input", u.name))?;
        main.tool_calls.push(ToolCall { id: u.id.clone(), name: u.name.clone(), arguments });
    }
    let results: Vec<_> = m.tool_results().collect();
    if role == Role::Tool {
        main.tool_name = results.first().map(|r| r.name.clone()).filter(|n| !n.is_empty());
        if main.content.is_empty() {
            main.content = results.first().map(|r| r.content.clone()).unwrap_or_default();
        }
        out.push(main);
        return Ok(out);
    }
    for r in results {
        let mut tool = ChatMessage::new(Role::Tool, r.content.clone());
        tool.tool_name = Some(r.name.clone()).filter(|n| !n.is_empty());
        out.push(tool);
    }
    if !main.content.is_empty() || !main.tool_calls.is_empty() || out.is_empty() {
        out.push(main);
    }
    Ok(out)
}

fn format_to_engine(req: &contract::GenerateRequest) -> Result<OutputFormat, contract::Error> {
    Ok(match (&req.response_schema_json, req.format()) {
        (Some(schema), _) => OutputFormat::Schema(json_text(schema, "the response schema")?),
        (None, contract::ResponseFormat::Json) => OutputFormat::Json,
        (None, contract::ResponseFormat::Text) => OutputFormat::Text,
    })
}

fn tools_to_engine(req: &contract::GenerateRequest) -> Result<Option<Tools>, contract::Error> {
    let choice = req.tool_choice.clone().unwrap_or_default();
    if req.tools.is_empty() || choice.mode() == contract::tool_choice::Mode::None {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(req.tools.len());
    for t in &req.tools {
        let parameters = if t.input_schema_json.trim().is_empty() {
            serde_json::json!({"type": "object"})
        } else {
            json_text(&t.input_schema_json, &format!("the schema of tool \"{}\"", t.name))?
        };
        specs.push(ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters,
        });
    }
    let choice = match choice.mode() {
        contract::tool_choice::Mode::Auto | contract::tool_choice::Mode::None => ToolChoice::Auto,
        contract::tool_choice::Mode::Any => ToolChoice::Required,
        contract::tool_choice::Mode::Tool => ToolChoice::Named(choice.name),
    };
    Ok(Some(Tools { specs, choice, parallel: req.parallel_tool_calls.unwrap_or(true) }))
}

pub fn error_to_contract(e: &EngineError) -> contract::Error {
    let kind = match e {
        EngineError::QueueFull { .. } => ErrorKind::Overloaded,
        EngineError::PromptTooLong { .. } => ErrorKind::ContextLength,
        EngineError::InvalidRequest(_) | EngineError::Template(_) => ErrorKind::InvalidRequest,
        EngineError::Inference(_)
        | EngineError::ShutDown
        | EngineError::Cancelled
        | EngineError::ReaderBehind { .. } => ErrorKind::Internal,
    };
    contract::Error::new(kind, e.to_string())
}

pub fn done_reason(reason: FinishReason) -> contract::DoneReason {
    match reason {
        FinishReason::Stop => contract::DoneReason::Stop,
        FinishReason::Length => contract::DoneReason::Length,
        FinishReason::StopSequence => contract::DoneReason::StopSequence,
        FinishReason::ToolUse => contract::DoneReason::ToolUse,
    }
}

/// The final chunk of a stream. `content` is the whole answer for non-streaming callers and
/// empty when the text already went out as deltas.
pub fn final_response(
    model: &str,
    content: String,
    c: &Completion,
    hop: &str,
    started: Instant,
) -> GenerateResponse {
    let total = started.elapsed();
    GenerateResponse {
        model: model.to_owned(),
        message: Some(contract::Message::assistant(content)),
        done_reason: done_reason(c.reason) as i32,
        usage: Some(Usage {
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
        }),
        timings: Some(Timings {
            load_ns: c.load.as_nanos() as u64,
            prompt_eval_ns: c.prompt_eval.as_nanos() as u64,
            eval_ns: c.eval.as_nanos() as u64,
            total_ns: total.as_nanos() as u64,
            hops: vec![HopTiming { hop: hop.to_owned(), dur_ns: total.as_nanos() as u64 }],
        }),
    }
}

/// Engine event -> contract chunk.
/// `calls` counts the tool calls so far, for their `index`.
pub fn event_to_chunk(
    model: &str,
    event: Result<Event, EngineError>,
    hop: &str,
    started: Instant,
    calls: &mut u32,
) -> StreamChunk {
    match event {
        Ok(Event::Text(t)) => StreamChunk::delta(t),
        Ok(Event::ToolCall(c)) => {
            let index = *calls;
            *calls += 1;
            StreamChunk::tool_use_delta(contract::ToolUseDelta {
                index,
                id: c.id,
                name: c.name,
                input_json: c.arguments.to_string(),
            })
        }
        Ok(Event::Done(c)) => {
            StreamChunk::done(final_response(model, String::new(), &c, hop, started))
        }
        Err(e) => StreamChunk::error(error_to_contract(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{GenerateRequest, Message, Options, ResponseFormat};

    #[test]
    fn requests_map_table() {
        let base = GenerateRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            ..Default::default()
        };
        let with_system = GenerateRequest { system: Some("be brief".into()), ..base.clone() };
        let raw =
            GenerateRequest { raw_prompt: Some("abc".into()), messages: vec![], ..base.clone() };
        let opts = GenerateRequest {
            options: Some(Options {
                temperature: Some(0.0),
                num_predict: Some(-1),
                stop: vec!["x".into()],
                seed: Some(7),
                ..Default::default()
            }),
            format: ResponseFormat::Json as i32,
            ..base.clone()
        };
        let r = to_engine_request(&base).unwrap();
        assert_eq!(r.prompt, Prompt::Chat(vec![ChatMessage::new(Role::User, "hi")]));
        assert_eq!(r.params.sampling, SamplingParams::default());
        let r = to_engine_request(&with_system).unwrap();
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![
                ChatMessage::new(Role::System, "be brief"),
                ChatMessage::new(Role::User, "hi")
            ])
        );
        assert_eq!(to_engine_request(&raw).unwrap().prompt, Prompt::Raw("abc".into()));
        let r = to_engine_request(&opts).unwrap();
        assert_eq!(
            (r.params.sampling.temperature, r.params.max_tokens, r.params.sampling.seed),
            (0.0, None, Some(7))
        );
        assert_eq!(r.params.format, OutputFormat::Json);
        assert_eq!(r.params.stop, vec!["x".to_string()]);
    }

    #[test]
    fn invalid_requests_map_to_invalid_request_errors() {
        let both = GenerateRequest {
            raw_prompt: Some("a".into()),
            messages: vec![Message::user("b")],
            ..Default::default()
        };
        assert_eq!(to_engine_request(&both).unwrap_err().kind(), ErrorKind::InvalidRequest);
        let no_role = GenerateRequest {
            messages: vec![Message { role: 0, content: "x".into(), blocks: vec![] }],
            ..Default::default()
        };
        assert_eq!(to_engine_request(&no_role).unwrap_err().kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn tools_and_schemas_map() {
        use contract::{
            tool_choice::Mode, ContentBlock, ToolChoice as Choice, ToolResult, ToolUse,
        };
        let mut call = Message::assistant("");
        call.blocks.push(ContentBlock::tool_use(ToolUse {
            id: "c1".into(),
            name: "f".into(),
            input_json: r#"{"x":1}"#.into(),
        }));
        let mut result = Message::new(contract::Role::Tool, "");
        result.blocks.push(ContentBlock::tool_result(ToolResult {
            tool_use_id: "c1".into(),
            content: "42".into(),
            is_error: false,
            name: "f".into(),
        }));
        let req = GenerateRequest {
            messages: vec![Message::user("go"), call, result],
            tools: vec![contract::ToolSpec {
                name: "f".into(),
                description: "d".into(),
                input_schema_json: r#"{"type":"object"}"#.into(),
            }],
            tool_choice: Some(Choice { mode: Mode::Tool as i32, name: "f".into() }),
            response_schema_json: Some(r#"{"type":"string"}"#.into()),
            parallel_tool_calls: Some(false),
            ..Default::default()
        };
        let r = to_engine_request(&req).unwrap();
        let Prompt::Chat(m) = &r.prompt else { panic!() };
        assert_eq!(
            m[1].tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: serde_json::json!({"x": 1})
            }]
        );
        assert_eq!(
            (m[2].role, m[2].content.as_str(), m[2].tool_name.as_deref()),
            (Role::Tool, "42", Some("f"))
        );
        let tools = r.params.tools.unwrap();
        assert_eq!((tools.choice, tools.parallel), (ToolChoice::Named("f".into()), false));
        assert_eq!(r.params.format, OutputFormat::Schema(serde_json::json!({"type": "string"})));
        let none = GenerateRequest {
            tool_choice: Some(Choice { mode: Mode::None as i32, name: String::new() }),
            ..req.clone()
        };
        assert!(to_engine_request(&none).unwrap().params.tools.is_none());
        let bad = GenerateRequest { response_schema_json: Some("{".into()), ..req };
        assert!(to_engine_request(&bad).unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn errors_map_with_retryability() {
        let e = error_to_contract(&EngineError::QueueFull { depth: 3 });
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert!(e.retryable);
        let e = error_to_contract(&EngineError::PromptTooLong { tokens: 9, limit: 4 });
        assert_eq!(e.kind(), ErrorKind::ContextLength);
        assert!(!e.retryable);
    }
}
