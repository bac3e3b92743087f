//! Bedrock Converse request/response bodies (camelCase JSON) and pure conversions to and
//! from the contract.

use contract::{DoneReason, GenerateResponse};
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, AwsErrorType};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlock {
    pub text: Option<String>,
    // Images and documents are not supported; their presence is detected.
    pub image: Option<serde_json::Value>,
    pub document: Option<serde_json::Value>,
    pub tool_use: Option<ToolUseBlock>,
    pub tool_result: Option<ToolResultBlock>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default)]
    pub content: Vec<ToolResultContent>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolResultContent {
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    #[serde(default)]
    pub tools: Vec<ToolEntry>,
    pub tool_choice: Option<ToolChoiceIn>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolEntry {
    pub tool_spec: Option<ToolSpecIn>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpecIn {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Option<InputSchema>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InputSchema {
    pub json: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolChoiceIn {
    pub auto: Option<serde_json::Value>,
    pub any: Option<serde_json::Value>,
    pub tool: Option<NamedTool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NamedTool {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputConfigIn {
    pub text_format: Option<TextFormat>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextFormat {
    #[serde(rename = "type")]
    pub kind: String,
    pub structure: Option<FormatStructure>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatStructure {
    pub json_schema: Option<JsonSchemaIn>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JsonSchemaIn {
    pub schema: String,
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
    pub tool_config: Option<ToolConfig>,
    pub output_config: Option<OutputConfigIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMessage {
    pub role: &'static str,
    /// `{"text": ...}` and `{"toolUse": {"toolUseId", "name", "input"}}` blocks.
    pub content: Vec<serde_json::Value>,
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

/// One Converse message as a contract message: text joined, tool blocks kept. `names` maps
/// tool use ids seen so far to their tool, for the results that answer them.
fn message_to_contract(
    m: &Message,
    role: contract::Role,
    i: usize,
    names: &mut Vec<(String, String)>,
    tools_on: bool,
) -> Result<contract::Message, AwsError> {
    let mut out = contract::Message::new(role, "");
    for (j, b) in m.content.iter().enumerate() {
        if b.image.is_some() || b.document.is_some() {
            return Err(invalid(format!("messages.{i}.content.{j}: only text and tool content blocks are supported by this model")));
        }
        if (b.tool_use.is_some() || b.tool_result.is_some()) && !tools_on {
            return Err(invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks."));
        }
        if let Some(t) = &b.text {
            out.content.push_str(t);
        } else if let Some(u) = &b.tool_use {
            if role != contract::Role::Assistant {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}: toolUse blocks belong to assistant messages"
                )));
            }
            if !u.input.is_object() {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}.toolUse.input: must be a JSON object"
                )));
            }
            names.push((u.tool_use_id.clone(), u.name.clone()));
            out.blocks.push(contract::ContentBlock::tool_use(contract::ToolUse {
                id: u.tool_use_id.clone(),
                name: u.name.clone(),
                input_json: u.input.to_string(),
            }));
        } else if let Some(r) = &b.tool_result {
            if role != contract::Role::User {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}: toolResult blocks belong to user messages"
                )));
            }
            let Some(name) =
                names.iter().find(|(id, _)| *id == r.tool_use_id).map(|(_, n)| n.clone())
            else {
                return Err(invalid(format!("messages.{i}.content.{j}.toolResult.toolUseId: '{}' does not match any toolUse block in the previous turn", r.tool_use_id)));
            };
            let content: String = r
                .content
                .iter()
                .map(|c| {
                    c.text
                        .clone()
                        .or_else(|| c.json.as_ref().map(|v| v.to_string()))
                        .unwrap_or_default()
                })
                .collect();
            out.blocks.push(contract::ContentBlock::tool_result(contract::ToolResult {
                tool_use_id: r.tool_use_id.clone(),
                content,
                is_error: r.status.as_deref() == Some("error"),
                name,
            }));
        } else {
            return Err(invalid(format!("messages.{i}.content.{j}: content block has no text")));
        }
    }
    Ok(out)
}

fn tools_to_contract(
    config: &ToolConfig,
) -> Result<(Vec<contract::ToolSpec>, Option<contract::ToolChoice>), AwsError> {
    use contract::tool_choice::Mode;
    if config.tools.is_empty() {
        return Err(invalid("toolConfig.tools: must have at least 1 tool"));
    }
    let mut specs = Vec::with_capacity(config.tools.len());
    for (i, t) in config.tools.iter().enumerate() {
        let Some(spec) = &t.tool_spec else {
            return Err(invalid(format!(
                "toolConfig.tools.{i}: only toolSpec tools are supported"
            )));
        };
        if spec.name.is_empty()
            || spec.name.len() > 64
            || !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(format!(
                "toolConfig.tools.{i}.toolSpec.name: must match [a-zA-Z0-9_-]{{1,64}}"
            )));
        }
        let Some(schema) = spec.input_schema.as_ref().and_then(|s| s.json.as_ref()) else {
            return Err(invalid(format!(
                "toolConfig.tools.{i}.toolSpec.inputSchema: a json schema is required"
            )));
        };
        if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
            return Err(invalid(format!(
                "toolConfig.tools.{i}.toolSpec.inputSchema.json: the schema must be of type object"
            )));
        }
        specs.push(contract::ToolSpec {
            name: spec.name.clone(),
            description: spec.description.clone().unwrap_or_default(),
            input_schema_json: schema.to_string(),
        });
    }
    let choice = match &config.tool_choice {
        None => None,
        Some(ToolChoiceIn { tool: Some(t), .. }) => {
            if !specs.iter().any(|s| s.name == t.name) {
                return Err(invalid(format!(
                    "toolConfig.toolChoice.tool.name: '{}' is not one of the tools",
                    t.name
                )));
            }
            Some(contract::ToolChoice { mode: Mode::Tool as i32, name: t.name.clone() })
        }
        Some(ToolChoiceIn { any: Some(_), .. }) => {
            Some(contract::ToolChoice { mode: Mode::Any as i32, name: String::new() })
        }
        Some(ToolChoiceIn { auto: Some(_), .. }) => {
            Some(contract::ToolChoice { mode: Mode::Auto as i32, name: String::new() })
        }
        Some(_) => {
            return Err(invalid("toolConfig.toolChoice: one of auto, any or tool is required"))
        }
    };
    Ok((specs, choice))
}

