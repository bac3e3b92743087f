//! Small constructors and accessors that make the generated types pleasant to use.

use crate::{
    stream_chunk::Kind, Delta, DoneReason, Error, ErrorKind, GenerateResponse, Message, Role,
    StreamChunk,
};

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role: role as i32, content: content.into(), blocks: Vec::new() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

impl Role {
    /// The role's name as chat templates and the public APIs spell it.
    pub fn as_name(self) -> &'static str {
        match self {
            Role::Unspecified => "unspecified",
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

impl Message {
    /// The tool calls this message carries.
    pub fn tool_uses(&self) -> impl Iterator<Item = &crate::ToolUse> {
        self.blocks.iter().filter_map(|b| match &b.block {
            Some(crate::content_block::Block::ToolUse(u)) => Some(u),
            _ => None,
        })
    }

    /// The tool results this message carries.
    pub fn tool_results(&self) -> impl Iterator<Item = &crate::ToolResult> {
        self.blocks.iter().filter_map(|b| match &b.block {
            Some(crate::content_block::Block::ToolResult(r)) => Some(r),
            _ => None,
        })
    }
}

impl crate::ContentBlock {
    pub fn tool_use(u: crate::ToolUse) -> Self {
        crate::ContentBlock { block: Some(crate::content_block::Block::ToolUse(u)) }
    }
    pub fn tool_result(r: crate::ToolResult) -> Self {
        crate::ContentBlock { block: Some(crate::content_block::Block::ToolResult(r)) }
    }
}

impl DoneReason {
    /// Ollama's `done_reason` (Ollama says "stop" after tool calls too).
    pub fn as_name(self) -> &'static str {
        match self {
            DoneReason::Unspecified
            | DoneReason::Stop
            | DoneReason::StopSequence
            | DoneReason::ToolUse => "stop",
            DoneReason::Length => "length",
            DoneReason::ContentFiltered => "content_filter",
        }
    }

    /// OpenAI's `finish_reason`.
    pub fn as_openai(self) -> &'static str {
        match self {
            DoneReason::Unspecified | DoneReason::Stop | DoneReason::StopSequence => "stop",
            DoneReason::Length => "length",
            DoneReason::ToolUse => "tool_calls",
            DoneReason::ContentFiltered => "content_filter",
        }
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Upstream
                | ErrorKind::RateLimited
        );
        Error { kind: kind as i32, message: message.into(), retryable, retry_after_ms: 0 }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A foreign error and its causes on one line (`outer: cause: root cause`), for the message of
/// a contract `Error` built from an SDK or transport failure.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl StreamChunk {
    pub fn delta(content: impl Into<String>) -> Self {
        StreamChunk { kind: Some(Kind::Delta(Delta { content: content.into(), tool_use: None })) }
    }
    pub fn tool_use_delta(delta: crate::ToolUseDelta) -> Self {
        StreamChunk {
            kind: Some(Kind::Delta(Delta { content: String::new(), tool_use: Some(delta) })),
        }
    }
    pub fn done(response: GenerateResponse) -> Self {
        StreamChunk { kind: Some(Kind::Done(response)) }
    }
    pub fn error(error: Error) -> Self {
        StreamChunk { kind: Some(Kind::Error(error)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn chunk_round_trips_through_protobuf_and_json() {
        let chunk = StreamChunk::delta("hi");
        let bytes = chunk.encode_to_vec();
        assert_eq!(StreamChunk::decode(bytes.as_slice()).unwrap(), chunk);
        let json = serde_json::to_string(&chunk).unwrap();
        assert_eq!(json, r#"{"kind":{"delta":{"content":"hi"}}}"#);
        assert_eq!(serde_json::from_str::<StreamChunk>(&json).unwrap(), chunk);
    }

    #[test]
    fn the_sample_lambda_events_are_contract_requests() {
        for (file, stream) in [("generate.json", false), ("generate-stream.json", true)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/aws/events")
                .join(file);
            let req: crate::GenerateRequest =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(req.model, "strata.smollm2-135m-instruct-v1:0");
            assert_eq!(req.stream, stream);
            assert_eq!(req.messages[0].role(), Role::User);
            assert!(req.options.unwrap().num_predict.unwrap() > 0);
        }
    }

    #[test]
    fn request_json_uses_camel_case_and_defaults() {
        let req: crate::GenerateRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":2,"content":"hi"}],"rawPrompt":null}"#,
        )
        .unwrap();
        assert_eq!(req.model, "m");
        assert_eq!(req.messages[0].role(), Role::User);
        assert!(!req.stream);
    }
}
