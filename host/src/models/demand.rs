//! Demand models (`bulkhead train --demand`): for each tenant, daily flights per lane from
//! its own flights only (January–October), forecast by weekly-seasonal exponential
//! smoothing (`bulkhead-demand-model`), scored **through the sandbox** (the
//! demand-forecaster component, as serving runs it) on November–December against the
//! seasonal-naive baseline, and gated like the ETA models.
//!
//! The measure is WAPE (Σ|forecast − actual| / Σ actual over lane-days): daily counts are
//! often 0, where a percentage error is undefined. A candidate is promoted when its WAPE
//! is below `max_wape` and below seasonal naive's on the same lane-days; otherwise the
//! tenant is served the seasonal-naive forecast (fitted by the same code with α = 0,
//! γ = 1, so the same plugin serves it) and the version records why.

use super::evaluate::Evaluator;
use super::gate::GateRecord;
use super::pct;
use super::registry::Note;
use super::store::{Evaluation, ModelStore, PRODUCTION, Publish, TrainedOn, hex, sha256_hex};
use crate::sandbox::{BatchBuilder, Value};
use anyhow::{Context, Result, anyhow, bail};
use bulkhead_demand_model::nyc::{self, Flight};
use bulkhead_demand_model::{Artifact, Code, Counts, FitConfig, days, fit};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// `demand-<ORG>`: a tenant's demand model.
pub fn model_name(org: &str) -> String {
    format!("demand-{org}")
}

/// The seasonal-naive baseline's name in evaluations.
pub const BASELINE: &str = "seasonal naive: the same weekday of the last training week";
/// What the evaluation's error figures are.
pub const METRIC: &str = "wape";
/// The holdout, as recorded.
pub const HOLDOUT: &str = "time split: daily flights per lane, train 2013-01-01..2013-10-31, hold out 2013-11-01..2013-12-31";
/// Default gate: a candidate's WAPE must be below this (%), and below seasonal naive's.
pub const DEFAULT_MAX_WAPE: f64 = 50.0;
/// Default gate: fewer training flights than this is `insufficient_data`.
pub const DEFAULT_MIN_TRAIN_FLIGHTS: u64 = 1000;
/// Rows per sandbox call when scoring.
const BATCH_ROWS: usize = 2_000;

/// (first, last) day numbers of the training and holdout ranges.
fn ranges() -> Result<((i32, i32), (i32, i32))> {
    let d = |m, day| days::days_from_civil(2013, m, day).ok_or_else(|| anyhow!("bad date"));
    Ok(((d(1, 1)?, d(10, 31)?), (d(11, 1)?, d(12, 31)?)))
}

/// `flights.csv` read for demand (cancelled flights count: they were scheduled).
pub struct DemandData {
    pub flights: Vec<Flight>,
    pub flights_sha256: String,
    pub flights_file: String,
}

pub fn load(path: &Path) -> Result<DemandData> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(DemandData {
        flights: nyc::parse_flights(text).map_err(|e| anyhow!("{}: {e}", path.display()))?,
        flights_sha256: sha256_hex(&bytes),
        flights_file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

impl DemandData {
    /// Every carrier in the data, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.flights.iter().map(|f| f.carrier.to_string()).collect();
        set.into_iter().collect()
    }
}

/// The gate's settings.
#[derive(Debug, Clone, Copy)]
pub struct DemandGate {
    pub max_wape: f64,
    pub min_train_flights: u64,
}

impl Default for DemandGate {
    fn default() -> Self {
        DemandGate {
            max_wape: DEFAULT_MAX_WAPE,
            min_train_flights: DEFAULT_MIN_TRAIN_FLIGHTS,
        }
    }
}

/// One tenant's line of the table.
#[derive(Debug, Clone)]
pub struct DemandReport {
    pub tenant: String,
    pub model: String,
    /// The version now in production (candidate or seasonal naive); `None`: nothing fitted.
    pub version: Option<String>,
    pub train_flights: u64,
    pub lanes: usize,
    pub holdout_lane_days: u64,
    pub candidate_wape: Option<f64>,
    pub baseline_wape: Option<f64>,
    pub decision: String,
}

/// Everything a demand training run needs.
pub struct DemandTraining<'a> {
    pub store: &'a ModelStore,
    pub data: &'a DemandData,
    pub plugin_wasm: &'a [u8],
    /// A sandbox over the demand-forecaster component.
    pub evaluator: &'a Evaluator,
    pub gate: DemandGate,
    pub by: String,
}

