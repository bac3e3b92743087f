//! The processes of a running chain, found through /proc: `strata up` and every process below
//! it (each hop, and the Lambda function's environments under lambda-service), with their
//! resident memory and open file descriptors.

use std::collections::BTreeMap;

use crate::machine::rss_bytes;

/// One process of the tree, named for its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    /// `up`, a hop's name (`llm-server`, `gateway`, ...) or `function` for a `bootstrap`.
    pub role: String,
}

/// Resident memory and open descriptors of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub fds: u64,
}

/// The parent of `pid`, from the field after the command name in /proc/PID/stat (the name
/// itself may hold spaces and parentheses, so the split is at the last `)`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    // A zombie has exited: it holds no memory and is not part of the running chain.
    if state == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// The role a command line names: `strata serve` is the LLM Server, `strata gateway` the
/// gateway and so on; the function's executable is `bootstrap`, the MainService's
/// `strata-main-service`.
fn role(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = args.first()?.rsplit('/').next()?.to_owned();
    match program.as_str() {
        "bootstrap" => return Some("function".into()),
        "strata-main-service" => return Some("main-service".into()),
        _ => {}
    }
    Some(match args.get(1).map(String::as_str) {
        Some("serve") => "llm-server".into(),
        Some(sub @ ("up" | "gateway" | "main-service" | "lambda-service" | "bedrock-emulator")) => {
            sub.into()
        }
        _ => program,
    })
}

/// `root` and all its living descendants, ordered by pid.
pub fn tree(root: u32) -> Vec<Proc> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(ppid) = parent(pid) {
                    children.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if let Some(role) = role(pid) {
            out.push(Proc { pid, role });
        }
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

pub fn usage(pid: u32) -> Option<Usage> {
    Some(Usage { rss_bytes: rss_bytes(pid)?, fds: fd_count(pid)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_and_its_usage() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = std::process::id();
        // `spawn` returns once the child has started exec, a moment before the kernel sets up
        // its command line; until then the child has no role yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let procs = loop {
            let procs = tree(me);
            if procs.iter().any(|p| p.pid == child.id()) || std::time::Instant::now() > deadline {
                break procs;
            }
            std::thread::yield_now();
        };
        assert!(procs.iter().any(|p| p.pid == me));
        assert!(procs.iter().any(|p| p.pid == child.id() && p.role == "sleep"), "{procs:?}");
        let u = usage(child.id()).unwrap();
        assert!(u.rss_bytes > 0 && u.fds >= 3, "{u:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!tree(me).iter().any(|p| p.pid == child.id()));
    }
}
