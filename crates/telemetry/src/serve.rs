//! Serving a router on a listener, the one way every strata listener does it: HTTP/1 and
//! HTTP/2, the peer address as `ConnectInfo<SocketAddr>`, graceful shutdown, and two
//! connection timeouts that `axum::serve` lacks:
//!
//! - **header read**: from a connection's accept, or from the first byte of a later request
//!   on it, until that request's headers are complete. A client that trickles its request
//!   line or headers (slowloris) is disconnected when it runs out.
//! - **idle**: how long a keep-alive connection with no request in flight stays open. A
//!   request is in flight from its headers until its response body has been sent, so a long
//!   stream, or a slow handler before its first byte, is never cut by either timeout.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, so it would close idle connections after the header timeout; tracking the
//! phase of each connection here keeps the two apart.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection timeouts of one listener (the `connections` table of each service's section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Longest time from a connection's accept (or a later request's first byte) to the end of
    /// the request's headers; then the connection is closed. 0 = no limit.
    pub header_read_timeout_ms: u64,
    /// Longest time a keep-alive connection stays open with no request in flight; then it is
    /// closed. Never applies while a request or its (streamed) response is under way. 0 = no limit.
    pub idle_timeout_secs: u64,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings { header_read_timeout_ms: 10_000, idle_timeout_secs: 60 }
    }
}

/// The timeouts a listener enforces; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionTimeouts {
    pub header_read: Option<Duration>,
    pub idle: Option<Duration>,
}

impl From<&ConnectionSettings> for ConnectionTimeouts {
    fn from(s: &ConnectionSettings) -> Self {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        ConnectionTimeouts { header_read: nonzero(Duration::from_millis(s.header_read_timeout_ms)), idle: nonzero(Duration::from_secs(s.idle_timeout_secs)) }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the connections in progress to finish (idle ones are closed at once).
pub async fn serve(listener: TcpListener, router: Router, timeouts: ConnectionTimeouts, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself is fine, so back
                    // off briefly instead of spinning or giving up.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.as_mut() => break,
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Reading { since: Instant::now() });
        let io = TokioIo::new(WatchedIo { inner: stream, phase: phase_tx.clone() });
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::enter(phase_tx.clone());
            let response = router.clone().oneshot(req.map(Body::new));
            async move {
                let response = response.await.unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(response.map(|body| Body::new(InFlightBody { inner: body, _in_flight: in_flight })))
            }
        });
        let conn = builder().serve_connection_with_upgrades(io, service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                reason = expired(phase_rx, timeouts) => {
                    // Dropping the connection closes the socket.
                    tracing::debug!(%peer, reason, "closing connection");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The connection settings of every listener, in one place.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The header timeout is enforced per connection phase (see `expired`), not by hyper.
    b.http1().header_read_timeout(None);
    b
}

/// Where a connection stands, which decides the timeout that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's headers: since the accept, or since the first byte of a request
    /// that arrived while idle.
    Reading { since: Instant },
    /// This many requests are in flight (HTTP/2 may have several).
    Busy(usize),
    /// No request in flight since then.
    Idle { since: Instant },
}

/// Resolves when the connection's current phase has lasted longer than its timeout.
async fn expired(mut phase: watch::Receiver<Phase>, timeouts: ConnectionTimeouts) -> &'static str {
    loop {
        let current = *phase.borrow_and_update();
        let deadline = match current {
            Phase::Reading { since } => timeouts.header_read.map(|t| (since + t, "header read timeout")),
            Phase::Idle { since } => timeouts.idle.map(|t| (since + t, "idle timeout")),
            Phase::Busy(_) => None,
        };
        match deadline {
            Some((at, reason)) => tokio::select! {
                _ = tokio::time::sleep_until(at) => return reason,
                changed = phase.changed() => if changed.is_err() { std::future::pending::<()>().await },
            },
            None => {
                if phase.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Counts a request as in flight from its headers until its response body is done or dropped.
struct InFlight(watch::Sender<Phase>);

impl InFlight {
    fn enter(phase: watch::Sender<Phase>) -> InFlight {
        phase.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
        InFlight(phase)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle { since: Instant::now() },
            }
        });
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until hyper is done with it.
    struct InFlightBody {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The socket, noting when the first byte of a new request arrives on an idle connection.
    struct WatchedIo {
        #[pin]
        inner: TcpStream,
        phase: watch::Sender<Phase>,
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before && matches!(*this.phase.borrow(), Phase::Idle { .. }) {
            this.phase.send_modify(|p| {
                if matches!(p, Phase::Idle { .. }) {
                    *p = Phase::Reading { since: Instant::now() };
                }
            });
        }
        poll
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(router: Router, timeouts: ConnectionTimeouts) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, timeouts, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection; the time it took and what it sent.
    async fn read_to_close(s: &mut TcpStream) -> (Duration, Vec<u8>) {
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("the server closes the connection");
        (started.elapsed(), out)
    }

    fn timeouts(header_ms: u64, idle_ms: u64) -> ConnectionTimeouts {
        ConnectionTimeouts { header_read: Some(Duration::from_millis(header_ms)), idle: Some(Duration::from_millis(idle_ms)) }
    }

    #[tokio::test]
    async fn a_trickled_request_is_cut_at_the_header_timeout() {
        let (addr, _stop) = start(Router::new().route("/", get(|| async { "ok" })), timeouts(300, 5_000)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (took, out) = read_to_close(&mut s).await;
        assert!(out.is_empty(), "{out:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
        let (addr, _stop) = start(Router::new().route("/", get(|| async { "ok" })), timeouts(200, 1_000)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let (took, _) = read_to_close(&mut s).await;
        assert!(took >= Duration::from_millis(800), "closed after {took:?}, before the idle timeout");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_slow_stream_outlives_both_timeouts_and_sees_the_peer_address() {
        let slow = || async {
            let chunks = futures_stream(6, Duration::from_millis(150));
            Body::from_stream(chunks)
        };
        let router = Router::new().route("/", get(slow)).route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }));
        let (addr, _stop) = start(router, timeouts(100, 200)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let (_, out) = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with("0\r\n\r\n"), "stream cut: {text:?}");
        assert!((0..6).all(|i| text.contains(&format!("chunk {i}\n"))), "{text:?}");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let (_, out) = read_to_close(&mut s).await;
        assert!(String::from_utf8_lossy(&out).ends_with("127.0.0.1"));
    }

    fn futures_stream(n: usize, pause: Duration) -> impl tokio_stream::Stream<Item = Result<Bytes, Infallible>> + Send {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..n {
                tokio::time::sleep(pause).await;
                if tx.send(Ok(Bytes::from(format!("chunk {i}\n")))).await.is_err() {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop) = start(Router::new().route("/", get(|| async { "ok" })), ConnectionTimeouts::default()).await;
        stop.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            tokio::task::yield_now().await;
        }
    }
}
