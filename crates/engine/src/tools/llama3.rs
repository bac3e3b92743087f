//! The Llama 3.x tool format (3.1, 3.2, 3.3): the template lists the tools as JSON and the
//! model answers a call as its whole reply, `{"name": "...", "parameters": {...}}`. One call
//! per answer (Meta's 3.2 template refuses several).

use serde_json::Value;

use crate::request::{EngineError, OutputFormat, ToolCall, Tools};

/// A call only when the choice demands one; a reply in a JSON format or a call when it is
/// `auto` with a format; nothing (free text, a call spotted by the reader) otherwise.
pub fn grammar(tools: &Tools, format: &OutputFormat) -> Result<Option<String>, EngineError> {
    super::native_grammar(tools, format, "parameters", |_, call| call)
}

/// The call an answer is, when it is one of the offered tools' (a JSON reply that merely has
/// a `name` stays a reply); `None` otherwise.
pub fn parse(answer: &str, tools: &Tools) -> Option<ToolCall> {
    let value: Value = serde_json::from_str(answer.trim()).ok()?;
    let call = super::call_from(&value, &["parameters", "arguments"])?;
    tools.specs.iter().any(|t| t.name == call.name).then_some(call)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::ToolChoice;
    use crate::tools::tests::tools;

    #[test]
    fn a_whole_answer_is_a_call_of_an_offered_tool() {
        let offered = tools(ToolChoice::Auto);
        let call =
            parse(" {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", &offered)
                .unwrap();
        assert_eq!((call.name.as_str(), call.arguments), ("get_weather", json!({"city": "Paris"})));
        assert_eq!(parse("{\"name\": \"Ada\", \"parameters\": {}}", &offered), None);
        assert_eq!(parse("{\"name\": \"get_weather\", \"param", &offered), None);
    }

    #[test]
    fn grammars_force_a_call_only_when_asked() {
        assert_eq!(grammar(&tools(ToolChoice::Auto), &OutputFormat::Text).unwrap(), None);
        let named = grammar(&tools(ToolChoice::Named("get_weather".into())), &OutputFormat::Text)
            .unwrap()
            .unwrap();
        assert!(
            named.starts_with("root ::= call\n") && named.contains("\\\"parameters\\\""),
            "{named}"
        );
    }
}
