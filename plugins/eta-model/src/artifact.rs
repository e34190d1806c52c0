//! The model's learned parameters and their byte format.
//!
//! The host hands the artifact to a fresh plugin instance on every call, so decoding has
//! to be cheap: a fixed header, four fixed-size parameter blocks and a flat lane table
//! sorted by (origin, dest) that prediction binary-searches. No allocation beyond one
//! `Vec` for the lanes, no hashing (a `HashMap` would also pull randomness into the
//! plugin). Every field is little-endian.
//!
//! ```text
//! offset size
//!      0    8  magic "BHETAMDL"
//!      8    2  format version (u16) = 3
//!     10    2  flags (u16): bit 0 = the schedule modes were fitted; others 0
//!     12    4  lane count (u32)
//!     16    4  rows trained on (u32)
//!     20    4  interval level (f32), e.g. 0.8
//!     24  4×B  parameter blocks, one per mode (see [`mode`]):
//!             [0] nothing known, [1] dep_delay known, [2] sched_block known,
//!             [3] both known
//!             B = 4 × (3 + 24 + 12 + 7 + 4 + 9 + 2×BUCKETS) bytes, all f32:
//!             intercept, distance slope, dep_delay slope,
//!             effects of each [`Term`] in [`TERMS`] order: hour[24], month[12]
//!             (January first), weekday[7] (Sunday first), aircraft class[4],
//!             weather class[9],
//!             residual low quantile[BUCKETS], residual high quantile[BUCKETS]
//!      …  32×N lanes, strictly increasing by (origin, dest):
//!             origin [u8;4], dest [u8;4] (ASCII, zero-padded), rows (u32),
//!             distance (f32), effect per mode (4 × f32)
//! ```
//! In the schedule modes (2, 3) the blocks model the arrival relative to the schedule:
//! the prediction is `sched_block` plus the block's terms (the delay against the
//! schedule), which is what lets a model beat "predict on time".
//! The length must match exactly; every float must be finite.

use crate::features::{AIRCRAFT_CLASSES, WEATHER_CLASSES};
use crate::schema::{Code, EtaInput, InputError};
pub use bulkhead_model_kit::bytes::ArtifactError;
use bulkhead_model_kit::bytes::Reader;

pub const MAGIC: [u8; 8] = *b"BHETAMDL";
pub const FORMAT_VERSION: u16 = 3;
/// Flag bit: blocks 2 and 3 were fitted (training rows knew their schedule).
const FLAG_SCHEDULE: u16 = 1;
/// Parameter blocks: dep_delay known or not × sched_block known or not.
pub const MODES: usize = 4;

/// The parameter block for a row: +1 when its departure delay is known, +2 when its
/// scheduled block time is (and the model has the schedule modes).
pub fn mode(dep_delay: bool, sched_block: bool) -> usize {
    usize::from(dep_delay) + 2 * usize::from(sched_block)
}
/// Hour buckets for the residual quantiles (the spread of delays grows through the day).
pub const BUCKETS: usize = 4;
const HEADER: usize = 24;
const BLOCK_FLOATS: usize = 3 + TERM_EFFECTS + 2 * BUCKETS;

/// The additive terms that are a table of effects indexed by a category of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Hour,
    Month,
    Weekday,
    Aircraft,
    Weather,
}

pub const TERMS: [Term; 5] = [
    Term::Hour,
    Term::Month,
    Term::Weekday,
    Term::Aircraft,
    Term::Weather,
];
/// The effects of every term, in one block.
const TERM_EFFECTS: usize = 24 + 12 + 7 + AIRCRAFT_CLASSES + WEATHER_CLASSES;

impl Term {
    /// How many effects the term has.
    pub const fn size(self) -> usize {
        match self {
            Term::Hour => 24,
            Term::Month => 12,
            Term::Weekday => 7,
            Term::Aircraft => AIRCRAFT_CLASSES,
            Term::Weather => WEATHER_CLASSES,
        }
    }

    /// Which effect applies to `row` (`None`: none, e.g. an unknown weekday).
    pub fn index(self, row: &EtaInput) -> Option<usize> {
        let i = match self {
            Term::Hour => usize::from(row.sched_dep_hour),
            Term::Month => usize::from(row.month.checked_sub(1)?),
            Term::Weekday => usize::from(row.conditions.weekday?),
            Term::Aircraft => usize::from(row.conditions.aircraft),
            Term::Weather => usize::from(row.conditions.weather),
        };
        (i < self.size()).then_some(i)
    }

