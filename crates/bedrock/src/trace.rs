//! The W3C `traceparent` of the request being served, carried to Bedrock as a header so that
//! Bedrock-side logs (the emulator's) join the trace.
//!
//! One interceptor is registered on the client at start-up and reads the current request's
//! value from a task-local. The SDK's per-call alternative (`customize().mutate_request(..)`)
//! layers a config override onto every operation, which made up a measurable share of the
//! CPU each request costs.

use aws_sdk_bedrockruntime::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

tokio::task_local! {
    static TRACEPARENT: Option<String>;
}

/// Runs `call` with `traceparent` as the header the interceptor sends.
pub(crate) async fn with_traceparent<F: std::future::Future>(traceparent: Option<String>, call: F) -> F::Output {
    TRACEPARENT.scope(traceparent, call).await
}

#[derive(Debug)]
pub(crate) struct TraceparentInterceptor;

impl Intercept for TraceparentInterceptor {
    fn name(&self) -> &'static str {
        "TraceparentInterceptor"
    }

    fn modify_before_transmit(&self, context: &mut BeforeTransmitInterceptorContextMut<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        // Outside a `with_traceparent` scope (or without a trace) nothing is added.
        let traceparent = TRACEPARENT.try_with(Clone::clone).ok().flatten();
        if let Some(tp) = traceparent {
            context.request_mut().headers_mut().insert("traceparent", tp);
        }
        Ok(())
    }
}
