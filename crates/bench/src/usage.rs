//! What a process tree costs while it is measured: CPU time (utime + stime of every process,
//! from /proc/PID/stat) and resident memory (sampled while the load runs, largest kept).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::procs::{self, Proc};

/// CPU seconds `pid` has used so far (user + system), from fields 14 and 15 of /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields after it start at the state (3).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds of every process of the tree under `root`, by pid (with its role).
pub fn tree_cpu(root: u32) -> BTreeMap<u32, (Proc, f64)> {
    procs::tree(root)
        .into_iter()
        .filter_map(|p| cpu_seconds(p.pid).map(|c| (p.pid, (p, c))))
        .collect()
}

/// CPU seconds each role used between two snapshots (a process absent from `before` started
/// in between and counts from zero; one absent from `after` exited and its share is lost).
pub fn cpu_by_role(
    before: &BTreeMap<u32, (Proc, f64)>,
    after: &BTreeMap<u32, (Proc, f64)>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (pid, (p, c)) in after {
        let was = before.get(pid).map_or(0.0, |(_, c)| *c);
        *out.entry(p.role.clone()).or_insert(0.0) += (c - was).max(0.0);
    }
    out
}

/// Largest resident memory seen while sampling: of the whole tree, and of each process.
#[derive(Debug, Clone, Default)]
pub struct RssPeak {
    pub total_bytes: u64,
    /// (role, pid) -> bytes.
    pub by_process: BTreeMap<(String, u32), u64>,
}

impl RssPeak {
    pub fn merge(&mut self, other: &RssPeak) {
        self.total_bytes = self.total_bytes.max(other.total_bytes);
        for (k, v) in &other.by_process {
            let e = self.by_process.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The largest process whose role is not in `except`.
    pub fn largest_process(&self, except: &[&str]) -> Option<(&str, u64)> {
        self.by_process
            .iter()
            .filter(|((role, _), _)| !except.contains(&role.as_str()))
            .map(|((role, _), b)| (role.as_str(), *b))
            .max_by_key(|(_, b)| *b)
    }
}

fn sample_once(root: u32, peak: &mut RssPeak) {
    let mut total = 0;
    for p in procs::tree(root) {
        if let Some(rss) = crate::machine::rss_bytes(p.pid) {
            total += rss;
            let e = peak.by_process.entry((p.role, p.pid)).or_default();
            *e = (*e).max(rss);
        }
    }
    peak.total_bytes = peak.total_bytes.max(total);
}

/// Samples the tree's memory on a thread of its own until stopped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<RssPeak>,
}

impl RssSampler {
    pub fn start(root: u32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = RssPeak::default();
            while !flag.load(Ordering::Relaxed) {
                sample_once(root, &mut peak);
                std::thread::park_timeout(every);
            }
            // One last sample, at the end of the load.
            sample_once(root, &mut peak);
            peak
        });
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> RssPeak {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_and_memory_are_seen() {
        let me = std::process::id();
        let before = tree_cpu(me);
        // Burn a little CPU so the counter moves by at least one tick.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_by_role(&before, &tree_cpu(me)).values().sum::<f64>() <= 0.0
            && started.elapsed() < Duration::from_secs(30)
        {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_by_role(&before, &tree_cpu(me)).values().sum::<f64>() > 0.0);
        let peak = RssSampler::start(me, Duration::from_millis(10)).finish();
        assert!(peak.total_bytes > 0);
        assert!(peak.by_process.keys().any(|(_, pid)| *pid == me));
    }
}
