//! Evaluation: a deterministic holdout split and MAPE, for the model and for the
//! global-mean baseline.

use crate::artifact::Artifact;
use crate::fit::Example;

/// Splits rows into (train, holdout): every `every`-th row (by position) is held out, so
/// the split is deterministic and spreads over the whole period of a date-ordered file.
pub fn split(rows: &[Example], every: usize) -> (Vec<Example>, Vec<Example>) {
    let every = every.max(2);
    let mut train = Vec::with_capacity(rows.len());
    let mut holdout = Vec::with_capacity(rows.len() / every + 1);
    for (i, r) in rows.iter().enumerate() {
        if i % every == every - 1 {
            holdout.push(*r);
        } else {
            train.push(*r);
        }
    }
    (train, holdout)
}

/// Mean absolute percentage error (in percent) of `predict` over rows with a positive
/// ETA; `None` when there is no such row or a prediction fails.
pub fn mape(rows: &[Example], mut predict: impl FnMut(&Example) -> Option<f64>) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for r in rows.iter().filter(|r| r.eta > 0.0) {
        let p = predict(r)?;
        sum += (p - r.eta).abs() / r.eta;
        n += 1;
    }
    (n > 0).then(|| 100.0 * sum / n as f64)
}

/// The model's MAPE, with or without the departure delay given.
pub fn model_mape(a: &Artifact, rows: &[Example], with_dep_delay: bool) -> Option<f64> {
    mape(rows, |r| {
        a.predict(&r.input(with_dep_delay)).ok().map(|e| e.value)
    })
}

/// The share of rows whose ETA falls inside the predicted interval.
pub fn coverage(a: &Artifact, rows: &[Example], with_dep_delay: bool) -> Option<f64> {
    let mut inside = 0usize;
    for r in rows {
        let e = a.predict(&r.input(with_dep_delay)).ok()?;
        if e.lower <= r.eta && r.eta <= e.upper {
            inside += 1;
        }
    }
    (!rows.is_empty()).then(|| inside as f64 / rows.len() as f64)
}

/// MAPE of always predicting the mean training ETA.
pub fn baseline_mape(train: &[Example], holdout: &[Example]) -> Option<f64> {
    if train.is_empty() {
        return None;
    }
    let mean = train.iter().map(|r| r.eta).sum::<f64>() / train.len() as f64;
    mape(holdout, |_| Some(mean))
}
