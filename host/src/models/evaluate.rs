//! Scoring a model on holdout flights through the sandbox: the same plugin component,
//! the same wasmtime sandbox and the same input conversion as serving, so the offline
//! MAPE is the MAPE of what production runs (not a native copy of the maths).
//!
//! The one place that turns flights into the sandbox's input is [`to_input`]; the one
//! place that reads its output is [`point_and_interval`].

use super::store::AlertScores;
use crate::features::FeatureStores;
use crate::sandbox::{
    Batch, BatchBuilder, BatchError, CallContext, FeatureSource, Limits, ModelSource, NoFeatures,
    Prediction, Sandbox, SandboxConfig, Value,
};
use anyhow::{Context, Result};
use bulkhead_eta_model::nyc::Flight;
use bulkhead_eta_model::schema::{
    Code, DEP_DELAY, DEST, DISTANCE, MONTH, ORIGIN, SCHED_BLOCK, SCHED_DEP, SCHED_DEP_HOUR, TAILNUM,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Rows per sandbox call (well inside the per-call output and time limits).
pub const BATCH_ROWS: usize = 2_000;

/// Flights as the sandbox's input: the features a caller sends at serving time (the
/// scheduled departure and block time, the tail number, the departure delay only when
/// `with_dep_delay`), as one column batch; the plugin looks up the rest. THE
/// conversion: adapt here when the sandbox's input type changes.
pub fn to_input(flights: &[Flight], with_dep_delay: bool) -> Result<Batch, BatchError> {
    let mut b = BatchBuilder::new();
    for f in flights {
        let e = &f.example;
        b.next_row()?;
        b.set(ORIGIN, Value::Category(e.origin.to_string()))?;
        b.set(DEST, Value::Category(e.dest.to_string()))?;
        b.set(MONTH, Value::Number(f64::from(e.month)))?;
        b.set(SCHED_DEP_HOUR, Value::Number(f64::from(e.sched_dep_hour)))?;
        b.set(DISTANCE, Value::Number(e.distance))?;
        // The schedule is known before departure, as at serving time.
        if let Some(block) = e.sched_block {
            b.set(SCHED_BLOCK, Value::Number(block))?;
        }
        b.set(SCHED_DEP, Value::Category(f.sched_dep.to_string()))?;
        if let Some(t) = &f.tail {
            b.set(TAILNUM, Value::Category(t.as_str().to_string()))?;
        }
        if with_dep_delay && let Some(d) = e.dep_delay {
            b.set(DEP_DELAY, Value::Number(d))?;
        }
    }
    Ok(b.finish())
}

/// A point prediction and its interval (when the model gives one).
type Point = (f64, Option<(f64, f64)>);

/// The point prediction and the interval of each output row.
fn point_and_interval(out: &[Prediction]) -> Vec<Point> {
    out.iter()
        .map(|p| (p.value, p.lower.zip(p.upper)))
        .collect()
}

/// A model's scores on a holdout.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// MAPE (%) without the departure delay (the pre-departure forecast: what the gate
    /// uses).
    pub mape: Option<f64>,
    /// MAPE (%) with the departure delay given.
    pub mape_with_dep_delay: Option<f64>,
    /// Share of ETAs inside the model's interval (no delay given).
    pub coverage: Option<f64>,
    /// The pre-departure alerts (at [`ALERT_AFTER_MINUTES`]) against the late flights.
    pub alerts: Option<AlertScores>,
    /// The same once the departure delay is known.
    pub alerts_with_dep_delay: Option<AlertScores>,
    pub rows: u64,
}

/// The alert threshold evaluations use: the default tenants get.
pub const ALERT_AFTER_MINUTES: f64 = bulkhead_registry::DEFAULT_ALERT_AFTER_MINUTES as f64;

/// Runs models in a sandbox of its own (one plugin component, many artifacts).
pub struct Evaluator {
    sandbox: Sandbox,
    plugin: Arc<[u8]>,
    plugin_sha256: String,
    plugin_name: String,
    rt: tokio::runtime::Runtime,
    /// Where each tenant's rows look their features up (none: nothing is found).
    features: Option<Arc<FeatureStores>>,
}

impl Evaluator {
    /// A sandbox for `plugin` (the eta-forecaster component), with the serving limits
    /// except for the per-call time (a batch of [`BATCH_ROWS`] rows is one call).
    pub fn new(plugin: &[u8]) -> Result<Evaluator> {
        Evaluator::for_plugin(bulkhead_eta_model::schema::PLUGIN_NAME, plugin)
    }

    /// A sandbox for the component `plugin`, named `name` in evaluation records.
    pub fn for_plugin(name: &str, plugin: &[u8]) -> Result<Evaluator> {
        let sandbox = Sandbox::new(SandboxConfig::default())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the evaluator's runtime")?;
        Ok(Evaluator {
            sandbox,
            plugin_sha256: super::store::sha256_hex(plugin),
            plugin_name: name.to_string(),
            plugin: Arc::from(plugin),
            rt,
            features: None,
        })
    }

    /// Rows look their features up in their own tenant's store in `stores`, as requests
    /// of that tenant do when served.
    pub fn with_features(mut self, stores: Arc<FeatureStores>) -> Evaluator {
        self.features = Some(stores);
        self
    }

