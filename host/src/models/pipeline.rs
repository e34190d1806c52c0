//! `bulkhead train`: fit, score through the sandbox, gate, publish, move aliases.
//!
//! - Global: fitted on every tenant's training rows, scored on every tenant's holdout.
//!   It becomes production only if it beats the schedule-only baseline ("on time").
//! - Tenant: fitted on that tenant's partition only; the candidate and the global
//!   production model are both scored through the sandbox on the tenant's holdout rows;
//!   [`gate::decide`] says promote or fall back to the pooled model. Every fitted
//!   candidate is published (immutable, with its evaluation and the gate's decision), so
//!   a refused one can still be inspected or promoted by hand.
//! - A pinned model keeps its production version: the candidate is published and
//!   recorded as `pinned`, no alias moves.

use super::evaluate::{Evaluator, Scores};
use super::gate::{self, Decision, GateConfig, GateRecord};
use super::pct;
use super::registry::Note;
use super::store::{AlertScores, Evaluation, ModelStore, PRODUCTION, Publish, StoreError};
use super::train::{
    self, Candidate, Data, GLOBAL_MODEL, HOLDOUT, ON_TIME_BASELINE, Partition, Scope, Trainer,
};
use anyhow::{Context, Result};
use bulkhead_eta_model::fit::MIN_ROWS;
use bulkhead_eta_model::nyc;
use bulkhead_eta_model::schema::{PLUGIN_NAME, PLUGIN_VERSION};
use std::fmt::Write as _;

/// One line of the `train` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `*` for the global model, else the org id.
    pub tenant: String,
    pub model: String,
    /// The published version (`None`: too few rows to fit anything).
    pub version: Option<String>,
    pub train_rows: u64,
    pub holdout_rows: u64,
    pub candidate_mape: Option<f64>,
    /// The global production model's MAPE on the same holdout rows (tenants).
    pub global_mape: Option<f64>,
    /// The schedule-only baseline on the same rows.
    pub on_time_mape: Option<f64>,
    /// `promoted`, `fallback: <reason>`, `pinned (vN)`, `kept (…)`.
    pub decision: String,
    /// What serves the tenant now, e.g. `eta-UA@3` or `eta-global@2`.
    pub serving: String,
    /// The candidate's exception alerts on the holdout, before and after departure.
    pub alerts: (Option<AlertScores>, Option<AlertScores>),
}

/// Everything one training run needs.
pub struct Pipeline<'a> {
    pub store: &'a ModelStore,
    pub data: &'a Data,
    pub plugin_wasm: &'a [u8],
    pub evaluator: &'a Evaluator,
    pub trainer: &'a dyn Trainer,
    pub gate: GateConfig,
    /// Promote the global model even when it does not beat "on time" (it is the pooled
    /// fallback: without one, pool tenants get nothing). Reported either way.
    pub allow_global_below_on_time: bool,
    /// Who runs it (the alias history's `by`).
    pub by: String,
}

