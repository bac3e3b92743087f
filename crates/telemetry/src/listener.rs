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
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

/// The environment variable naming the inherited listening descriptor.
pub const LISTEN_FD_VAR: &str = "STRATA_LISTEN_FD";
/// The descriptor `strata up` passes the socket as (the first after stdin, stdout, stderr).
pub const LISTEN_FD: RawFd = 3;
/// The backlog of every listener bound here: tokio's own, rather than std's 128, so a burst of
/// connections is not dropped.
const BACKLOG: libc::c_int = 1024;

/// The inherited socket is taken at most once: a process that listens twice binds the second.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Listens on `addr`: the inherited socket when [`LISTEN_FD_VAR`] names one (it must be bound
/// to `addr`, or to any port of its address when `addr`'s port is 0), otherwise a new one.
pub async fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = listen_std(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// [`listen`] outside a runtime: for a supervisor (`strata up`) that passes the socket on.
pub fn listen_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    match std::env::var(LISTEN_FD_VAR) {
        Ok(fd) if !TAKEN.swap(true, Ordering::SeqCst) => inherited(&fd, addr),
        _ => bind(addr),
    }
}

/// A new listening socket on `addr` (port 0: any free port), to listen on or to pass to a
/// child with [`pass_to_child`].
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    // SAFETY: listen(2) on a socket we own; a second call only changes the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener)
}

/// Makes `listener` the child's descriptor [`LISTEN_FD`], without close-on-exec. For a
/// command's `pre_exec` (it only calls `dup2` or `fcntl`, which are async-signal-safe); the
/// command must also set [`LISTEN_FD_VAR`] to [`LISTEN_FD`].
pub fn pass_to_child(listener: RawFd) -> std::io::Result<()> {
    // dup2 clears close-on-exec on the copy; if the socket already is descriptor 3, the flag
    // is cleared in place.
    // SAFETY: plain descriptor calls; a bad descriptor fails with EBADF.
    let passed = unsafe {
        if listener == LISTEN_FD {
            libc::fcntl(listener, libc::F_SETFD, 0)
        } else {
            libc::dup2(listener, LISTEN_FD)
        }
    };
    if passed < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn inherited(fd: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let invalid = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{LISTEN_FD_VAR}={fd}: {why}"),
        )
    };
    let raw: RawFd = fd.trim().parse().map_err(|_| invalid("not a descriptor number".into()))?;
    if raw < LISTEN_FD {
        return Err(invalid("stdin, stdout and stderr are not sockets to listen on".into()));
    }
    // SAFETY: the descriptor is only borrowed to duplicate it; an invalid one fails the dup
    // (EBADF) instead of touching anything.
    let dup: OwnedFd = unsafe { BorrowedFd::borrow_raw(raw) }
        .try_clone_to_owned()
        .map_err(|e| invalid(e.to_string()))?;
    // The duplicate is close-on-exec (F_DUPFD_CLOEXEC); the inherited one is not, so it is
    // closed here, or every process this hop starts (a Lambda environment) would hold it too.
    // SAFETY: `raw` was passed to this process for it to own, and nothing else here uses it.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    let listener = std::net::TcpListener::from(dup);
    let bound = listener.local_addr().map_err(|e| invalid(format!("not a socket: {e}")))?;
    let matches = bound.ip() == addr.ip() && (addr.port() == 0 || bound.port() == addr.port());
    if !matches {
        return Err(invalid(format!(
            "the socket listens on {bound}, not on the configured {addr}"
        )));
    }
    Ok(listener)
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
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        assert_eq!(listener.local_addr().unwrap(), bound);
        let client = tokio::net::TcpStream::connect(bound);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());

        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = inherited(&std::os::fd::IntoRawFd::into_raw_fd(other).to_string(), elsewhere)
            .unwrap_err();
        assert!(e.to_string().contains("not on the configured 127.0.0.1:1"), "{e}");
    }

    #[test]
    fn a_passed_socket_is_the_childs_descriptor_3_and_nothing_else_leaks() {
        use std::os::unix::process::CommandExt as _;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let raw = listener.as_raw_fd();
        let mut cmd = std::process::Command::new("sh");
        // The child lists its descriptors 3 and up: the socket as 3, and no other copy of it.
        cmd.args(["-c", "for f in /proc/self/fd/*; do n=${f##*/}; [ $n -ge 3 ] && echo $n $(readlink $f); done; true"]);
        // SAFETY: pass_to_child only makes async-signal-safe calls.
        unsafe { cmd.pre_exec(move || pass_to_child(raw)) };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let socket =
            std::fs::read_link(format!("/proc/self/fd/{raw}")).unwrap().display().to_string();
        assert!(text.lines().any(|l| l == format!("3 {socket}")), "{text}");
        assert_eq!(text.lines().filter(|l| l.ends_with(&socket)).count(), 1, "{text}");
    }
}
