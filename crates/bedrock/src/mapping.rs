//! Contract request -> the parts of a Converse call.

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock};
use contract::ErrorKind;

pub struct ConverseParts {
    pub messages: Vec<Message>,
    pub system: Vec<SystemContentBlock>,
    pub inference: InferenceConfiguration,
}

fn invalid(m: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, m)
}

/// Bedrock wants user/assistant turns starting with the user; system text goes apart.
/// Consecutive messages of one role are joined, as Bedrock rejects them otherwise.
pub fn to_converse_parts(req: &contract::GenerateRequest) -> Result<ConverseParts, contract::Error> {
    refuse_unsupported(req)?;
    let mut system: Vec<String> = req.system.iter().cloned().collect();
    let mut turns: Vec<(ConversationRole, String)> = Vec::new();
    if let Some(raw) = &req.raw_prompt {
        turns.push((ConversationRole::User, raw.clone()));
    }
    for m in &req.messages {
        let role = match m.role() {
            contract::Role::System => {
                system.push(m.content.clone());
                continue;
            }
            contract::Role::User => ConversationRole::User,
            contract::Role::Assistant => ConversationRole::Assistant,
            contract::Role::Tool => return Err(invalid("tool results are not supported on the Bedrock path yet")),
            contract::Role::Unspecified => return Err(invalid("a message has no role")),
        };
        match turns.last_mut() {
            Some((last, text)) if *last == role => {
                text.push_str("\n\n");
                text.push_str(&m.content);
            }
            _ => turns.push((role, m.content.clone())),
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != ConversationRole::User) {
        return Err(invalid("the conversation must start with a user message"));
    }
    let messages = turns
        .into_iter()
        .map(|(role, text)| Message::builder().role(role).content(ContentBlock::Text(text)).build().map_err(|e| invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let o = req.options.clone().unwrap_or_default();
    let inference = InferenceConfiguration::builder()
        .set_max_tokens(o.num_predict.filter(|n| *n > 0))
        .set_temperature(o.temperature)
        .set_top_p(o.top_p)
        .set_stop_sequences((!o.stop.is_empty()).then_some(o.stop))
        .build();
    Ok(ConverseParts { messages, system: system.into_iter().map(SystemContentBlock::Text).collect(), inference })
}

/// What the Bedrock path cannot carry yet is refused, never dropped: a client that sent tools
/// or a schema must not get prose back as if they had been honoured.
fn refuse_unsupported(req: &contract::GenerateRequest) -> Result<(), contract::Error> {
    let field = if !req.tools.is_empty() {
        Some("tools")
    } else if req.response_schema_json.is_some() {
        Some("a response JSON schema")
    } else if req.format() == contract::ResponseFormat::Json {
        Some("JSON output (format)")
    } else if req.messages.iter().any(|m| !m.blocks.is_empty()) {
        Some("tool calls and tool results in messages")
    } else {
        None
    };
    match field {
        Some(f) => Err(invalid(format!("{f}: not supported on the Bedrock path yet (the embedded backend supports it)"))),
        None => Ok(()),
    }
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
            options: Some(contract::Options { num_predict: Some(-1), temperature: Some(0.2), ..Default::default() }),
            ..Default::default()
        };
        let p = to_converse_parts(&req).unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.messages[0].content()[0].as_text().unwrap(), "a\n\nb");
        assert_eq!(p.system.len(), 2);
        assert_eq!(p.inference.max_tokens(), None);
        assert_eq!(p.inference.temperature(), Some(0.2));
    }

    #[test]
    fn must_start_with_user() {
        let req = contract::GenerateRequest { messages: vec![M::assistant("x")], ..Default::default() };
        assert_eq!(to_converse_parts(&req).err().unwrap().kind(), ErrorKind::InvalidRequest);
    }
}
