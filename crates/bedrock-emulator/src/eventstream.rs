//! ConverseStream's `application/vnd.amazon.eventstream` frames, encoded with the official
//! `aws-smithy-eventstream` codec (prelude, headers, CRCs).

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

use crate::converse::{Metrics, TokenUsage};
use crate::error::AwsErrorType;

fn frame(headers: Vec<Header>, payload: serde_json::Value) -> Bytes {
    let message =
        Message::new_from_parts(headers, serde_json::to_vec(&payload).unwrap_or_default());
    let mut buf = Vec::new();
    // Encoding only fails for oversized headers, which these fixed ones are not.
    if write_message_to(&message, &mut buf).is_err() {
        return Bytes::new();
    }
    Bytes::from(buf)
}

pub fn event(event_type: &'static str, payload: serde_json::Value) -> Bytes {
    frame(
        vec![
            Header::new(":message-type", HeaderValue::String("event".into())),
            Header::new(":event-type", HeaderValue::String(event_type.into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
        ],
        payload,
    )
}

pub fn exception(kind: AwsErrorType, message: &str) -> Bytes {
    frame(
        vec![
            Header::new(":message-type", HeaderValue::String("exception".into())),
            Header::new(":exception-type", HeaderValue::String(kind.stream_name().into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
        ],
        serde_json::json!({ "message": message }),
    )
}

pub fn message_start() -> Bytes {
    event("messageStart", serde_json::json!({ "role": "assistant" }))
}

fn text_delta(index: u32, text: &str) -> Bytes {
    event(
        "contentBlockDelta",
        serde_json::json!({ "contentBlockIndex": index, "delta": { "text": text } }),
    )
}

fn stop_block(index: u32) -> Bytes {
    event("contentBlockStop", serde_json::json!({ "contentBlockIndex": index }))
}

/// Content block numbering as Bedrock streams it: text continues the open text block; a tool
/// call closes the open block and starts its own (`contentBlockStart` with its id and name),
/// then its input arrives in `toolUse` deltas.
#[derive(Debug, Default)]
pub struct Blocks {
    /// The open block: its index and whether it is text.
    open: Option<(u32, bool)>,
    next: u32,
}

impl Blocks {
    fn open(&mut self, text: bool, out: &mut Vec<Bytes>) -> u32 {
        if let Some((i, t)) = self.open {
            if t == text && text {
                return i;
            }
            out.push(stop_block(i));
        }
        let i = self.next;
        self.next += 1;
        self.open = Some((i, text));
        i
    }

    pub fn text(&mut self, text: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        let i = self.open(true, &mut out);
        out.push(text_delta(i, text));
        out
    }

    pub fn tool_use(&mut self, piece: &contract::ToolUseDelta) -> Vec<Bytes> {
        let mut out = Vec::new();
        let i = if piece.id.is_empty() && piece.name.is_empty() {
            match self.open {
                Some((i, false)) => i,
                _ => self.open(false, &mut out),
            }
        } else {
            let i = self.open(false, &mut out);
            out.push(event(
                "contentBlockStart",
                serde_json::json!({ "contentBlockIndex": i, "start": { "toolUse": { "toolUseId": piece.id, "name": piece.name } } }),
            ));
            i
        };
        if !piece.input_json.is_empty() {
            out.push(event("contentBlockDelta", serde_json::json!({ "contentBlockIndex": i, "delta": { "toolUse": { "input": piece.input_json } } })));
        }
        out
    }

    /// Closes the open block (block 0 when nothing was sent, as an empty answer still has one).
    pub fn stop(&mut self) -> Bytes {
        stop_block(self.open.take().map_or(0, |(i, _)| i))
    }
}

pub fn message_stop(stop_reason: &str) -> Bytes {
    event("messageStop", serde_json::json!({ "stopReason": stop_reason }))
}

pub fn metadata(usage: TokenUsage, metrics: Metrics) -> Bytes {
    event("metadata", serde_json::json!({ "usage": usage, "metrics": metrics }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_decode_with_the_official_codec() {
        let bytes = Blocks::default().text("héllo").remove(0);
        let m = read_message_from(bytes.as_ref()).unwrap();
        let h = |name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(h(":message-type").as_deref(), Some("event"));
        assert_eq!(h(":event-type").as_deref(), Some("contentBlockDelta"));
        let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert_eq!(v["delta"]["text"], "héllo");
        let mut blocks = Blocks::default();
        let call = blocks.tool_use(&contract::ToolUseDelta {
            index: 0,
            id: "t1".into(),
            name: "f".into(),
            input_json: "{}".into(),
        });
        let types: Vec<_> = call
            .iter()
            .map(|b| read_message_from(b.as_ref()).unwrap())
            .map(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
                (v["contentBlockIndex"].as_u64(), v.get("start").is_some())
            })
            .collect();
        assert_eq!(types, vec![(Some(0), true), (Some(0), false)]);
        let after_text = Blocks::default();
        let mut after_text = after_text;
        after_text.text("a");
        let call = after_text.tool_use(&contract::ToolUseDelta {
            index: 0,
            id: "t1".into(),
            name: "f".into(),
            input_json: String::new(),
        });
        assert_eq!(call.len(), 2, "the text block stops, the tool block starts");
        let e =
            read_message_from(exception(AwsErrorType::Throttling, "slow down").as_ref()).unwrap();
        assert!(e.headers().iter().any(|h| h.name().as_str() == ":exception-type"));
    }
}