impl Pipeline<'_> {
    fn score(&self, label: &str, artifact: &[u8], part: &[nyc::Flight]) -> Result<Scores> {
        if part.is_empty() {
            return Ok(Scores::default());
        }
        self.evaluator.score(label, artifact, part)
    }

    fn publish(
        &self,
        scope: Scope,
        cand: &Candidate,
        scores: &Scores,
        on_time: Option<f64>,
        global: Option<(f64, String)>,
        gate: GateRecord,
    ) -> Result<String> {
        let name = scope.model_name();
        let (global_mape, global_version) = global.unzip();
        let v = self.store.publish(Publish {
            name: &name,
            tenant: &scope.id(),
            plugin_name: PLUGIN_NAME,
            plugin_version: PLUGIN_VERSION,
            plugin_wasm: self.plugin_wasm,
            artifact: &cand.artifact,
            trained_on: cand.trained_on.clone(),
            evaluation: Some(Evaluation {
                holdout: HOLDOUT.into(),
                holdout_rows: scores.rows,
                mape: scores.mape,
                mape_with_dep_delay: scores.mape_with_dep_delay,
                interval_coverage: scores.coverage,
                baseline: ON_TIME_BASELINE.into(),
                baseline_mape: on_time,
                global_mape,
                global_version,
                evaluated_by: Some(self.evaluator.describe()),
                alerts: scores.alerts,
                alerts_with_dep_delay: scores.alerts_with_dep_delay,
                metric: None,
            }),
            gate: Some(gate),
            aliases: &[],
        })?;
        Ok(v.version().to_string())
    }

    fn record(&self, decision: &str, reason: Option<&str>) -> GateRecord {
        GateRecord {
            decision: decision.into(),
            reason: reason.map(str::to_string),
            max_mape: self.gate.max_mape,
            min_train_rows: self.gate.min_train_rows,
        }
    }

    fn pinned(&self, name: &str) -> Result<Option<String>> {
        Ok(self.store.state(name)?.pinned.map(|p| p.version))
    }

    /// What `name@production` serves now.
    fn serving(&self, name: &str) -> String {
        match self.store.resolve_serving(name, PRODUCTION) {
            Ok(v) => format!("{}@{}", v.name(), v.version()),
            Err(_) => "-".into(),
        }
    }

    /// Trains the pooled model on every tenant's training rows; it becomes production
    /// only when it beats "on time" on the holdout.
    pub fn train_global(&self) -> Result<Report> {
        let part = train::partition(self.data, Scope::Global);
        let on_time = nyc::on_time_mape(&part.holdout);
        let (train_rows, holdout_rows) = (part.train.len() as u64, part.holdout.len() as u64);
        let cand = train::fit_partition(self.trainer, self.data, part)?;
        let scores = self.score("eta-global@candidate", &cand.artifact, &cand.holdout)?;
        let beats = matches!((scores.mape, on_time), (Some(m), Some(b)) if m < b);
        let promote = beats || (self.allow_global_below_on_time && scores.mape.is_some());
        let pinned = self.pinned(GLOBAL_MODEL)?;
        let (decision, rec) = match (&pinned, beats, promote) {
            (Some(p), _, _) => (format!("pinned (v{p})"), self.record("pinned", None)),
            (None, true, _) => ("promoted".to_string(), self.record("promoted", None)),
            (None, false, true) => (
                "promoted, NOT better than on time".to_string(),
                self.record("promoted", Some("not_better_than_on_time")),
            ),
            (None, false, false) => (
                "kept: not better than on time".to_string(),
                self.record("kept", Some("not_better_than_on_time")),
            ),
        };
        let version = self.publish(Scope::Global, &cand, &scores, on_time, None, rec)?;
        if pinned.is_none() && promote {
            let why = format!(
                "train: global MAPE {} {} on time {} on {holdout_rows} holdout rows",
                pct(scores.mape, 2),
                if beats { "<" } else { ">= (allowed by flag)" },
                pct(on_time, 2)
            );
            self.store.promote(
                GLOBAL_MODEL,
                &version,
                &Note::new("train", Some(&self.by), why),
            )?;
        }
        Ok(Report {
            tenant: "*".into(),
            model: GLOBAL_MODEL.into(),
            version: Some(version),
            train_rows,
            holdout_rows,
            candidate_mape: scores.mape,
            alerts: (scores.alerts, scores.alerts_with_dep_delay),
            global_mape: None,
            on_time_mape: on_time,
            decision,
            serving: self.serving(GLOBAL_MODEL),
        })
    }

    /// Trains `tenant`'s candidate on its partition only, scores it and the global
    /// production model on the tenant's holdout, and applies the gate.
    pub fn train_tenant(&self, tenant: &str) -> Result<Report> {
        let scope = Scope::parse(tenant)?;
        let name = scope.model_name();
        let global = match self.store.resolve(GLOBAL_MODEL, PRODUCTION) {
            Ok(v) => v,
            Err(StoreError::NotFound { .. }) => anyhow::bail!(
                "no {GLOBAL_MODEL}@{PRODUCTION} to compare {tenant} against: run `bulkhead train --global` first"
            ),
            Err(e) => return Err(e.into()),
        };
        let global_artifact = self.store.read_artifact(&global)?;
        let global_label = format!("{}@{}", global.name(), global.version());
        let part: Partition = train::partition(self.data, scope);
        let (train_rows, holdout_rows) = (part.train.len() as u64, part.holdout.len() as u64);
        if train_rows == 0 && holdout_rows == 0 {
            anyhow::bail!(
                "no flights of tenant {tenant} in {}",
                self.data.flights_file
            );
        }
        let on_time = nyc::on_time_mape(&part.holdout);
        let global_scores = self.score(&global_label, &global_artifact, &part.holdout)?;
        // Too few rows to fit anything: the gate falls back without a candidate.
        let cand = if part.train.len() >= MIN_ROWS {
            Some(train::fit_partition(self.trainer, self.data, part)?)
        } else {
            None
        };
        let scores = match &cand {
            Some(c) => self.score(&format!("{name}@candidate"), &c.artifact, &c.holdout)?,
            None => Scores::default(),
        };
        let verdict = gate::decide(&self.gate, train_rows, scores.mape, global_scores.mape);
        let pinned = self.pinned(&name)?;
        let (decision, rec) = match (&pinned, verdict) {
            (Some(p), _) => (format!("pinned (v{p})"), self.record("pinned", None)),
            (None, Decision::Promote) => ("promoted".to_string(), self.record("promoted", None)),
            (None, Decision::Fallback(r)) => (
                format!("fallback: {r}"),
                self.record("fallback", Some(r.as_str())),
            ),
        };
        let version = match &cand {
            Some(c) => Some(self.publish(
                scope,
                c,
                &scores,
                on_time,
                global_scores.mape.map(|g| (g, global_label.clone())),
                rec,
            )?),
            None => None,
        };
        let why = format!(
            "train: candidate {} vs {global_label} {} on {holdout_rows} holdout rows, {train_rows} train rows (gate: < {:.1}%, >= {} rows)",
            pct(scores.mape, 2),
            pct(global_scores.mape, 2),
            self.gate.max_mape,
            self.gate.min_train_rows
        );
        if pinned.is_none() {
            let note = Note::new("train", Some(&self.by), why);
            match (verdict, &version) {
                (Decision::Promote, Some(v)) => {
                    self.store.promote(&name, v, &note)?;
                }
                (Decision::Fallback(r), _) => {
                    self.store
                        .fall_back(&name, GLOBAL_MODEL, r.as_str(), version.as_deref(), &note)
                        .with_context(|| format!("recording {name}'s fallback"))?;
                }
                (Decision::Promote, None) => {}
            }
        }
        Ok(Report {
            tenant: scope.id(),
            model: name.clone(),
            version,
            train_rows,
            holdout_rows,
            candidate_mape: scores.mape,
            alerts: (scores.alerts, scores.alerts_with_dep_delay),
            global_mape: global_scores.mape,
            on_time_mape: on_time,
            decision,
            serving: self.serving(&name),
        })
    }
}

