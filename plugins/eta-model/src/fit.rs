//! Training: an additive model fitted by backfitting, one for rows without a known
//! departure delay and one for rows with it.
//!
//! ```text
//! eta ≈ intercept + slope·distance + lane[origin,dest] + hour[h] + month[m]
//!       + weekday[d] + aircraft[class] + weather[class] (+ b·dep_delay)
//! ```
//! The distance line is the global model every lane falls back on; a lane's effect is the
//! mean of its residuals shrunk toward 0 by `n / (n + k)`, so a lane seen a handful of
//! times barely moves away from the global line ("fallback to global when a lane is
//! thin"), and lanes under `min_lane_rows` are left out of the artifact altogether.
//! Delays make the residuals right-skewed, so the intercept is then moved to the median
//! residual (a better centre for percentage errors than the mean), and the interval is
//! the residuals' empirical quantiles per hour bucket.

use crate::artifact::{Artifact, BUCKETS, Lane, MODES, Params, TERMS, bucket};
use crate::schema::{Code, Conditions, EtaInput, INTERVAL_LEVEL};
use std::collections::BTreeMap;
use std::fmt;

/// One training row: the features and the observed ETA in minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Example {
    pub origin: Code,
    pub dest: Code,
    pub month: u8,
    pub sched_dep_hour: u8,
    pub distance: f64,
    pub dep_delay: Option<f64>,
    /// Scheduled block time (minutes), when the schedule is known.
    pub sched_block: Option<f64>,
    /// Weekday, aircraft and weather classes (see [`crate::features`]).
    pub conditions: Conditions,
    pub eta: f64,
}

