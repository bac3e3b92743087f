//! Building and running the gateway (same shape as every strata hop).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_keys::KeySource;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::Router;
use tokio::net::TcpListener;

use crate::config::{GatewaySettings, UsagePlan};
use crate::proxy;
use crate::route_table::RouteTable;
use crate::usage::UsageTracker;

pub const HOP: &str = "gateway";

pub struct AppState {
    pub settings: GatewaySettings,
    pub routes: RouteTable,
    /// The API keys in force; `api_keys_file` may change them while the gateway runs.
    pub keys: Arc<KeySource>,
    pub usage: UsageTracker,
    pub client: reqwest::Client,
    /// `integration_secret` as a header value, marked sensitive (kept out of debug output).
    pub integration_secret: Option<HeaderValue>,
}

impl AppState {
    /// Checks the settings and loads the keys.
    pub fn new(settings: GatewaySettings) -> io::Result<AppState> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let routes = RouteTable::new(&settings.routes).map_err(invalid)?;
        let keys = KeySource::load(settings.api_keys.clone(), settings.api_keys_file.clone())?;
        if !settings.usage_plans.contains_key(&settings.default_usage_plan) {
            return Err(invalid(format!(
                "default_usage_plan {:?} is not in usage_plans",
                settings.default_usage_plan
            )));
        }
        for (id, plan) in &settings.key_plans {
            if !settings.usage_plans.contains_key(plan) {
                return Err(invalid(format!(
                    "key_plans: key {id} names the unknown usage plan {plan:?}"
                )));
            }
            if !keys.keys().ids().any(|k| k == id) {
                tracing::warn!(key_id = %id, "key_plans names a key id that matches no configured key");
            }
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            // A proxy passes redirects to its caller.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(settings.integration_timeout_ms.max(1)))
            .build()
            .map_err(|e| io::Error::other(format!("building the HTTP client: {e}")))?;
        let integration_secret = match settings.integration_secret.expose() {
            "" => None,
            s => {
                let mut v = HeaderValue::from_str(s).map_err(|_| {
                    invalid("integration_secret must be printable ASCII".to_owned())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(AppState {
            routes,
            keys: Arc::new(keys),
            usage: UsageTracker::default(),
            client,
            integration_secret,
            settings,
        })
    }

    pub fn plan_for(&self, key_id: &str) -> &UsagePlan {
        let name = self.settings.key_plans.get(key_id).unwrap_or(&self.settings.default_usage_plan);
        // Both names were checked in `new`.
        &self.settings.usage_plans[name]
    }

    pub fn integration_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.integration_timeout_ms)
    }

    pub fn stream_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.stream_timeout_secs)
    }

    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.stream_idle_timeout_secs)
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    timeouts: telemetry::ConnectionLimits,
    /// The key file to watch while serving, and how often.
    reload: (Arc<KeySource>, Duration),
}

impl Application {
    pub async fn build(settings: GatewaySettings) -> io::Result<Application> {
        let state = Arc::new(AppState::new(settings)?);
        let listener = telemetry::listen(state.settings.listen).await?;
        let keys = state.keys.keys();
        let key_ids: Vec<&str> = keys.ids().collect();
        tracing::info!(routes = state.settings.routes.len(), api_keys = keys.len(), key_ids = ?key_ids, "gateway configured");
        if keys.is_empty() && state.settings.routes.iter().any(|r| r.api_key_required) {
            tracing::warn!(
                "no API keys configured: every route that requires one answers 403 Forbidden"
            );
        }
        let timeouts = (&state.settings.connections).into();
        let reload =
            (Arc::clone(&state.keys), Duration::from_millis(state.settings.api_keys_reload_ms));
        let header_limit = telemetry::HeaderLimit {
            max_bytes: state.settings.max_header_bytes,
            refuse: crate::error::header_refusal,
        };
        let router = Router::new()
            .fallback(proxy::handle)
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(header_limit, telemetry::header_limit))
            .with_state(state);
        Ok(Application { listener, timeouts, router, reload })
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
    ) -> io::Result<()> {
        // The watcher lives exactly as long as the server.
        let (keys, every) = self.reload;
        let _watcher = keys.watch_while_alive(every);
        telemetry::serve(self.listener, self.router, self.timeouts, shutdown).await
    }
}
