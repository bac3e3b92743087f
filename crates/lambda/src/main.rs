//! `bootstrap`: the Lambda runtime loop (`lambda::runtime`) around `lambda::handle`.

/// mimalloc rather than glibc malloc: see the workspace Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: a function environment handles one invocation at a time (Lambda's own model),
// so worker threads would only hand its few tasks to one another and wait to be woken.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::runtime::RuntimeError> {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    let client = bedrock::BedrockClient::new(lambda::settings_from_env()).await;
    let client = &client;
    // A payload that is not a contract request is answered as the caller's error by
    // `parse_payload`, not as a runtime failure.
    lambda::runtime::run(|invocation: lambda::runtime::Invocation| async move {
        match lambda::parse_invocation(&invocation.payload)? {
            lambda::Event::Generate(req) => {
                lambda::handle(client, *req).await.map(|answer| match answer {
                    lambda::runtime::Answer::Buffered(done) => {
                        lambda::runtime::Answer::Buffered(lambda::Reply::Generated(done))
                    }
                    lambda::runtime::Answer::Streaming(lines) => {
                        lambda::runtime::Answer::Streaming(lines)
                    }
                })
            }
            lambda::Event::Embed(req) => lambda::embed(client, req)
                .await
                .map(|r| lambda::runtime::Answer::Buffered(lambda::Reply::Embedded(r))),
        }
    })
    .await
}