impl Example {
    /// The row as a caller would send it (`with_dep_delay` false hides the delay).
    pub fn input(&self, with_dep_delay: bool) -> EtaInput {
        EtaInput {
            origin: self.origin,
            dest: self.dest,
            month: self.month,
            sched_dep_hour: self.sched_dep_hour,
            distance: Some(self.distance),
            dep_delay: if with_dep_delay { self.dep_delay } else { None },
            // The schedule is known before departure: always given.
            sched_block: self.sched_block,
            conditions: self.conditions,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FitConfig {
    /// k in the lane effect's `n / (n + k)` shrinkage.
    pub lane_shrinkage: f64,
    /// The same for the hour, month, weekday, aircraft and weather effects.
    pub effect_shrinkage: f64,
    /// Lanes with fewer training rows get no effect of their own.
    pub min_lane_rows: u32,
    pub iterations: usize,
    /// A bucket with fewer residuals than this uses the quantiles of all residuals.
    pub min_bucket_rows: usize,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            lane_shrinkage: 5.0,
            effect_shrinkage: 20.0,
            min_lane_rows: 2,
            iterations: 4,
            min_bucket_rows: 30,
        }
    }
}

/// Minutes of delay against the schedule beyond which a row counts as this many when the
/// schedule modes' terms are fitted (see `fit_mode`).
pub const DELAY_CLIP: f64 = 45.0;

/// Fewer rows than this is not a model.
pub const MIN_ROWS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct FitError(pub String);

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FitError {}

/// Fits an artifact on `examples` (rows with a non-finite value are refused).
pub fn fit(examples: &[Example], cfg: &FitConfig) -> Result<Artifact, FitError> {
    if examples.len() < MIN_ROWS {
        return Err(FitError(format!(
            "{} training rows; at least {MIN_ROWS} are needed",
            examples.len()
        )));
    }
    if let Some(i) = examples.iter().position(|e| {
        !e.eta.is_finite()
            || !e.distance.is_finite()
            || e.dep_delay.is_some_and(|d| !d.is_finite())
            || e.sched_block.is_some_and(|b| !b.is_finite())
    }) {
        return Err(FitError(format!("training row {i} has a non-finite value")));
    }
    let trained_rows = u32::try_from(examples.len())
        .map_err(|_| FitError("more than 2^32 training rows".into()))?;

    // Lanes: every (origin, dest) with enough rows, in the artifact's sorted order.
    let mut counts: BTreeMap<(Code, Code), Vec<f64>> = BTreeMap::new();
    for e in examples {
        counts
            .entry((e.origin, e.dest))
            .or_default()
            .push(e.distance);
    }
    let mut lanes: Vec<Lane> = Vec::new();
    let mut lane_index: BTreeMap<(Code, Code), usize> = BTreeMap::new();
    for ((origin, dest), mut distances) in counts {
        let rows = u32::try_from(distances.len()).unwrap_or(u32::MAX);
        if rows < cfg.min_lane_rows {
            continue;
        }
        lane_index.insert((origin, dest), lanes.len());
        lanes.push(Lane {
            origin,
            dest,
            rows,
            distance: median(&mut distances) as f32,
            effect: [0.0; MODES],
        });
    }
    let lane_of: Vec<Option<usize>> = examples
        .iter()
        .map(|e| lane_index.get(&(e.origin, e.dest)).copied())
        .collect();

    // One block per mode, each fitted on the rows that know what the mode uses. A mode
    // without enough rows copies a simpler one (and the schedule modes are switched off
    // when too few rows know their schedule).
    let knows = |i: usize, delay: bool, block: bool| {
        examples.get(i).is_some_and(|e| {
            (!delay || e.dep_delay.is_some()) && (!block || e.sched_block.is_some())
        })
    };
    let rows_for = |delay: bool, block: bool| -> Vec<usize> {
        (0..examples.len())
            .filter(|&i| knows(i, delay, block))
            .collect()
    };
    // Each row's effect index per term, once.
    let term_of: Vec<TermIndex> = examples
        .iter()
        .map(|e| {
            let input = e.input(true);
            TERMS.map(|t| t.index(&input))
        })
        .collect();
    let data = Data {
        ex: examples,
        lane_of: &lane_of,
        term_of: &term_of,
        n_lanes: lanes.len(),
    };
    let fit_rows =
        |rows: &[usize], delay: bool, block: bool| fit_mode(&data, rows, delay, block, cfg);
    let m0 = fit_rows(&rows_for(false, false), false, false);
    let delayed = rows_for(true, false);
    let m1 = if delayed.len() >= MIN_ROWS {
        fit_rows(&delayed, true, false)
    } else {
        m0.clone()
    };
    let scheduled = rows_for(false, true);
    let schedule = scheduled.len() >= MIN_ROWS;
    let (m2, m3) = if schedule {
        let m2 = fit_rows(&scheduled, false, true);
        let both = rows_for(true, true);
        let m3 = if both.len() >= MIN_ROWS {
            fit_rows(&both, true, true)
        } else {
            m2.clone()
        };
        (m2, m3)
    } else {
        (m0.clone(), m1.clone())
    };
    let modes = [m0, m1, m2, m3];
    for (i, lane) in lanes.iter_mut().enumerate() {
        for (effect, (_, l)) in lane.effect.iter_mut().zip(&modes) {
            *effect = l.get(i).copied().unwrap_or(0.0) as f32;
        }
    }
    let [m0, m1, m2, m3] = modes;
    Ok(Artifact {
        trained_rows,
        interval_level: INTERVAL_LEVEL as f32,
        schedule,
        params: [m0.0, m1.0, m2.0, m3.0],
        lanes,
    })
}

/// Which effect of each term (in [`TERMS`] order) applies to a row.
type TermIndex = [Option<usize>; TERMS.len()];

/// The training rows and what is precomputed about them.
struct Data<'a> {
    ex: &'a [Example],
    lane_of: &'a [Option<usize>],
    term_of: &'a [TermIndex],
    n_lanes: usize,
}

/// The current state of one mode's backfitting, in f64.
struct Fit {
    use_block: bool,
    use_delay: bool,
    intercept: f64,
    slope: f64,
    delay_slope: f64,
    lane: Vec<f64>,
    /// Per term in [`TERMS`] order.
    terms: [Vec<f64>; TERMS.len()],
}

/// One row as the backfitting loop sees it.
#[derive(Clone, Copy)]
struct At<'a> {
    e: &'a Example,
    lane: Option<usize>,
    terms: &'a TermIndex,
}

