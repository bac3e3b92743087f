//! The W3C `traceparent` of the request being served, sent with each AWS SDK call it makes
//! (Lambda `Invoke`, Bedrock `Converse`) so that the next hop's logs join the trace; inside the
//! Lambda function also the invocation's X-Ray header (`X-Amzn-Trace-Id`).
//!
//! One interceptor is registered on a client at start-up and reads the current request's value
//! from a task-local. The SDK's per-call alternative (`customize().mutate_request(..)`) layers a
//! config override onto every operation, which made up a measurable share of the CPU each
//! request costs.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

tokio::task_local! {
    static TRACEPARENT: Option<String>;
    static XRAY_TRACE_ID: Option<String>;
}

/// Runs `call` (an SDK call's `send()`) with `traceparent` as the header
/// [`TraceInterceptor`] sends; `None` or an empty value sends none.
pub async fn with_traceparent<F: std::future::Future>(
    traceparent: Option<String>,
    call: F,
) -> F::Output {
    TRACEPARENT.scope(traceparent.filter(|t| !t.is_empty()), call).await
}

/// Runs `call` (a Lambda invocation's handler) with `trace_id`, the invocation's
/// `Lambda-Runtime-Trace-Id`, as the `X-Amzn-Trace-Id` every SDK call inside it sends.
///
/// On Lambda the SDK's recursion detection sends that header from the `_X_AMZN_TRACE_ID`
/// environment variable; `bootstrap` does not write its process environment per invocation
/// (see `lambda::runtime`), so the header is carried here instead.
pub async fn with_xray_trace_id<F: std::future::Future>(
    trace_id: Option<String>,
    call: F,
) -> F::Output {
    XRAY_TRACE_ID.scope(trace_id.filter(|t| !t.is_empty()), call).await
}

/// Register once per client: `config::Builder::interceptor(TraceInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl Intercept for TraceInterceptor {
    fn name(&self) -> &'static str {
        "TraceInterceptor"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Outside a `with_traceparent` scope (or without a trace) nothing is added.
        if let Some(tp) = TRACEPARENT.try_with(Clone::clone).ok().flatten() {
            context.request_mut().headers_mut().insert("traceparent", tp);
        }
        if let Some(id) = XRAY_TRACE_ID.try_with(Clone::clone).ok().flatten() {
            // As the SDK's recursion detection does: a header the call already has is kept.
            let headers = context.request_mut().headers_mut();
            if !headers.contains_key("x-amzn-trace-id") {
                headers.insert("x-amzn-trace-id", id);
            }
        }
        Ok(())
    }
}
