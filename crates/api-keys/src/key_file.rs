//! Rotating API keys without a restart: the key file (`api_keys_file`) is polled, and when it changes the key
//! set is rebuilt and swapped in whole, so a request sees either the old set or the new one.
//!
//! Polling (rather than a signal) is what works where keys are mounted files that an
//! orchestrator replaces (Kubernetes secrets, Docker configs): nobody is there to send a signal.
//! A file that cannot be read, or holds no key, keeps the previous set: a botched rotation
//! must not lock every client out. Only key ids are logged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::keys::ApiKeys;

/// What tells a changed file apart from the one last read (a rename over it changes the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a swapped link target counts as a change.
    let m = std::fs::metadata(path)?;
    Ok(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

/// The key set: the configured `api_keys` plus those of `api_keys_file`.
pub struct KeySource {
    fixed: Vec<String>,
    file: Option<PathBuf>,
    current: ArcSwap<ApiKeys>,
}

impl KeySource {
    /// Reads the file once; at startup an unreadable file is an error (a typo in the path
    /// should stop the gateway, not start it without keys).
    pub fn load(fixed: Vec<String>, file: Option<PathBuf>) -> std::io::Result<KeySource> {
        let mut keys = fixed.clone();
        if let Some(path) = &file {
            keys.extend(ApiKeys::read_file(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("reading api_keys_file {}: {e}", path.display()),
                )
            })?);
        }
        Ok(KeySource { fixed, file, current: ArcSwap::from_pointee(ApiKeys::new(keys)) })
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<ApiKeys> {
        self.current.load_full()
    }

    /// Re-reads the file and swaps the new set in. `Err` (with the reason, for a warning) keeps
    /// the previous set.
    pub fn reload(&self) -> Result<Change, String> {
        let Some(path) = &self.file else { return Ok(Change::default()) };
        let from_file = ApiKeys::read_file(path)
            .map_err(|e| format!("reading api_keys_file {}: {e}", path.display()))?;
        if from_file.is_empty() {
            return Err(format!("api_keys_file {} holds no key", path.display()));
        }
        let next = ApiKeys::new(self.fixed.iter().cloned().chain(from_file));
        let before: BTreeSet<String> = self.keys().ids().map(str::to_owned).collect();
        let after: BTreeSet<String> = next.ids().map(str::to_owned).collect();
        self.current.store(Arc::new(next));
        Ok(Change {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        })
    }

    /// Polls the file in a task every `interval` while the returned `Watcher` lives (nothing
    /// to watch without a file, or with an interval of 0).
    pub fn watch_while_alive(self: &Arc<Self>, interval: Duration) -> Option<Watcher> {
        (self.file.is_some() && !interval.is_zero())
            .then(|| Watcher(tokio::spawn(Arc::clone(self).watch(interval))))
    }

    /// Polls the file every `interval` until the task is dropped, reloading when it changed.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let Some(path) = self.file.clone() else { return };
        let mut last = stamp(&path).ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let now = stamp(&path);
            let now_ok = now.as_ref().ok().copied();
            if now_ok.is_some() && now_ok == last {
                continue;
            }
            // Changed, or unreadable: an unreadable file is reported once until it changes again.
            let was_unreadable = last.is_none();
            last = now_ok;
            if now.is_err() && was_unreadable {
                continue;
            }
            match self.reload() {
                Ok(change) => {
                    let count = self.keys().len();
                    tracing::info!(added = ?change.added, removed = ?change.removed, api_keys = count, "api keys reloaded");
                }
                Err(reason) => {
                    tracing::warn!(%reason, "api_keys_file changed but could not be used; keeping the previous keys")
                }
            }
        }
    }
}

/// Stops the file's watcher when dropped, so that it lives exactly as long as its server.
pub struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Key ids added and removed by a reload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::key_id;

    #[test]
    fn reload_swaps_the_file_keys_and_keeps_the_fixed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "old-key\n# comment\n").unwrap();
        let source = KeySource::load(vec!["fixed-key".into()], Some(path.clone())).unwrap();
        assert!(source.keys().check(b"old-key").is_some());

        std::fs::write(&path, "new-key\n").unwrap();
        let change = source.reload().unwrap();
        assert_eq!(
            change,
            Change { added: vec![key_id("new-key")], removed: vec![key_id("old-key")] }
        );
        let keys = source.keys();
        assert!(keys.check(b"new-key").is_some());
        assert!(keys.check(b"fixed-key").is_some());
        assert!(keys.check(b"old-key").is_none());
    }

    #[test]
    fn an_empty_or_missing_file_keeps_the_previous_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "key-1\n").unwrap();
        let source = KeySource::load(Vec::new(), Some(path.clone())).unwrap();
        std::fs::write(&path, "\n# nothing\n").unwrap();
        assert!(source.reload().unwrap_err().contains("holds no key"));
        std::fs::remove_file(&path).unwrap();
        assert!(source.reload().is_err());
        assert!(source.keys().check(b"key-1").is_some());
        assert!(
            KeySource::load(Vec::new(), Some(path)).is_err(),
            "a missing file at startup is an error"
        );
    }
}