impl Fit {
    fn predict(&self, r: At<'_>) -> f64 {
        let e = r.e;
        let delay = if self.use_delay {
            e.dep_delay.unwrap_or(0.0)
        } else {
            0.0
        };
        // In a schedule mode the terms model the arrival against the schedule.
        let offset = if self.use_block {
            e.sched_block.unwrap_or(0.0)
        } else {
            0.0
        };
        let terms: f64 = self
            .terms
            .iter()
            .zip(r.terms)
            .filter_map(|(eff, i)| i.and_then(|i| eff.get(i)))
            .sum();
        offset
            + self.intercept
            + self.slope * e.distance
            + self.delay_slope * delay
            + r.lane
                .and_then(|l| self.lane.get(l))
                .copied()
                .unwrap_or(0.0)
            + terms
    }
}

fn fit_mode(
    d: &Data<'_>,
    rows: &[usize],
    use_delay: bool,
    use_block: bool,
    cfg: &FitConfig,
) -> (Params, Vec<f64>) {
    let mut f = Fit {
        use_block,
        use_delay,
        intercept: 0.0,
        slope: 0.0,
        delay_slope: if use_delay { 1.0 } else { 0.0 },
        lane: vec![0.0; d.n_lanes],
        terms: TERMS.map(|t| vec![0.0; t.size()]),
    };
    let get = |i: usize| -> Option<At<'_>> {
        Some(At {
            e: d.ex.get(i)?,
            lane: d.lane_of.get(i).copied().flatten(),
            terms: d.term_of.get(i)?,
        })
    };
    // What the terms are fitted to. Against the schedule, the delay is heavy-tailed (most
    // flights within minutes, a few hours late): fitted as is, the tail drags every
    // effect toward the mean delay, where MAPE wants the typical one. So the delay is
    // clipped for fitting the terms; the centring and the intervals below use the real
    // ETAs. With the departure delay known, that part of the tail is explained, not
    // noise: only what the flight gains or loses after departure is clipped (clipping
    // the whole arrival delay flattened the fitted delay slope to ~0.4, so flights that
    // left an hour late were predicted 25 minutes late).
    let target = |e: &Example| match (use_block, e.sched_block) {
        (true, Some(b)) => {
            let left_late = if use_delay {
                e.dep_delay.unwrap_or(0.0)
            } else {
                0.0
            };
            b + left_late + (e.eta - b - left_late).clamp(-DELAY_CLIP, DELAY_CLIP)
        }
        _ => e.eta,
    };
    for _ in 0..cfg.iterations {
        // Distance line on what the other terms leave.
        let (mut sx, mut sy, mut sxx, mut sxy, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &i in rows {
            let Some(r) = get(i) else { continue };
            let e = r.e;
            let y = target(e) - (f.predict(r) - f.intercept - f.slope * e.distance);
            sx += e.distance;
            sy += y;
            sxx += e.distance * e.distance;
            sxy += e.distance * y;
            n += 1.0;
        }
        let var = sxx - sx * sx / n;
        f.slope = if var > 1e-9 {
            (sxy - sx * sy / n) / var
        } else {
            0.0
        };
        f.intercept = (sy - f.slope * sx) / n;

        // Lane effects, then each term's, each on the residual of all the rest.
        let mut sums = vec![(0.0, 0.0); d.n_lanes];
        for &i in rows {
            let Some(r) = get(i) else { continue };
            let Some(l) = r.lane else { continue };
            let res = target(r.e) - (f.predict(r) - f.lane.get(l).copied().unwrap_or(0.0));
            if let Some(s) = sums.get_mut(l) {
                s.0 += res;
                s.1 += 1.0;
            }
        }
        for (eff, (s, n)) in f.lane.iter_mut().zip(&sums) {
            *eff = s / (n + cfg.lane_shrinkage);
        }
        for t in 0..TERMS.len() {
            let size = f.terms.get(t).map_or(0, Vec::len);
            let mut sums = vec![(0.0, 0.0); size];
            for &i in rows {
                let Some(r) = get(i) else { continue };
                let Some(k) = r.terms.get(t).copied().flatten() else {
                    continue;
                };
                let own = f
                    .terms
                    .get(t)
                    .and_then(|v| v.get(k))
                    .copied()
                    .unwrap_or(0.0);
                if let Some(s) = sums.get_mut(k) {
                    s.0 += target(r.e) - (f.predict(r) - own);
                    s.1 += 1.0;
                }
            }
            if let Some(effects) = f.terms.get_mut(t) {
                for (eff, (s, n)) in effects.iter_mut().zip(&sums) {
                    *eff = s / (n + cfg.effect_shrinkage);
                }
            }
        }

        // The departure delay's slope, on what the rest leaves (intercept re-fitted next).
        if use_delay {
            let (mut sd, mut sr, mut sdd, mut sdr, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &i in rows {
                let Some(r) = get(i) else { continue };
                let dd = r.e.dep_delay.unwrap_or(0.0);
                let res = target(r.e) - (f.predict(r) - f.delay_slope * dd);
                sd += dd;
                sr += res;
                sdd += dd * dd;
                sdr += dd * res;
                n += 1.0;
            }
            let var = sdd - sd * sd / n;
            if var > 1e-9 {
                f.delay_slope = (sdr - sd * sr / n) / var;
            }
        }
    }

    // Centre on the median residual, then the interval from the residual quantiles.
    let mut resid: Vec<(usize, f64)> = rows
        .iter()
        .filter_map(|&i| get(i).map(|r| (bucket(r.e.sched_dep_hour), r.e.eta - f.predict(r))))
        .collect();
    // The shift that minimises the mean absolute percentage error is the median of the
    // residuals weighted by 1/eta.
    let mut weighted: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|&i| get(i))
        .zip(&resid)
        .filter(|(r, _)| r.e.eta > 0.0)
        .map(|(r, res)| (res.1, 1.0 / r.e.eta))
        .collect();
    let shift = weighted_median(&mut weighted);
    f.intercept += shift;
    for r in &mut resid {
        r.1 -= shift;
    }
    let level = INTERVAL_LEVEL;
    let (qlo, qhi) = ((1.0 - level) / 2.0, (1.0 + level) / 2.0);
    let mut flat: Vec<f64> = resid.iter().map(|r| r.1).collect();
    flat.sort_by(f64::total_cmp);
    let global = (quantile_sorted(&flat, qlo), quantile_sorted(&flat, qhi));
    let mut lo = [0f32; BUCKETS];
    let mut hi = [0f32; BUCKETS];
    for b in 0..BUCKETS {
        let mut v: Vec<f64> = resid.iter().filter(|r| r.0 == b).map(|r| r.1).collect();
        v.sort_by(f64::total_cmp);
        let (l, h) = if v.len() >= cfg.min_bucket_rows {
            (quantile_sorted(&v, qlo), quantile_sorted(&v, qhi))
        } else {
            global
        };
        if let (Some(lo), Some(hi)) = (lo.get_mut(b), hi.get_mut(b)) {
            *lo = l.min(0.0) as f32;
            *hi = h.max(0.0) as f32;
        }
    }
    let mut params = Params {
        intercept: f.intercept as f32,
        distance_slope: f.slope as f32,
        dep_delay_slope: f.delay_slope as f32,
        lo,
        hi,
        ..Params::default()
    };
    for (t, effects) in TERMS.iter().zip(&f.terms) {
        for (out, x) in params.effects_mut(*t).iter_mut().zip(effects) {
            *out = *x as f32;
        }
    }
    (params, f.lane)
}

/// The weighted median of (value, weight) pairs (sorts them); 0 when empty.
pub fn weighted_median(v: &mut [(f64, f64)]) -> f64 {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|p| p.1).sum();
    let mut acc = 0.0;
    for &(x, w) in v.iter() {
        acc += w;
        if acc >= total / 2.0 {
            return x;
        }
    }
    0.0
}

/// The median (sorts `v`); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile_sorted(v, 0.5)
}

/// Linear-interpolated quantile of sorted values; 0 for an empty slice.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    let a = v.get(i).copied().unwrap_or(0.0);
    let b = v.get(i + 1).copied().unwrap_or(a);
    a + (b - a) * frac
}
