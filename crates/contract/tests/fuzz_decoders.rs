//! Property tests of strata's own decoders against arbitrary and split input: length-delimited
//! chunk streams, the Lambda NDJSON stream decoder, and the edge checks (prost's and serde's
//! generated decoders are theirs to test). Each must return a value or an error, never panic,
//! and never hold more than its limit. `PROPTEST_CASES=1000000 cargo test --release -p contract --test fuzz_decoders`
//! is the dedicated long run.

use bytes::BytesMut;
use contract::edge::{
    check_model_name, json_nests_deeper_than, next_length_delimited, BadModelName, FrameError,
};
use contract::lambda_stream::{LineDecoder, HTTP_INTEGRATION_CONTENT_TYPE};
use contract::{ChunkKind, StreamChunk};
use proptest::prelude::*;
use prost::Message as _;

/// Valid wire messages, to be cut and corrupted.
fn chunk() -> impl Strategy<Value = StreamChunk> {
    prop_oneof![
        ".{0,40}".prop_map(StreamChunk::delta),
        (any::<u32>(), ".{0,20}").prop_map(|(n, text)| StreamChunk::done(
            contract::GenerateResponse {
                message: Some(contract::Message::assistant(text)),
                usage: Some(contract::Usage { prompt_tokens: n, completion_tokens: n / 2 }),
                ..Default::default()
            }
        )),
        ".{0,20}".prop_map(|m| StreamChunk::error(contract::Error::new(
            contract::ErrorKind::Upstream,
            m
        ))),
    ]
}

/// Splits `bytes` at arbitrary points, as a network would.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at.into_iter().chain([bytes.len()]) {
        out.push(bytes[prev..c].to_vec());
        prev = c;
    }
    out
}

proptest! {
    /// A valid stream, split anywhere, decodes to exactly the chunks that were sent.
    #[test]
    fn length_delimited_streams_round_trip_whatever_the_splits(chunks in prop::collection::vec(chunk(), 0..6), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let mut wire = Vec::new();
        for c in &chunks {
            c.encode_length_delimited(&mut wire).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in pieces(&wire, &cuts) {
            buf.extend_from_slice(&piece);
            while let Some(c) = next_length_delimited::<StreamChunk>(&mut buf, 1 << 20) {
                out.push(c.unwrap());
            }
        }
        prop_assert_eq!(out, chunks);
        prop_assert!(buf.is_empty());
    }

    /// Garbage either decodes, waits for more (holding at most the limit plus one prefix), or
    /// fails; it never asks for more than `max` bytes of buffer.
    #[test]
    fn length_delimited_garbage_is_bounded(bytes in prop::collection::vec(any::<u8>(), 0..600), max in 0usize..256, cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let mut buf = BytesMut::new();
        'feed: for piece in pieces(&bytes, &cuts) {
            buf.extend_from_slice(&piece);
            loop {
                match next_length_delimited::<StreamChunk>(&mut buf, max) {
                    Some(Ok(_)) => {}
                    Some(Err(FrameError::TooLarge { len, .. })) => { prop_assert!(len > max as u64); break 'feed; }
                    Some(Err(FrameError::Invalid(_))) => break 'feed,
                    None => break,
                }
            }
            // Waiting means the announced message fits the limit: the caller's buffer is bounded.
            prop_assert!(buf.len() < max + 10, "{} bytes held, limit {}", buf.len(), max);
        }
    }

    /// The Lambda stream decoder: valid lines, split anywhere and behind a prelude, decode
    /// to the chunks sent; garbage gives error chunks; the buffer never exceeds its limit.
    #[test]
    fn lambda_lines_round_trip_whatever_the_splits(chunks in prop::collection::vec(chunk(), 0..6), cuts in prop::collection::vec(any::<usize>(), 0..12), prelude in any::<bool>()) {
        let mut wire = Vec::new();
        if prelude {
            wire.extend_from_slice(br#"{"statusCode":200,"headers":{"content-type":"application/x-ndjson"}}"#);
            wire.extend_from_slice(&[0; 8]);
        }
        for c in &chunks {
            wire.extend(serde_json::to_vec(c).unwrap());
            wire.push(b'\n');
        }
        let mut d = LineDecoder::new(prelude.then_some(HTTP_INTEGRATION_CONTENT_TYPE));
        let mut out = Vec::new();
        for piece in pieces(&wire, &cuts) {
            out.extend(d.push(&piece));
        }
        out.extend(d.finish());
        prop_assert_eq!(out, chunks);
    }

    #[test]
    fn lambda_garbage_is_bounded_and_answered(bytes in prop::collection::vec(any::<u8>(), 0..800), cuts in prop::collection::vec(any::<usize>(), 0..8), max in 1usize..128, prelude in any::<bool>()) {
        let mut d = LineDecoder::with_max_line(prelude.then_some(HTTP_INTEGRATION_CONTENT_TYPE), max);
        for piece in pieces(&bytes, &cuts) {
            let _ = d.push(&piece);
            prop_assert!(d.buffered() <= max, "{} bytes held, limit {}", d.buffered(), max);
        }
        let _ = d.finish();
    }

    /// The depth scan agrees with serde_json on every text serde_json accepts.
    #[test]
    fn json_depth_matches_the_parsed_value(v in arb_json(), max in 0usize..8) {
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(json_nests_deeper_than(&text, max), depth(&v) > max);
    }

    #[test]
    fn json_depth_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..70) {
        let _ = json_nests_deeper_than(&bytes, max);
    }

    /// Whatever a model name is, an accepted one has no path-climbing or foreign characters.
    #[test]
    fn accepted_model_names_cannot_leave_a_directory(name in "[a-zA-Z0-9./:@_\\\\\\-\u{0}\n ~]{0,24}", allow_files in any::<bool>()) {
        match check_model_name(&name, 16, allow_files) {
            Ok(()) => {
                prop_assert!(!name.is_empty() && name.len() <= 16);
                prop_assert!(!name.starts_with('/') && !name.contains('\\') && !name.contains('\0') && !name.contains("//"));
                prop_assert!(name.split('/').all(|s| s != ".." && s != "."));
                prop_assert!(allow_files || !name.to_ascii_lowercase().ends_with(".gguf"));
            }
            Err(e) => prop_assert!(e.to_string().starts_with("invalid model name"), "{e}"),
        }
    }

    #[test]
    fn arbitrary_unicode_names_never_panic(name in ".{0,40}") {
        if let Err(e) = check_model_name(&name, 32, false) {
            prop_assert!(!matches!(e, BadModelName::Empty) || name.is_empty());
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(serde_json::Value::from),
        "[\\[\\]{}\"\\\\a-z]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(10, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z{\\[]{0,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn a_chunk_line_is_a_chunk() {
    let mut d = LineDecoder::new(None);
    let out = d.push(b"{\"kind\":{\"delta\":{\"content\":\"x\"}}}\n");
    assert!(matches!(&out[0].kind, Some(ChunkKind::Delta(x)) if x.content == "x"));
}
