//! The LiteLLM proxy, started the way it runs in production (`litellm --num_workers 2`), as
//! the reference the overhead suite measures strata against: configured for Bedrock Converse
//! with its runtime endpoint pointed at the same emulator, the local model cost map, a master
//! key (it refuses to start without one) and no database.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Where `scripts/setup.sh` (`setup_litellm`) installs the proxy.
pub fn default_executable() -> PathBuf {
    let cache = std::env::var_os("STRATA_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("strata")
    });
    cache.join("litellm-venv/bin/litellm")
}

/// A running proxy: its own process group (the master and its workers), stopped as a whole
/// when dropped.
pub struct LiteLlm {
    child: Child,
    pub url: String,
    /// The master key clients send as `Authorization: Bearer`.
    pub key: String,
    /// The config and the proxy's log.
    dir: tempfile::TempDir,
}

/// The proxy's configuration: one model, served by Bedrock Converse at `endpoint`.
fn config_yaml(model: &str, model_id: &str, endpoint: &str) -> String {
    format!(
        "model_list:\n\
         \x20 - model_name: \"{model}\"\n\
         \x20   litellm_params:\n\
         \x20     model: \"bedrock/converse/{model_id}\"\n\
         \x20     aws_bedrock_runtime_endpoint: \"{endpoint}\"\n\
         \x20     aws_region_name: \"us-east-1\"\n\
         \x20     aws_access_key_id: \"bench\"\n\
         \x20     aws_secret_access_key: \"bench\"\n\
         litellm_settings:\n\
         \x20 telemetry: false\n"
    )
}

/// A random `sk-` key of 32 bytes, as the proxy's own advice generates one.
fn master_key() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("sk-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

impl LiteLlm {
    /// Starts `litellm` with two workers and waits until its readiness route answers 200.
    pub async fn start(
        executable: &Path,
        model: &str,
        model_id: &str,
        endpoint: &str,
        ready_timeout: Duration,
    ) -> anyhow::Result<LiteLlm> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml(model, model_id, endpoint))?;
        let log = std::fs::File::create(dir.path().join("litellm.log"))?;
        let port = free_port()?;
        let key = master_key()?;
        let child = Command::new(executable)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "2"])
            // uvicorn kills a worker that does not answer its supervisor's ping within 5 s, and
            // importing the proxy takes longer than that on a busy 2-core machine: the workers
            // would be restarted forever.
            .args(["--timeout_worker_healthcheck", "120"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_MASTER_KEY", &key)
            .env_remove("DATABASE_URL")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group, so the workers can be stopped with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", executable.display()))?;
        let mut proxy = LiteLlm { child, url: format!("http://127.0.0.1:{port}"), key, dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + ready_timeout;
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                bail!("litellm exited with {status} before it was ready: {}", proxy.log_tail());
            }
            if let Ok(r) = client
                .get(format!("{}/health/readiness", proxy.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(proxy);
                }
            }
            if Instant::now() > deadline {
                bail!("litellm was not ready within {ready_timeout:?}: {}", proxy.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the proxy's log, to say why it failed.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("litellm.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals the group this process created; no memory
        // is shared with the callee.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.child.try_wait();
            // SAFETY: as above; signal 0 only asks whether any process of the group is left.
            let alive = unsafe { libc::kill(group, 0) } == 0;
            if !alive {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(group, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free at this moment. LiteLLM cannot be handed a bound socket (its command
/// line has no such option), so it binds the port itself a few seconds later; nothing else the
/// suite starts binds ports meanwhile.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_converse_route_and_the_endpoint() {
        let y = config_yaml(
            "smollm2:135m",
            "strata.smollm2-135m-instruct-v1:0",
            "http://127.0.0.1:1234",
        );
        assert!(y.contains("model: \"bedrock/converse/strata.smollm2-135m-instruct-v1:0\""), "{y}");
        assert!(y.contains("aws_bedrock_runtime_endpoint: \"http://127.0.0.1:1234\""), "{y}");
        assert!(y.contains("  - model_name: \"smollm2:135m\"\n    litellm_params:\n"), "{y}");
    }
}
