//! The generic tool format, for models whose chat template knows nothing of tools (the default
//! SmolLM2 among them), the way llama.cpp's server does it for such templates: the tool definitions go
//! into the system prompt, the answer is grammar-constrained to either
//! `{"tool_calls": [{"name": ..., "arguments": {...}}]}` with arguments matching that tool's
//! schema, or `{"response": ...}`, and the JSON is parsed back into calls or text.
//!
//! Earlier tool calls and tool results in the conversation are written in that same JSON, so
//! the model sees its own protocol in the history.

use serde_json::{json, Value};

use crate::request::{ChatMessage, EngineError, OutputFormat, Role, ToolCall, ToolChoice, Tools};
use crate::schema::GrammarBuilder;

/// What a constrained answer turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    Calls(Vec<ToolCall>),
}

/// Rewrites tool calls and tool results as text the template can render, and adds the tool
/// instructions to the system prompt when tools are offered.
pub fn messages_for_template(messages: &[ChatMessage], tools: Option<&Tools>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = messages
        .iter()
        .map(|m| match m.role {
            Role::Tool => ChatMessage::new(
                Role::User,
                json!({"tool_response": {"name": m.tool_name.clone().unwrap_or_default(), "content": m.content}}).to_string(),
            ),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls: Vec<Value> = m.tool_calls.iter().map(|c| json!({"name": c.name, "arguments": c.arguments})).collect();
                ChatMessage::new(Role::Assistant, json!({"tool_calls": calls}).to_string())
            }
            _ => ChatMessage::new(m.role, m.content.clone()),
        })
        .collect();
    if let Some(tools) = tools {
        let instructions = instructions(tools);
        match out.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => out.insert(0, ChatMessage::new(Role::System, instructions)),
        }
    }
    out
}

fn instructions(tools: &Tools) -> String {
    let specs: Vec<Value> = tools
        .specs
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    let list = serde_json::to_string_pretty(&specs).unwrap_or_default();
    let call = "{\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}]}";
    match &tools.choice {
        ToolChoice::Auto => format!(
            "You can call these tools:\n{list}\n\nAnswer in JSON only. To call a tool, answer {call}. To answer the user directly, answer {{\"response\": \"<your answer>\"}}."
        ),
        ToolChoice::Required => format!("You can call these tools:\n{list}\n\nAnswer in JSON only, calling a tool: {call}."),
        ToolChoice::Named(name) => format!("You can call these tools:\n{list}\n\nAnswer in JSON only, calling the tool \"{name}\": {call}."),
    }
}

/// The grammar of an answer with tools: calls (of the chosen tools), or a reply in `format`.
pub fn grammar(tools: &Tools, format: &OutputFormat) -> Result<String, EngineError> {
    let mut g = GrammarBuilder::new();
    let space = g.primitive("space");
    let call = super::call_rule(&mut g, tools, "arguments")?;
    let list = if tools.parallel { format!("{call} (\",\" {space} {call})*") } else { call };
    let with_calls = format!("\"{{\" {space} \"\\\"tool_calls\\\"\" {space} \":\" {space} \"[\" {space} {list} \"]\" {space} \"}}\" {space}");
    let root = match tools.choice {
        ToolChoice::Auto => {
            let reply = match super::reply_rule(&mut g, format)? {
                Some(rule) => rule,
                None => g.primitive("string"),
            };
            let with_reply = format!(
                "\"{{\" {space} \"\\\"response\\\"\" {space} \":\" {space} {reply} \"}}\" {space}"
            );
            format!("{with_calls} | {with_reply}")
        }
        ToolChoice::Required | ToolChoice::Named(_) => with_calls,
    };
    Ok(g.finish(&root))
}

/// Reads a constrained answer back. `None` when it is not the protocol's JSON (cut short by a
/// length limit): the caller passes the text on as it is.
pub fn parse(text: &str, mut next_id: impl FnMut() -> String) -> Option<Reply> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    if let Some(calls) = value.get("tool_calls").and_then(Value::as_array) {
        let calls = calls
            .iter()
            .map(|c| {
                Some(ToolCall {
                    id: next_id(),
                    name: c.get("name")?.as_str()?.to_owned(),
                    arguments: c.get("arguments").cloned().unwrap_or_else(|| json!({})),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(Reply::Calls(calls));
    }
    match value.get("response")? {
        Value::String(s) => Some(Reply::Text(s.clone())),
        other => Some(Reply::Text(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ToolSpec;
    use crate::tools::tests::{tools, weather};

    #[test]
    fn answers_parse_into_calls_or_text() {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("id{n}")
        };
        let calls = parse(
            r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}"#,
            &mut id,
        )
        .unwrap();
        assert_eq!(
            calls,
            Reply::Calls(vec![ToolCall {
                id: "id1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }])
        );
        assert_eq!(parse(r#"{"response": "Hello"}"#, &mut id), Some(Reply::Text("Hello".into())));
        assert_eq!(
            parse(r#"{"response": {"a": 1}}"#, &mut id),
            Some(Reply::Text(r#"{"a":1}"#.into()))
        );
        assert_eq!(parse(r#"{"tool_calls": [{"name": "get_wea"#, &mut id), None);
    }

    #[test]
    fn grammars_follow_the_choice() {
        let auto = grammar(&tools(ToolChoice::Auto), &OutputFormat::Text).unwrap();
        assert!(auto.lines().next().unwrap().contains("response"), "{auto}");
        let required = grammar(&tools(ToolChoice::Required), &OutputFormat::Text).unwrap();
        assert!(!required.lines().next().unwrap().contains("response"), "{required}");
        let e = grammar(&tools(ToolChoice::Named("nope".into())), &OutputFormat::Text).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let bad = Tools {
            specs: vec![ToolSpec {
                parameters: json!({"type": "string", "pattern": "x"}),
                ..weather()
            }],
            choice: ToolChoice::Auto,
            parallel: false,
        };
        let e = grammar(&bad, &OutputFormat::Text).unwrap_err();
        assert!(
            e.to_string().contains("tool \"get_weather\"") && e.to_string().contains("\"pattern\""),
            "{e}"
        );
    }

    #[test]
    fn history_is_rewritten_in_the_protocol() {
        let mut call = ChatMessage::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }];
        let mut result = ChatMessage::new(Role::Tool, "18C");
        result.tool_name = Some("get_weather".into());
        let history = [ChatMessage::new(Role::User, "weather?"), call, result];
        let out = messages_for_template(&history, Some(&tools(ToolChoice::Auto)));
        assert_eq!(out[0].role, Role::System);
        assert!(out[0].content.contains("get_weather"));
        assert_eq!(
            out[2].content,
            r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}"#
        );
        assert_eq!(
            (out[3].role, out[3].content.as_str()),
            (Role::User, r#"{"tool_response":{"name":"get_weather","content":"18C"}}"#)
        );
        let with_system = messages_for_template(
            &[ChatMessage::new(Role::System, "Be brief."), ChatMessage::new(Role::User, "hi")],
            Some(&tools(ToolChoice::Required)),
        );
        assert!(with_system[0].content.starts_with("Be brief.\n\nYou can call"));
        assert_eq!(with_system.len(), 2);
    }
}
