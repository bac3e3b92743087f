//! Serving a router on a listener, the one way every strata listener does it: HTTP/1 and
//! HTTP/2, the peer address as `ConnectInfo<SocketAddr>`, graceful shutdown, and the
//! connection limits that `axum::serve` lacks:
//!
//! - **header read**: from a connection's accept, or from the first byte of a later request
//!   on it, until that request's headers are complete. A client that trickles its request
//!   line or headers (slowloris) is disconnected when it runs out.
//! - **body read**: from a request's headers until its body has been read. A client that
//!   trickles its body (or stops sending it) fails the read with `BodyReadTimeout` instead
//!   of holding a handler, and the memory it buffered, forever.
//! - **write stall**: how long the connection's writes may stay blocked because the client
//!   accepts no bytes. A stream whose reader stopped reading is cut then: the connection is
//!   closed, which drops the response body and with it the generation behind it.
//! - **idle**: how long a keep-alive connection with no request in flight stays open. A
//!   request is in flight from its headers until its response body has been sent, so a long
//!   stream, or a slow handler before its first byte, is never cut by either timeout.
//! - **open connections**: at most `max_connections` at once; beyond that a new connection
//!   gets a short 503 and is closed, so a flood of idle sockets cannot take every descriptor.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, so it would close idle connections after the header timeout; tracking the
//! phase of each connection here keeps the two apart.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
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
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits of one listener (the `connections` table of each service's section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Longest time from a connection's accept (or a later request's first byte) to the end of
    /// the request's headers; then the connection is closed. 0 = no limit.
    pub header_read_timeout_ms: u64,
    /// Longest time from a request's headers to the end of its body; then reading the body
    /// fails and the request is refused. 0 = no limit.
    pub body_read_timeout_secs: u64,
    /// Longest time the connection's writes may stay blocked because the client takes no bytes
    /// (a stream nobody reads); then the connection is closed and the response (and the
    /// generation behind it) ends. 0 = no limit.
    pub stream_write_timeout_secs: u64,
    /// Longest time a keep-alive connection stays open with no request in flight; then it is
    /// closed. Never applies while a request or its (streamed) response is under way. 0 = no limit.
    pub idle_timeout_secs: u64,
    /// Most connections open at once; a connection beyond them is answered 503 and closed.
    /// 0 = no limit.
    pub max_connections: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_read_timeout_ms: 10_000,
            body_read_timeout_secs: 60,
            stream_write_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1024,
        }
    }
}

/// The limits a listener enforces; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionLimits {
    pub header_read: Option<Duration>,
    pub body_read: Option<Duration>,
    pub write_stall: Option<Duration>,
    pub idle: Option<Duration>,
    pub max_connections: Option<usize>,
}

impl From<&ConnectionSettings> for ConnectionLimits {
    fn from(s: &ConnectionSettings) -> Self {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        ConnectionLimits {
            header_read: nonzero(Duration::from_millis(s.header_read_timeout_ms)),
            body_read: nonzero(Duration::from_secs(s.body_read_timeout_secs)),
            write_stall: nonzero(Duration::from_secs(s.stream_write_timeout_secs)),
            idle: nonzero(Duration::from_secs(s.idle_timeout_secs)),
            max_connections: (s.max_connections > 0).then_some(s.max_connections),
        }
    }
}

/// What a connection beyond `max_connections` is told before it is closed: a 503 whose body
/// has the field every strata client reads (`error`) and API Gateway's (`message`).
fn over_capacity_response() -> Vec<u8> {
    let body = r#"{"error":"too many open connections; try again later","message":"Too many open connections"}"#;
    format!("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the connections in progress to finish (idle ones are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let open = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
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
        let permit = match &open {
            None => None,
            Some(open) => match Arc::clone(open).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::info!(%peer, max_connections = limits.max_connections, "refusing a connection: too many open");
                    tokio::spawn(refuse(stream));
                    continue;
                }
            },
        };
        serve_connection(stream, peer, router.clone(), limits, &graceful, permit);
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    graceful: &GracefulShutdown,
    permit: Option<OwnedSemaphorePermit>,
) {
    let (state_tx, state_rx) = watch::channel(ConnState {
        phase: Phase::Reading { since: Instant::now() },
        write_blocked: None,
    });
    let io = TokioIo::new(WatchedIo { inner: stream, state: state_tx.clone() });
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = InFlight::enter(state_tx.clone());
        let req = match limits.body_read {
            Some(limit) => req.map(|b| Body::new(DeadlineBody::new(Body::new(b), limit))),
            None => req.map(Body::new),
        };
        let response = router.clone().oneshot(req);
        async move {
            let response = response.await.unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(
                response.map(|body| Body::new(InFlightBody { inner: body, _in_flight: in_flight })),
            )
        }
    });
    let conn = builder().serve_connection_with_upgrades(io, service).into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        // Counts this connection against `max_connections` until it is gone.
        let _permit = permit;
        tokio::select! {
            result = conn => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            reason = expired(state_rx, limits) => {
                // Dropping the connection closes the socket, and drops any response body (and
                // the work feeding it) still in flight. Idle and header timeouts are routine;
                // a stalled reader is worth an operator's attention.
                match reason {
                    Expiry::WriteStall => tracing::info!(%peer, reason = reason.as_str(), "closing connection"),
                    _ => tracing::debug!(%peer, reason = reason.as_str(), "closing connection"),
                }
            }
        }
    });
}

