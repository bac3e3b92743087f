//! A function: its queue of invocations and its execution environments (one process each,
//! each with its own Runtime API endpoint), supervised: a crashed or timed-out environment is
//! replaced, and the invocation it held fails the way Lambda reports it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::config::FunctionSettings;
use crate::function_env;
use crate::invocation::{FunctionFailure, Invocation, Outcome, Sink};
use crate::runtime_api;

/// What every environment of a function shares.
pub struct Shared {
    pub name: String,
    pub arn: String,
    pub region: String,
    pub settings: FunctionSettings,
    pub max_payload_bytes: usize,
    pub max_stream_bytes: usize,
    /// See `LambdaServiceSettings::exit_drain_ms`.
    pub exit_drain: Duration,
    /// Connection timeouts of each environment's Runtime API.
    pub runtime_api_timeouts: telemetry::ConnectionLimits,
    pub queue_tx: async_channel::Sender<Invocation>,
    pub queue_rx: async_channel::Receiver<Invocation>,
    pub cold_starts: Mutex<Vec<Duration>>,
}

pub struct Function {
    pub shared: Arc<Shared>,
    /// Running plus queued invocations; beyond it the service answers TooManyRequestsException.
    admission: Arc<Semaphore>,
    instances: Vec<Arc<Instance>>,
    supervisors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How a function stands, for benchmarks and `strata up`.
#[derive(Debug, Clone, Default)]
pub struct FunctionStats {
    /// Spawn to first `/next`, for every environment started so far.
    pub cold_starts: Vec<Duration>,
    pub queued: usize,
    pub pids: Vec<u32>,
}

impl Function {
    /// Binds each environment's Runtime API and starts its process.
    pub async fn start(
        shared: Shared,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<Function>> {
        let shared = Arc::new(shared);
        let concurrency = shared.settings.concurrency.max(1);
        let admission = Arc::new(Semaphore::new(concurrency + shared.settings.queue_depth));
        let mut instances = Vec::with_capacity(concurrency);
        let mut supervisors = Vec::with_capacity(concurrency);
        for index in 0..concurrency {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let instance = Arc::new(Instance {
                index,
                runtime_api: listener.local_addr()?,
                shared: Arc::clone(&shared),
                state: Mutex::new(InstanceState::default()),
                answered: Notify::new(),
            });
            let router = runtime_api::router(Arc::clone(&instance));
            let stop = shutdown.clone();
            let timeouts = shared.runtime_api_timeouts;
            tokio::spawn(async move {
                let _ = telemetry::serve(listener, router, timeouts, stop.cancelled_owned()).await;
            });
            supervisors.push(tokio::spawn(supervise(Arc::clone(&instance), shutdown.clone())));
            instances.push(instance);
        }
        Ok(Arc::new(Function {
            shared,
            admission,
            instances,
            supervisors: Mutex::new(supervisors),
        }))
    }

    /// Waits until every environment's process is gone (after the service's shutdown token
    /// was cancelled).
    pub async fn stopped(&self) {
        let tasks: Vec<_> =
            self.supervisors.lock().map(|mut s| s.drain(..).collect()).unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// A place for one more invocation, or `None` when the function is at its limit.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.admission).try_acquire_owned().ok()
    }

    pub fn submit(&self, invocation: Invocation) {
        // The queue is unbounded (admission bounds it) and lives as long as the function.
        let _ = self.shared.queue_tx.try_send(invocation);
    }

    pub fn stats(&self) -> FunctionStats {
        FunctionStats {
            cold_starts: self.shared.cold_starts.lock().map(|c| c.clone()).unwrap_or_default(),
            queued: self.shared.queue_tx.len(),
            pids: self
                .instances
                .iter()
                .filter_map(|i| i.state.lock().ok().and_then(|s| s.pid))
                .collect(),
        }
    }
}

/// One execution environment.
pub struct Instance {
    pub index: usize,
    pub runtime_api: SocketAddr,
    pub shared: Arc<Shared>,
    pub state: Mutex<InstanceState>,
    /// Woken whenever the runtime answers its invocation's caller (`/response`, `/error`).
    pub answered: Notify,
}

#[derive(Default)]
pub struct InstanceState {
    /// Cancelled when this generation's process is gone; a `/next` waiting on it gives up.
    pub alive: CancellationToken,
    /// Cancelled to make the supervisor kill the process (timeout).
    pub kill: CancellationToken,
    pub spawned_at: Option<Instant>,
    pub initialized: bool,
    pub init_error: Option<FunctionFailure>,
    pub current: Option<Current>,
    pub pid: Option<u32>,
}

/// The invocation an environment is working on.
pub struct Current {
    pub request_id: String,
    pub sink: Sink,
    pub _permit: OwnedSemaphorePermit,
    pub watchdog: AbortHandle,
}

impl Drop for Current {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl Current {
    pub fn fail(mut self, failure: FunctionFailure) {
        std::mem::replace(&mut self.sink, Sink::Closed).fail(failure);
    }
}

impl Instance {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, InstanceState> {
        // A poisoned lock means a panic elsewhere already; the state itself is still coherent
        // (every update is a single assignment).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the current invocation if it is still `request_id`.
    pub fn finish(&self, request_id: &str) {
        let mut s = self.lock();
        if s.current.as_ref().is_some_and(|c| c.request_id == request_id) {
            s.current = None;
        }
    }

    /// Whether the current invocation still waits for the runtime's first answer.
    fn unanswered(&self) -> bool {
        self.lock().current.as_ref().is_some_and(|c| matches!(c.sink, Sink::Waiting(_)))
    }

