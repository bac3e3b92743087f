//! MainService answers only its gateway: the real gateway in front adds the shared secret;
//! anyone calling MainService directly, or through a gateway without the secret, gets 403.

mod helpers;

use api_keys::SharedSecret;
use helpers::*;
use main_service::{Application, MainServiceSettings};
use serde_json::Value;

const SECRET: &str = "gateway-to-main-service-secret";
const KEY: &str = "client-key-0123456789";

async fn gateway_in_front(main_service: &str, secret: &str) -> String {
    let settings = gateway::GatewaySettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        routes: vec![gateway::RouteSettings { url: main_service.to_owned(), ..Default::default() }],
        api_keys: vec![KEY.to_owned()],
        integration_secret: SharedSecret::new(secret),
        ..Default::default()
    };
    let app = gateway::Application::build(settings).await.unwrap();
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    url
}

#[tokio::test]
async fn only_requests_through_the_gateway_with_the_secret_are_served() {
    let c = chain(Options::default(), |s| s.gateway_secret = SharedSecret::new(SECRET)).await;
    let through = gateway_in_front(&c.url, SECRET).await;
    let r = c
        .client
        .post(format!("{through}/v1/generate"))
        .header("x-api-key", KEY)
        .json(&generate(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let direct = c.post_json("/v1/generate", &generate(MODEL_ID, false)).await;
    assert_eq!(direct.status(), 403);
    let body: Value = direct.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "UNAUTHORIZED");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("missing x-strata-gateway-secret"),
        "{body}"
    );
    let forged = c
        .client
        .post(format!("{}/v1/summarize", c.url))
        .header("x-strata-gateway-secret", "guess")
        .json(&generate(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let wrong_gateway = gateway_in_front(&c.url, "another-secret").await;
    let r = c
        .client
        .post(format!("{wrong_gateway}/v1/generate"))
        .header("x-api-key", KEY)
        .json(&generate(MODEL_ID, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The refusal is logged with the trace id, never with the secret.
    let line = logs().wait_for(|l| l.contains("not from the gateway")).await;
    assert!(
        line.contains("trace_id") && !line.contains(SECRET) && !line.contains("another-secret"),
        "{line}"
    );

    // Health checks and metrics need no secret (load balancers cannot send one).
    assert_eq!(c.client.get(format!("{}/healthz", c.url)).send().await.unwrap().status(), 200);
    assert_eq!(
        c.metric("main_service_requests_total{route=\"/v1/generate\",status=\"403\"}").await,
        2
    );
}

#[tokio::test]
async fn a_public_listener_needs_the_secret_or_an_explicit_opt_out() {
    let public = MainServiceSettings { listen: "0.0.0.0:0".parse().unwrap(), ..Default::default() };
    let err = Application::build(public.clone()).await.err().expect("refused").to_string();
    assert!(
        err.contains("STRATA_MAIN_SERVICE__GATEWAY_SECRET")
            && err.contains("main_service.allow_unauthenticated = true"),
        "{err}"
    );
    assert!(Application::build(MainServiceSettings {
        allow_unauthenticated: true,
        ..public.clone()
    })
    .await
    .is_ok());
    assert!(Application::build(MainServiceSettings {
        gateway_secret: SharedSecret::new(SECRET),
        ..public
    })
    .await
    .is_ok());
}
