//! The Hermes tool format (Hermes 2 Pro / 3, Qwen 2.5 / 3 and their fine-tunes): the template
//! lists the tools inside `<tools>` and the model answers each call as
//! `<tool_call>\n{"name": "...", "arguments": {...}}\n</tool_call>`, possibly after some text.

use serde_json::Value;

use crate::request::{EngineError, OutputFormat, ToolCall, Tools};

pub const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Calls only when the choice demands them; a reply in a JSON format or calls when it is
/// `auto` with a format; nothing (free text, calls spotted by the reader) otherwise.
pub fn grammar(tools: &Tools, format: &OutputFormat) -> Result<Option<String>, EngineError> {
    super::native_grammar(tools, format, "arguments", |g, call| {
        let block = g.rule("block", format!("\"{OPEN}\\n\" {call} \"\\n{CLOSE}\""));
        if tools.parallel {
            format!("{block} (\"\\n\" {block})*")
        } else {
            block
        }
    })
}

/// The calls in an answer from its first `<tool_call>` on, and any text around them; `None`
/// when a block is not a call (the caller passes the answer on as text).
pub fn parse(answer: &str) -> Option<(Vec<ToolCall>, String)> {
    let mut calls = Vec::new();
    let mut text = String::new();
    let mut rest = answer;
    while let Some(at) = rest.find(OPEN) {
        text.push_str(&rest[..at]);
        let body = &rest[at + OPEN.len()..];
        let (json, after) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            // Some models stop right after the object, without the closing tag.
            None => (body, ""),
        };
        let value: Value = serde_json::from_str(json.trim()).ok()?;
        calls.push(super::call_from(&value, &["arguments", "parameters"])?);
        rest = after;
    }
    text.push_str(rest);
    (!calls.is_empty()).then(|| (calls, text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::ToolChoice;
    use crate::tools::tests::tools;

    #[test]
    fn blocks_parse_into_calls() {
        let (calls, text) = parse("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}\n</tool_call>").unwrap();
        assert_eq!(
            calls.iter().map(|c| c.arguments.clone()).collect::<Vec<_>>(),
            vec![json!({"city": "Paris"}), json!({"city": "Rome"})]
        );
        assert!(calls.iter().all(|c| c.name == "get_weather" && c.id.starts_with("call_")));
        assert_eq!(text, "");
        let (calls, _) = parse("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}").unwrap();
        assert_eq!(calls[0].name, "f");
        assert_eq!(parse("<tool_call>\n{\"name\": \"f\", \"argu"), None);
        assert_eq!(parse("no calls here"), None);
    }

    #[test]
    fn grammars_force_blocks_only_when_asked() {
        assert_eq!(grammar(&tools(ToolChoice::Auto), &OutputFormat::Text).unwrap(), None);
        let required = grammar(&tools(ToolChoice::Required), &OutputFormat::Text).unwrap().unwrap();
        assert!(required.starts_with("root ::= block (\"\\n\" block)*"), "{required}");
        assert!(
            required.contains("<tool_call>") && required.contains("\\\"arguments\\\""),
            "{required}"
        );
        let with_format = grammar(&tools(ToolChoice::Auto), &OutputFormat::Json).unwrap().unwrap();
        assert!(with_format.lines().next().unwrap().contains("| object"), "{with_format}");
    }
}
