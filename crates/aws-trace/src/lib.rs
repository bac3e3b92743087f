//! The W3C `traceparent` of the request being served, sent with each AWS SDK call it makes
//! (Lambda `Invoke`, Bedrock `Converse`) so that the next hop's logs join the trace.
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
}

/// Runs `call` (an SDK call's `send()`) with `traceparent` as the header
/// [`TraceparentInterceptor`] sends; `None` or an empty value sends none.
pub async fn with_traceparent<F: std::future::Future>(traceparent: Option<String>, call: F) -> F::Output {
    TRACEPARENT.scope(traceparent.filter(|t| !t.is_empty()), call).await
}

/// Register once per client: `config::Builder::interceptor(TraceparentInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceparentInterceptor;

impl Intercept for TraceparentInterceptor {
    fn name(&self) -> &'static str {
        "TraceparentInterceptor"
    }

    fn modify_before_transmit(&self, context: &mut BeforeTransmitInterceptorContextMut<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        // Outside a `with_traceparent` scope (or without a trace) nothing is added.
        if let Some(tp) = TRACEPARENT.try_with(Clone::clone).ok().flatten() {
            context.request_mut().headers_mut().insert("traceparent", tp);
        }
        Ok(())
    }
}