    /// After the process exited: lets an answer it sent just before exiting reach the Runtime
    /// API (the bytes are in the socket; the request may not be read yet), for at most
    /// `exit_drain`. Without this, a runtime that writes its first chunk and crashes loses
    /// that chunk whenever the exit is noticed first.
    async fn drain_after_exit(&self) {
        let deadline = tokio::time::Instant::now() + self.shared.exit_drain;
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if !self.unanswered() {
                return;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                return;
            }
        }
    }

    /// Fails the current invocation with a timeout and has the process killed, as Lambda does.
    pub async fn watch(self: Arc<Self>, request_id: String) {
        tokio::time::sleep(Duration::from_millis(self.shared.settings.timeout_ms)).await;
        let mut s = self.lock();
        if s.current.as_ref().is_some_and(|c| c.request_id == request_id) {
            tracing::warn!(function = %self.shared.name, request_id = %request_id, "function timed out");
            s.kill.cancel();
            let current = s.current.take();
            drop(s);
            if let Some(c) = current {
                c.fail(FunctionFailure::timeout(&request_id, self.shared.settings.timeout_ms));
            }
        }
    }

    fn command(&self) -> Command {
        let shared = &self.shared;
        let path = &shared.settings.path;
        let mut cmd = Command::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.current_dir(dir);
        }
        // A clean environment: only what Lambda would give the function (`function_env`).
        cmd.env_clear().envs(function_env::environment(shared, self.index, self.runtime_api));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // Each environment is a process group of its own, so that ending it ends everything
        // the function started (a wrapper's children too), as AWS ends the whole sandbox.
        cmd.process_group(0);
        // If the service itself is killed, its functions go with it.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

/// Keeps one environment running for the life of the service.
async fn supervise(instance: Arc<Instance>, shutdown: CancellationToken) {
    let shared = Arc::clone(&instance.shared);
    let mut quick_failures = 0u32;
    while !shutdown.is_cancelled() {
        let (alive, kill) = (CancellationToken::new(), CancellationToken::new());
        let started = Instant::now();
        {
            let mut s = instance.lock();
            *s = InstanceState {
                alive: alive.clone(),
                kill: kill.clone(),
                spawned_at: Some(started),
                ..Default::default()
            };
        }
        let ended = match instance.command().spawn() {
            Ok(child) => run(&instance, child, &kill, &shutdown).await,
            Err(e) => format!("could not start {}: {e}", display(&shared.settings.path)),
        };
        alive.cancel();
        if !shutdown.is_cancelled() {
            instance.drain_after_exit().await;
        }
        let (current, initialized, init_error) = {
            let mut s = instance.lock();
            s.pid = None;
            (s.current.take(), s.initialized, s.init_error.take())
        };
        if shutdown.is_cancelled() {
            if let Some(c) = current {
                let id = c.request_id.clone();
                c.fail(FunctionFailure::exited(&id, "the service is shutting down"));
            }
            return;
        }
        tracing::warn!(function = %shared.name, instance = instance.index, ended = %ended, "function environment ended; restarting");
        if let Some(c) = current {
            let id = c.request_id.clone();
            c.fail(FunctionFailure::exited(&id, &ended));
        } else if !initialized {
            // It never asked for work: the next invocation gets the init failure, as on AWS,
            // and only then is the environment tried again (no restart loop while idle).
            let failure = init_error.unwrap_or_else(|| {
                FunctionFailure::new(
                    "Runtime.ExitError",
                    format!("Runtime exited without providing a reason: {ended}"),
                )
            });
            tokio::select! {
                inv = shared.queue_rx.recv() => if let Ok(inv) = inv {
                    let _ = inv.reply.send(Outcome::Failed(failure));
                },
                _ = shutdown.cancelled() => return,
            }
        }
        // An environment that keeps dying right away is restarted with growing pauses.
        if started.elapsed() < Duration::from_secs(1) && initialized {
            quick_failures += 1;
            let pause = Duration::from_millis(50 * 2u64.pow(quick_failures.min(6)));
            tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = shutdown.cancelled() => return }
        } else {
            quick_failures = 0;
        }
    }
}

/// Runs one process until it exits, is killed for a timeout, or the service stops. Returns
/// how it ended, in Lambda's words.
async fn run(
    instance: &Instance,
    mut child: Child,
    kill: &CancellationToken,
    shutdown: &CancellationToken,
) -> String {
    instance.lock().pid = child.id();
    let name = instance.shared.name.clone();
    for (stream, label) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            "stdout",
        ),
        (child.stderr.take().map(|s| Box::new(s) as _), "stderr"),
    ] {
        let Some(stream) = stream else { continue };
        let (name, index) = (name.clone(), instance.index);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "function", function = %name, instance = index, stream = label, "{line}");
            }
        });
    }
    let group = child.id();
    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => describe(s),
            Err(e) => e.to_string(),
        },
        _ = kill.cancelled() => {
            kill_group(group);
            let _ = child.kill().await;
            "signal: killed".to_owned()
        }
        _ = shutdown.cancelled() => {
            kill_group(group);
            let _ = child.kill().await;
            "signal: killed".to_owned()
        }
    };
    // Whatever the environment left behind goes with it, however it ended: no orphaned work.
    kill_group(group);
    ended
}

/// SIGKILL to every process of the environment's group. The group's id stays reserved while
/// any member lives, so it cannot name someone else's processes; an empty group is ESRCH.
fn kill_group(group: Option<u32>) {
    if let Some(pgid) = group.and_then(|id| libc::pid_t::try_from(id).ok()) {
        // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => status.to_string(),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