fn schema_to_contract(config: &Option<OutputConfigIn>) -> Result<Option<String>, AwsError> {
    let Some(format) = config.as_ref().and_then(|c| c.text_format.as_ref()) else {
        return Ok(None);
    };
    if format.kind != "json_schema" {
        return Err(invalid(format!(
            "outputConfig.textFormat.type: '{}' is not supported",
            format.kind
        )));
    }
    let Some(schema) = format.structure.as_ref().and_then(|s| s.json_schema.as_ref()) else {
        return Err(invalid("outputConfig.textFormat.structure.jsonSchema: is required"));
    };
    serde_json::from_str::<serde_json::Value>(&schema.schema).map_err(|e| {
        invalid(format!("outputConfig.textFormat.structure.jsonSchema.schema: not valid JSON: {e}"))
    })?;
    Ok(Some(schema.schema.clone()))
}

/// Converse request -> contract request for the local model `model`.
pub fn to_contract(
    req: ConverseRequest,
    model: &str,
    stream: bool,
) -> Result<contract::GenerateRequest, AwsError> {
    if req.messages.is_empty() {
        return Err(invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message."));
    }
    let (tools, tool_choice) = match &req.tool_config {
        Some(config) => tools_to_contract(config)?,
        None => (Vec::new(), None),
    };
    let response_schema_json = schema_to_contract(&req.output_config)?;
    let mut messages = Vec::with_capacity(req.messages.len());
    let mut names = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => contract::Role::User,
            "assistant" => contract::Role::Assistant,
            other => {
                return Err(invalid(format!(
                    "messages.{i}.role: value '{other}' must be one of [user, assistant]"
                )))
            }
        };
        if m.content.is_empty() {
            return Err(invalid(format!(
                "messages.{i}.content: the content field must not be empty"
            )));
        }
        messages.push(message_to_contract(m, role, i, &mut names, !tools.is_empty())?);
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
        format: if response_schema_json.is_some() {
            contract::ResponseFormat::Json as i32
        } else {
            0
        },
        response_schema_json,
        tools,
        tool_choice,
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
    TokenUsage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}

pub fn response(
    text: String,
    calls: &[contract::ToolUse],
    done: &GenerateResponse,
    latency_ms: u64,
) -> ConverseResponse {
    let mut content = Vec::with_capacity(1 + calls.len());
    if !text.is_empty() || calls.is_empty() {
        content.push(serde_json::json!({ "text": text }));
    }
    for c in calls {
        let input: serde_json::Value =
            serde_json::from_str(&c.input_json).unwrap_or_else(|_| serde_json::json!({}));
        content.push(
            serde_json::json!({ "toolUse": { "toolUseId": c.id, "name": c.name, "input": input } }),
        );
    }
    ConverseResponse {
        output: Output { message: OutMessage { role: "assistant", content } },
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
        assert_eq!(
            (o.num_predict, o.temperature, o.top_p, o.stop),
            (Some(5), Some(0.5), Some(0.9), vec!["x".to_string()])
        );
    }

    #[test]
    fn invalid_requests_are_validation_errors() {
        let cases = [
            json!({"messages": []}),
            json!({"messages": [{"role": "assistant", "content": [{"text": "a"}]}]}),
            json!({"messages": [{"role": "system", "content": [{"text": "a"}]}]}),
            json!({"messages": [{"role": "user", "content": []}]}),
            json!({"messages": [{"role": "user", "content": [{"image": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "x", "content": [{"text": "1"}]}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "toolConfig": {"tools": []}}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"tool": {"name": "g"}}}}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "toolConfig": {"tools": [{"toolSpec": {"name": "f"}}]}}),
            json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{"}}}}}),
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
        let v = serde_json::to_value(response("hi".into(), &[], &done, 12)).unwrap();
        assert_eq!(
            v,
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "stop_sequence",
                   "usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}, "metrics": {"latencyMs": 12}})
        );
        assert_eq!(stop_reason(DoneReason::Length), "max_tokens");
        assert_eq!(stop_reason(DoneReason::Stop), "end_turn");
    }
}
