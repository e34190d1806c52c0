//! The meter log: append-only, segmented, checksummed, fsynced, with group commit.
//!
//! Layout: a directory of segments `00000000000000000001.seg`, `…02.seg`, …, each an
//! 8-byte magic (`BHMLOG01`) followed by records framed as
//! `[len: u32 LE][crc32(payload): u32 LE][payload: len bytes]` (the payload is one
//! [`Event`] as JSON). A segment is rolled when the next record would take it past
//! `segment_bytes`; the segment before the last is *sealed* (fsynced before the next one
//! was created) and never written again.
//!
//! **Durability.** [`Log::append`] returns only after the `fdatasync` that covers its
//! record. One writer thread owns the file: it takes every record queued while its
//! previous fsync ran, writes them with one `write`, and covers them all with one fsync
//! (group commit). The writer never writes again after a failed write or fsync (the page
//! cache can no longer be trusted): every later append fails until a restart.
//!
//! **Recovery** (on [`Log::open`]): every record of every segment is checked. A bad
//! record in the *last* segment (a torn write from a power cut, or a corrupt byte) is
//! where the log ends: the segment is truncated there, earlier records are kept. A bad
//! record in a *sealed* segment is not a torn write: the log refuses to open and says
//! where, rather than silently dropping billed events that come after it.
//!
//! One process writes a log at a time (an advisory lock on `LOCK`, released when the
//! process dies); readers ([`read`]) take no lock and stop quietly at a torn tail.

use super::event::Event;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

pub const MAGIC: &[u8; 8] = b"BHMLOG01";
const HEADER_LEN: u64 = MAGIC.len() as u64;
/// Length and checksum before each record.
pub const FRAME_HEADER: usize = 8;
/// Largest record accepted (an event is a few hundred bytes).
pub const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is rolled when the next record would take it past this.
    pub segment_bytes: u64,
    /// Most records one fsync covers.
    pub max_batch: usize,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 64 << 20,
            max_batch: 4096,
        }
    }
}

/// Where a record starts: its segment and byte offset.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, Default,
)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the meter log writer has stopped")]
    Stopped,
    #[error("writing the meter log failed: {0}")]
    Io(String),
    #[error(
        "the meter log refuses writes since an earlier failure ({0}); check the disk and restart"
    )]
    Poisoned(String),
    #[error("the usage event could not be encoded: {0}")]
    Encode(String),
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    /// Records made durable.
    pub appends: u64,
    /// Write + fsync rounds.
    pub batches: u64,
    /// fsync/fdatasync calls (records, segment creation, the directory).
    pub fsyncs: u64,
    /// The writer refuses appends (a write or fsync failed, or [`Log::poison`]) until a
    /// restart.
    pub failed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    appends: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    failed: std::sync::atomic::AtomicBool,
}

/// What [`Log::open`] found and repaired.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub segments: usize,
    pub records: u64,
    pub truncated: Option<Truncated>,
}

