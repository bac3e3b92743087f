//! Building and running the emulator (same shape as every strata hop).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_keys::KeySource;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{AuthMode, EmulatorSettings};
use crate::faults::Faults;
use crate::generator::Generator;
use crate::routes;

pub const HOP: &str = "bedrock";

pub struct AppState {
    pub settings: EmulatorSettings,
    /// The API keys in force; `api_keys_file` may change them while the emulator runs.
    pub keys: Arc<KeySource>,
    pub faults: Faults,
    pub generator: Arc<dyn Generator>,
    pub in_flight: Arc<Semaphore>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    timeouts: telemetry::ConnectionLimits,
    /// The key file to watch while serving, and how often.
    reload: (Arc<KeySource>, Duration),
}

impl Application {
    pub async fn build(
        settings: EmulatorSettings,
        generator: Arc<dyn Generator>,
    ) -> std::io::Result<Application> {
        // `auth = "any"` checks that a credential is present, not that it is valid.
        api_keys::require_authentication(
            "bedrock-emulator",
            settings.listen,
            settings.auth == AuthMode::Keys,
            settings.allow_unauthenticated,
            "Give it Bedrock API keys with `bedrock_emulator.auth = \"keys\"` and `api_keys` (its callers send one as AWS_BEARER_TOKEN_BEDROCK)",
            "bedrock_emulator.allow_unauthenticated",
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = telemetry::listen(settings.listen).await?;
        let faults = Faults::new(&settings.faults)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let keys =
            Arc::new(KeySource::load(settings.api_keys.clone(), settings.api_keys_file.clone())?);
        if settings.auth == AuthMode::Keys {
            // Only key ids are logged, never keys.
            let in_force = keys.keys();
            let ids: Vec<&str> = in_force.ids().collect();
            tracing::info!(api_keys = ids.len(), key_ids = ?ids, "bedrock-emulator accepts API keys");
        }
        let reload = (Arc::clone(&keys), Duration::from_millis(settings.api_keys_reload_ms));
        let state = Arc::new(AppState {
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            generator,
            keys,
            faults,
            settings,
        });
        Ok(Application {
            listener,
            timeouts: (&state.settings.connections).into(),
            router: router(state),
            reload,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The watcher lives exactly as long as the server.
        let (keys, every) = self.reload;
        let _watcher = keys.watch_while_alive(every);
        telemetry::serve(self.listener, self.router, self.timeouts, shutdown).await
    }
}

fn router(state: Arc<AppState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    let header_limit = telemetry::HeaderLimit {
        max_bytes: state.settings.max_header_bytes,
        refuse: crate::error::header_refusal,
    };
    Router::new()
        .route("/model/{model_id}/converse", post(routes::converse))
        .route("/model/{model_id}/converse-stream", post(routes::converse_stream))
        .route("/model/{model_id}/invoke", post(routes::invoke))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(header_limit, telemetry::header_limit))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn_with_state(HOP, telemetry::access_log))
        .with_state(state)
}

/// Every AWS response carries `x-amzn-RequestId`.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<telemetry::RequestInfo>()
        .map(|i| i.request_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut r = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}
