//! Property tests of the Lambda function's event parser: any payload an invoker sends becomes
//! a contract request or an `InvalidRequest` function error (Lambda's `errorType`), never a
//! panic. The dedicated run: `PROPTEST_CASES=1000000 cargo test --release -p lambda --test fuzz_event`.

use lambda::runtime::Failure;
use proptest::prelude::*;
use serde_json::{json, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The sample event of deploy/aws/events, as MainService sends it.
fn valid() -> Value {
    json!({"model": "strata.smollm2-135m-instruct-v1:0", "messages": [{"role": 2, "content": "hi"}], "stream": true, "options": {"numPredict": 8, "temperature": 0.2}})
}

fn check(payload: Value) -> Result<(), TestCaseError> {
    check_bytes(&serde_json::to_vec(&payload).unwrap())
}

fn check_bytes(payload: &[u8]) -> Result<(), TestCaseError> {
    match lambda::parse_payload(payload) {
        Ok(_) => {}
        Err(e) => {
            prop_assert_eq!(e.0.kind(), contract::ErrorKind::InvalidRequest);
            let d: Failure = e.into();
            prop_assert_eq!(d.error_type, "InvalidRequest");
            prop_assert!(!d.error_message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_json_is_a_request_or_an_invalid_request(v in any_json()) {
        check(v)?;
    }

    #[test]
    fn mutated_events_are_requests_or_invalid_requests(fields in prop::collection::vec((prop_oneof![Just("model"), Just("messages"), Just("stream"), Just("options"), Just("rawPrompt"), Just("system"), Just("format"), Just("trace")], any_json()), 0..4)) {
        let mut v = valid();
        for (k, x) in fields {
            v[k] = x;
        }
        check(v)?;
    }

    #[test]
    fn any_bytes_are_a_request_or_an_invalid_request(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_bytes(&bytes)?;
    }
}

#[test]
fn the_sample_event_parses_and_a_non_object_is_refused() {
    let req = lambda::parse_event(valid()).unwrap();
    assert_eq!(req.messages[0].content, "hi");
    let e = lambda::parse_event(json!([1, 2])).unwrap_err();
    assert_eq!(e.0.kind(), contract::ErrorKind::InvalidRequest);
    let e = lambda::parse_event(json!({"model": "m", "messages": "hi"})).unwrap_err();
    assert!(e.0.message.contains("not a GenerateRequest"), "{}", e.0.message);
    let e = lambda::parse_payload(b"{\"model\": ").unwrap_err();
    assert!(e.0.message.contains("not JSON"), "{}", e.0.message);
}