impl DemandTraining<'_> {
    /// Fits, scores, gates and publishes `tenant`'s demand model.
    pub fn train_tenant(&self, tenant: &str) -> Result<DemandReport> {
        let carrier = Code::parse(tenant)
            .filter(|c| c.as_str() == tenant)
            .with_context(|| format!("tenant {tenant:?} is not a carrier code"))?;
        let ((t0, t1), (h0, h1)) = ranges()?;
        // The tenant's partition, cut before anything is fitted.
        let own: Vec<&Flight> = self
            .data
            .flights
            .iter()
            .filter(|f| f.carrier == carrier)
            .collect();
        if own.is_empty() {
            bail!(
                "no flights of tenant {tenant} in {}",
                self.data.flights_file
            );
        }
        let lanes = |from: i32, to: i32| {
            nyc::lanes_of(&self.data.flights, carrier)
                .filter(move |&(_, _, d)| d >= from && d <= to)
        };
        let train_rows: Vec<(Code, Code, i32)> = lanes(t0, t1).collect();
        let train = bulkhead_demand_model::daily_counts_between(train_rows.iter().copied(), t0, t1);
        let holdout = bulkhead_demand_model::daily_counts_between(lanes(h0, h1), h0, h1);
        let name = model_name(tenant);
        let mut report = DemandReport {
            tenant: tenant.to_string(),
            model: name.clone(),
            version: None,
            train_flights: train_rows.len() as u64,
            lanes: train.lanes.len(),
            holdout_lane_days: 0,
            candidate_wape: None,
            baseline_wape: None,
            decision: String::new(),
        };
        if train.lanes.is_empty() {
            report.decision = "no model: no training flights".into();
            return Ok(report);
        }
        let candidate = fit(&train, &FitConfig::default()).map_err(|e| anyhow!("{tenant}: {e}"))?;
        let naive_cfg = FitConfig {
            alphas: vec![0.0],
            gammas: vec![1.0],
            ..FitConfig::default()
        };
        let naive = fit(&train, &naive_cfg).map_err(|e| anyhow!("{tenant}: {e}"))?;
        let (cand, n) = self.score(tenant, &format!("{name}@candidate"), &candidate, &holdout)?;
        let (base, _) = self.score(tenant, &format!("{name}@seasonal-naive"), &naive, &holdout)?;
        report.holdout_lane_days = n;
        report.candidate_wape = cand;
        report.baseline_wape = base;

        let reason = if report.train_flights < self.gate.min_train_flights {
            Some("insufficient_data")
        } else {
            match (cand, base) {
                (Some(c), _) if c >= self.gate.max_wape => Some("above_threshold"),
                (Some(c), Some(b)) if c < b => None,
                (Some(_), _) => Some("worse_than_seasonal_naive"),
                (None, _) => Some("insufficient_data"),
            }
        };
        let trained_on = TrainedOn {
            tenants: vec![tenant.to_string()],
            rows: report.train_flights,
            rows_sha256: rows_sha256(tenant, &train_rows),
            rows_format: ROWS_FORMAT.to_string(),
            data_sha256: self.data.flights_sha256.clone(),
            data_file: Some(self.data.flights_file.clone()),
        };
        let evaluation = |wape: Option<f64>| Evaluation {
            holdout: HOLDOUT.into(),
            holdout_rows: n,
            mape: wape,
            baseline: BASELINE.into(),
            baseline_mape: base,
            metric: Some(METRIC.into()),
            evaluated_by: Some(self.evaluator.describe()),
            ..Evaluation::default()
        };
        let record = |decision: &str, reason: Option<&str>| GateRecord {
            decision: decision.to_string(),
            reason: reason.map(str::to_string),
            max_mape: self.gate.max_wape,
            min_train_rows: self.gate.min_train_flights,
        };
        let publish = |artifact: &Artifact, wape, rec| {
            self.store.publish(Publish {
                name: &name,
                tenant,
                plugin_name: bulkhead_demand_model::PLUGIN_NAME,
                plugin_version: bulkhead_demand_model::PLUGIN_VERSION,
                plugin_wasm: self.plugin_wasm,
                artifact: &artifact.encode(),
                trained_on: trained_on.clone(),
                evaluation: Some(evaluation(wape)),
                gate: Some(rec),
                aliases: &[],
            })
        };
        // The candidate is always published (inspectable, promotable by hand); production
        // moves to it, or to the seasonal-naive version with the reason.
        let cv = publish(
            &candidate,
            cand,
            record(
                if reason.is_none() {
                    "promoted"
                } else {
                    "fallback"
                },
                reason,
            ),
        )?;
        let (serving, why) = match reason {
            None => (
                cv.version().to_string(),
                format!(
                    "train: WAPE {} < seasonal naive {} on {n} holdout lane-days",
                    pct(cand, 1),
                    pct(base, 1)
                ),
            ),
            Some(r) => {
                let nv = publish(&naive, base, record("fallback_baseline", Some(r)))?;
                (
                    nv.version().to_string(),
                    format!(
                        "train: {r} (candidate WAPE {}, seasonal naive {}): serving seasonal naive",
                        pct(cand, 1),
                        pct(base, 1)
                    ),
                )
            }
        };
        if self.store.state(&name)?.pinned.is_none() {
            self.store
                .promote(&name, &serving, &Note::new("train", Some(&self.by), why))?;
            report.decision = match reason {
                None => "promoted".into(),
                Some(r) => format!("seasonal naive: {r}"),
            };
        } else {
            report.decision = "pinned".into();
        }
        report.version = self
            .store
            .resolve(&name, PRODUCTION)
            .ok()
            .map(|v| v.version().to_string());
        Ok(report)
    }

    /// WAPE (%) of `artifact`'s forecasts on every (lane it knows × holdout day), through
    /// the sandbox, and the number of lane-days.
    fn score(
        &self,
        tenant: &str,
        label: &str,
        artifact: &Artifact,
        holdout: &Counts,
    ) -> Result<(Option<f64>, u64)> {
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        let mut rows: Vec<(Code, Code, i32, f64)> = Vec::new();
        for lane in &artifact.lanes {
            let actual = holdout.lane(lane.origin, lane.dest);
            for (i, day) in (holdout.first..=holdout.last).enumerate() {
                let y = actual
                    .and_then(|s| s.counts.get(i))
                    .map_or(0.0, |&c| f64::from(c));
                rows.push((lane.origin, lane.dest, day, y));
            }
        }
        let bytes = artifact.encode();
        for chunk in rows.chunks(BATCH_ROWS) {
            let mut b = BatchBuilder::new();
            for &(o, d, day, _) in chunk {
                b.next_row()?;
                b.set("origin", Value::Category(o.to_string()))?;
                b.set("dest", Value::Category(d.to_string()))?;
                b.set("day", Value::Number(f64::from(day)))?;
            }
            let out = self.evaluator.run(tenant, label, &bytes, b.finish())?;
            if let Some(e) = out.errors.first() {
                bail!("{label}: holdout row refused: {}", e.message);
            }
            for (p, &(_, _, _, y)) in out.predictions.iter().zip(chunk) {
                pairs.push((p.value, y));
            }
        }
        let n = pairs.len() as u64;
        Ok((bulkhead_demand_model::wape(pairs), n))
    }
}

