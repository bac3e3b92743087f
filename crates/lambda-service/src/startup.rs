//! Building and running the service (same shape as every strata hop).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::caller_auth::require_signature;
use crate::config::LambdaServiceSettings;
use crate::faults::Faults;
use crate::function::{Function, Shared};
use crate::routes;
use crate::sigv4::Verifier;

pub const HOP: &str = "lambda";

pub struct AppState {
    pub settings: LambdaServiceSettings,
    /// Checks callers' signatures; `None` when no caller credentials are configured.
    pub verifier: Option<Verifier>,
    pub functions: BTreeMap<String, Arc<Function>>,
    pub faults: Faults,
}

/// The caller check the settings ask for, refusing a non-loopback listener without one.
fn caller_verifier(settings: &LambdaServiceSettings) -> Result<Option<Verifier>, String> {
    let (id, secret) = (&settings.caller_access_key_id, &settings.caller_secret_access_key);
    if id.is_empty() != secret.is_empty() {
        return Err("lambda_service.caller_access_key_id and caller_secret_access_key are set together or not at all".to_owned());
    }
    api_keys::require_authentication(
        "lambda-service",
        settings.listen,
        !id.is_empty(),
        settings.allow_unauthenticated,
        "Give its callers credentials with `lambda_service.caller_access_key_id` and `caller_secret_access_key` \
         (STRATA_LAMBDA_SERVICE__CALLER_SECRET_ACCESS_KEY), the same ones MainService signs with (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
        "lambda_service.allow_unauthenticated",
    )?;
    Ok((!id.is_empty()).then(|| Verifier {
        access_key_id: id.clone(),
        secret_access_key: secret.expose().to_owned(),
        region: settings.region.clone(),
        service: "lambda",
    }))
}

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    stop_functions: CancellationToken,
}

impl Application {
    /// Binds the service and starts every function's environments.
    pub async fn build(settings: LambdaServiceSettings) -> std::io::Result<Application> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let faults = Faults::new(&settings.faults).map_err(invalid)?;
        let verifier = caller_verifier(&settings).map_err(invalid)?;
        let listener = telemetry::listen(settings.listen).await?;
        let stop_functions = CancellationToken::new();
        let mut functions = BTreeMap::new();
        for (name, f) in &settings.functions {
            let (queue_tx, queue_rx) = async_channel::unbounded();
            let shared = Shared {
                name: name.clone(),
                arn: format!(
                    "arn:aws:lambda:{}:{}:function:{name}",
                    settings.region, settings.account_id
                ),
                region: settings.region.clone(),
                settings: f.clone(),
                max_payload_bytes: settings.max_payload_bytes,
                max_stream_bytes: settings.max_stream_bytes,
                exit_drain: std::time::Duration::from_millis(settings.exit_drain_ms),
                // A runtime long-polls `/next` and may sit between invocations for as long as
                // none arrive, so only the header read timeout applies.
                // A streamed function response is one long request body: no body deadline here.
                runtime_api_timeouts: telemetry::ConnectionLimits {
                    idle: None,
                    body_read: None,
                    ..(&settings.connections).into()
                },
                queue_tx,
                queue_rx,
                cold_starts: Default::default(),
            };
            functions.insert(name.clone(), Function::start(shared, stop_functions.clone()).await?);
        }
        tracing::info!(
            functions = functions.len(),
            callers_verified = verifier.is_some(),
            "lambda-service configured"
        );
        Ok(Application {
            listener,
            state: Arc::new(AppState { settings, verifier, functions, faults }),
            stop_functions,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn function(&self, name: &str) -> Option<Arc<Function>> {
        self.state.functions.get(name).cloned()
    }

    /// Serves until `shutdown`, then stops every function process.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop_functions.clone();
        // Function processes go down with the service even when it is dropped, not stopped.
        let _guard = stop.clone().drop_guard();
        let state = Arc::clone(&self.state);
        let timeouts = (&self.state.settings.connections).into();
        let result = telemetry::serve(self.listener, router(self.state), timeouts, shutdown).await;
        stop.cancel();
        for f in state.functions.values() {
            f.stopped().await;
        }
        result
    }
}

/// Every AWS response carries `x-amzn-RequestId`; invocations set their own (the id the
/// function sees), everything else gets a fresh one.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut r = next.run(req).await;
    if !r.headers().contains_key("x-amzn-requestid") {
        if let Ok(v) = axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            r.headers_mut().insert("x-amzn-RequestId", v);
        }
    }
    r
}

fn router(state: Arc<AppState>) -> Router {
    let header_limit = telemetry::HeaderLimit {
        max_bytes: state.settings.max_header_bytes,
        refuse: crate::errors::header_refusal,
    };
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(routes::invoke))
        .route(
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            post(routes::invoke_with_response_stream),
        )
        .route("/2015-03-31/functions/", get(routes::list_functions))
        .route("/2015-03-31/functions", get(routes::list_functions))
        .route("/2015-03-31/functions/{name}", get(routes::get_function))
        .fallback(routes::unknown)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), require_signature))
        // Payload limits are enforced by the handlers, in Lambda's own error shape.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(header_limit, telemetry::header_limit))
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::middleware::from_fn_with_state(HOP, telemetry::access_log))
        .with_state(state)
}
