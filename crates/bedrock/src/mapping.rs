//! Contract request -> the parts of a Converse call: messages with their text, tool calls and
//! tool results as Converse blocks; tools as `toolConfig`; a response schema as
//! `outputConfig.textFormat` (Converse's structured output).

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, InferenceConfiguration,
    JsonSchemaDefinition, Message, OutputConfig, OutputFormat, OutputFormatStructure,
    OutputFormatType, SpecificToolChoice, SystemContentBlock, Tool, ToolChoice, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock,
};
use contract::ErrorKind;

use crate::document;

pub struct ConverseParts {
    pub messages: Vec<Message>,
    pub system: Vec<SystemContentBlock>,
    pub inference: InferenceConfiguration,
    pub tools: Option<ToolConfiguration>,
    pub output: Option<OutputConfig>,
}

fn invalid(m: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, m)
}

fn json(text: &str, what: &str) -> Result<serde_json::Value, contract::Error> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

/// Tool calls Bedrock must see with ids; Ollama's history has none, so calls get positional
/// ids and results are matched to the earliest unanswered call of their tool.
#[derive(Default)]
struct CallIds {
    open: Vec<(String, String)>,
    next: usize,
}

impl CallIds {
    fn call(&mut self, u: &contract::ToolUse) -> String {
        let id = if u.id.is_empty() {
            self.next += 1;
            format!("strata_call_{}", self.next)
        } else {
            u.id.clone()
        };
        self.open.push((id.clone(), u.name.clone()));
        id
    }

    fn result(&mut self, r: &contract::ToolResult) -> Result<String, contract::Error> {
        let pos = if r.tool_use_id.is_empty() {
            self.open.iter().position(|(_, name)| r.name.is_empty() || *name == r.name)
        } else {
            self.open.iter().position(|(id, _)| *id == r.tool_use_id)
        };
        match pos {
            Some(i) => Ok(self.open.remove(i).0),
            None if r.tool_use_id.is_empty() => Err(invalid(format!(
                "a tool result (tool \"{}\") answers no earlier tool call",
                r.name
            ))),
            None => Err(invalid(format!(
                "a tool result answers \"{}\", which is no earlier tool call",
                r.tool_use_id
            ))),
        }
    }
}

