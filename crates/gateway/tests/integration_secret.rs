//! The gateway's secret reaches the integration on every request, and a client cannot send
//! one of its own.

mod helpers;

use api_keys::SharedSecret;
use helpers::*;

#[tokio::test]
async fn the_integration_gets_the_gateways_secret_and_never_the_clients() {
    let app = spawn_app(|s| s.integration_secret = SharedSecret::new("gateway-only-secret")).await;
    for client_value in [None, Some("forged")] {
        let mut r = app.get("/v1/generate");
        if let Some(v) = client_value {
            r = r.header("x-strata-gateway-secret", v);
        }
        let (_, _, body) = read(r).await;
        assert_eq!(
            json(&body)["headers"]["x-strata-gateway-secret"],
            serde_json::json!(["gateway-only-secret"]),
            "client sent {client_value:?}"
        );
    }

    let open = spawn_app(|_| {}).await;
    let (_, _, body) =
        read(open.get("/v1/generate").header("x-strata-gateway-secret", "forged")).await;
    assert!(json(&body)["headers"].get("x-strata-gateway-secret").is_none(), "{body}");
}
