//! The headers a real SDK call carries with the interceptor registered, captured where the
//! request would leave the client.

use aws_sdk_lambda::config::{Credentials, Region};
use aws_smithy_http_client::test_util::capture_request;
use aws_trace::{with_traceparent, with_xray_trace_id, TraceInterceptor};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const XRAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

type Headers = (Option<String>, Option<String>);

/// The `traceparent` and `x-amzn-trace-id` of one `Invoke` made by `call` (the captured answer
/// is an empty 200; only the request matters).
async fn sent<F: std::future::Future>(call: impl FnOnce(aws_sdk_lambda::Client) -> F) -> Headers {
    let (http_client, request) = capture_request(None);
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .http_client(http_client)
        .interceptor(TraceInterceptor)
        .build();
    call(aws_sdk_lambda::Client::from_conf(config)).await;
    let req = request.expect_request();
    let header = |name| req.headers().get(name).map(str::to_owned);
    (header("traceparent"), header("x-amzn-trace-id"))
}

/// One `Invoke` made inside both scopes.
async fn sent_within(traceparent: Option<&str>, xray: Option<&str>) -> Headers {
    sent(|client| async move {
        let call = client.invoke().function_name("f").send();
        let _ = with_xray_trace_id(
            xray.map(str::to_owned),
            with_traceparent(traceparent.map(str::to_owned), call),
        )
        .await;
    })
    .await
}

#[tokio::test]
async fn both_headers_go_with_a_call_made_inside_their_scopes() {
    assert_eq!(
        sent_within(Some(TRACEPARENT), Some(XRAY)).await,
        (Some(TRACEPARENT.to_owned()), Some(XRAY.to_owned()))
    );
    assert_eq!(sent_within(None, Some(XRAY)).await, (None, Some(XRAY.to_owned())));
    assert_eq!(sent_within(Some(TRACEPARENT), None).await, (Some(TRACEPARENT.to_owned()), None));
}

#[tokio::test]
async fn an_empty_value_sends_no_header() {
    assert_eq!(sent_within(Some(""), Some("")).await, (None, None));
}

#[tokio::test]
async fn a_call_outside_any_scope_carries_neither() {
    let headers = sent(|client| async move {
        let _ = client.invoke().function_name("f").send().await;
    })
    .await;
    assert_eq!(headers, (None, None));
}