/// Bedrock wants user/assistant turns starting with the user; system text goes apart.
/// Consecutive messages of one role are joined (tool results travel in user turns), as
/// Bedrock rejects them otherwise.
pub fn to_converse_parts(
    req: &contract::GenerateRequest,
) -> Result<ConverseParts, contract::Error> {
    let mut system: Vec<String> = req.system.iter().cloned().collect();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    let mut ids = CallIds::default();
    let tools = tool_config(req)?;
    if let Some(raw) = &req.raw_prompt {
        turns.push((ConversationRole::User, vec![ContentBlock::Text(raw.clone())]));
    }
    for m in &req.messages {
        let role = match m.role() {
            contract::Role::System => {
                system.push(m.content.clone());
                continue;
            }
            contract::Role::User | contract::Role::Tool => ConversationRole::User,
            contract::Role::Assistant => ConversationRole::Assistant,
            contract::Role::Unspecified => return Err(invalid("a message has no role")),
        };
        let mut blocks = Vec::new();
        // A tool message's text is its result, carried in the block.
        if !m.content.is_empty() && m.role() != contract::Role::Tool {
            blocks.push(ContentBlock::Text(m.content.clone()));
        }
        if tools.is_none() {
            // No tools on this turn: Bedrock takes tool blocks only with a toolConfig, so the
            // history's calls and results are told as text.
            append_text(&mut blocks, &history_as_text(m));
        }
        for u in m.tool_uses().filter(|_| tools.is_some()) {
            let input = json(&u.input_json, &format!("the input of tool call \"{}\"", u.name))?;
            let block = ToolUseBlock::builder()
                .tool_use_id(ids.call(u))
                .name(&u.name)
                .input(document::from_json(&input))
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            blocks.push(ContentBlock::ToolUse(block));
        }
        for r in m.tool_results().filter(|_| tools.is_some()) {
            let block = ToolResultBlock::builder()
                .tool_use_id(ids.result(r)?)
                .content(ToolResultContentBlock::Text(r.content.clone()))
                .set_status(r.is_error.then_some(ToolResultStatus::Error))
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            blocks.push(ContentBlock::ToolResult(block));
        }
        if blocks.is_empty() {
            blocks.push(ContentBlock::Text(String::new()));
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => {
                // Text joins text with a blank line, as one turn always read.
                match (existing.last_mut(), blocks.first()) {
                    (Some(ContentBlock::Text(prev)), Some(ContentBlock::Text(next))) => {
                        prev.push_str("\n\n");
                        prev.push_str(next);
                        existing.extend(blocks.into_iter().skip(1));
                    }
                    _ => existing.extend(blocks),
                }
            }
            _ => turns.push((role, blocks)),
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != ConversationRole::User) {
        return Err(invalid("the conversation must start with a user message"));
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| {
            Message::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(|e| invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let o = req.options.clone().unwrap_or_default();
    let inference = InferenceConfiguration::builder()
        .set_max_tokens(o.num_predict.filter(|n| *n > 0))
        .set_temperature(o.temperature)
        .set_top_p(o.top_p)
        .set_stop_sequences((!o.stop.is_empty()).then_some(o.stop))
        .build();
    Ok(ConverseParts {
        messages,
        system: system.into_iter().map(SystemContentBlock::Text).collect(),
        inference,
        tools,
        output: output_config(req)?,
    })
}

fn append_text(blocks: &mut Vec<ContentBlock>, text: &str) {
    if text.is_empty() {
        return;
    }
    match blocks.last_mut() {
        Some(ContentBlock::Text(t)) => {
            t.push_str("\n\n");
            t.push_str(text);
        }
        _ => blocks.push(ContentBlock::Text(text.to_owned())),
    }
}

/// A message's tool calls and results as plain text.
fn history_as_text(m: &contract::Message) -> String {
    let calls =
        m.tool_uses().map(|u| format!("[called the tool {} with {}]", u.name, u.input_json));
    let results = m.tool_results().map(|r| {
        format!(
            "[result of the tool {}: {}]",
            if r.name.is_empty() { "call" } else { &r.name },
            r.content
        )
    });
    calls.chain(results).collect::<Vec<_>>().join("\n")
}

/// `toolConfig`, or none when there are no tools or `tool_choice` is none (Bedrock has no
/// "none" choice: the tools are then not offered, and the history's tool blocks go as text).
fn tool_config(
    req: &contract::GenerateRequest,
) -> Result<Option<ToolConfiguration>, contract::Error> {
    use contract::tool_choice::Mode;
    let choice = req.tool_choice.clone().unwrap_or_default();
    if req.tools.is_empty() || choice.mode() == Mode::None {
        return Ok(None);
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for t in &req.tools {
        let schema = if t.input_schema_json.is_empty() {
            serde_json::json!({"type": "object"})
        } else {
            json(&t.input_schema_json, &format!("the schema of tool \"{}\"", t.name))?
        };
        let spec = ToolSpecification::builder()
            .name(&t.name)
            .set_description((!t.description.is_empty()).then(|| t.description.clone()))
            .input_schema(ToolInputSchema::Json(document::from_json(&schema)))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        tools.push(Tool::ToolSpec(spec));
    }
    let choice = match choice.mode() {
        Mode::Auto | Mode::None => ToolChoice::Auto(AutoToolChoice::builder().build()),
        Mode::Any => ToolChoice::Any(AnyToolChoice::builder().build()),
        Mode::Tool => ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(&choice.name)
                .build()
                .map_err(|e| invalid(e.to_string()))?,
        ),
    };
    Ok(Some(
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .tool_choice(choice)
            .build()
            .map_err(|e| invalid(e.to_string()))?,
    ))
}

/// A response schema (or `format: json`, as the schema of any object) as Converse's
/// structured output.
fn output_config(req: &contract::GenerateRequest) -> Result<Option<OutputConfig>, contract::Error> {
    let schema = match (&req.response_schema_json, req.format()) {
        (Some(s), _) => {
            json(s, "the response schema")?;
            s.clone()
        }
        (None, contract::ResponseFormat::Json) => r#"{"type":"object"}"#.to_owned(),
        (None, contract::ResponseFormat::Text) => return Ok(None),
    };
    let definition = JsonSchemaDefinition::builder()
        .schema(schema)
        .name("response")
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let format = OutputFormat::builder()
        .r#type(OutputFormatType::JsonSchema)
        .structure(OutputFormatStructure::JsonSchema(definition))
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Some(OutputConfig::builder().text_format(format).build()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::Message as M;

    #[test]
    fn turns_are_merged_and_system_split_out() {
        let req = contract::GenerateRequest {
            messages: vec![M::system("s"), M::user("a"), M::user("b"), M::assistant("c")],
            system: Some("top".into()),
            options: Some(contract::Options {
                num_predict: Some(-1),
                temperature: Some(0.2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = to_converse_parts(&req).unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.messages[0].content()[0].as_text().unwrap(), "a\n\nb");
        assert!(p.tools.is_none() && p.output.is_none());
        assert_eq!(p.system.len(), 2);
        assert_eq!(p.inference.max_tokens(), None);
        assert_eq!(p.inference.temperature(), Some(0.2));
    }

    #[test]
    fn tools_calls_results_and_schemas_map() {
        use contract::{ContentBlock as B, ToolResult, ToolUse};
        let mut call = M::assistant("");
        call.blocks.push(B::tool_use(ToolUse {
            id: String::new(),
            name: "f".into(),
            input_json: r#"{"x":1}"#.into(),
        }));
        let mut result = M::new(contract::Role::Tool, "42");
        result.blocks.push(B::tool_result(ToolResult {
            tool_use_id: String::new(),
            content: "42".into(),
            is_error: false,
            name: "f".into(),
        }));
        let req = contract::GenerateRequest {
            messages: vec![M::user("go"), call, result],
            tools: vec![contract::ToolSpec {
                name: "f".into(),
                description: "d".into(),
                input_schema_json: r#"{"type":"object"}"#.into(),
            }],
            tool_choice: Some(contract::ToolChoice {
                mode: contract::tool_choice::Mode::Any as i32,
                name: String::new(),
            }),
            response_schema_json: Some(r#"{"type":"string"}"#.into()),
            ..Default::default()
        };
        let p = to_converse_parts(&req).unwrap();
        assert_eq!(p.messages.len(), 3);
        let used = p.messages[1].content()[0].as_tool_use().unwrap();
        let answered = p.messages[2].content()[0].as_tool_result().unwrap();
        assert_eq!(
            used.tool_use_id(),
            answered.tool_use_id(),
            "Ollama's id-less round trip is paired"
        );
        let tools = p.tools.unwrap();
        assert!(matches!(tools.tool_choice(), Some(ToolChoice::Any(_))));
        assert!(p.output.is_some());
        let untooled = contract::GenerateRequest { tools: vec![], ..req.clone() };
        let p = to_converse_parts(&untooled).unwrap();
        assert!(p.tools.is_none());
        assert_eq!(p.messages[2].content()[0].as_text().unwrap(), "[result of the tool f: 42]");
        let orphan = contract::GenerateRequest {
            messages: vec![M::user("go"), req.messages[2].clone()],
            ..req.clone()
        };
        assert!(to_converse_parts(&orphan)
            .err()
            .unwrap()
            .message
            .contains("answers no earlier tool call"));
    }

    #[test]
    fn must_start_with_user() {
        let req =
            contract::GenerateRequest { messages: vec![M::assistant("x")], ..Default::default() };
        assert_eq!(to_converse_parts(&req).err().unwrap().kind(), ErrorKind::InvalidRequest);
    }
}
