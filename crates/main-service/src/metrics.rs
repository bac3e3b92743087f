//! Counters in the Prometheus text format (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The Lambda operations this service calls, as they appear in metric labels.
pub const INVOKE: &str = "invoke";
pub const INVOKE_STREAM: &str = "invoke_with_response_stream";

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    invocations: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    summarize: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        bump(&self.requests, (route.to_owned(), status));
    }

    /// One attempt at invoking the function. `outcome`: `ok`, `function_error`, `throttled`,
    /// `service_error`, `connection_error`, `timeout`.
    pub fn invocation(&self, operation: &'static str, outcome: &'static str) {
        bump(&self.invocations, (operation, outcome));
    }

    pub fn retry(&self, operation: &'static str) {
        bump(&self.retries, operation);
    }

    /// An invocation made for a summary: `map` (one part), `combine` (an intermediate reduce
    /// of a group) or `reduce` (the final answer).
    pub fn summarize_invocation(&self, phase: &'static str) {
        bump(&self.summarize, phase);
    }

    pub fn render(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
        }
        let mut out = String::new();
        out.push_str("# HELP main_service_requests_total HTTP requests answered, by route and status.\n# TYPE main_service_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().map(|m| m.clone()).unwrap_or_default() {
            let _ = writeln!(
                out,
                "main_service_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(&route)
            );
        }
        out.push_str("# HELP main_service_lambda_invocations_total Lambda invocation attempts, by operation and outcome.\n# TYPE main_service_lambda_invocations_total counter\n");
        for ((op, outcome), n) in self.invocations.lock().map(|m| m.clone()).unwrap_or_default() {
            let _ = writeln!(out, "main_service_lambda_invocations_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP main_service_lambda_retries_total Lambda invocations sent again after a retryable failure.\n# TYPE main_service_lambda_retries_total counter\n");
        for (op, n) in self.retries.lock().map(|m| m.clone()).unwrap_or_default() {
            let _ = writeln!(out, "main_service_lambda_retries_total{{operation=\"{op}\"}} {n}");
        }
        out.push_str("# HELP main_service_summarize_invocations_total Lambda invocations made by summaries, by phase.\n# TYPE main_service_summarize_invocations_total counter\n");
        for (phase, n) in self.summarize.lock().map(|m| m.clone()).unwrap_or_default() {
            let _ =
                writeln!(out, "main_service_summarize_invocations_total{{phase=\"{phase}\"}} {n}");
        }
        out
    }
}

/// Middleware counting every answer by its route template and status.
pub async fn count_requests(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics.request(&route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("/v1/generate", 200);
        m.request("/v1/generate", 200);
        m.invocation(INVOKE, "ok");
        m.retry(INVOKE);
        let text = m.render();
        assert!(
            text.contains("main_service_requests_total{route=\"/v1/generate\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "main_service_lambda_invocations_total{operation=\"invoke\",outcome=\"ok\"} 1\n"
        ));
        assert!(text.contains("main_service_lambda_retries_total{operation=\"invoke\"} 1\n"));
    }
}
