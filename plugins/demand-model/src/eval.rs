//! Evaluation on a holdout: WAPE of the model and of the seasonal-naive baseline.
//!
//! **Why WAPE, not MAPE** (the ETA model's metric): a lane's daily count is often 0
//! (a weekly flight, a Saturday off, a lane dropped from the timetable), and the
//! percentage error of a day with 0 flights is a division by zero; skipping those days
//! would hide exactly the forecasts of flights that did not happen. WAPE —
//! Σ|forecast − actual| / Σ actual over every (lane, day) — is defined whenever the
//! holdout has any flight, weighs each lane by its volume (an error of one flight is an
//! error of one flight wherever it is), and reads like MAPE: a percentage of demand.

use crate::Code;
use crate::artifact::Artifact;
use crate::series::Counts;

/// What [`evaluate`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The model's WAPE, in percent.
    pub model_wape: f64,
    /// The seasonal-naive baseline's WAPE, in percent.
    pub baseline_wape: f64,
    /// Days in the holdout.
    pub days: usize,
    /// Lanes evaluated (every lane of the artifact).
    pub lanes: usize,
    /// Holdout flights on the evaluated lanes (WAPE's denominator).
    pub flights: u64,
    /// Share of (lane, day) points whose count fell inside the model's interval.
    pub coverage: f64,
    /// Holdout flights on lanes the artifact does not have: neither the model nor the
    /// baseline can forecast them (the plugin refuses such a lane), so they are not in
    /// either WAPE.
    pub unknown_lane_flights: u64,
}

/// Weighted absolute percentage error in percent, Σ|f − a| / Σ a · 100, over
/// (forecast, actual) pairs; `None` when the actuals sum to 0.
pub fn wape(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let (mut err, mut sum) = (0.0, 0.0);
    for (f, a) in pairs {
        err += (f - a).abs();
        sum += a;
    }
    (sum > 0.0).then(|| 100.0 * err / sum)
}

/// Evaluates `artifact` on `holdout`, whose range must start after the last training
/// day. Every artifact lane is forecast for every holdout day (a lane absent from the
/// holdout flew 0 flights those days). `None` when the holdout is empty or has no flight
/// on the artifact's lanes, or its range reaches past the forecast horizon.
pub fn evaluate(artifact: &Artifact, holdout: &Counts) -> Option<Evaluation> {
    if holdout.first <= artifact.last_day || holdout.days() == 0 {
        return None;
    }
    let (mut model_err, mut base_err, mut actual) = (0.0, 0.0, 0.0);
    let mut inside = 0usize;
    let mut points = 0usize;
    for lane in &artifact.lanes {
        let series = holdout.lane(lane.origin, lane.dest);
        for i in 0..holdout.days() {
            let day = holdout.first + i as i32;
            let a = series.and_then(|s| s.counts.get(i)).copied().unwrap_or(0);
            let a = f64::from(a);
            let f = artifact.forecast(lane.origin, lane.dest, day).ok()?;
            let b = artifact.baseline(lane.origin, lane.dest, day).ok()?;
            model_err += (f.value - a).abs();
            base_err += (b - a).abs();
            actual += a;
            points += 1;
            if f.lower <= a && a <= f.upper {
                inside += 1;
            }
        }
    }
    if actual <= 0.0 {
        return None;
    }
    let unknown_lane_flights = holdout
        .lanes
        .iter()
        .filter(|s| artifact.lane(s.origin, s.dest).is_none())
        .map(|s| s.total())
        .sum();
    Some(Evaluation {
        model_wape: 100.0 * model_err / actual,
        baseline_wape: 100.0 * base_err / actual,
        days: holdout.days(),
        lanes: artifact.lanes.len(),
        flights: actual as u64,
        coverage: inside as f64 / points.max(1) as f64,
        unknown_lane_flights,
    })
}

/// Convenience: (model WAPE, baseline WAPE, days), as the issue words it.
pub fn evaluate_wape(artifact: &Artifact, holdout: &Counts) -> Option<(f64, f64, usize)> {
    evaluate(artifact, holdout).map(|e| (e.model_wape, e.baseline_wape, e.days))
}

/// The flights of one lane, for callers that build holdouts by hand.
pub fn lane_total(counts: &Counts, origin: Code, dest: Code) -> u64 {
    counts.lane(origin, dest).map_or(0, |s| s.total())
}