#[derive(Debug, Clone)]
pub struct Truncated {
    pub segment: PathBuf,
    /// The segment's new length.
    pub at: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

enum Msg {
    Append {
        frame: Vec<u8>,
        done: tokio::sync::oneshot::Sender<Result<Position, LogError>>,
    },
    Poison(String),
}

/// The writing end of a meter log. Dropping it stops the writer thread (after the batch
/// in progress) and releases the lock.
pub struct Log {
    tx: Option<mpsc::Sender<Msg>>,
    counters: Arc<Counters>,
    dir: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        drop(self.tx.take());
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// `[len][crc][payload]`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.seg"))
}

/// The segments of `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(i) = stem.parse::<u64>()
        {
            out.push((i, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
    Clean,
    /// The first bad byte and why.
    Bad {
        at: u64,
        reason: String,
    },
}

/// The records of one segment (offset, payload), and how it ends.
fn scan(bytes: &[u8]) -> (Vec<(u64, &[u8])>, Tail) {
    let mut records = Vec::new();
    if bytes.len() < MAGIC.len() {
        let reason = format!("torn segment header ({} of 8 bytes)", bytes.len());
        return (records, Tail::Bad { at: 0, reason });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        let reason = "not a meter log segment (bad magic)".to_string();
        return (records, Tail::Bad { at: 0, reason });
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let bad = |reason: String| Tail::Bad {
            at: at as u64,
            reason,
        };
        let rest = &bytes[at..];
        if rest.len() < FRAME_HEADER {
            let r = format!("torn record header ({} of 8 bytes)", rest.len());
            return (records, bad(r));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_RECORD {
            return (records, bad(format!("impossible record length {len}")));
        }
        if rest.len() < FRAME_HEADER + len {
            let r = format!(
                "torn record ({len} bytes declared, {} present)",
                rest.len() - FRAME_HEADER
            );
            return (records, bad(r));
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            return (records, bad("checksum mismatch".to_string()));
        }
        records.push((at as u64, payload));
        at += FRAME_HEADER + len;
    }
    (records, Tail::Clean)
}

fn sealed_corruption(path: &Path, at: u64, reason: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "meter log segment {} is sealed but has a bad record at byte {at} ({reason}); \
         refusing to start: the events after it would be lost. Move the segment aside \
         (and reconcile) or repair it by hand",
        path.display()
    )
}

/// What a reader sees: every event in log order, and where the log ends.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub events: Vec<(Position, Event)>,
    /// Just past the last good record.
    pub end: Position,
    /// A torn or corrupt tail of the last segment the reader stopped at (a writer may be
    /// mid-write, or the next start will truncate it).
    pub torn_tail: Option<String>,
}

/// Reads the log at `dir` without writing to it (no lock: a writer may be running).
/// A bad record in a sealed segment is an error; a bad tail of the last one ends the
/// scan. `up_to` stops at a position (exclusive), e.g. the end an aggregate covered.
pub fn read(dir: &Path, up_to: Option<Position>) -> Result<Scan> {
    let segs = segments(dir)?;
    let mut scan_out = Scan::default();
    let last = segs.len().saturating_sub(1);
    for (n, (index, path)) in segs.iter().enumerate() {
        if up_to.is_some_and(|u| *index > u.segment) {
            break;
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (records, tail) = scan(&bytes);
        for (offset, payload) in records {
            let pos = Position {
                segment: *index,
                offset,
            };
            if up_to.is_some_and(|u| pos >= u) {
                return Ok(scan_out);
            }
            let ev: Event = serde_json::from_slice(payload).with_context(|| {
                format!(
                    "meter log {} byte {offset}: a record with a valid checksum is not an event",
                    path.display()
                )
            })?;
            scan_out.end = Position {
                segment: *index,
                offset: offset + (FRAME_HEADER + payload.len()) as u64,
            };
            scan_out.events.push((pos, ev));
        }
        if scan_out.end.segment != *index {
            scan_out.end = Position {
                segment: *index,
                offset: HEADER_LEN,
            };
        }
        if let Tail::Bad { at, reason } = tail {
            if n != last {
                return Err(sealed_corruption(path, at, &reason));
            }
            scan_out.torn_tail = Some(format!("{} byte {at}: {reason}", path.display()));
        }
    }
    Ok(scan_out)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens (creating if needed) the log at `dir`: takes the lock, checks every
    /// segment, truncates a bad tail of the last one, and starts the writer thread.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<(Log, Recovery)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another process is writing the meter log at {} (it holds {})",
                dir.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        let counters = Arc::new(Counters::default());
        let mut rec = Recovery::default();
        let mut segs = segments(dir)?;
        if segs.is_empty() {
            let p = segment_path(dir, 1);
            create_segment(&p, &counters)?;
            sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
            segs.push((1, p));
        }
        rec.segments = segs.len();
        let last = segs.len() - 1;
        let mut last_len = HEADER_LEN;
        for (n, (_, path)) in segs.iter().enumerate() {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let (records, tail) = scan(&bytes);
            rec.records += records.len() as u64;
            match tail {
                Tail::Clean => last_len = bytes.len() as u64,
                Tail::Bad { at, reason } if n == last => {
                    if at == 0 && bytes.len() >= MAGIC.len() {
                        // A full header that is not ours: not a torn write.
                        bail!("{}: {reason}; refusing to open", path.display());
                    }
                    repair_tail(path, at)?;
                    last_len = at.max(HEADER_LEN);
                    rec.truncated = Some(Truncated {
                        segment: path.clone(),
                        at: last_len,
                        dropped_bytes: bytes.len() as u64 - at,
                        reason,
                    });
                }
                Tail::Bad { at, reason } => return Err(sealed_corruption(path, at, &reason)),
            }
        }
        let (index, path) = segs[last].clone();
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            index,
            len: last_len,
            cfg,
            counters: Arc::clone(&counters),
            _lock: lock,
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("meter-log".into())
            .spawn(move || writer.run(rx))
            .context("starting the meter log writer")?;
        Ok((
            Log {
                tx: Some(tx),
                counters,
                dir: dir.to_path_buf(),
                thread: Mutex::new(Some(thread)),
            },
            rec,
        ))
    }

    /// Appends `ev`; returns once the record is on disk (fsynced).
    pub async fn append(&self, ev: &Event) -> Result<Position, LogError> {
        let payload = serde_json::to_vec(ev).map_err(|e| LogError::Encode(e.to_string()))?;
        if payload.len() > MAX_RECORD {
            return Err(LogError::Encode(format!(
                "{} bytes, more than {MAX_RECORD}",
                payload.len()
            )));
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or(LogError::Stopped)?;
        tx.send(Msg::Append {
            frame: frame(&payload),
            done,
        })
        .map_err(|_| LogError::Stopped)?;
        rx.await.map_err(|_| LogError::Stopped)?
    }

    /// Makes every later append fail with `reason` (as after a failed fsync): for an
    /// operator who knows the disk is bad, and for tests of the failure path.
    pub fn poison(&self, reason: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Poison(reason.to_string()));
        }
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            appends: self.counters.appends.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Cuts a segment at `at` (a fresh header if the header itself was torn) and syncs it.
fn repair_tail(path: &Path, at: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} to truncate it", path.display()))?;
    if at < HEADER_LEN {
        f.set_len(0)?;
        (&f).write_all(MAGIC)?;
    } else {
        f.set_len(at)
            .with_context(|| format!("truncating {}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

fn create_segment(path: &Path, counters: &Counters) -> Result<File> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(MAGIC)?;
    f.sync_all()?;
    counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    Ok(f)
}

struct Writer {
    dir: PathBuf,
    file: File,
    index: u64,
    len: u64,
    cfg: LogConfig,
    counters: Arc<Counters>,
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut poisoned: Option<String> = None;
        while let Ok(first) = rx.recv() {
            // Group commit: everything queued while the last fsync ran goes in this one.
            let mut batch = vec![first];
            while batch.len() < self.cfg.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut frames = Vec::with_capacity(batch.len());
            let mut waiters = Vec::with_capacity(batch.len());
            for m in batch {
                match m {
                    Msg::Append { frame, done } => {
                        frames.push(frame);
                        waiters.push(done);
                    }
                    Msg::Poison(reason) => {
                        tracing::error!(%reason, "meter log: refusing further writes");
                        self.counters.failed.store(true, Ordering::Relaxed);
                        poisoned.get_or_insert(reason);
                    }
                }
            }
            if waiters.is_empty() {
                continue;
            }
            if let Some(reason) = &poisoned {
                for w in waiters {
                    let _ = w.send(Err(LogError::Poisoned(reason.clone())));
                }
                continue;
            }
            match self.write_batch(&frames) {
                Ok(positions) => {
                    self.counters
                        .appends
                        .fetch_add(positions.len() as u64, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    for (w, p) in waiters.into_iter().zip(positions) {
                        let _ = w.send(Ok(p));
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::error!(error = %reason, dir = %self.dir.display(),
                        "meter log write failed: no further writes until a restart");
                    poisoned = Some(reason.clone());
                    self.counters.failed.store(true, Ordering::Relaxed);
                    for w in waiters {
                        let _ = w.send(Err(LogError::Io(reason.clone())));
                    }
                }
            }
        }
    }

    fn write_batch(&mut self, frames: &[Vec<u8>]) -> Result<Vec<Position>> {
        let mut positions = Vec::with_capacity(frames.len());
        let mut buf: Vec<u8> = Vec::new();
        for f in frames {
            let pending = self.len + buf.len() as u64;
            if pending > HEADER_LEN && pending + f.len() as u64 > self.cfg.segment_bytes {
                self.file.write_all(&buf).context("writing the meter log")?;
                self.len += buf.len() as u64;
                buf.clear();
                self.roll()?;
            }
            positions.push(Position {
                segment: self.index,
                offset: self.len + buf.len() as u64,
            });
            buf.extend_from_slice(f);
        }
        self.file.write_all(&buf).context("writing the meter log")?;
        self.len += buf.len() as u64;
        self.file.sync_data().context("fsync of the meter log")?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(positions)
    }

    /// Seals the current segment (fsync) and starts the next one.
    fn roll(&mut self) -> Result<()> {
        self.file.sync_data().context("fsync of the meter log")?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let next = self.index + 1;
        let path = segment_path(&self.dir, next);
        let file = create_segment(&path, &self.counters)?;
        sync_dir(&self.dir).with_context(|| format!("syncing {}", self.dir.display()))?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.file = file;
        self.index = next;
        self.len = HEADER_LEN;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::metering::event::{KeyKind, Metric, Prediction, RequestKey};
    use std::time::{Duration, UNIX_EPOCH};

    fn ev(tenant: &str, key: &str, rows: u64) -> Event {
        let k = RequestKey::new(KeyKind::RequestId, key);
        Event::prediction(&Prediction {
            metric: Metric::Predictions,
            source: "//test",
            tenant,
            key: &k,
            rows,
            model_name: "eta-DL",
            model_version: "1",
            tier: "pool",
            region: "us-east-1",
            latency: Duration::from_millis(3),
            at: UNIX_EPOCH + Duration::from_secs(1_795_957_465),
        })
    }

    fn keys(dir: &Path) -> Vec<String> {
        read(dir, None)
            .unwrap()
            .events
            .into_iter()
            .map(|(_, e)| e.data.request_key)
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Appends `n` events one after another (each durable before the next).
    fn fill(dir: &Path, cfg: LogConfig, n: usize) {
        let (log, _) = Log::open(dir, cfg).unwrap();
        rt().block_on(async {
            for i in 0..n {
                log.append(&ev("DL", &format!("r{i}"), 1)).await.unwrap();
            }
        });
    }

    #[test]
    fn group_commit_covers_many_appends_with_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let (log, rec) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(rec.records, 0);
        let log = Arc::new(log);
        let n = 400;
        let before = log.stats();
        rt().block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let log = Arc::clone(&log);
                    tokio::spawn(async move { log.append(&ev("DL", &format!("r{i}"), 1)).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        });
        let s = log.stats();
        let fsyncs = s.fsyncs - before.fsyncs;
        eprintln!(
            "{n} concurrent appends: {} batches, {fsyncs} fsyncs",
            s.batches
        );
        assert_eq!(s.appends, n);
        assert!(fsyncs < n, "group commit: {fsyncs} fsyncs for {n} appends");
        assert_eq!(s.batches, fsyncs, "one fsync per batch, no segment rolled");
        // Every acknowledged append is on disk, once.
        let mut got = keys(dir.path());
        got.sort();
        let mut want: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn segments_roll_and_reopen_continues() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        fill(dir.path(), cfg.clone(), 30);
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() > 3, "{} segments", segs.len());
        for (_, p) in &segs {
            assert!(std::fs::metadata(p).unwrap().len() <= 1024 + 512);
        }
        let (log, rec) = Log::open(dir.path(), cfg).unwrap();
        assert_eq!(rec.records, 30);
        assert!(rec.truncated.is_none());
        rt().block_on(log.append(&ev("DL", "after", 1))).unwrap();
        drop(log);
        let k = keys(dir.path());
        assert_eq!(k.len(), 31);
        assert_eq!(k.last().unwrap(), "after");
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let e = Log::open(dir.path(), LogConfig::default()).unwrap_err();
        assert!(format!("{e:#}").contains("another process"), "{e:#}");
    }

    fn last_segment(dir: &Path) -> PathBuf {
        segments(dir).unwrap().pop().unwrap().1
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_events_kept() {
        for garbage in [
            // Half a record: a frame header promising more than is there.
            {
                let mut f = frame(br#"{"half":"a record"}"#);
                f.truncate(f.len() / 2);
                f
            },
            // Three bytes of a frame header.
            vec![7u8, 0, 0],
            // Random bytes.
            b"\xde\xad\xbe\xef garbage after the last record".to_vec(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fill(dir.path(), LogConfig::default(), 5);
            let seg = last_segment(dir.path());
            let good_len = std::fs::metadata(&seg).unwrap().len();
            std::fs::OpenOptions::new()
                .append(true)
                .open(&seg)
                .unwrap()
                .write_all(&garbage)
                .unwrap();
            // A reader stops at the tail without touching it.
            let s = read(dir.path(), None).unwrap();
            assert_eq!(s.events.len(), 5);
            assert!(s.torn_tail.is_some());
            let (log, rec) = Log::open(dir.path(), LogConfig::default()).unwrap();
            let t = rec.truncated.expect("truncated");
            assert_eq!(t.at, good_len);
            assert_eq!(t.dropped_bytes, garbage.len() as u64);
            assert_eq!(rec.records, 5);
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
            // The log goes on after the cut.
            rt().block_on(log.append(&ev("DL", "next", 1))).unwrap();
            drop(log);
            assert_eq!(keys(dir.path()), ["r0", "r1", "r2", "r3", "r4", "next"]);
        }
    }

    #[test]
    fn a_flipped_byte_in_the_last_segment_truncates_from_that_record() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), LogConfig::default(), 10);
        let seg = last_segment(dir.path());
        let scan_before = read(dir.path(), None).unwrap();
        // Flip a payload byte of record 6 (index 6).
        let (pos6, _) = &scan_before.events[6];
        let mut bytes = std::fs::read(&seg).unwrap();
        let i = (pos6.offset as usize) + FRAME_HEADER + 5;
        bytes[i] ^= 0x20;
        std::fs::write(&seg, &bytes).unwrap();
        let (log, rec) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let t = rec.truncated.expect("truncated");
        assert_eq!(t.at, pos6.offset);
        assert!(t.reason.contains("checksum"), "{}", t.reason);
        assert_eq!(t.dropped_bytes, bytes.len() as u64 - pos6.offset);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), pos6.offset);
        // New events go right after the last good one (and are readable).
        rt().block_on(log.append(&ev("DL", "next", 1))).unwrap();
        drop(log);
        assert_eq!(
            keys(dir.path()),
            ["r0", "r1", "r2", "r3", "r4", "r5", "next"],
            "everything before the bad record is kept"
        );
    }

    #[test]
    fn corruption_in_a_sealed_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        fill(dir.path(), cfg.clone(), 20);
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() >= 2);
        let sealed = &segs[0].1;
        let mut bytes = std::fs::read(sealed).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(sealed, &bytes).unwrap();
        let before: Vec<u64> = segs
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .collect();
        let e = Log::open(dir.path(), cfg).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("sealed") && msg.contains("refusing"), "{msg}");
        assert!(msg.contains(&sealed.display().to_string()), "{msg}");
        // Nothing was truncated.
        let after: Vec<u64> = segs
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .collect();
        assert_eq!(before, after);
        assert!(read(dir.path(), None).is_err(), "readers refuse too");
    }

    #[test]
    fn a_torn_segment_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), LogConfig::default(), 3);
        // A crash right after creating the next segment.
        std::fs::write(segment_path(dir.path(), 2), b"BHM").unwrap();
        let (log, rec) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(rec.truncated.unwrap().at, HEADER_LEN);
        rt().block_on(log.append(&ev("DL", "x", 1))).unwrap();
        drop(log);
        assert_eq!(keys(dir.path()), ["r0", "r1", "r2", "x"]);
    }

    #[test]
    fn after_poison_every_append_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        let r = rt();
        r.block_on(log.append(&ev("DL", "a", 1))).unwrap();
        log.poison("disk on fire");
        let e = r.block_on(log.append(&ev("DL", "b", 1))).unwrap_err();
        assert!(
            matches!(&e, LogError::Poisoned(m) if m == "disk on fire"),
            "{e}"
        );
        drop(log);
        assert_eq!(keys(dir.path()), ["a"]);
    }
}
