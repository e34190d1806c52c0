//! `bulkhead meter reconcile`: recompute the totals from the raw log, from scratch, up to
//! the point the stored aggregate covered, and diff them against the stored aggregate.
//! Any difference (a tampered or stale state file, a lost or altered segment) is drift:
//! the command lists each tenant, metric and amount, and exits non-zero.

use super::aggregate::{Paths, State, Totals};
use super::log;
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub period: String,
    pub tenant: String,
    pub metric: &'static str,
    pub stored: u64,
    pub recomputed: u64,
}

impl Drift {
    /// `stored - recomputed`: positive when the stored aggregate bills more than the log.
    pub fn delta(&self) -> i128 {
        i128::from(self.stored) - i128::from(self.recomputed)
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}: stored {}, recomputed from the log {} ({:+})",
            self.period,
            self.tenant,
            self.metric,
            self.stored,
            self.recomputed,
            self.delta()
        )
    }
}

/// The result of a reconciliation.
#[derive(Debug, Clone)]
pub struct Report {
    pub drift: Vec<Drift>,
    /// Tenant-periods compared.
    pub compared: usize,
}

fn metrics(t: &Totals) -> [(&'static str, u64); 4] {
    [
        ("predictions", t.predictions),
        ("forecast_days", t.forecast_days),
        ("training_seconds", t.training_seconds),
        ("events", t.events),
    ]
}

/// Compares `stored` with a fresh fold of the log up to `stored.log_end`; `period`
/// narrows it to one period.
pub fn compare(stored: &State, recomputed: &State, period: Option<&str>) -> Report {
    let zero = Totals::default();
    let mut drift = Vec::new();
    let mut compared = 0;
    let periods: std::collections::BTreeSet<&String> = stored
        .usage
        .keys()
        .chain(recomputed.usage.keys())
        .filter(|p| period.is_none_or(|want| want == p.as_str()))
        .collect();
    for p in periods {
        let empty = Default::default();
        let s = stored.usage.get(p).unwrap_or(&empty);
        let r = recomputed.usage.get(p).unwrap_or(&empty);
        let tenants: std::collections::BTreeSet<&String> = s.keys().chain(r.keys()).collect();
        for t in tenants {
            compared += 1;
            let a = metrics(s.get(t).unwrap_or(&zero));
            let b = metrics(r.get(t).unwrap_or(&zero));
            for ((metric, stored), (_, recomputed)) in a.into_iter().zip(b) {
                if stored != recomputed {
                    drift.push(Drift {
                        period: p.clone(),
                        tenant: t.clone(),
                        metric,
                        stored,
                        recomputed,
                    });
                }
            }
        }
    }
    Report { drift, compared }
}

/// Reconciles the stored aggregate under `meter_dir` with its log.
pub fn run(meter_dir: &Path, period: Option<&str>) -> Result<Report> {
    let paths = Paths::new(meter_dir);
    if !paths.state().exists() {
        bail!(
            "no stored aggregate at {} (run `bulkhead meter aggregate` first)",
            paths.state().display()
        );
    }
    let stored = State::load(&paths.state())?;
    let scan = log::read(&paths.log, Some(stored.log_end))?;
    let mut fresh = State::default();
    fresh.fold(scan.events.iter().map(|(_, e)| e))?;
    Ok(compare(&stored, &fresh, period))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::metering::aggregate::tests::{NOV, ev_at, write_log};
    use crate::metering::aggregate::{self};

    #[test]
    fn a_clean_aggregate_reconciles_and_a_tampered_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<_> = (0..10)
            .map(|i| ev_at(if i < 6 { "DL" } else { "AA" }, &format!("k{i}"), 2, NOV))
            .collect();
        write_log(dir.path(), &events);
        aggregate::run(dir.path(), "2026-11", None).unwrap();
        let r = run(dir.path(), None).unwrap();
        assert!(r.drift.is_empty(), "{:?}", r.drift);
        assert_eq!(r.compared, 2);

        // Events appended after the aggregate are not drift: reconcile stops where the
        // aggregate stopped.
        let (l, _) = log::Log::open(&Paths::new(dir.path()).log, Default::default()).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(l.append(&ev_at("DL", "late", 7, NOV)))
            .unwrap();
        drop(l);
        assert!(run(dir.path(), None).unwrap().drift.is_empty());

        // Someone edits the stored totals: DL billed 5 more predictions.
        let p = Paths::new(dir.path()).state();
        let mut s = State::load(&p).unwrap();
        s.usage
            .get_mut("2026-11")
            .unwrap()
            .get_mut("DL")
            .unwrap()
            .predictions += 5;
        s.save(&p).unwrap();
        let r = run(dir.path(), Some("2026-11")).unwrap();
        assert_eq!(
            r.drift,
            vec![Drift {
                period: "2026-11".into(),
                tenant: "DL".into(),
                metric: "predictions",
                stored: 17,
                recomputed: 12,
            }]
        );
        assert_eq!(r.drift[0].delta(), 5);
        assert!(r.drift[0].to_string().contains("DL predictions"));
        // Another period is not affected.
        assert!(run(dir.path(), Some("2026-10")).unwrap().drift.is_empty());
    }
}
