//! Responsiveness: how long `GET /api/version` takes on `strata serve` (one worker thread, the
//! default) while a 10 MB chat is being prepared (templated, tokenized, truncated), against the
//! same server idle. Preparation runs on blocking threads, so the two should barely differ.

use std::time::Instant;

use serde_json::json;

use crate::report::{f1, f2, Row, Section};
use crate::server::Spawned;
use crate::suites::{BenchOptions, READY};

/// The bound on `/api/version` while a huge chat is prepared.
const BOUND_MS: f64 = 50.0;

/// A chat body just under the default 10 MiB limit: 799 turns of about 13 kB.
fn huge_chat(model: &str) -> Vec<u8> {
    let turn: String = (0..1000).map(|i| format!("word{} tale ", i % 997)).collect();
    let messages: Vec<_> = (0..799)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": turn}))
        .collect();
    serde_json::to_vec(&json!({"model": model, "messages": messages, "stream": true, "options": {"num_predict": 1}})).expect("serializable")
}

/// Latencies of `/api/version` on one kept-alive connection, `n` of them or until `until` is set.
async fn versions(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    until: Option<&tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(n.min(1024));
    while ms.len() < n && !until.is_some_and(|u| *u.borrow()) {
        let started = Instant::now();
        let r = client.get(format!("{url}/api/version")).send().await?;
        anyhow::ensure!(r.status().is_success(), "version: {}", r.status());
        r.bytes().await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return 0.0;
    }
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

pub async fn responsiveness(opts: &BenchOptions) -> anyhow::Result<Section> {
    let server = Spawned::start(
        &opts.strata,
        &["serve", "--model", &opts.model],
        &[("STRATA_RUNTIME__WORKER_THREADS", "1".into())],
        READY,
    )
    .await?;
    let client = reqwest::Client::new();
    // Load the model and warm the connection.
    versions(&client, &server.url, 20, None).await?;
    let rounds = if opts.quick { 1 } else { 3 };
    let mut idle = versions(&client, &server.url, 200, None).await?;
    let body = huge_chat(&opts.model);
    let (mut busy, mut preparation) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let chat = {
            let (url, body, client) = (server.url.clone(), body.clone(), reqwest::Client::new());
            tokio::spawn(async move {
                let started = Instant::now();
                let sent = client
                    .post(format!("{url}/api/chat"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                // Response headers come once preparation is over (an answer, or 400 when even
                // the newest turn does not fit the context).
                let took = started.elapsed();
                let _ = done_tx.send(true);
                sent.map(|_| took)
            })
        };
        // Measured only while the chat is in the server.
        let mut during = versions(&client, &server.url, usize::MAX, Some(&done_rx)).await?;
        preparation.push(chat.await??.as_secs_f64());
        // The last request may have overlapped the end; it still counts as during.
        busy.append(&mut during);
    }
    drop(server);
    let (idle50, idle99) = (percentile(&mut idle, 0.5), percentile(&mut idle, 0.99));
    let (busy50, busy99, busy_max) =
        (percentile(&mut busy, 0.5), percentile(&mut busy, 0.99), percentile(&mut busy, 1.0));
    let prep = preparation.iter().sum::<f64>() / preparation.len().max(1) as f64;
    Ok(Section {
        title: "Responsiveness: /api/version while a 10 MB chat is prepared".into(),
        notes: vec![format!(
            "`strata serve` on the default model with `runtime.worker_threads = 1` (the default). `GET /api/version` \
             one after another on one kept-alive connection: {} idle, then {} while a {:.1} MB `/api/chat` of 799 turns \
             (each longer than the context, so the answer is a 400 once the history has been rendered and tokenized) \
             was in the server, {rounds} time(s); that chat took {prep:.1} s on average. Preparation runs on blocking threads, \
             one core left to the async worker.",
            idle.len(),
            busy.len(),
            body.len() as f64 / 1e6,
        )],
        header: vec!["".into(), "P50 ms".into(), "P99 ms".into(), "max ms".into()],
        rows: vec![
            Row { cells: vec!["idle".into(), f2(idle50), f2(idle99), f2(percentile(&mut idle, 1.0))] },
            Row { cells: vec!["during preparation".into(), f2(busy50), f2(busy99), f1(busy_max)] },
        ],
        targets: vec![(format!("/api/version under {BOUND_MS} ms while the chat is prepared, at P99 (measured {busy99:.1} ms; max {busy_max:.1} ms)"), busy99 < BOUND_MS)],
        data: json!({"idle_ms": {"p50": idle50, "p99": idle99}, "busy_ms": {"p50": busy50, "p99": busy99, "max": busy_max},
                     "requests": {"idle": idle.len(), "busy": busy.len()}, "preparation_s": prep, "bound_ms": BOUND_MS,
                     "body_bytes": body.len()}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_huge_chat_fits_the_default_body_limit() {
        let n = huge_chat("m").len();
        assert!((9_000_000..10 * 1024 * 1024).contains(&n), "{n}");
    }

    #[test]
    fn percentiles_pick_from_the_sorted_samples() {
        let mut xs = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut xs, 0.5), 3.0);
        assert_eq!(percentile(&mut xs, 1.0), 5.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
