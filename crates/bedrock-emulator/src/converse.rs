//! Bedrock Converse request/response bodies (camelCase JSON) and pure conversions to and
//! from the contract.

use contract::{DoneReason, GenerateResponse};
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, AwsErrorType};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlock {
    pub text: Option<String>,
    // Images, documents and tool use are not supported; their presence is detected.
    pub image: Option<serde_json::Value>,
    pub document: Option<serde_json::Value>,
    pub tool_use: Option<serde_json::Value>,
    pub tool_result: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentBlock>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemBlock {
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop_sequences: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Vec<SystemBlock>,
    pub inference_config: Option<InferenceConfig>,
    pub additional_model_request_fields: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutText {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMessage {
    pub role: &'static str,
    pub content: Vec<OutText>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub message: OutMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: Output,
    pub stop_reason: &'static str,
    pub usage: TokenUsage,
    pub metrics: Metrics,
}

fn invalid(m: impl Into<String>) -> AwsError {
    AwsError::new(AwsErrorType::Validation, m)
}

fn block_text(b: &ContentBlock, where_: &str) -> Result<String, AwsError> {
    if b.image.is_some() || b.document.is_some() || b.tool_use.is_some() || b.tool_result.is_some() {
        return Err(invalid(format!("{where_}: only text content blocks are supported by this model")));
    }
    b.text.clone().ok_or_else(|| invalid(format!("{where_}: content block has no text")))
}

/// Converse request -> contract request for the local model `model`.
pub fn to_contract(req: ConverseRequest, model: &str, stream: bool) -> Result<contract::GenerateRequest, AwsError> {
    if req.messages.is_empty() {
        return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => contract::Role::User,
            "assistant" => contract::Role::Assistant,
            other => return Err(invalid(format!("messages.{i}.role: value '{other}' must be one of [user, assistant]"))),
        };
        if m.content.is_empty() {
            return Err(invalid(format!("messages.{i}.content: the content field must not be empty")));
        }
        let text = m.content.iter().map(|b| block_text(b, &format!("messages.{i}"))).collect::<Result<Vec<_>, _>>()?.join("");
        messages.push(contract::Message::new(role, text));
    }
    if messages[0].role() != contract::Role::User {
        return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    let system: Vec<String> = req.system.iter().filter_map(|s| s.text.clone()).collect();
    let ic = req.inference_config.unwrap_or_default();
    if let Some(t) = ic.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid("inferenceConfig.temperature: must be between 0 and 1"));
        }
    }
    if let Some(p) = ic.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid("inferenceConfig.topP: must be between 0 and 1"));
        }
    }
    let num_predict = match ic.max_tokens {
        None => None,
        Some(n) if n < 1 => return Err(invalid("inferenceConfig.maxTokens: must be at least 1")),
        Some(n) => Some(i32::try_from(n).unwrap_or(i32::MAX)),
    };
    Ok(contract::GenerateRequest {
        model: model.to_owned(),
        messages,
        system: (!system.is_empty()).then(|| system.join("\n")),
        stream,
        options: Some(contract::Options {
            temperature: ic.temperature,
            top_p: ic.top_p,
            num_predict,
            stop: ic.stop_sequences.unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn stop_reason(r: DoneReason) -> &'static str {
    match r {
        DoneReason::Length => "max_tokens",
        DoneReason::StopSequence => "stop_sequence",
        DoneReason::ToolUse => "tool_use",
        DoneReason::ContentFiltered => "content_filtered",
        DoneReason::Stop | DoneReason::Unspecified => "end_turn",
    }
}

pub fn usage(done: &GenerateResponse) -> TokenUsage {
    let u = done.usage.unwrap_or_default();
    TokenUsage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens, total_tokens: u.prompt_tokens + u.completion_tokens }
}

pub fn response(text: String, done: &GenerateResponse, latency_ms: u64) -> ConverseResponse {
    ConverseResponse {
        output: Output { message: OutMessage { role: "assistant", content: vec![OutText { text }] } },
        stop_reason: stop_reason(done.done_reason()),
        usage: usage(done),
        metrics: Metrics { latency_ms },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(v: serde_json::Value) -> Result<contract::GenerateRequest, AwsError> {
        to_contract(serde_json::from_value(v).unwrap(), "local", false)
    }

    #[test]
    fn requests_map() {
        let r = conv(json!({"messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
                            "system": [{"text": "s1"}, {"text": "s2"}],
                            "inferenceConfig": {"maxTokens": 5, "temperature": 0.5, "topP": 0.9, "stopSequences": ["x"]}}))
        .unwrap();
        assert_eq!(r.model, "local");
        assert_eq!(r.messages, vec![contract::Message::user("ab")]);
        assert_eq!(r.system.as_deref(), Some("s1\ns2"));
        let o = r.options.unwrap();
        assert_eq!((o.num_predict, o.temperature, o.top_p, o.stop), (Some(5), Some(0.5), Some(0.9), vec!["x".to_string()]));
    }

    #[test]
    fn invalid_requests_are_validation_errors() {
        let cases = [
            json!({"messages": []}),
            json!({"messages": [{"role": "assistant", "content": [{"text": "a"}]}]}),
            json!({"messages": [{"role": "system", "content": [{"text": "a"}]}]}),
            json!({"messages": [{"role": "user", "content": []}]}),
            json!({"messages": [{"role": "user", "content": [{"image": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"temperature": 3}}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"maxTokens": 0}}),
        ];
        for c in cases {
            assert_eq!(conv(c.clone()).unwrap_err().kind, AwsErrorType::Validation, "{c}");
        }
    }

    #[test]
    fn responses_carry_stop_reason_and_usage() {
        let done = GenerateResponse {
            done_reason: DoneReason::StopSequence as i32,
            usage: Some(contract::Usage { prompt_tokens: 4, completion_tokens: 2 }),
            ..Default::default()
        };
        let v = serde_json::to_value(response("hi".into(), &done, 12)).unwrap();
        assert_eq!(
            v,
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "stop_sequence",
                   "usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}, "metrics": {"latencyMs": 12}})
        );
        assert_eq!(stop_reason(DoneReason::Length), "max_tokens");
        assert_eq!(stop_reason(DoneReason::Stop), "end_turn");
    }
}
