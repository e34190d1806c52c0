//! Tenant-scoped feature lookups over SQLite files:
//!
//! ```text
//! <dir>/public.sqlite          the shared public tables (weather)
//! <dir>/tenants/<org>.sqlite   one file per tenant: its own tables (lanes)
//! ```
//!
//! Why SQLite (rusqlite, SQLite bundled): an embedded engine with a real primary-key index,
//! read-only opens, and whole-file replacement for rebuilds; and one file per tenant makes
//! the isolation physical — a lookup runs on a connection that has the calling tenant's
//! file and the public file open, and no other tenant's. A tenant without a file gets
//! "no such row" from its tables, never someone else's.
//!
//! A rebuilt file (`bulkhead features load` renames a new file into place) is picked up
//! within [`RECHECK`]: the file's identity is compared at most that often per open
//! connection. A tenant keeps a few connections ([`MAX_IDLE`]) so that its concurrent
//! calls never queue behind one another's reads.

use super::schema::{self, Scope};
use crate::sandbox::{FeatureSource, Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often an open store checks whether its files were replaced.
pub const RECHECK: Duration = Duration::from_secs(1);

pub const PUBLIC_FILE: &str = "public.sqlite";
pub const TENANTS_DIR: &str = "tenants";

/// The tenant's store file under `dir`, or `None` for an id that is not a safe file name.
pub fn tenant_file(dir: &Path, tenant: &str) -> Option<PathBuf> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && !tenant.starts_with('.')
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| dir.join(TENANTS_DIR).join(format!("{tenant}.sqlite")))
}

/// Every tenant's feature store under one directory.
pub struct FeatureStores {
    dir: PathBuf,
    handles: Mutex<HashMap<String, Arc<TenantFeatures>>>,
}

