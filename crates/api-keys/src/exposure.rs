//! Secure by default: a hop that would serve the network with nobody authenticated refuses to
//! start, unless the operator says that something else (a firewall, a security group) does it.

use std::net::SocketAddr;

/// `Ok` when `listen` is a loopback address, callers are authenticated, or
/// `allow_unauthenticated` is set; otherwise the error names the hop, the way to authenticate
/// (`how`) and the opt-out setting.
pub fn require_authentication(
    hop: &str,
    listen: SocketAddr,
    authenticated: bool,
    allow_unauthenticated: bool,
    how: &str,
    opt_out: &str,
) -> Result<(), String> {
    if listen.ip().is_loopback() || authenticated || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "{hop}: refusing to serve {listen} without authentication: anyone who can reach it could use it. \
         {how}, or set {opt_out} = true if something in front of it (a firewall, a security group) admits only its callers"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_authenticated_or_explicitly_open_hops_start() {
        let public: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let e = require_authentication(
            "main-service",
            public,
            false,
            false,
            "Set X",
            "main_service.allow_unauthenticated",
        )
        .unwrap_err();
        assert!(
            e.contains("main-service")
                && e.contains("Set X")
                && e.contains("main_service.allow_unauthenticated = true"),
            "{e}"
        );
        assert!(require_authentication("h", public, true, false, "", "").is_ok());
        assert!(require_authentication("h", public, false, true, "", "").is_ok());
        assert!(require_authentication("h", "127.0.0.1:1".parse().unwrap(), false, false, "", "")
            .is_ok());
        assert!(
            require_authentication("h", "[::1]:1".parse().unwrap(), false, false, "", "").is_ok()
        );
    }
}
