//! Building and running the service (same shape as every strata hop).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::MainServiceSettings;
use crate::gateway_auth::require_gateway;
use crate::lambda::Invoker;
use crate::metrics::{count_requests, Metrics};
use crate::routes;

pub const HOP: &str = "main-service";

pub struct AppState {
    pub settings: MainServiceSettings,
    pub invoker: Invoker,
    pub metrics: Arc<Metrics>,
}

/// Refuses settings the service cannot work with: templates that do not parse, a zero
/// token ratio, a summary limit that refuses every document.
pub fn check(settings: &MainServiceSettings) -> Result<(), String> {
    if !(settings.chars_per_token.is_finite() && settings.chars_per_token > 0.0) {
        return Err(format!("chars_per_token must be positive, not {}", settings.chars_per_token));
    }
    if settings.summarize.max_parts == 0 {
        return Err("summarize.max_parts must be at least 1".to_owned());
    }
    let env = minijinja::Environment::new();
    let s = &settings.summarize;
    let mut templates = vec![
        ("summarize.single_prompt", &s.single_prompt),
        ("summarize.map_prompt", &s.map_prompt),
        ("summarize.reduce_prompt", &s.reduce_prompt),
        ("default_model.system_prompt", &settings.default_model.system_prompt),
    ];
    let named: Vec<(String, &String)> = settings
        .models
        .iter()
        .filter_map(|(name, m)| {
            m.system_prompt.as_ref().map(|p| (format!("models.{name:?}.system_prompt"), p))
        })
        .collect();
    templates.extend(named.iter().map(|(n, p)| (n.as_str(), *p)));
    for (name, t) in templates {
        env.template_from_str(t).map_err(|e| format!("{name} is not a valid template: {e}"))?;
    }
    Ok(())
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(settings: MainServiceSettings) -> io::Result<Application> {
        check(&settings).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        api_keys::require_authentication(
            HOP,
            settings.listen,
            !settings.gateway_secret.is_empty(),
            settings.allow_unauthenticated,
            "Give it the gateway's secret with `main_service.gateway_secret` (STRATA_MAIN_SERVICE__GATEWAY_SECRET) and the same value to the gateway as `gateway.integration_secret` (STRATA_GATEWAY__INTEGRATION_SECRET)",
            "main_service.allow_unauthenticated",
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = telemetry::listen(settings.listen).await?;
        let gateway_secret = Arc::new(
            (!settings.gateway_secret.is_empty()).then(|| settings.gateway_secret.verifier()),
        );
        let metrics = Arc::new(Metrics::default());
        let invoker = Invoker::new(settings.lambda.clone(), Arc::clone(&metrics)).await;
        tracing::info!(function = %settings.lambda.function_name, models = settings.models.len(), allowed_models = settings.allowed_models.len(), gateway_secret = !settings.gateway_secret.is_empty(), "main-service configured");
        let header_limit = telemetry::HeaderLimit {
            max_bytes: settings.max_header_bytes,
            refuse: crate::error::header_refusal,
        };
        let state = Arc::new(AppState { settings, invoker, metrics: Arc::clone(&metrics) });
        let v1 = Router::new()
            .route("/v1/generate", post(routes::generate::generate))
            .route("/v1/summarize", post(routes::summarize::summarize))
            .route("/v1/embed", post(routes::embed::embed))
            .route_layer(axum::middleware::from_fn_with_state(gateway_secret, require_gateway));
        let router = v1
            .route("/healthz", get(routes::health::healthz))
            .route("/metrics", get(routes::health::metrics))
            .route_layer(axum::middleware::from_fn_with_state(metrics, count_requests))
            .layer(axum::middleware::from_fn_with_state(header_limit, telemetry::header_limit))
            .layer(axum::middleware::from_fn_with_state(HOP, telemetry::access_log))
            .with_state(Arc::clone(&state));
        Ok(Application { listener, router, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The service's counters (what `GET /metrics` renders).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.metrics)
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let timeouts = (&self.state.settings.connections).into();
        telemetry::serve(self.listener, self.router, timeouts, shutdown).await
    }
}