    /// `sandbox: <plugin> component sha256 <hex>`, for the evaluation record.
    pub fn describe(&self) -> String {
        format!(
            "sandbox: {} component sha256 {}",
            self.plugin_name, self.plugin_sha256
        )
    }

    /// One sandboxed call of the plugin with `artifact` on `batch`, as `tenant` (its
    /// feature store, when the evaluator has them): for scoring other models than the ETA
    /// one (the demand models).
    pub fn run(
        &self,
        tenant: &str,
        label: &str,
        artifact: &[u8],
        batch: Batch,
    ) -> Result<crate::sandbox::PredictOutput> {
        let source = ModelSource::from_bytes(label, Arc::clone(&self.plugin), Arc::from(artifact));
        let features: Arc<dyn FeatureSource> = match &self.features {
            Some(s) => s.for_tenant(tenant),
            None => Arc::new(NoFeatures),
        };
        let ctx = CallContext::new(tenant, "evaluation", features).with_limits(Limits {
            timeout: Duration::from_secs(10),
            ..Limits::default()
        });
        self.rt
            .block_on(self.sandbox.predict(&source, ctx, batch))
            .map_err(|e| anyhow::anyhow!("{label}: {}", e.message))
    }

    /// The sandbox (its cache counters, for tests).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// MAPE and interval coverage of `artifact` on `holdout`, every prediction made by
    /// the plugin in the sandbox.
    pub fn score(&self, label: &str, artifact: &[u8], holdout: &[Flight]) -> Result<Scores> {
        let source = ModelSource::from_bytes(label, Arc::clone(&self.plugin), Arc::from(artifact));
        let (without, alerted) = self.predict(&source, holdout, false)?;
        let (with, alerted_after) = self.predict(&source, holdout, true)?;
        let mut s = Scores {
            rows: holdout.len() as u64,
            ..Scores::default()
        };
        s.mape = mape(holdout, without.iter().map(|p| p.0));
        s.mape_with_dep_delay = mape(holdout, with.iter().map(|p| p.0));
        let covered: Option<Vec<bool>> = holdout
            .iter()
            .zip(&without)
            .map(|(f, (_, iv))| iv.map(|(lo, hi)| lo <= f.example.eta && f.example.eta <= hi))
            .collect();
        s.coverage = covered
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().filter(|&&b| b).count() as f64 / c.len() as f64);
        // Late: arrived more than the threshold after the scheduled arrival.
        let scores = |alerted: &[bool]| {
            AlertScores::of(
                ALERT_AFTER_MINUTES,
                holdout
                    .iter()
                    .zip(alerted)
                    .map(|(f, &a)| (a, f.example.eta - f.sched_block > ALERT_AFTER_MINUTES)),
            )
        };
        s.alerts = Some(scores(&alerted));
        s.alerts_with_dep_delay = Some(scores(&alerted_after));
        Ok(s)
    }

    fn predict(
        &self,
        source: &ModelSource,
        flights: &[Flight],
        with_dep_delay: bool,
    ) -> Result<(Vec<Point>, Vec<bool>)> {
        let limits = Limits {
            timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        // Each tenant's rows are scored in calls of their own, with that tenant's store.
        let mut by_tenant: BTreeMap<Code, Vec<usize>> = BTreeMap::new();
        for (i, f) in flights.iter().enumerate() {
            by_tenant.entry(f.carrier).or_default().push(i);
        }
        let mut out: Vec<Point> = vec![(f64::NAN, None); flights.len()];
        let mut alerted = vec![false; flights.len()];
        for (tenant, rows) in by_tenant {
            let features: Arc<dyn FeatureSource> = match &self.features {
                Some(s) => s.for_tenant(tenant.as_str()),
                None => Arc::new(NoFeatures),
            };
            for chunk in rows.chunks(BATCH_ROWS) {
                let ctx = CallContext::new(tenant.as_str(), "evaluation", Arc::clone(&features))
                    .with_limits(limits.clone())
                    .with_alerts_after(Some(ALERT_AFTER_MINUTES));
                let picked: Vec<Flight> = chunk
                    .iter()
                    .filter_map(|&i| flights.get(i))
                    .copied()
                    .collect();
                let input = to_input(&picked, with_dep_delay)?;
                let res = self
                    .rt
                    .block_on(self.sandbox.predict(source, ctx, input))
                    .map_err(|e| anyhow::anyhow!("{}: {}", source.label, e.message))?;
                // Holdout rows are complete: a row error is a broken model or plugin.
                if let Some(e) = res.errors.first() {
                    anyhow::bail!("{}: holdout row refused: {}", source.label, e.message);
                }
                for (&i, p) in chunk.iter().zip(point_and_interval(&res.predictions)) {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = p;
                    }
                }
                for a in &res.alerts {
                    if let Some(slot) = chunk.get(a.row as usize).and_then(|&i| alerted.get_mut(i))
                    {
                        *slot = true;
                    }
                }
            }
        }
        Ok((out, alerted))
    }
}

/// MAPE (%) of `predictions` over flights with a positive ETA (the same rule as the
/// model crate's native `eval::mape`).
fn mape(flights: &[Flight], predictions: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (f, p) in flights.iter().zip(predictions) {
        if f.example.eta > 0.0 {
            sum += (p - f.example.eta).abs() / f.example.eta;
            n += 1;
        }
    }
    (n > 0).then(|| 100.0 * sum / n as f64)
}
