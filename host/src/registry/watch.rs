//! The live registry the control API serves: the last VALID version of the file.
//!
//! The file is re-read when its identity changes (length, mtime, ctime, inode — an
//! atomic rename always brings a new inode), checked on a timer and before each
//! request. An invalid file is refused whole: the last valid registry stays served, and
//! the error is logged once and shown in the status until a valid file replaces it.

use super::store::{self, LoadError, Loaded};
use axum::body::Bytes;
use bulkhead_registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The registry being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The file's exact bytes.
    pub body: Bytes,
    /// See [`super::etag`].
    pub etag: String,
    pub revision: u64,
    pub tenants: usize,
    pub loaded_at_unix_ms: u64,
    /// The same bytes, validated and parsed once: readers never parse again.
    pub registry: Arc<Registry>,
}

impl Snapshot {
    fn of(loaded: Loaded) -> Snapshot {
        let doc = loaded.registry.document();
        Snapshot {
            etag: super::etag(&loaded.bytes),
            revision: doc.revision,
            tenants: doc.tenants.len(),
            loaded_at_unix_ms: now_unix_ms(),
            body: Bytes::from(loaded.bytes),
            registry: Arc::new(loaded.registry),
        }
    }
}

/// The served registry and the state of the file behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub current: Arc<Snapshot>,
    /// Why the file on disk is not being served (`None` when it is).
    pub last_error: Option<String>,
    pub path: PathBuf,
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime: Option<SystemTime>,
    #[cfg(unix)]
    ctime: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Ok(Fingerprint {
        len: m.len(),
        mtime: m.modified().ok(),
        #[cfg(unix)]
        ctime: (m.ctime(), m.ctime_nsec()),
        #[cfg(unix)]
        inode: (m.dev(), m.ino()),
    })
}

#[derive(Debug)]
struct Inner {
    current: Arc<Snapshot>,
    last_error: Option<String>,
    /// The file version last looked at (`None`: it could not be stat'ed).
    seen: Option<Fingerprint>,
}

#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl Watcher {
    /// Loads the registry at `path`; fails if it is missing or invalid (the control
    /// API never starts without a valid registry).
    pub fn open(path: &Path) -> Result<Watcher, LoadError> {
        let seen = fingerprint(path).ok();
        let loaded = store::load(path)?;
        Ok(Watcher {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                current: Arc::new(Snapshot::of(loaded)),
                last_error: None,
                seen,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave `Inner` half-updated (every update is one
        // assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry being served, without looking at the file.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner().current)
    }

    pub fn status(&self) -> Status {
        let inner = self.inner();
        Status {
            current: Arc::clone(&inner.current),
            last_error: inner.last_error.clone(),
            path: self.path.clone(),
        }
    }

    /// Re-reads the file if it changed since last time; returns the registry being
    /// served afterwards.
    pub fn refresh(&self) -> Arc<Snapshot> {
        let mut inner = self.inner();
        // Stat before reading: a change after the stat is seen by the next refresh.
        let now = fingerprint(&self.path);
        let now_fp = now.as_ref().ok().copied();
        if now_fp.is_some() && now_fp == inner.seen {
            return Arc::clone(&inner.current);
        }
        if let Err(e) = now {
            if inner.seen.is_some() || inner.last_error.is_none() {
                let msg = format!("reading {}: {e}", self.path.display());
                self.refuse(&mut inner, msg);
            }
            inner.seen = None;
            return Arc::clone(&inner.current);
        }
        inner.seen = now_fp;
        match store::load(&self.path) {
            Ok(loaded) => {
                let next = Snapshot::of(loaded);
                if next.body != inner.current.body {
                    tracing::info!(
                        path = %self.path.display(),
                        revision = next.revision,
                        etag = %next.etag,
                        tenants = next.tenants,
                        "registry reloaded"
                    );
                    inner.current = Arc::new(next);
                } else if inner.last_error.is_some() {
                    tracing::info!(
                        path = %self.path.display(),
                        revision = inner.current.revision,
                        "registry file is valid again"
                    );
                }
                inner.last_error = None;
            }
            Err(e) => self.refuse(&mut inner, e.brief()),
        }
        Arc::clone(&inner.current)
    }

    fn refuse(&self, inner: &mut Inner, msg: String) {
        tracing::warn!(
            path = %self.path.display(),
            serving_revision = inner.current.revision,
            serving_etag = %inner.current.etag,
            "registry file refused, still serving the last valid version: {msg}"
        );
        inner.last_error = Some(msg);
    }

    /// Checks the file every `period` until the task is dropped.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh();
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::registry::DEV_REGISTRY;

    #[test]
    fn keeps_the_last_valid_registry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registry.json");
        std::fs::write(&p, DEV_REGISTRY).unwrap();
        let w = Watcher::open(&p).unwrap();
        let first = w.refresh();
        assert_eq!(first.body.as_ref(), DEV_REGISTRY.as_bytes());
        assert_eq!(first.tenants, 16);

        let broken = DEV_REGISTRY.replace("\"tier\": \"pool\"", "\"tier\": \"gold\"");
        store::write_atomic(&p, broken.as_bytes()).unwrap();
        assert_eq!(w.refresh(), first);
        let err = w.status().last_error.unwrap();
        assert!(err.starts_with("field `tenants.9E.tier`"), "{err}");

        std::fs::remove_file(&p).unwrap();
        assert_eq!(w.refresh(), first);
        assert!(w.status().last_error.unwrap().starts_with("reading "));

        let edited = DEV_REGISTRY.replace("\"revision\": 1", "\"revision\": 2");
        store::write_atomic(&p, edited.as_bytes()).unwrap();
        let now = w.refresh();
        assert_eq!(now.revision, 2);
        assert_ne!(now.etag, first.etag);
        assert_eq!(w.status().last_error, None);
    }
}
