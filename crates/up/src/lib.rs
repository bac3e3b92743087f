//! `strata up`: starts each hop as its own process, in order, each once the one it calls is
//! healthy; writes each hop's output to its own log file; restarts a hop that dies; and on
//! SIGINT/SIGTERM stops them all, outermost first, leaving no process behind (children also
//! die with this process if it is killed outright).

pub mod inner_secrets;
pub mod private;

use std::net::TcpListener;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// One hop: `program args...` with extra environment, serving on `listener`, healthy when
/// `health_path` there answers with anything but a server error.
#[derive(Debug, Clone)]
pub struct Hop {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Environment on top of this process's own. Values may be secrets: never printed.
    pub env: Vec<(String, String)>,
    /// The hop's listening socket, bound by `up` and passed to every process of the hop (see
    /// `telemetry::listen`): its port is never free for another process to take, even while
    /// the hop restarts.
    pub listener: Arc<TcpListener>,
    pub health_path: String,
}

impl Hop {
    /// Where clients reach it (printed).
    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(_) => "http://(unknown)".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpSettings {
    /// Where each hop's log goes (`<name>.log`).
    pub run_dir: PathBuf,
    /// How long a hop may take to become healthy.
    pub ready_timeout: Duration,
    /// On shutdown, how long hops get to stop before they are killed.
    pub shutdown_grace: Duration,
}

fn spawn(settings: &UpSettings, hop: &Hop) -> anyhow::Result<Child> {
    let log_path = settings.run_dir.join(format!("{}.log", hop.name));
    let log = private::append(&log_path)?;
    let mut cmd = Command::new(&hop.program);
    cmd.args(&hop.args)
        .envs(hop.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    cmd.env(telemetry::LISTEN_FD_VAR, telemetry::LISTEN_FD.to_string());
    let listener = hop.listener.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, prctl).
    unsafe {
        cmd.pre_exec(move || {
            telemetry::pass_to_child(listener)?;
            // If `up` itself is killed, its hops are told to stop too.
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {} ({})", hop.name, hop.program.display()))
}

/// Polls until the hop answers, it exits, or the deadline passes.
async fn wait_healthy(
    hop: &Hop,
    child: &mut Child,
    timeout: Duration,
    run_dir: &Path,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let health_url = format!("{}{}", hop.url(), hop.health_path);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{} exited with {status} before it was ready; see {}",
                hop.name,
                run_dir.join(format!("{}.log", hop.name)).display()
            );
        }
        if let Ok(r) = client.get(&health_url).timeout(Duration::from_secs(1)).send().await {
            if !r.status().is_server_error() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} was not healthy within {timeout:?}; see its log in {}",
            hop.name,
            run_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn announce(hop: &Hop, child: &Child) {
    println!(
        "{:<16} {:<28} pid {}",
        hop.name,
        hop.url(),
        child.id().map_or("-".to_owned(), |p| p.to_string())
    );
}

fn signal(child: &Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a child we own; at worst the pid has already exited.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop(child: &mut Child, grace: Duration) {
    signal(child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Keeps one hop running until told to stop: a hop that exits is started again (with growing
/// pauses if it keeps dying right away) and announced once healthy.
async fn supervise(
    settings: UpSettings,
    hop: Hop,
    mut child: Child,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let mut started = Instant::now();
    let mut quick_deaths = 0u32;
    loop {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = &mut stop_rx => return stop(&mut child, settings.shutdown_grace).await,
        };
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        eprintln!("strata up: {} exited ({status}); restarting", hop.name);
        tracing::warn!(hop = %hop.name, status = %status, "hop exited; restarting");
        quick_deaths =
            if started.elapsed() < Duration::from_secs(10) { quick_deaths + 1 } else { 0 };
        if quick_deaths > 1 {
            let pause = Duration::from_millis(250 * 2u64.pow(quick_deaths.min(7)));
            tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = &mut stop_rx => return }
        }
        child = loop {
            match spawn(&settings, &hop) {
                Ok(c) => break c,
                Err(e) => {
                    eprintln!("strata up: {e:#}");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(5)) => {}, _ = &mut stop_rx => return }
                }
            }
        };
        started = Instant::now();
        let ready = tokio::select! {
            ready = wait_healthy(&hop, &mut child, settings.ready_timeout, &settings.run_dir) => ready,
            _ = &mut stop_rx => return stop(&mut child, settings.shutdown_grace).await,
        };
        match ready {
            Ok(()) => announce(&hop, &child),
            Err(e) => eprintln!("strata up: {e:#}"),
        }
    }
}

/// Starts the hops in order, each once healthy, and supervises them until `shutdown`
/// resolves; then stops them outermost first.
pub async fn run(
    settings: UpSettings,
    hops: Vec<Hop>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    private::create_dir(&settings.run_dir)?;
    let mut supervised: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)> = Vec::new();
    tokio::pin!(shutdown);
    let mut failure = None;
    for hop in hops {
        let mut child = spawn(&settings, &hop)?;
        let ready = tokio::select! {
            r = wait_healthy(&hop, &mut child, settings.ready_timeout, &settings.run_dir) => r,
            _ = &mut shutdown => Err(anyhow::anyhow!("interrupted while starting {}", hop.name)),
        };
        if let Err(e) = ready {
            stop(&mut child, settings.shutdown_grace).await;
            failure = Some(e);
            break;
        }
        announce(&hop, &child);
        let (tx, rx) = oneshot::channel();
        supervised.push((tx, tokio::spawn(supervise(settings.clone(), hop, child, rx))));
    }
    if failure.is_none() {
        println!("strata up: all hops healthy; logs in {}", settings.run_dir.display());
        shutdown.await;
        eprintln!("strata up: stopping");
    }
    for (tx, task) in supervised.into_iter().rev() {
        let _ = tx.send(());
        let _ = task.await;
    }
    failure.map_or(Ok(()), Err)
}
