//! An open-loop load generator. Requests are due on a fixed schedule (one every 1/rate
//! seconds) whatever the answers' pace, and each latency counts from the moment its request was
//! due, not from when it was sent: a target (or this generator) falling behind shows in the
//! figures instead of quietly lowering the offered load ("coordinated omission"). Requests in
//! flight are capped; one due while the cap is reached is not sent and counts as an error, so an
//! overloaded target cannot make the generator grow without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::header::HeaderMap;
use tokio::sync::Semaphore;

use crate::soak::without_url;

/// One request, sent again and again: the body is serialised once.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests due per second.
    pub rate: f64,
    /// The schedule's length: `ceil(rate * duration)` requests are due.
    pub duration: Duration,
    /// Requests outstanding at most; one due beyond this counts as an overflow error.
    pub max_in_flight: usize,
    /// A request without a complete answer this long after it was sent is a timeout error.
    pub timeout: Duration,
}

/// What one run at one rate saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub load: Load,
    /// Requests due in the schedule (sent or overflowed).
    pub due: u64,
    /// Complete 2xx answers.
    pub ok: u64,
    /// Complete answers with another status.
    pub status_errors: u64,
    /// Connection or protocol failures.
    pub transport_errors: u64,
    pub timeouts: u64,
    /// Due while `max_in_flight` requests were outstanding, so never sent.
    pub overflows: u64,
    /// Microseconds from each 2xx request's due time to the end of its answer.
    pub latency_us: Histogram<u64>,
    /// How late the generator itself sent requests, microseconds (its own lag, for judging it).
    pub send_lag_us: Histogram<u64>,
    /// From the first due time until the last answer (or timeout).
    pub elapsed: Duration,
    /// The first error's description, to say why a step failed.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn errors(&self) -> u64 {
        self.status_errors + self.transport_errors + self.timeouts + self.overflows
    }

    pub fn error_rate(&self) -> f64 {
        if self.due == 0 {
            0.0
        } else {
            self.errors() as f64 / self.due as f64
        }
    }

    /// Complete 2xx answers per second, over the schedule or, when answers came in after it
    /// ended (a target falling behind), until the last of them.
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.load.duration.max(self.elapsed).as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1) of the 2xx answers, milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            f64::NAN
        } else {
            self.latency_us.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub fn max_ms(&self) -> f64 {
        if self.latency_us.is_empty() {
            f64::NAN
        } else {
            self.latency_us.max() as f64 / 1000.0
        }
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// When request `i` of a schedule starting at `start` is due.
pub fn due_at(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests a schedule holds.
pub fn due_count(load: &Load) -> u64 {
    (load.rate * load.duration.as_secs_f64()).ceil() as u64
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    status_errors: AtomicU64,
    transport_errors: AtomicU64,
    timeouts: AtomicU64,
    overflows: AtomicU64,
}

struct Shared {
    counters: Counters,
    latency_us: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, counter: &AtomicU64, what: impl FnOnce() -> String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("first error lock");
        if first.is_none() {
            *first = Some(what());
        }
    }
}

/// A client for the generator: keep-alive connections pooled and reused, HTTP/1.1 as the
/// clients of these servers speak it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Offers `load` of `request` to its URL and returns what came back. The schedule is kept by a
/// thread of its own (a runtime timer ticks in whole milliseconds, too coarse for thousands of
/// requests per second); the requests run on the caller's runtime.
pub async fn run(client: &reqwest::Client, request: &Request, load: Load) -> Outcome {
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        latency_us: Mutex::new(histogram()),
        first_error: Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let runtime = tokio::runtime::Handle::current();
    let due = due_count(&load);
    let (client, request) = (client.clone(), request.clone());
    let start = Instant::now();
    let scheduler = {
        let (shared, slots) = (shared.clone(), slots.clone());
        std::thread::Builder::new()
            .name("loadgen-schedule".into())
            .spawn(move || {
                let mut lag = histogram();
                for i in 0..due {
                    let at = due_at(start, load.rate, i);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    lag.saturating_record(
                        Instant::now().saturating_duration_since(at).as_micros() as u64
                    );
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        shared.error(&shared.counters.overflows, || {
                            format!("more than {} requests in flight", load.max_in_flight)
                        });
                        continue;
                    };
                    let (client, request, shared) =
                        (client.clone(), request.clone(), shared.clone());
                    runtime.spawn(async move {
                        one(&client, request, load.timeout, at, &shared).await;
                        drop(permit);
                    });
                }
                lag
            })
            .expect("starting the schedule thread")
    };
    // Wait for the schedule without blocking the runtime, then for every request in flight.
    let send_lag_us =
        tokio::task::spawn_blocking(move || scheduler.join().expect("the schedule thread"))
            .await
            .expect("joining the schedule");
    let all = u32::try_from(load.max_in_flight.max(1)).unwrap_or(u32::MAX);
    let _drained = slots.acquire_many(all).await.expect("the semaphore is never closed");
    let elapsed = start.elapsed();
    let latency_us = shared.latency_us.lock().expect("histogram lock").clone();
    let first_error = shared.first_error.lock().expect("first error lock").clone();
    let c = &shared.counters;
    Outcome {
        load,
        due,
        ok: c.ok.load(Ordering::Relaxed),
        status_errors: c.status_errors.load(Ordering::Relaxed),
        transport_errors: c.transport_errors.load(Ordering::Relaxed),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        overflows: c.overflows.load(Ordering::Relaxed),
        latency_us,
        send_lag_us,
        elapsed,
        first_error,
    }
}

/// One request, read to the end of its answer, recorded against the time it was due.
async fn one(
    client: &reqwest::Client,
    request: Request,
    timeout: Duration,
    due: Instant,
    shared: &Shared,
) {
    let c = &shared.counters;
    let sent = client
        .post(&request.url)
        .headers(request.headers)
        .body(request.body)
        .timeout(timeout)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return shared.error(&c.timeouts, || format!("no answer within {timeout:?}"))
        }
        Err(e) => return shared.error(&c.transport_errors, || without_url(e)),
    };
    let status = response.status();
    match response.bytes().await {
        Ok(_) if status.is_success() => {
            let us = due.elapsed().as_micros() as u64;
            shared.latency_us.lock().expect("histogram lock").saturating_record(us.max(1));
            c.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(body) => shared.error(&c.status_errors, || {
            format!("status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
        }),
        Err(e) if e.is_timeout() => {
            shared.error(&c.timeouts, || format!("no complete answer within {timeout:?}"))
        }
        Err(e) => shared.error(&c.transport_errors, || without_url(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    /// A real HTTP server on a free port: `/ok` answers at once, `/fail` with 500, `/hang`
    /// never, and `/serial` one request at a time, each holding the server for 20 ms.
    async fn server() -> String {
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let app = axum::Router::new()
            .route("/ok", post(|| async { "ok" }))
            .route(
                "/fail",
                post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/hang", post(std::future::pending::<&'static str>))
            .route(
                "/serial",
                post(move || {
                    let gate = gate.clone();
                    async move {
                        let _one_at_a_time = gate.lock().await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        "ok"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn request(url: &str, path: &str) -> Request {
        Request {
            url: format!("{url}{path}"),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
        }
    }

    fn load(rate: f64, ms: u64, max_in_flight: usize, timeout_ms: u64) -> Load {
        Load {
            rate,
            duration: Duration::from_millis(ms),
            max_in_flight,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn the_schedule_is_fixed_by_rate_and_duration() {
        let start = Instant::now();
        assert_eq!(due_at(start, 1000.0, 0), start);
        assert_eq!(due_at(start, 1000.0, 250) - start, Duration::from_millis(250));
        assert_eq!(due_at(start, 4.0, 3) - start, Duration::from_millis(750));
        assert_eq!(due_count(&load(200.0, 500, 1, 1)), 100);
        assert_eq!(due_count(&load(3.0, 500, 1, 1)), 2);
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let o = Outcome {
            load: load(100.0, 1000, 1, 1),
            due: 100,
            ok: 100,
            status_errors: 0,
            transport_errors: 0,
            timeouts: 0,
            overflows: 0,
            latency_us: h,
            send_lag_us: histogram(),
            elapsed: Duration::from_secs(1),
            first_error: None,
        };
        // Three significant digits: within 0.1%.
        assert!((o.quantile_ms(0.5) - 50.0).abs() <= 0.05, "{}", o.quantile_ms(0.5));
        assert!((o.quantile_ms(0.99) - 99.0).abs() <= 0.1, "{}", o.quantile_ms(0.99));
        assert!((o.max_ms() - 100.0).abs() <= 0.1, "{}", o.max_ms());
        assert_eq!(o.achieved_rate(), 100.0);
        assert_eq!(o.error_rate(), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_due_request_is_sent_and_answered() {
        let url = server().await;
        let o = run(&client(), &request(&url, "/ok"), load(200.0, 500, 1000, 30_000)).await;
        assert_eq!((o.due, o.ok, o.errors()), (100, 100, 0), "{:?}", o.first_error);
        assert_eq!(o.latency_us.len(), 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_statuses_are_errors() {
        let url = server().await;
        let o = run(&client(), &request(&url, "/fail"), load(100.0, 200, 1000, 30_000)).await;
        assert_eq!((o.due, o.ok, o.status_errors), (20, 0, 20));
        assert!(
            o.first_error.as_deref().unwrap_or_default().contains("500"),
            "{:?}",
            o.first_error
        );
        assert!(o.quantile_ms(0.5).is_nan());
    }

    /// A target that never answers: the first `max_in_flight` requests time out, the ones due
    /// meanwhile overflow, and every due request is accounted for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unanswering_target_cannot_pile_up_requests() {
        let url = server().await;
        let o = run(&client(), &request(&url, "/hang"), load(100.0, 500, 5, 200)).await;
        assert_eq!(o.due, 50);
        assert_eq!(o.ok, 0);
        assert!(o.timeouts >= 5, "{o:?}");
        assert!(o.overflows > 0, "{o:?}");
        assert_eq!(o.timeouts + o.overflows + o.transport_errors, o.due, "{o:?}");
    }

    /// A target that serves 20 ms at a time (at most 50 answers a second) offered 100 a second
    /// for half a second: the 50th answer cannot end before 50 x 20 ms = 1 s after the start,
    /// while it was due at 490 ms, so an open-loop generator must see at least 510 ms of
    /// latency at the top (one that waited for each answer would see about 20 ms each).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_target_shows_as_latency() {
        let url = server().await;
        let o = run(&client(), &request(&url, "/serial"), load(100.0, 500, 1000, 30_000)).await;
        assert_eq!((o.due, o.ok), (50, 50), "{:?}", o.first_error);
        assert!(o.max_ms() >= 510.0, "max {} ms", o.max_ms());
        assert!(o.elapsed >= Duration::from_secs(1));
    }
}
