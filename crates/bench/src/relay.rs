//! A byte relay: the least a process on a request's path can do. Each connection it accepts
//! is copied, byte for byte and without parsing, to the upstream address and back, by two
//! blocking threads. Measured between the load generator and the emulator, it shows what this
//! machine charges for one more party on the path (its wake-ups and socket copies) before any
//! software runs; the overhead suite reports it beside `strata serve`'s P50.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Relay {
    pub url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor =
            std::thread::Builder::new().name("relay-accept".into()).spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    // A connection the upstream refuses is closed at once; the caller sees it fail.
                    let _ = relay(client, upstream);
                }
            })?;
        Ok(Relay { url: format!("http://{addr}"), addr, stop, acceptor: Some(acceptor) })
    }
}

fn relay(client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
    }
    let (client2, server2) = (client.try_clone()?, server.try_clone()?);
    std::thread::Builder::new().name("relay-up".into()).spawn(move || pump(client, server))?;
    std::thread::Builder::new().name("relay-down".into()).spawn(move || pump(server2, client2))?;
    Ok(())
}

/// Copies `from` to `to` until `from` ends or either fails, then ends `to`'s writing half so
/// the other side sees the close.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Relay {
    /// Stops accepting (a connection of its own wakes the acceptor); relayed connections end
    /// when their clients close them.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_through_both_ways_and_a_close_is_passed_on() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = upstream.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got.iter().rev().copied().collect::<Vec<_>>()).unwrap();
        });
        let relay = Relay::start(up_addr).unwrap();
        let mut c = TcpStream::connect(relay.url.trim_start_matches("http://")).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "olleh");
        echo.join().unwrap();
        drop(relay);
    }
}
