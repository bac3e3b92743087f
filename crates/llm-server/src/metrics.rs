//! Prometheus metrics for `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub tokens: IntCounterVec,
    pub queued: IntGauge,
    pub in_flight: IntGauge,
    pub active_sequences: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("strata_requests_total", "Requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "strata_request_duration_seconds",
                "Time to response headers by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new("strata_tokens_total", "Tokens processed, by kind (prompt, completion)"),
            &["kind"],
        )
        .expect("valid metric");
        let queued = IntGauge::new("strata_queue_depth", "Requests waiting for a generation slot")
            .expect("valid metric");
        let in_flight = IntGauge::new("strata_inflight_requests", "Generations in progress")
            .expect("valid metric");
        let active_sequences =
            IntGauge::new("strata_active_sequences", "Sequences the backend is decoding")
                .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(tokens.clone()),
            Box::new(queued.clone()),
            Box::new(in_flight.clone()),
            Box::new(active_sequences.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics { registry, requests, latency, tokens, queued, in_flight, active_sequences }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
