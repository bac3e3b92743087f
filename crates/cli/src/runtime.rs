//! The async runtime each hop serves on (`[runtime]`).
//!
//! A hop's work per request is a few hundred microseconds of parsing, signing and copying
//! between two sockets. On a runtime with several worker threads, a request's tasks (the
//! server connection, the handler, the client connection to the next hop) can be spread over
//! threads, and every hand-off wakes a sleeping thread on another core; when the machine is
//! quiet, each such wake-up costs more than the request's own work. One thread runs the whole
//! request where it started, and one thread of a hop still serves thousands of requests a
//! second (docs/benchmarks.md). More threads are for a hop that is itself the bottleneck of a
//! busy machine with cores to spare.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Threads that run a hop's requests: 1 runs them all on the thread that accepted them;
    /// 0 starts one per CPU core. Blocking work (files, the embedded model) has its own
    /// threads either way.
    pub worker_threads: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings { worker_threads: 1 }
    }
}

impl RuntimeSettings {
    /// The runtime these settings describe.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if n > 1 {
                    b.worker_threads(n);
                }
                b
            }
        };
        builder.enable_all().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(settings: &RuntimeSettings) -> usize {
        settings.build().unwrap().metrics().num_workers()
    }

    #[test]
    fn one_thread_by_default_and_as_many_as_asked_or_one_per_core() {
        assert_eq!(workers(&RuntimeSettings::default()), 1);
        let one = RuntimeSettings::default().build().unwrap();
        assert_eq!(one.handle().runtime_flavor(), tokio::runtime::RuntimeFlavor::CurrentThread);
        assert_eq!(workers(&RuntimeSettings { worker_threads: 3 }), 3);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(workers(&RuntimeSettings { worker_threads: 0 }), cores);
    }

    #[test]
    fn timers_and_sockets_work_on_the_one_thread() {
        RuntimeSettings::default().build().unwrap().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (accepted, connected) =
                tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
            assert!(accepted.is_ok() && connected.is_ok());
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        });
    }
}