    fn name(self) -> &'static str {
        match self {
            Term::Hour => "hour effect",
            Term::Month => "month effect",
            Term::Weekday => "weekday effect",
            Term::Aircraft => "aircraft effect",
            Term::Weather => "weather effect",
        }
    }
}
const BLOCK: usize = 4 * BLOCK_FLOATS;
const LANE: usize = 16 + 4 * MODES;
/// A lane table larger than this is refused (the nycflights13 global model has ~220).
pub const MAX_LANES: u32 = 1 << 20;

/// The hour bucket of a scheduled departure hour.
pub fn bucket(hour: u8) -> usize {
    match hour {
        0..=9 => 0,
        10..=13 => 1,
        14..=17 => 2,
        _ => 3,
    }
}

/// The additive model for one case (dep_delay unknown or known).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params {
    pub intercept: f32,
    pub distance_slope: f32,
    /// 0 in the block for rows without dep_delay.
    pub dep_delay_slope: f32,
    pub hour: [f32; 24],
    pub month: [f32; 12],
    pub weekday: [f32; 7],
    pub aircraft: [f32; AIRCRAFT_CLASSES],
    pub weather: [f32; WEATHER_CLASSES],
    /// Residual quantiles at (1 - level) / 2 and (1 + level) / 2, per hour bucket;
    /// `lo ≤ 0 ≤ hi`.
    pub lo: [f32; BUCKETS],
    pub hi: [f32; BUCKETS],
}

/// One origin–destination pair seen in training.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub origin: Code,
    pub dest: Code,
    pub rows: u32,
    /// Median distance of the lane's flights (used when a row gives none).
    pub distance: f32,
    /// Per mode, shrunk toward 0 by the lane's row count: a thin lane is mostly the
    /// global model.
    pub effect: [f32; MODES],
}

/// A decoded (or freshly fitted) model.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub trained_rows: u32,
    pub interval_level: f32,
    /// Whether `params[2..]` were fitted (else a row's schedule is ignored).
    pub schedule: bool,
    /// One block per [`mode`].
    pub params: [Params; MODES],
    /// Sorted by (origin, dest), no duplicates.
    pub lanes: Vec<Lane>,
}

/// One prediction: the central value and the interval, in minutes.
pub type Eta = bulkhead_model_kit::Estimate;

fn err(msg: impl Into<String>) -> ArtifactError {
    ArtifactError(msg.into())
}

impl Params {
    /// The effects of `term`.
    pub fn effects(&self, term: Term) -> &[f32] {
        match term {
            Term::Hour => &self.hour,
            Term::Month => &self.month,
            Term::Weekday => &self.weekday,
            Term::Aircraft => &self.aircraft,
            Term::Weather => &self.weather,
        }
    }

