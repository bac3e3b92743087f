//! A run's files are the user's alone: its directory is 0700 and every file in it 0600, since
//! they hold generated keys, the run's configuration and logs. Keys come from the operating
//! system's random source; if it fails, `up` stops rather than run with a guessable key.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::OsRng;
use rand::RngCore as _;

/// Creates `dir` (and missing parents) readable by the user only; an existing one is narrowed.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

/// Opens `path` for appending, created 0600 (an existing file keeps its mode but is narrowed).
pub fn append(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    Ok(file)
}

/// Writes `contents` to `path`, created or replaced 0600.
pub fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))
}

/// A new secret: 32 hex characters (128 bits) from the OS random source.
pub fn secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the operating system's random source for a key")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn run_files_are_the_users_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/one");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let key = dir.join("api-key");
        write(&key, b"k").unwrap();
        assert_eq!(mode(&key), 0o600);
        let log = dir.join("hop.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(&log).unwrap();
        assert_eq!(mode(&log), 0o600, "an existing log is narrowed");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing run directory is narrowed");
    }

    #[test]
    fn secrets_are_distinct_hex() {
        let (a, b) = (secret().unwrap(), secret().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
