//! Property tests of MainService's edge: `/v1/generate` bodies in both encodings (JSON and
//! protobuf), arbitrary and mutated, through the decoder, validation and prompt formatting the
//! route uses. A request is either refused with a 4xx `ServiceError` naming what is wrong, or
//! valid and formatted; nothing panics. The dedicated run:
//! `PROPTEST_CASES=1000000 cargo test --release -p main-service --test fuzz_requests`.

use contract::{GenerateRequest, Message, Options, TraceContext};
use main_service::codec::Encoding;
use main_service::config::MainServiceSettings;
use main_service::domain::ValidatedRequest;
use main_service::error::ServiceError;
use main_service::format;
use proptest::prelude::*;
use prost::Message as _;

fn settings() -> MainServiceSettings {
    MainServiceSettings {
        max_messages: 8,
        max_message_bytes: 256,
        max_total_bytes: 1024,
        max_json_depth: 12,
        max_model_name_bytes: 64,
        ..Default::default()
    }
}

/// Decode, validate, format: what the route does before invoking the function.
fn edge(encoding: Encoding, body: &[u8]) -> Result<GenerateRequest, ServiceError> {
    let s = settings();
    let req: GenerateRequest = encoding.decode(body, s.max_json_depth)?;
    let v = ValidatedRequest::try_from((req, &s))?;
    Ok(format::prepare(v, &s, TraceContext::default()))
}

fn check(r: Result<GenerateRequest, ServiceError>) -> Result<(), TestCaseError> {
    match r {
        Ok(req) => {
            let s = settings();
            prop_assert!(!req.model.trim().is_empty() && req.model.len() <= s.max_model_name_bytes);
            prop_assert!(req.messages.len() <= s.max_messages);
            prop_assert!(!req.model.split('/').any(|seg| seg == ".."));
        }
        Err(e) => {
            let status = e.status().as_u16();
            prop_assert!([400, 404, 413, 415].contains(&status), "status {status}: {e:?}");
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

fn request() -> impl Strategy<Value = GenerateRequest> {
    let message =
        (-2i32..6, ".{0,40}").prop_map(|(role, content)| Message { role, content, blocks: vec![] });
    let options = (
        proptest::option::of(any::<f32>()),
        proptest::option::of(any::<i32>()),
        proptest::option::of(any::<i32>()),
        prop::collection::vec(".{0,4}", 0..3),
    )
        .prop_map(|(temperature, top_k, num_predict, stop)| Options {
            temperature,
            top_k,
            num_predict,
            stop,
            ..Default::default()
        });
    (
        prop_oneof!["[a-z0-9.:/_-]{0,20}", ".{0,70}", Just("../../etc/passwd".to_owned())],
        prop::collection::vec(message, 0..12),
        proptest::option::of(".{0,10}"),
        proptest::option::of(".{0,10}"),
        proptest::option::of(options),
        any::<bool>(),
        -1i32..4,
    )
        .prop_map(|(model, messages, system, raw_prompt, options, stream, format)| {
            GenerateRequest {
                model,
                messages,
                system,
                raw_prompt,
                options,
                stream,
                format,
                ..Default::default()
            }
        })
}

proptest! {
    #[test]
    fn arbitrary_bodies_are_refused_or_valid(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(edge(Encoding::Json, &body))?;
        check(edge(Encoding::Protobuf, &body))?;
    }

    #[test]
    fn generated_requests_are_refused_or_valid(req in request()) {
        check(edge(Encoding::Protobuf, &req.encode_to_vec()))?;
        check(edge(Encoding::Json, &serde_json::to_vec(&req).unwrap()))?;
    }

    #[test]
    fn corrupted_encodings_are_refused_or_valid(req in request(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        for mut wire in [req.encode_to_vec(), serde_json::to_vec(&req).unwrap()] {
            if wire.is_empty() {
                continue;
            }
            for (at, b) in &edits {
                let n = wire.len();
                wire[at % n] = *b;
            }
            wire.truncate(cut % (wire.len() + 1));
            check(edge(Encoding::Protobuf, &wire))?;
            check(edge(Encoding::Json, &wire))?;
        }
    }
}

#[test]
fn deep_json_is_refused_before_parsing() {
    let body =
        format!("{{\"model\":\"m\",\"messages\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let e = edge(Encoding::Json, body.as_bytes()).unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
    assert!(e.message.contains("deeper than 12 levels"), "{}", e.message);
}
