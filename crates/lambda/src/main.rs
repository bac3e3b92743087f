//! `bootstrap`: the Lambda runtime loop around `lambda::handle`.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let client = bedrock::BedrockClient::new(lambda::settings_from_env()).await;
    let client = &client;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<contract::GenerateRequest>| async move {
        lambda::handle(client, event.payload).await
    }))
    .await
}
