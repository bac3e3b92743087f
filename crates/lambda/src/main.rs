//! `bootstrap`: the Lambda runtime loop around `lambda::handle`.

use lambda_runtime::{service_fn, LambdaEvent};

/// mimalloc rather than glibc malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let client = bedrock::BedrockClient::new(lambda::settings_from_env()).await;
    let client = &client;
    // The payload arrives as plain JSON so that a malformed event is answered as the caller's
    // error by `parse_event`, not as a runtime failure.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let req = lambda::parse_event(event.payload)?;
        lambda::handle(client, req).await
    }))
    .await
}
