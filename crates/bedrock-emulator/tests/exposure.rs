//! Secure by default: the emulator does not serve the network without checking keys unless
//! told to.

use std::sync::Arc;

use bedrock_emulator::{Application, AuthMode, EmulatorSettings};

async fn build(settings: EmulatorSettings) -> std::io::Result<Application> {
    let generator = Arc::new(instant::InstantGenerator::new(settings.instant.clone()));
    Application::build(settings, generator).await
}

#[tokio::test]
async fn a_public_listener_needs_keys_or_an_explicit_opt_out() {
    let public = EmulatorSettings { listen: "0.0.0.0:0".parse().unwrap(), ..Default::default() };
    // The default `auth = "any"` takes any credential without checking it: refused.
    let refused =
        build(public.clone()).await.err().expect("an unchecked public emulator must not start");
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    let message = refused.to_string();
    assert!(
        message.contains("bedrock_emulator.allow_unauthenticated")
            && message.contains("auth = \"keys\""),
        "{message}"
    );
    assert!(build(EmulatorSettings { auth: AuthMode::Off, ..public.clone() }).await.is_err());

    assert!(build(EmulatorSettings {
        auth: AuthMode::Keys,
        api_keys: vec!["k".into()],
        ..public.clone()
    })
    .await
    .is_ok());
    assert!(build(EmulatorSettings { allow_unauthenticated: true, ..public }).await.is_ok());
    // Loopback, as `strata up` and the tests run it, needs neither.
    assert!(build(EmulatorSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .is_ok());
}
