//! A hop's listening socket: the one its supervisor passed down, or one bound here.
//!
//! `strata up` binds every hop's address itself and hands each hop its socket as descriptor
//! [`LISTEN_FD`], naming it in [`LISTEN_FD_VAR`] (the way systemd's socket activation passes
//! sockets). Picking free ports and letting each hop bind its own later left a window in which
//! another process could take the port first (a Lambda environment's Runtime API, bound to any
//! free port, once answered the LLM Server in the gateway's place), and a restarted hop had to
//! win its port back; a socket held by the supervisor has neither problem, and connections made
//! while a hop restarts wait in its backlog instead of being refused.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

/// The environment variable naming the inherited listening descriptor.
pub const LISTEN_FD_VAR: &str = "STRATA_LISTEN_FD";
/// The descriptor `strata up` passes the socket as (the first after stdin, stdout, stderr).
pub const LISTEN_FD: RawFd = 3;

/// The inherited socket is taken at most once: a process that listens twice binds the second.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Listens on `addr`: the inherited socket when [`LISTEN_FD_VAR`] names one (it must be bound
/// to `addr`, or to any port of its address when `addr`'s port is 0), otherwise a new one.
pub async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    match std::env::var(LISTEN_FD_VAR) {
        Ok(fd) if !TAKEN.swap(true, Ordering::SeqCst) => inherited(&fd, addr),
        _ => TcpListener::bind(addr).await,
    }
}

fn inherited(fd: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{LISTEN_FD_VAR}={fd}: {why}"));
    let raw: RawFd = fd.trim().parse().map_err(|_| invalid("not a descriptor number".into()))?;
    if raw < LISTEN_FD {
        return Err(invalid("stdin, stdout and stderr are not sockets to listen on".into()));
    }
    // SAFETY: the descriptor is only borrowed to duplicate it; an invalid one fails the dup
    // (EBADF) instead of touching anything.
    let dup: OwnedFd = unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned().map_err(|e| invalid(e.to_string()))?;
    // The duplicate is close-on-exec (F_DUPFD_CLOEXEC); the inherited one is not, so it is
    // closed here, or every process this hop starts (a Lambda environment) would hold it too.
    // SAFETY: `raw` was passed to this process for it to own, and nothing else here uses it.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    let listener = std::net::TcpListener::from(dup);
    let bound = listener.local_addr().map_err(|e| invalid(format!("not a socket: {e}")))?;
    let matches = bound.ip() == addr.ip() && (addr.port() == 0 || bound.port() == addr.port());
    if !matches {
        return Err(invalid(format!("the socket listens on {bound}, not on the configured {addr}")));
    }
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_descriptor_that_is_no_number_or_no_socket_is_refused_by_name() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = inherited("three", addr).unwrap_err();
        assert!(e.to_string().contains("STRATA_LISTEN_FD=three"), "{e}");
        assert!(inherited("1", addr).is_err());
        assert!(inherited("987654", addr).is_err(), "a closed descriptor");
    }

    #[tokio::test]
    async fn an_inherited_socket_is_served_from_and_its_address_must_match() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bound = std.local_addr().unwrap();
        // A descriptor this process owns stands in for the inherited one (`into_raw_fd` hands
        // its ownership over, as an exec would).
        let raw = std::os::fd::IntoRawFd::into_raw_fd(std);
        let listener = inherited(&raw.to_string(), bound).unwrap();
        assert_eq!(listener.local_addr().unwrap(), bound);
        let client = tokio::net::TcpStream::connect(bound);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());

        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = inherited(&std::os::fd::IntoRawFd::into_raw_fd(other).to_string(), elsewhere).unwrap_err();
        assert!(e.to_string().contains("not on the configured 127.0.0.1:1"), "{e}");
    }
}
