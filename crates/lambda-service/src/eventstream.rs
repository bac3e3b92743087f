//! InvokeWithResponseStream's event stream: `PayloadChunk` events carrying the function's
//! bytes, then one `InvokeComplete`, framed with the official `aws-smithy-eventstream` codec.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

fn frame(event_type: &'static str, content_type: &'static str, payload: Vec<u8>) -> Bytes {
    let headers = vec![
        Header::new(":event-type", HeaderValue::String(event_type.into())),
        Header::new(":content-type", HeaderValue::String(content_type.into())),
        Header::new(":message-type", HeaderValue::String("event".into())),
    ];
    let mut buf = Vec::with_capacity(payload.len() + 96);
    // Encoding fails only for oversized headers; these are fixed and small.
    if write_message_to(&Message::new_from_parts(headers, payload), &mut buf).is_err() {
        return Bytes::new();
    }
    Bytes::from(buf)
}

pub fn payload_chunk(data: &[u8]) -> Bytes {
    frame("PayloadChunk", "application/octet-stream", data.to_vec())
}

/// The last event: empty on success, `ErrorCode` / `ErrorDetails` when the function failed.
pub fn invoke_complete(error: Option<(&str, &str)>) -> Bytes {
    let body = match error {
        Some((code, details)) => serde_json::json!({ "ErrorCode": code, "ErrorDetails": details }),
        None => serde_json::json!({}),
    };
    frame("InvokeComplete", "application/json", serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_decode_with_the_official_codec() {
        let mut bytes = payload_chunk(b"hello");
        let m = read_message_from(&mut bytes).unwrap();
        assert_eq!(m.payload().as_ref(), b"hello");
        assert!(m.headers().iter().any(|h| h.name().as_str() == ":event-type"
            && h.value().as_string().unwrap().as_str() == "PayloadChunk"));
        let mut bytes = invoke_complete(Some(("Sandbox.Timedout", "late")));
        let m = read_message_from(&mut bytes).unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert_eq!(v["ErrorCode"], "Sandbox.Timedout");
    }
}
