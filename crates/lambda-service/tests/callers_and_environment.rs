//! Who may call the service, and what a function sees of it: signed requests from the
//! configured caller only, GetFunction showing only the function's configured variables, and
//! function processes that get Lambda's variables and their own, never the service's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_lambda::config::{Credentials, Region};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::Client;
use lambda_service::{Application, FunctionSettings, LambdaServiceSettings, RoleCredentials};
use serde_json::{json, Value};

const CALLER_ID: &str = "AKIDCALLER";
const CALLER_SECRET: &str = "caller-secret-0123456789";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/function.py")
}

fn settings(caller: bool) -> LambdaServiceSettings {
    let mut f = FunctionSettings {
        path: fixture(),
        concurrency: 1,
        queue_depth: 4,
        timeout_ms: 10_000,
        ..Default::default()
    };
    f.env.insert("FIXTURE_EXTRA".into(), "configured".into());
    f.role_credentials = RoleCredentials {
        access_key_id: "ASIAROLE".into(),
        secret_access_key: api_keys::SharedSecret::new("role-secret"),
        session_token: api_keys::SharedSecret::new("role-token"),
    };
    let mut functions = BTreeMap::new();
    functions.insert("fixture".to_string(), f);
    let mut s = LambdaServiceSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        functions,
        ..Default::default()
    };
    if caller {
        s.caller_access_key_id = CALLER_ID.into();
        s.caller_secret_access_key = api_keys::SharedSecret::new(CALLER_SECRET);
    }
    s
}

async fn start(settings: LambdaServiceSettings) -> String {
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    url
}

fn client(url: &str, id: &str, secret: &str) -> Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

async fn invoke(c: &Client, name: &str, event: Value) -> Result<Value, String> {
    match c.invoke().function_name(name).payload(Blob::new(event.to_string())).send().await {
        Ok(out) => Ok(serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap()),
        Err(e) => Err(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()),
    }
}

#[tokio::test]
async fn only_requests_signed_with_the_callers_credentials_are_served() {
    let url = start(settings(true)).await;
    let caller = client(&url, CALLER_ID, CALLER_SECRET);
    assert_eq!(invoke(&caller, "fixture", json!({"n": 1})).await.unwrap()["event"]["n"], 1);
    // A name with `:` in it is encoded in the path, and encoded again in the signature.
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:fixture";
    assert_eq!(invoke(&caller, arn, json!({"n": 2})).await.unwrap()["event"]["n"], 2);
    let mut stream = caller
        .invoke_with_response_stream()
        .function_name("fixture")
        .payload(Blob::new("{}"))
        .send()
        .await
        .unwrap();
    assert!(stream.event_stream.recv().await.unwrap().is_some());

    let wrong_secret =
        invoke(&client(&url, CALLER_ID, "not-the-secret"), "fixture", json!({})).await.unwrap_err();
    assert!(wrong_secret.contains("InvalidSignatureException"), "{wrong_secret}");
    let unknown = invoke(&client(&url, "AKIDSOMEONE", CALLER_SECRET), "fixture", json!({}))
        .await
        .unwrap_err();
    assert!(unknown.contains("UnrecognizedClientException"), "{unknown}");

    // Unsigned: refused before anything else, GetFunction and ListFunctions included.
    let http = reqwest::Client::new();
    for (method, path) in [
        ("POST", "/2015-03-31/functions/fixture/invocations"),
        ("GET", "/2015-03-31/functions/fixture"),
        ("GET", "/2015-03-31/functions/"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        assert_eq!(r.headers()["x-amzn-errortype"], "MissingAuthenticationTokenException");
        assert_eq!(r.json::<Value>().await.unwrap()["message"], "Missing Authentication Token");
    }
    // A signature presented for another body does not carry over.
    let forged = http
        .post(format!("{url}/2015-03-31/functions/fixture/invocations"))
        .header("authorization", format!("AWS4-HMAC-SHA256 Credential={CALLER_ID}/20261205/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"))
        .header("x-amz-date", chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.headers()["x-amzn-errortype"], "InvalidSignatureException");
}

#[tokio::test]
async fn get_function_shows_the_configured_variables_only() {
    let url = start(settings(true)).await;
    let out = client(&url, CALLER_ID, CALLER_SECRET)
        .get_function()
        .function_name("fixture")
        .send()
        .await
        .unwrap();
    let vars = out.configuration().unwrap().environment().unwrap().variables().unwrap();
    assert_eq!(vars.len(), 1, "{vars:?}");
    assert_eq!(vars["FIXTURE_EXTRA"], "configured");
}

#[tokio::test]
async fn a_function_gets_lambdas_variables_and_its_own_never_the_services() {
    // The service's own environment is this test process's.
    std::env::set_var("STRATA_SERVICE_ONLY_CANARY", "leaked");
    std::env::set_var("AWS_SERVICE_ONLY_CANARY", "leaked");
    let url = start(settings(false)).await;
    let env =
        invoke(&client(&url, "any", "any"), "fixture", json!({"action": "env"})).await.unwrap();
    let env: BTreeMap<String, String> = serde_json::from_value(env).unwrap();
    assert!(
        !env.contains_key("STRATA_SERVICE_ONLY_CANARY")
            && !env.contains_key("AWS_SERVICE_ONLY_CANARY"),
        "{env:?}"
    );
    assert!(!env.contains_key("HOME") && !env.contains_key("CARGO_MANIFEST_DIR"), "{env:?}");
    assert_eq!(env["FIXTURE_EXTRA"], "configured");
    assert_eq!(
        (
            env["AWS_ACCESS_KEY_ID"].as_str(),
            env["AWS_SECRET_ACCESS_KEY"].as_str(),
            env["AWS_SESSION_TOKEN"].as_str()
        ),
        ("ASIAROLE", "role-secret", "role-token")
    );
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "fixture");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["_HANDLER"], "function.py");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin/:/bin:/opt/bin");
    assert_eq!(env["TZ"], ":UTC");
    assert!(env["AWS_LAMBDA_RUNTIME_API"].starts_with("127.0.0.1:"));
    assert_eq!(env["LAMBDA_TASK_ROOT"], fixture().parent().unwrap().display().to_string());
}

#[tokio::test]
async fn a_public_listener_needs_caller_credentials_or_an_explicit_opt_out() {
    let mut open = settings(false);
    open.listen = "0.0.0.0:0".parse().unwrap();
    let err = Application::build(open.clone()).await.err().expect("refused").to_string();
    assert!(
        err.contains("caller_secret_access_key")
            && err.contains("lambda_service.allow_unauthenticated = true"),
        "{err}"
    );
    open.allow_unauthenticated = true;
    assert!(Application::build(open).await.is_ok());
    let mut keyed = settings(true);
    keyed.listen = "0.0.0.0:0".parse().unwrap();
    assert!(Application::build(keyed).await.is_ok());
    let mut half = settings(false);
    half.caller_access_key_id = CALLER_ID.into();
    assert!(Application::build(half)
        .await
        .err()
        .expect("refused")
        .to_string()
        .contains("together"));
}