    pub fn effects_mut(&mut self, term: Term) -> &mut [f32] {
        match term {
            Term::Hour => &mut self.hour,
            Term::Month => &mut self.month,
            Term::Weekday => &mut self.weekday,
            Term::Aircraft => &mut self.aircraft,
            Term::Weather => &mut self.weather,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Params, ArtifactError> {
        let mut p = Params {
            intercept: r.f32("intercept")?,
            distance_slope: r.f32("distance slope")?,
            dep_delay_slope: r.f32("dep_delay slope")?,
            ..Params::default()
        };
        for t in TERMS {
            for x in p.effects_mut(t) {
                *x = r.f32(t.name())?;
            }
        }
        p.lo = r.floats("interval low")?;
        p.hi = r.floats("interval high")?;
        if p.lo.iter().any(|&x| x > 0.0) || p.hi.iter().any(|&x| x < 0.0) {
            return Err(err("interval quantiles must satisfy low ≤ 0 ≤ high"));
        }
        Ok(p)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut put = |x: f32| out.extend_from_slice(&x.to_le_bytes());
        put(self.intercept);
        put(self.distance_slope);
        put(self.dep_delay_slope);
        for t in TERMS {
            self.effects(t).iter().for_each(|&x| put(x));
        }
        self.lo.iter().for_each(|&x| put(x));
        self.hi.iter().for_each(|&x| put(x));
    }
}

impl Artifact {
    /// Parses and checks `bytes` (see the module doc for the layout).
    pub fn decode(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        let mut r = Reader::new(bytes);
        let flags = r.header(MAGIC, FORMAT_VERSION, FLAG_SCHEDULE, "an eta-forecaster")?;
        let lanes = r.u32()?;
        if lanes > MAX_LANES {
            return Err(err(format!("{lanes} lanes (at most {MAX_LANES})")));
        }
        let want = HEADER + MODES * BLOCK + LANE * lanes as usize;
        if bytes.len() != want {
            return Err(err(format!(
                "{} bytes; {lanes} lanes need exactly {want}",
                bytes.len()
            )));
        }
        let trained_rows = r.u32()?;
        let interval_level = r.f32("interval level")?;
        if !(interval_level > 0.0 && interval_level < 1.0) {
            return Err(err("interval level must be in (0, 1)"));
        }
        let params = [
            Params::read(&mut r)?,
            Params::read(&mut r)?,
            Params::read(&mut r)?,
            Params::read(&mut r)?,
        ];
        let mut out: Vec<Lane> = Vec::with_capacity(lanes as usize);
        for _ in 0..lanes {
            let (origin, dest) = r.lane()?;
            let lane = Lane {
                origin,
                dest,
                rows: r.u32()?,
                distance: r.f32("lane distance")?,
                effect: r.floats("lane effect")?,
            };
            if let Some(prev) = out.last()
                && (prev.origin, prev.dest) >= (lane.origin, lane.dest)
            {
                return Err(err("lanes are not strictly sorted"));
            }
            out.push(lane);
        }
        Ok(Artifact {
            trained_rows,
            interval_level,
            schedule: flags & FLAG_SCHEDULE != 0,
            params,
            lanes: out,
        })
    }

    /// The bytes of this artifact; `decode(encode(a)) == a`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + MODES * BLOCK + LANE * self.lanes.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let flags = if self.schedule { FLAG_SCHEDULE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        let n = u32::try_from(self.lanes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&self.trained_rows.to_le_bytes());
        out.extend_from_slice(&self.interval_level.to_le_bytes());
        for p in &self.params {
            p.write(&mut out);
        }
        for l in &self.lanes {
            out.extend_from_slice(&l.origin.0);
            out.extend_from_slice(&l.dest.0);
            out.extend_from_slice(&l.rows.to_le_bytes());
            out.extend_from_slice(&l.distance.to_le_bytes());
            for e in &l.effect {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        out
    }

    pub fn lane(&self, origin: Code, dest: Code) -> Option<&Lane> {
        self.lanes
            .binary_search_by(|l| (l.origin, l.dest).cmp(&(origin, dest)))
            .ok()
            .and_then(|i| self.lanes.get(i))
    }

    /// The ETA of one checked row. Refuses a lane it has never seen when the row gives
    /// no distance (there is nothing to fall back on).
    pub fn predict(&self, row: &EtaInput) -> Result<Eta, InputError> {
        let lane = self.lane(row.origin, row.dest);
        let distance = match (row.distance, lane) {
            (Some(d), _) => d,
            (None, Some(l)) => f64::from(l.distance),
            (None, None) => {
                return Err(InputError(format!(
                    "lane {}-{} is not in this model: feature `distance` is required",
                    row.origin, row.dest
                )));
            }
        };
        let block = row.sched_block.filter(|_| self.schedule);
        let mode = mode(row.dep_delay.is_some(), block.is_some());
        let dep_delay = row.dep_delay.unwrap_or(0.0);
        let Some(p) = self.params.get(mode) else {
            return Err(InputError(format!("no parameter block {mode}")));
        };
        let f = |x: f32| f64::from(x);
        let terms: f64 = TERMS
            .iter()
            .filter_map(|&t| t.index(row).and_then(|i| p.effects(t).get(i)))
            .map(|&x| f(x))
            .sum();
        let lane_effect = lane
            .and_then(|l| l.effect.get(mode))
            .copied()
            .unwrap_or(0.0);
        let raw = block.unwrap_or(0.0)
            + f(p.intercept)
            + f(p.distance_slope) * distance
            + f(p.dep_delay_slope) * dep_delay
            + f(lane_effect)
            + terms;
        // An arrival cannot come before the departure was even scheduled.
        let value = raw.max(1.0);
        let b = bucket(row.sched_dep_hour);
        let lower = (raw + f(p.lo[b])).max(1.0).min(value);
        let upper = (raw + f(p.hi[b])).max(value);
        Ok(Eta {
            value,
            lower,
            upper,
        })
    }
}