/// Answers a connection beyond `max_connections` with a 503 and closes it, within a bounded
/// time. What the client already sent is read and dropped first (up to a limit), so that the
/// close is a clean FIN the client can read the answer before, not a reset.
async fn refuse(mut stream: TcpStream) {
    const GRACE: Duration = Duration::from_secs(1);
    let _ = tokio::time::timeout(GRACE, async {
        stream.write_all(&over_capacity_response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnState {
    phase: Phase,
    /// Since when the socket has refused every write (the client takes no bytes).
    write_blocked: Option<Instant>,
}

/// Which limit ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    HeaderRead,
    Idle,
    WriteStall,
}

impl Expiry {
    fn as_str(self) -> &'static str {
        match self {
            Expiry::HeaderRead => "header read timeout",
            Expiry::Idle => "idle timeout",
            Expiry::WriteStall => "stream write timeout: the client takes no bytes",
        }
    }
}

/// Resolves when the connection has been in its current phase, or blocked on writing, for
/// longer than the limit.
async fn expired(mut state: watch::Receiver<ConnState>, limits: ConnectionLimits) -> Expiry {
    loop {
        let current = *state.borrow_and_update();
        let phase_deadline = match current.phase {
            Phase::Reading { since } => limits.header_read.map(|t| (since + t, Expiry::HeaderRead)),
            Phase::Idle { since } => limits.idle.map(|t| (since + t, Expiry::Idle)),
            Phase::Busy(_) => None,
        };
        let write_deadline = current
            .write_blocked
            .zip(limits.write_stall)
            .map(|(since, t)| (since + t, Expiry::WriteStall));
        let deadline = match (phase_deadline, write_deadline) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        match deadline {
            Some((at, reason)) => tokio::select! {
                _ = tokio::time::sleep_until(at) => return reason,
                changed = state.changed() => if changed.is_err() { std::future::pending::<()>().await },
            },
            None => {
                if state.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Counts a request as in flight from its headers until its response body is done or dropped.
struct InFlight(watch::Sender<ConnState>);

impl InFlight {
    fn enter(state: watch::Sender<ConnState>) -> InFlight {
        state.send_modify(|s| {
            s.phase = match s.phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|s| {
            s.phase = match s.phase {
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

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that has not finished arriving within the body read timeout. Handlers see
/// it as the error of their body read; [`is_body_read_timeout`] recognises it.
#[derive(Debug)]
pub struct BodyReadTimeout(Duration);

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} s", self.0.as_secs())
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Whether `error` (or anything in its source chain) is a [`BodyReadTimeout`].
pub fn is_body_read_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cur) = e {
        if cur.is::<BodyReadTimeout>() {
            return true;
        }
        e = cur.source();
    }
    false
}

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline passes before it ends.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: tokio::time::Sleep,
        limit: Duration,
        done: bool,
    }
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        DeadlineBody { inner, deadline: tokio::time::sleep(limit), limit, done: false }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                if this.deadline.poll(cx).is_ready() {
                    *this.done = true;
                    return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(*this.limit)))));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The socket, noting when the first byte of a new request arrives on an idle connection,
    /// and when writes start and stop being refused.
    struct WatchedIo {
        #[pin]
        inner: TcpStream,
        state: watch::Sender<ConnState>,
    }
}

impl WatchedIo {
    /// Records whether the last write was refused; the channel is only touched on a change.
    fn note_write<T>(state: &watch::Sender<ConnState>, poll: &Poll<io::Result<T>>) {
        let blocked = poll.is_pending();
        if blocked != state.borrow().write_blocked.is_some() {
            state.send_modify(|s| s.write_blocked = blocked.then(Instant::now));
        }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before && matches!(this.state.borrow().phase, Phase::Idle { .. }) {
            this.state.send_modify(|s| {
                if matches!(s.phase, Phase::Idle { .. }) {
                    s.phase = Phase::Reading { since: Instant::now() };
                }
            });
        }
        poll
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        Self::note_write(this.state, &poll);
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        Self::note_write(this.state, &poll);
        poll
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

    async fn start(
        router: Router,
        timeouts: ConnectionLimits,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
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
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection");
        (started.elapsed(), out)
    }

    fn timeouts(header_ms: u64, idle_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            header_read: Some(Duration::from_millis(header_ms)),
            idle: Some(Duration::from_millis(idle_ms)),
            ..ConnectionLimits::default()
        }
    }

    #[tokio::test]
    async fn a_trickled_request_is_cut_at_the_header_timeout() {
        let (addr, _stop) =
            start(Router::new().route("/", get(|| async { "ok" })), timeouts(300, 5_000)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (took, out) = read_to_close(&mut s).await;
        assert!(out.is_empty(), "{out:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
        let (addr, _stop) =
            start(Router::new().route("/", get(|| async { "ok" })), timeouts(200, 1_000)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let (took, _) = read_to_close(&mut s).await;
        assert!(
            took >= Duration::from_millis(800),
            "closed after {took:?}, before the idle timeout"
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_slow_stream_outlives_both_timeouts_and_sees_the_peer_address() {
        let slow = || async {
            let chunks = futures_stream(6, Duration::from_millis(150));
            Body::from_stream(chunks)
        };
        let router = Router::new().route("/", get(slow)).route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
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

    fn futures_stream(
        n: usize,
        pause: Duration,
    ) -> impl tokio_stream::Stream<Item = Result<Bytes, Infallible>> + Send {
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
        let (addr, stop) =
            start(Router::new().route("/", get(|| async { "ok" })), ConnectionLimits::default())
                .await;
        stop.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            tokio::task::yield_now().await;
        }
    }

    /// A client that sends its headers and never reads: the endless response fills the socket
    /// buffers, writes block, and the connection is closed once they stayed blocked for the
    /// write limit; the response body (the work behind it) is dropped.
    #[tokio::test]
    async fn a_reader_that_stops_reading_is_cut_and_its_body_dropped() {
        let dropped = Arc::new(tokio::sync::Notify::new());
        let notify = Arc::clone(&dropped);
        let endless = move || {
            let notify = Arc::clone(&notify);
            async move {
                struct OnDrop(Arc<tokio::sync::Notify>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.notify_one();
                    }
                }
                let guard = OnDrop(notify);
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                Body::from_stream(futures_util_repeat(chunk, guard))
            }
        };
        let limits = ConnectionLimits {
            write_stall: Some(Duration::from_millis(300)),
            ..ConnectionLimits::default()
        };
        let (addr, _stop) = start(Router::new().route("/", get(endless)), limits).await;
        // The endless response fills the socket buffers within milliseconds.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), dropped.notified())
            .await
            .expect("the stalled response was dropped");
    }

    /// An endless stream of `chunk`, holding `guard` until the stream is dropped.
    fn futures_util_repeat<G: Send + 'static>(
        chunk: Bytes,
        guard: G,
    ) -> impl tokio_stream::Stream<Item = Result<Bytes, Infallible>> + Send {
        tokio_stream::StreamExt::map(tokio_stream::iter(std::iter::repeat(())), move |_| {
            let _ = &guard;
            Ok(chunk.clone())
        })
    }

    /// A body that stops arriving fails the handler's read at the body limit.
    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_the_read_at_the_limit() {
        let read = |body: Body| async move {
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(b) => format!("read {}", b.len()),
                Err(e) => format!("timed out: {}", is_body_read_timeout(&e)),
            }
        };
        let limits = ConnectionLimits {
            body_read: Some(Duration::from_millis(300)),
            ..ConnectionLimits::default()
        };
        let (addr, _stop) =
            start(Router::new().route("/", axum::routing::post(read)), limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let (took, out) = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with("timed out: true"), "{text}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // A whole body in time is read as usual.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let (_, out) = read_to_close(&mut s).await;
        assert!(String::from_utf8_lossy(&out).ends_with("read 3"));
    }

    /// Beyond `max_connections`, a new connection gets a 503 and is closed; once one of the
    /// open connections goes, new ones are served again.
    #[tokio::test]
    async fn connections_beyond_the_cap_get_a_503_and_are_closed() {
        let limits = ConnectionLimits { max_connections: Some(2), ..ConnectionLimits::default() };
        let (addr, _stop) = start(Router::new().route("/", get(|| async { "ok" })), limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        // The second is served (so both have been accepted) before the third arrives.
        second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = second.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (_, out) = read_to_close(&mut third).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 503") && text.contains("too many open connections"),
            "{text}"
        );
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let (_, out) = read_to_close(&mut s).await;
            if out.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "still refused after a connection closed");
            tokio::task::yield_now().await;
        }
    }
}