/// The canonical form `trained_on.rows_sha256` is taken over.
pub const ROWS_FORMAT: &str =
    "carrier,origin,dest,day\\n per scheduled flight (day: YYYY-MM-DD), in file order";

fn rows_sha256(tenant: &str, rows: &[(Code, Code, i32)]) -> String {
    let mut h = Sha256::new();
    for (o, d, day) in rows {
        h.update(format!("{tenant},{o},{d},{}\n", days::format(*day)).as_bytes());
    }
    hex(&h.finalize())
}

/// The table `bulkhead train --demand` prints.
pub fn table(reports: &[DemandReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<7} {:<11} {:>7} {:>7} {:>6} {:>9} {:>10} {:>14}  DECISION",
        "TENANT", "MODEL", "VERSION", "TRAIN", "LANES", "HOLDOUT", "CANDIDATE", "SEASONAL-NAIVE"
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:<7} {:<11} {:>7} {:>7} {:>6} {:>9} {:>10} {:>14}  {}",
            r.tenant,
            r.model,
            r.version.as_deref().unwrap_or("-"),
            r.train_flights,
            r.lanes,
            r.holdout_lane_days,
            pct(r.candidate_wape, 1),
            pct(r.baseline_wape, 1),
            r.decision
        );
    }
    s
}
