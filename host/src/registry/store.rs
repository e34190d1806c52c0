//! The registry file on disk: read and validate it, replace it atomically, and edit it
//! under an exclusive lock so concurrent `bulkhead tenant …` commands never lose an
//! update.
//!
//! Writes go to a temporary file in the same directory, which is fsynced, renamed over
//! the registry, and then the directory is fsynced: a reader (the control API) sees
//! either the old document or the new one, never a torn one, and a crash keeps one of
//! the two. Editors serialise on `flock(2)` of `<registry>.lock` (a separate file,
//! because the registry itself is replaced by each write).

use anyhow::{Context, Result, bail};
use bulkhead_registry::edit::{self, Edit};
use bulkhead_registry::{ConfigError, Registry};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest registry file accepted (it is held in memory and served whole).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// How long an edit waits for another editor to release the lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A registry file that was read and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file's exact bytes (what the control API serves).
    pub bytes: Vec<u8>,
    pub registry: Registry,
}

/// Why a registry file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is invalid: field `{}`: {}", path.display(), error.field, error.message)]
    Invalid { path: PathBuf, error: ConfigError },
}

impl LoadError {
    /// The error without the file name (the control API's status shows the path
    /// beside it): `field `x`: …` for an invalid document.
    pub fn brief(&self) -> String {
        match self {
            LoadError::Invalid { error, .. } => {
                format!("field `{}`: {}", error.field, error.message)
            }
            other => other.to_string(),
        }
    }
}

/// Reads `path` and validates it.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = read_limited(path)?;
    match Registry::parse(&bytes) {
        Ok(registry) => Ok(Loaded { bytes, registry }),
        Err(error) => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LoadError> {
    let io_err = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The lock file of the registry at `path`: `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// An exclusive lock on a registry; released when dropped (closing the file releases
/// the `flock`, also when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the exclusive edit lock of the registry at `path`, waiting up to
/// [`LOCK_TIMEOUT`] for another editor.
pub fn lock(path: &Path) -> Result<Lock> {
    let lp = lock_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lp)
        .with_context(|| format!("opening the lock file {}", lp.display()))?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => bail!(
                "another edit has held {} for more than {}s",
                lp.display(),
                LOCK_TIMEOUT.as_secs()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lp.display()));
            }
        }
    }
}

/// Replaces `path` with `bytes` atomically and durably (temp file in the same
/// directory, fsync, rename, fsync of the directory). Keeps the permissions of the file
/// it replaces (a new file gets 0644).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "registry".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let perms = fs::metadata(path)
        .map(|m| m.permissions())
        .ok()
        .or_else(default_permissions);
    if let Some(perms) = perms {
        tmp.as_file()
            .set_permissions(perms)
            .with_context(|| format!("setting permissions on {}", tmp.path().display()))?;
    }
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the new registry over {}", path.display()))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> Option<fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn default_permissions() -> Option<fs::Permissions> {
    None
}

/// Writes a new registry at `path` from `bytes` (validated first). Refuses to replace
/// an existing file unless `force`.
pub fn init(path: &Path, bytes: &[u8], source: &str, force: bool) -> Result<Registry> {
    let registry = Registry::parse(bytes).map_err(|error| LoadError::Invalid {
        path: PathBuf::from(source),
        error,
    })?;
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock(path)?;
    if !force && fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    write_atomic(path, bytes)?;
    Ok(registry)
}

/// What an edit did.
#[derive(Debug)]
pub struct Edited {
    pub before: Registry,
    pub after: Registry,
    /// False when the edit changed nothing (e.g. resuming an active tenant): the file
    /// was left as it was and the revision not bumped.
    pub changed: bool,
}

/// Applies `change` to the registry at `path` under the edit lock: reads and validates
/// the current file, applies the edit (validated whole), writes the result atomically.
/// A refused edit leaves the file untouched; the error names the field.
pub fn edit(path: &Path, change: Edit) -> Result<Edited> {
    let _lock = lock(path)?;
    let current = load(path).context("cannot edit the registry until the file is valid")?;
    let before = current.registry;
    let after = edit::apply(&before, change)
        .with_context(|| format!("edit refused; {} unchanged", path.display()))?;
    let mut same = after.document().clone();
    same.revision = before.document().revision;
    if &same == before.document() {
        return Ok(Edited {
            after: before.clone(),
            before,
            changed: false,
        });
    }
    let json = after.document().to_json();
    // The bytes on disk are what the edge will judge: make sure they parse back to the
    // registry that was validated.
    match Registry::parse(json.as_bytes()) {
        Ok(again) if again == after => {}
        _ => bail!("internal error: the edited registry does not serialise faithfully"),
    }
    write_atomic(path, json.as_bytes())?;
    Ok(Edited {
        before,
        after,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn write_atomic_replaces_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o644
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
    }

    #[test]
    fn load_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let e = load(&p).unwrap_err();
        assert!(matches!(e, LoadError::Io { .. }));
        assert!(e.to_string().contains("r.json"), "{e}");
        fs::write(&p, br#"{"revision": 1}"#).unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.to_string().contains("r.json is invalid: field `(root)`"),
            "{e}"
        );
        assert!(e.brief().starts_with("field `(root)`"), "{}", e.brief());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let held = lock(&p).unwrap();
        let f = File::open(lock_path(&p)).unwrap();
        assert!(matches!(f.try_lock(), Err(TryLockError::WouldBlock)));
        drop(held);
        f.try_lock().unwrap();
    }
}