/// `precision/recall` of a report's alerts before and after departure (`-` where
/// undefined), with the counts.
fn alerts(before: Option<&AlertScores>, after: Option<&AlertScores>) -> String {
    let p = |x: Option<f64>| x.map_or_else(|| "-".into(), |v| format!("{:.0}%", 100.0 * v));
    let one = |a: Option<&AlertScores>| {
        a.map_or_else(
            || "-".into(),
            |a| format!("{}/{} ({} alerts)", p(a.precision), p(a.recall), a.alerted),
        )
    };
    let late = before.or(after).map_or(0, |a| a.late);
    format!("{} | {}; {late} late", one(before), one(after))
}

/// The `train` table.
pub fn table(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<7} {:<11} {:>7} {:>7} {:>8} {:>10} {:>8} {:>8}  {:<34} {:<14} ALERTS late > {:.0} min, precision/recall: before departure | after",
        "TENANT",
        "MODEL",
        "VERSION",
        "TRAIN",
        "HOLDOUT",
        "CANDIDATE",
        "GLOBAL",
        "ON-TIME",
        "DECISION",
        "SERVING",
        super::evaluate::ALERT_AFTER_MINUTES
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:<7} {:<11} {:>7} {:>7} {:>8} {:>10} {:>8} {:>8}  {:<34} {:<14} {}",
            r.tenant,
            r.model,
            r.version.as_deref().unwrap_or("-"),
            r.train_rows,
            r.holdout_rows,
            pct(r.candidate_mape, 2),
            pct(r.global_mape, 2),
            pct(r.on_time_mape, 2),
            r.decision,
            r.serving,
            alerts(r.alerts.0.as_ref(), r.alerts.1.as_ref())
        );
    }
    s
}
