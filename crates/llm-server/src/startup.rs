//! Building and running the server: `Application::build` binds the listener (port 0 in tests)
//! and `run_until_stopped` serves until the shutdown future resolves, then lets in-flight
//! streams finish for the configured grace period before ending them with an error line.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::ServerSettings;
use crate::edge;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::routes::{meta, ollama, openai};
use crate::security::{self, HostPolicy, Keys, OriginPolicy};

pub struct AppState {
    pub settings: ServerSettings,
    pub backend: Arc<dyn Backend>,
    pub limiter: Limiter,
    pub metrics: Metrics,
    /// The API keys callers must present (none configured: no authentication).
    pub keys: Arc<Keys>,
    /// Which host names this listener answers.
    pub hosts: Arc<HostPolicy>,
    /// Which browser origins may call it.
    pub origins: Arc<OriginPolicy>,
    /// Cancelled when the shutdown grace period is over: streams still running end with an error.
    pub hard_stop: CancellationToken,
}

impl AppState {
    /// The state of a server listening on `listen`: loads its keys and refuses to serve a
    /// non-loopback address without them (unless `allow_unauthenticated`).
    pub fn new(
        settings: ServerSettings,
        backend: Arc<dyn Backend>,
        listen: SocketAddr,
    ) -> std::io::Result<AppState> {
        let keys = Keys::load(&settings)?;
        security::check_exposure(&settings, listen, keys.required())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
        tracing::info!(api_key_ids = ?keys.ids(), authentication = keys.required(), "front door configured");
        Ok(AppState {
            keys: Arc::new(keys),
            hosts: Arc::new(HostPolicy::new(listen.ip().is_loopback(), &settings.allowed_hosts)),
            origins: Arc::new(OriginPolicy::new(&settings.allowed_origins)),
            limiter: Limiter::new(settings.max_concurrent_requests, settings.max_queued_requests),
            metrics: Metrics::new(),
            hard_stop: CancellationToken::new(),
            backend,
            settings,
        })
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
}

pub const HOP: &str = "llm-server";

impl Application {
    pub async fn build(
        settings: ServerSettings,
        backend: Arc<dyn Backend>,
    ) -> std::io::Result<Application> {
        let listener = telemetry::listen(settings.listen).await?;
        let state = Arc::new(AppState::new(settings, backend, listener.local_addr()?)?);
        Ok(Application { listener, router: router(Arc::clone(&state)), state })
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
        let grace = Duration::from_secs(self.state.settings.shutdown_grace_secs);
        let hard_stop = self.state.hard_stop.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!(
                grace_secs = grace.as_secs(),
                "shutting down: no new connections; in-flight requests may finish"
            );
            let hard_stop = hard_stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                hard_stop.cancel();
            });
        };
        let limits = (&self.state.settings.connections).into();
        // The key file is watched exactly as long as the server runs.
        let _watcher = self.state.keys.watch();
        telemetry::serve(self.listener, self.router, limits, signal).await
    }
}

/// The API behind its guards. Outermost first: the access log, the header limit, the host
/// check, the origin check (and CORS), the API key, then metrics and the routes.
pub fn router(state: Arc<AppState>) -> Router {
    // Ollama routes strata does not serve answer 501 on the method Ollama serves them with,
    // and 405 (like every route) on any other method.
    let ollama_unsupported = [
        ("/api/create", post(meta::not_implemented)),
        ("/api/copy", post(meta::not_implemented)),
        ("/api/delete", delete(meta::not_implemented)),
        ("/api/push", post(meta::not_implemented)),
        ("/api/blobs/{digest}", post(meta::not_implemented).head(meta::not_implemented)),
    ];
    let mut r = Router::new()
        .route("/", get(meta::root).head(meta::root))
        .route("/api/version", get(meta::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/pull", post(ollama::pull))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .route("/metrics", get(meta::metrics));
    for (path, methods) in ollama_unsupported {
        r = r.route(path, methods);
    }
    let max_body = state.settings.max_body_bytes;
    r.fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record_metrics))
        .layer(middleware::from_fn_with_state(Arc::clone(&state.keys), security::keys::check))
        .layer(middleware::from_fn_with_state(Arc::clone(&state.origins), security::origin::check))
        .layer(middleware::from_fn_with_state(Arc::clone(&state.hosts), security::host::check))
        .layer(middleware::from_fn_with_state(
            telemetry::HeaderLimit {
                max_bytes: state.settings.max_header_bytes,
                refuse: edge::header_refusal,
            },
            telemetry::header_limit,
        ))
        .layer(middleware::from_fn_with_state(HOP, telemetry::access_log))
        .with_state(state)
}

async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(req).await;
    state.metrics.latency.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    state.metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
