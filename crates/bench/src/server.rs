//! Starts a strata process on a free loopback port and stops it when dropped.

use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub struct Spawned {
    pub child: Child,
    pub url: String,
    bin: PathBuf,
}

impl Spawned {
    /// Runs `bin args... --listen 127.0.0.1:PORT` with extra environment, and waits until
    /// `GET /` gets an HTTP answer that is not a server error (bounded by `ready_timeout`):
    /// the AWS stand-ins answer unknown paths with their own 4xx errors.
    pub async fn start(
        bin: &Path,
        args: &[&str],
        env: &[(&str, String)],
        ready_timeout: Duration,
    ) -> anyhow::Result<Spawned> {
        let mut spawned = Spawned::launch(bin, args, env)?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + ready_timeout;
        loop {
            spawned.ensure_running()?;
            if let Ok(r) = client.get(&spawned.url).timeout(Duration::from_secs(1)).send().await {
                if !r.status().is_server_error() {
                    return Ok(spawned);
                }
            }
            if Instant::now() > deadline {
                bail!("{} was not ready within {ready_timeout:?}", bin.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `bin args... --listen 127.0.0.1:PORT` and returns at once, for callers that
    /// decide for themselves when it is ready. The socket is bound here and handed to the
    /// process as `strata up` hands each hop its own (`telemetry::pass_to_child`), so no other
    /// process can take the port between its choice and the server's start.
    pub fn launch(bin: &Path, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Spawned> {
        let listener =
            telemetry::bind(([127, 0, 0, 1], 0).into()).context("binding a loopback port")?;
        let addr = listener.local_addr()?;
        let raw = listener.as_raw_fd();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--listen")
            .arg(addr.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(telemetry::LISTEN_FD_VAR, telemetry::LISTEN_FD.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: pass_to_child only makes async-signal-safe calls.
        unsafe { cmd.pre_exec(move || telemetry::pass_to_child(raw)) };
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        // The child holds the socket now; with this copy closed, a child that dies refuses
        // connections instead of leaving them in the backlog.
        drop(listener);
        Ok(Spawned { child, url: format!("http://{addr}"), bin: bin.to_owned() })
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited with {status} before it was ready", self.bin.display());
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