impl FeatureStores {
    pub fn new(dir: impl Into<PathBuf>) -> FeatureStores {
        FeatureStores {
            dir: dir.into(),
            handles: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lookups of `tenant` (the verified tenant of a request). Handles are kept per
    /// tenant; tenants come from the registry, so the map is bounded by it.
    pub fn for_tenant(&self, tenant: &str) -> Arc<TenantFeatures> {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        // Looked up by `&str` first: no allocation on the request path once a tenant has
        // a handle.
        if let Some(h) = handles.get(tenant) {
            return Arc::clone(h);
        }
        let h = Arc::new(TenantFeatures {
            tenant_file: tenant_file(&self.dir, tenant),
            public_file: self.dir.join(PUBLIC_FILE),
            idle: Mutex::new(Vec::new()),
        });
        handles.insert(tenant.to_string(), Arc::clone(&h));
        h
    }
}

/// One tenant's view: its own file plus the public one.
pub struct TenantFeatures {
    /// `None` when the tenant id cannot name a file (then its tables have no rows).
    tenant_file: Option<PathBuf>,
    public_file: PathBuf,
    /// Open connections not in use. A lookup takes one out (or opens one) and puts it
    /// back after its query, so the lock is never held across a read: one tenant's
    /// concurrent calls read in parallel.
    idle: Mutex<Vec<Opened>>,
}

/// Most idle connections a tenant keeps (more open only while more lookups run at once).
const MAX_IDLE: usize = 4;

/// (device, inode, size, mtime): enough to notice a file renamed into place.
type Stamp = (u64, u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

struct Opened {
    conn: Connection,
    has_tenant: bool,
    has_public: bool,
    stamps: (Option<Stamp>, Option<Stamp>),
    checked: Instant,
}

impl TenantFeatures {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Opened>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stamps(&self) -> (Option<Stamp>, Option<Stamp>) {
        (
            self.tenant_file.as_deref().and_then(stamp),
            stamp(&self.public_file),
        )
    }

    fn open(&self) -> Result<Opened, String> {
        let stamps = self.stamps();
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let (conn, has_tenant) = match (&self.tenant_file, stamps.0) {
            (Some(path), Some(_)) => (Connection::open_with_flags(path, ro), true),
            // No file for this tenant: an empty in-memory main schema.
            _ => (
                Connection::open_in_memory_with_flags(
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                ),
                false,
            ),
        };
        let conn = conn.map_err(|e| format!("feature store: {e}"))?;
        let has_public = stamps.1.is_some();
        if has_public {
            let uri = format!("file:{}?mode=ro", uri_path(&self.public_file));
            conn.execute("ATTACH DATABASE ?1 AS public", [uri])
                .map_err(|e| format!("feature store (public): {e}"))?;
        }
        Ok(Opened {
            conn,
            has_tenant,
            has_public,
            stamps,
            checked: Instant::now(),
        })
    }

    fn query(
        opened: &Opened,
        table: &schema::Table,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String> {
        let present = match table.scope {
            Scope::Tenant => opened.has_tenant,
            Scope::Public => opened.has_public,
        };
        if !present {
            return Ok(None);
        }
        // Identifiers come from the schema allowlist only (checked by the caller).
        let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let sql = format!(
            "SELECT {} FROM {}.\"{}\" WHERE key = ?1",
            cols.join(", "),
            table.schema(),
            table.name
        );
        let mut stmt = opened
            .conn
            .prepare_cached(&sql)
            .map_err(|e| format!("feature store: {e}"))?;
        stmt.query_row([key], |row| {
            (0..columns.len())
                .map(|i| {
                    row.get_ref(i).map(|v| match v {
                        ValueRef::Null => Value::Missing,
                        ValueRef::Integer(n) => Value::Number(n as f64),
                        ValueRef::Real(x) => Value::Number(x),
                        ValueRef::Text(t) => {
                            Value::Category(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(_) => Value::Missing,
                    })
                })
                .collect::<rusqlite::Result<Vec<Value>>>()
        })
        .optional()
        .map_err(|e| format!("feature store: {e}"))
    }
}

/// A path as the path part of an SQLite `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

impl FeatureSource for TenantFeatures {
    fn lookup(
        &self,
        table: &str,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String> {
        let t = schema::checked(table, columns)?;
        let taken = self.idle().pop();
        let opened = match taken {
            Some(mut o) if o.checked.elapsed() >= RECHECK => {
                o.checked = Instant::now();
                if o.stamps == self.stamps() {
                    o
                } else {
                    self.open()?
                }
            }
            Some(o) => o,
            None => self.open()?,
        };
        let answer = Self::query(&opened, t, key, columns);
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(opened);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_lookup_never_waits_for_another_lookups_connection() {
        let dir = tempfile::tempdir().unwrap();
        let ua = FeatureStores::new(dir.path()).for_tenant("UA");
        let ask = || ua.lookup("lanes", "EWR|ORD", &["flights".to_string()]);
        assert_eq!(ask(), Ok(None));
        assert_eq!(ua.idle().len(), 1);
        // A lookup in progress has its connection out of the idle list…
        let busy = ua.idle().pop().unwrap();
        // …and another one meanwhile opens its own rather than waiting for it.
        assert_eq!(ask(), Ok(None));
        assert_eq!(ua.idle().len(), 1);
        ua.idle().push(busy);
        assert_eq!(ua.idle().len(), 2);
        // Connections come back after use, at most MAX_IDLE of them kept.
        let extra: Vec<Opened> = (0..MAX_IDLE).map(|_| ua.open().unwrap()).collect();
        ua.idle().extend(extra);
        assert_eq!(ua.idle().len(), MAX_IDLE + 2);
        assert_eq!(ask(), Ok(None));
        assert_eq!(ua.idle().len(), MAX_IDLE + 1, "the one used is not kept");
        assert_eq!(ask(), Ok(None));
        assert_eq!(ask(), Ok(None));
        assert_eq!(ua.idle().len(), MAX_IDLE);
    }
}
