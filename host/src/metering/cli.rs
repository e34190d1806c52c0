//! `bulkhead meter aggregate|reconcile|export|tail`.

use super::aggregate::{self, Paths};
use super::export::{self, Format};
use super::{log, reconcile};
use crate::registry::watch::Watcher;
use anyhow::{Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct MeterDir {
    /// The meter directory (`log/` and `aggregate/`) [default: <state-dir>/data-plane/meter,
    /// where `bulkhead serve` writes with its default --data-dir].
    #[arg(long, env = "BULKHEAD_METER_DIR", value_name = "DIR")]
    pub meter_dir: Option<PathBuf>,
}

impl MeterDir {
    pub fn resolve(&self, state_dir: &Path) -> PathBuf {
        self.meter_dir
            .clone()
            .unwrap_or_else(|| default_dir(state_dir))
    }
}

/// `<state-dir>/meter`: where `serve` writes and `meter` reads by default.
pub fn default_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("data-plane").join("meter")
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum MeterCmd {
    /// Fold the log into the stored aggregate (exactly once per event id) and print the
    /// period's usage records (one JSON object a line; also in aggregate/usage-PERIOD.json).
    Aggregate {
        /// The billing period, YYYY-MM.
        #[arg(long)]
        period: String,
        #[command(flatten)]
        dir: MeterDir,
    },
    /// Recompute from the raw log and diff against the stored aggregate; exit non-zero
    /// listing each tenant and amount on drift.
    Reconcile {
        /// Only this period (YYYY-MM) [default: all].
        #[arg(long)]
        period: Option<String>,
        #[command(flatten)]
        dir: MeterDir,
    },
    /// Write the period's events for a billing system (no network calls).
    Export {
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value = "stripe")]
        format: Format,
        /// JSON object org_id → Stripe customer id [default: the org_id itself].
        #[arg(long, value_name = "FILE")]
        customers: Option<PathBuf>,
        /// The NDJSON file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: MeterDir,
    },
    /// Print the last events of the log (JSON, one a line).
    Tail {
        /// How many (0: all).
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        dir: MeterDir,
    },
}

pub fn run(state_dir: &Path, registry: &Path, cmd: MeterCmd) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        MeterCmd::Aggregate { period, dir } => {
            let reg = match Watcher::open(registry) {
                Ok(w) => Some(std::sync::Arc::clone(&w.current().registry)),
                Err(e) => {
                    tracing::warn!(registry = %registry.display(), "no valid tenant registry ({e:#}): plans unknown, nothing included");
                    None
                }
            };
            let dir = dir.resolve(state_dir);
            let r = aggregate::run(&dir, &period, reg.as_deref())?;
            if let Some(t) = &r.torn_tail {
                tracing::warn!(
                    "the log ends in a torn record (a write in progress, or a tail the next `serve` truncates): {t}"
                );
            }
            tracing::info!(
                period,
                new = r.stats.new_new,
                duplicates_in_run = r.stats.new_present,
                counted_in_another_period = r.stats.seen_absent,
                already_counted = r.stats.seen_present,
                state = %Paths::new(&dir).state().display(),
                "aggregated"
            );
            for rec in &r.records {
                writeln!(out, "{}", serde_json::to_string(rec)?)?;
            }
        }
        MeterCmd::Reconcile { period, dir } => {
            let r = reconcile::run(&dir.resolve(state_dir), period.as_deref())?;
            for d in &r.drift {
                writeln!(out, "{}", serde_json::to_string(d)?)?;
            }
            if !r.drift.is_empty() {
                let lines: Vec<String> = r.drift.iter().map(ToString::to_string).collect();
                bail!(
                    "the stored aggregate drifted from the log ({} difference(s)):\n  {}",
                    r.drift.len(),
                    lines.join("\n  ")
                );
            }
            tracing::info!(
                compared = r.compared,
                "the stored aggregate matches the log"
            );
        }
        MeterCmd::Export {
            period,
            format,
            customers,
            out: file,
            dir,
        } => {
            let n = export::run(
                &dir.resolve(state_dir),
                &period,
                format,
                customers.as_deref(),
                &file,
            )?;
            tracing::info!(events = n, out = %file.display(), "exported");
        }
        MeterCmd::Tail { lines, follow, dir } => {
            let log_dir = Paths::new(&dir.resolve(state_dir)).log;
            let scan = log::read(&log_dir, None)?;
            let skip = if lines == 0 {
                0
            } else {
                scan.events.len().saturating_sub(lines)
            };
            for (_, ev) in &scan.events[skip..] {
                writeln!(out, "{}", serde_json::to_string(ev)?)?;
            }
            out.flush()?;
            let mut end = scan.end;
            if !follow {
                return Ok(());
            }
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let s = log::read(&log_dir, None)?;
                for (pos, ev) in &s.events {
                    if *pos >= end {
                        writeln!(out, "{}", serde_json::to_string(ev)?)?;
                    }
                }
                out.flush()?;
                end = end.max(s.end);
            }
        }
    }
    Ok(())
}
