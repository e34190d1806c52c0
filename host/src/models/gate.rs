//! The promotion gate: does a tenant's candidate go to production, or is the tenant
//! served the pooled model?
//!
//! A candidate is promoted only when all of these hold, on the tenant's own holdout
//! (November–December), scored through the sandboxed plugin that serves:
//! 1. it was trained on at least [`GateConfig::min_train_rows`] rows,
//! 2. its MAPE is below the absolute threshold [`GateConfig::max_mape`],
//! 3. its MAPE is below the global model's MAPE on the same rows.
//!
//! Otherwise the tenant falls back to the pooled model, flagged with the first reason
//! that failed: `insufficient_data`, `above_threshold` or `worse_than_global`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default absolute MAPE threshold (%), chosen from the full data set (BENCHMARKS.md,
/// "Training (full data)", November–December holdout, scored in the sandbox): the
/// carriers' own timetables ("predict on time") score from 2.5% (HA) to 17.9% (EV, 9E);
/// the fitted candidates with enough data land between 6.8% (VX) and 19.0% (EV), and the
/// pooled model between 2.7% and 20.4% per carrier. 20% sits just above the worst
/// carrier's own timetable: a model off by more than that on average is worse than
/// reading the schedule of the hardest carrier, so it is a broken fit (OO's 24-row
/// candidate scores 69%), whatever the global model does. It is a floor, not the bar:
/// the bar is beating the global model on the same rows, and a threshold tight enough to
/// matter there (say 15%) would send 9E, EV and MQ to a global model that is *worse* for
/// them.
pub const DEFAULT_MAX_MAPE: f64 = 20.0;

/// Default minimum number of training rows (January–October flights) for a tenant model.
/// Below ~1,000 training rows a carrier has only ~50–120 November–December flights to be
/// scored on, and the standard error of a MAPE over ~100 flights is about a point — the
/// size of the differences the gate must decide on (full data: F9 8.7% vs global 10.1%
/// on 121 flights, YV 19.9% vs 20.4% on 91, AS 7.2% vs 7.0% on 106): noise. 1,000 rows
/// sends the five thin carriers (OO 24, HA 289, YV 453, F9 560, AS 603) to the pool and
/// keeps every carrier with a real network (FL 2,765 and up).
pub const DEFAULT_MIN_TRAIN_ROWS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateConfig {
    /// Absolute MAPE threshold, percent.
    pub max_mape: f64,
    /// Fewer training rows than this: `insufficient_data` (no candidate is even scored
    /// against the threshold; it is still fitted and recorded when it can be).
    pub min_train_rows: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_mape: DEFAULT_MAX_MAPE,
            min_train_rows: DEFAULT_MIN_TRAIN_ROWS,
        }
    }
}

/// Why a tenant is served the pooled model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Fewer training rows than the minimum (or too few to fit at all).
    InsufficientData,
    /// The candidate's MAPE is not below the absolute threshold.
    AboveThreshold,
    /// The candidate's MAPE is not below the global model's on the same rows (or the
    /// global model is missing a score to compare against).
    WorseThanGlobal,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientData => "insufficient_data",
            Reason::AboveThreshold => "above_threshold",
            Reason::WorseThanGlobal => "worse_than_global",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Promote,
    Fallback(Reason),
}

/// Decides on a candidate with `train_rows` rows and MAPE `candidate` (None: none was
/// fitted or nothing could be scored), against the global model's `global` MAPE on the
/// same holdout rows.
pub fn decide(
    cfg: &GateConfig,
    train_rows: u64,
    candidate: Option<f64>,
    global: Option<f64>,
) -> Decision {
    if train_rows < cfg.min_train_rows {
        return Decision::Fallback(Reason::InsufficientData);
    }
    let Some(c) = candidate.filter(|c| c.is_finite()) else {
        return Decision::Fallback(Reason::InsufficientData);
    };
    if c >= cfg.max_mape {
        return Decision::Fallback(Reason::AboveThreshold);
    }
    match global.filter(|g| g.is_finite()) {
        Some(g) if c < g => Decision::Promote,
        _ => Decision::Fallback(Reason::WorseThanGlobal),
    }
}

/// What a manifest records about the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// `promoted`, `fallback`, `pinned` (production held, nothing moved) or, for the
    /// global model, `promoted` / `kept` (it must beat the schedule-only baseline).
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub max_mape: f64,
    pub min_train_rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_must_hold() {
        let cfg = GateConfig {
            max_mape: 15.0,
            min_train_rows: 100,
        };
        let fb = Decision::Fallback;
        assert_eq!(decide(&cfg, 500, Some(10.0), Some(11.0)), Decision::Promote);
        assert_eq!(
            decide(&cfg, 99, Some(1.0), Some(11.0)),
            fb(Reason::InsufficientData)
        );
        assert_eq!(
            decide(&cfg, 500, None, Some(11.0)),
            fb(Reason::InsufficientData)
        );
        assert_eq!(
            decide(&cfg, 500, Some(15.0), Some(20.0)),
            fb(Reason::AboveThreshold)
        );
        assert_eq!(
            decide(&cfg, 500, Some(11.0), Some(11.0)),
            fb(Reason::WorseThanGlobal)
        );
        assert_eq!(
            decide(&cfg, 500, Some(12.0), Some(11.0)),
            fb(Reason::WorseThanGlobal)
        );
        assert_eq!(
            decide(&cfg, 500, Some(10.0), None),
            fb(Reason::WorseThanGlobal)
        );
        assert_eq!(
            decide(&cfg, 500, Some(f64::NAN), Some(11.0)),
            fb(Reason::InsufficientData)
        );
    }
}
