//! ConverseStream's `application/vnd.amazon.eventstream` frames, encoded with the official
//! `aws-smithy-eventstream` codec (prelude, headers, CRCs).

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

use crate::converse::{Metrics, TokenUsage};
use crate::error::AwsErrorType;

fn frame(headers: Vec<Header>, payload: serde_json::Value) -> Bytes {
    let message = Message::new_from_parts(headers, serde_json::to_vec(&payload).unwrap_or_default());
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

pub fn delta(text: &str) -> Bytes {
    event("contentBlockDelta", serde_json::json!({ "contentBlockIndex": 0, "delta": { "text": text } }))
}

pub fn block_stop() -> Bytes {
    event("contentBlockStop", serde_json::json!({ "contentBlockIndex": 0 }))
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
        let bytes = delta("héllo");
        let m = read_message_from(bytes.as_ref()).unwrap();
        let h = |name: &str| m.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| h.value().as_string().ok()).map(|s| s.as_str().to_owned());
        assert_eq!(h(":message-type").as_deref(), Some("event"));
        assert_eq!(h(":event-type").as_deref(), Some("contentBlockDelta"));
        let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert_eq!(v["delta"]["text"], "héllo");
        let e = read_message_from(exception(AwsErrorType::Throttling, "slow down").as_ref()).unwrap();
        assert!(e.headers().iter().any(|h| h.name().as_str() == ":exception-type"));
    }
}
