//! A job on disk: `<batch-dir>/<tenant>/<job-id>/` holds `input` (the upload as sent),
//! `status.json` (written atomically: temp file, fsync, rename, fsync the directory) and
//! `results/<chunk>.ndjson` (one file per scored chunk, written whole: temp file, fsync,
//! rename). A chunk is done exactly when its results file exists, which is what a restart
//! resumes from; a chunk whose rename was lost in a power cut is simply scored again (and
//! billed under the same event id). Progress counters are kept in memory and recomputed
//! from the results files on a restart, so a chunk costs two fsyncs (its results and its
//! usage event), not four.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A job id: 128 random bits from the OS, as 32 lowercase hex digits (unguessable).
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut b).context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether `s` has the shape of a job id (checked before it touches a path).
pub fn valid_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Ndjson,
    Csv,
}

/// What `status.json` holds (and, most of it, `GET /v1/batch/{id}` shows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub job_id: String,
    pub tenant: String,
    pub status: State,
    pub format: Format,
    /// Rows in the upload.
    pub rows: u64,
    /// Rows of the chunks scored so far (predictions and per-row errors).
    pub rows_done: u64,
    /// Rows that got a per-row error instead of a prediction.
    pub rows_failed: u64,
    pub chunk_rows: u64,
    pub chunks: u64,
    /// The model as the tenant's registry route named it at submission.
    pub model_name: String,
    pub model_selector: String,
    /// The version the first chunk resolved; every later chunk (also after a restart)
    /// uses exactly it.
    pub model_version: Option<String>,
    pub tier: String,
    pub region: String,
    pub created: String,
    pub finished: Option<String>,
    pub error: Option<String>,
}

impl Status {
    /// The JSON `GET /v1/batch/{id}` answers with.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "job_id": self.job_id,
            "status": self.status,
            "rows": self.rows,
            "rows_done": self.rows_done,
            "rows_failed": self.rows_failed,
            "model": {
                "name": self.model_name,
                "version": self.model_version.as_deref().unwrap_or(&self.model_selector),
                "tier": self.tier,
            },
            "created": self.created,
            "finished": self.finished,
            "error": self.error,
        })
    }
}

/// A job in memory: its directory and its current status.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub dir: PathBuf,
    pub status: Mutex<Status>,
}

impl Job {
    pub fn snapshot(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the status and makes it durable.
    pub fn update(&self, f: impl FnOnce(&mut Status)) -> Result<Status> {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        write_status(&self.dir, &s)?;
        Ok(s.clone())
    }

    /// Changes the status in memory only (progress counters: a restart recomputes them
    /// from the results files, so they need no fsync per chunk).
    pub fn set(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    pub fn input(&self) -> PathBuf {
        self.dir.join(INPUT)
    }

    pub fn chunk_file(&self, chunk: u64) -> PathBuf {
        chunk_path(&self.dir, chunk)
    }
}

pub const INPUT: &str = "input";
pub const STATUS: &str = "status.json";
pub const RESULTS: &str = "results";

pub fn chunk_path(job_dir: &Path, chunk: u64) -> PathBuf {
    job_dir.join(RESULTS).join(format!("{chunk:08}.ndjson"))
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_whole(path, bytes)?;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename): the file is either
/// absent or whole. The rename itself is made durable later by one [`sync_dir`].
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

pub fn write_status(job_dir: &Path, s: &Status) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(s)?;
    write_atomic(&job_dir.join(STATUS), &bytes)
}

/// Every job under `root` (`<tenant>/<id>/status.json`). A job directory without a
/// status is an upload that never completed: it is removed. Unreadable statuses are
/// logged and skipped.
pub fn scan(root: &Path) -> Result<Vec<(PathBuf, Status)>> {
    let mut out = Vec::new();
    let tenants = match std::fs::read_dir(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    for t in tenants {
        let t = t?;
        if !t.file_type()?.is_dir() {
            continue;
        }
        for j in std::fs::read_dir(t.path())? {
            let j = j?;
            let dir = j.path();
            if !j.file_type()?.is_dir() || !valid_id(&j.file_name().to_string_lossy()) {
                continue;
            }
            let path = dir.join(STATUS);
            match std::fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Status>(&bytes) {
                    Ok(s) => out.push((dir, s)),
                    Err(e) => tracing::error!(path = %path.display(), "unreadable job status: {e}"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(dir = %dir.display(), "removing an upload that never completed");
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(e) => tracing::error!(path = %path.display(), "reading a job status: {e}"),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ids_are_random_hex_and_checked() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(valid_id(&a) && valid_id(&b));
        assert_ne!(a, b);
        assert!(!valid_id("../x"));
        assert!(!valid_id(&a.to_uppercase()));
        assert!(!valid_id(&a[1..]));
    }

    #[test]
    fn scan_finds_statuses_and_drops_incomplete_uploads() {
        let root = tempfile::tempdir().unwrap();
        let id = new_id().unwrap();
        let dir = root.path().join("DL").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Status {
            job_id: id.clone(),
            tenant: "DL".into(),
            status: State::Running,
            format: Format::Csv,
            rows: 3,
            rows_done: 0,
            rows_failed: 0,
            chunk_rows: 2,
            chunks: 2,
            model_name: "eta-DL".into(),
            model_selector: "production".into(),
            model_version: None,
            tier: "bridge".into(),
            region: "us-east-1".into(),
            created: "2026-11-28T00:00:00.000Z".into(),
            finished: None,
            error: None,
        };
        write_status(&dir, &s).unwrap();
        let half = root.path().join("DL").join(new_id().unwrap());
        std::fs::create_dir_all(&half).unwrap();
        let found = scan(root.path()).unwrap();
        assert_eq!(found, vec![(dir, s)]);
        assert!(!half.exists());
    }
}
