//! Building and running the emulator (same shape as every strata hop).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::EmulatorSettings;
use crate::generator::Generator;
use crate::routes;

pub const HOP: &str = "bedrock";

pub struct AppState {
    pub settings: EmulatorSettings,
    pub generator: Arc<dyn Generator>,
    pub in_flight: Arc<Semaphore>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    timeouts: telemetry::ConnectionTimeouts,
}

impl Application {
    pub async fn build(settings: EmulatorSettings, generator: Arc<dyn Generator>) -> std::io::Result<Application> {
        let listener = TcpListener::bind(settings.listen).await?;
        let state = Arc::new(AppState { in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))), generator, settings });
        Ok(Application { listener, timeouts: (&state.settings.connections).into(), router: router(state) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        telemetry::serve(self.listener, self.router, self.timeouts, shutdown).await
    }
}

fn router(state: Arc<AppState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/model/{model_id}/converse", post(routes::converse))
        .route("/model/{model_id}/converse-stream", post(routes::converse_stream))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(max_body))
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
