//! Featurize: the looked-up features of a row — the weather at its origin in the hour of
//! its scheduled departure (public data) and the size of its aircraft (the tenant's
//! fleet) — reduced to the classes the model learns effects for.
//!
//! Training and serving both go through [`Featurizer::conditions`] with the same keys,
//! tables and classes: the plugin answers its lookups from the host's `features.lookup`
//! (the calling tenant's store), the trainer from the same store natively. So what a
//! model was trained on and what it is served cannot drift apart.

use crate::schema::{Code, Conditions, LocalTime, Row, SCHED_BLOCK_RANGE};
use crate::zones::{Zone, block_minutes};
use std::collections::BTreeMap;

/// The public hourly weather table, keyed `ORIGIN|YYYY-MM-DDTHH` (local hour).
pub const WEATHER_TABLE: &str = "weather";
/// What the weather class is made of, in this order.
pub const WEATHER_COLUMNS: [&str; 3] = ["precip", "visib", "wind_speed"];
/// The tenant's fleet, keyed by tail number.
pub const PLANES_TABLE: &str = "planes";
pub const PLANE_COLUMNS: [&str; 1] = ["seats"];
/// The public airports table, keyed by FAA code: the time-zone rule.
pub const AIRPORTS_TABLE: &str = "airports";
/// `tz` (hours from UTC), `us_dst` (1 when the airport keeps US daylight saving).
pub const AIRPORT_COLUMNS: [&str; 2] = ["tz", "us_dst"];

/// Classes of [`weather_class`]: 0 = no reading, then 1 + precipitation (1) + low
/// visibility (2) + strong wind (4).
pub const WEATHER_CLASSES: usize = 9;
/// Classes of [`aircraft_class`]: 0 = not in the fleet table, 1 ≤ 100 seats (regional
/// jets), 2 ≤ 200 (narrow-body), 3 larger.
pub const AIRCRAFT_CLASSES: usize = 4;

/// Below this visibility (miles), or from this wind (mph), the weather counts as bad.
pub const LOW_VISIBILITY_MILES: f64 = 3.0;
pub const STRONG_WIND_MPH: f64 = 20.0;

/// Numeric feature lookups, by table and key. `Ok(None)`: no such row; a `None` value:
/// the row has no value in that column. `Err`: the lookup itself failed.
pub trait Lookup {
    fn numbers(
        &mut self,
        table: &str,
        key: &str,
        columns: &[&str],
    ) -> Result<Option<Vec<Option<f64>>>, String>;
}

/// No store: every lookup finds nothing (the classes stay 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookup;

impl Lookup for NoLookup {
    fn numbers(
        &mut self,
        _: &str,
        _: &str,
        _: &[&str],
    ) -> Result<Option<Vec<Option<f64>>>, String> {
        Ok(None)
    }
}

/// The weather table's key of a departure.
pub fn weather_key(origin: Code, t: &LocalTime) -> String {
    format!(
        "{origin}|{:04}-{:02}-{:02}T{:02}",
        t.year, t.month, t.day, t.hour
    )
}

/// The weather class of one reading ([`WEATHER_COLUMNS`] order); 0 without one.
pub fn weather_class(reading: Option<&[Option<f64>]>) -> u8 {
    let Some(r) = reading else { return 0 };
    let get = |i: usize| r.get(i).copied().flatten();
    let wet = get(0).is_some_and(|p| p > 0.0);
    let murky = get(1).is_some_and(|v| v < LOW_VISIBILITY_MILES);
    let windy = get(2).is_some_and(|w| w >= STRONG_WIND_MPH);
    1 + u8::from(wet) + 2 * u8::from(murky) + 4 * u8::from(windy)
}

/// The size class of a plane ([`PLANE_COLUMNS`] order); 0 when it is not in the fleet
/// table or has no seat count.
pub fn aircraft_class(plane: Option<&[Option<f64>]>) -> u8 {
    match plane.and_then(|p| p.first().copied().flatten()) {
        None => 0,
        Some(s) if s <= 100.0 => 1,
        Some(s) if s <= 200.0 => 2,
        Some(_) => 3,
    }
}

/// Looks up the conditions of rows, each distinct key once per featurizer (a batch
/// shares origins and hours, and often aircraft). `BTreeMap`, not `HashMap`: no random
/// hasher state in the plugin.
pub struct Featurizer<L> {
    lookup: L,
    weather: BTreeMap<String, u8>,
    planes: BTreeMap<String, u8>,
    zones: BTreeMap<Code, Option<Zone>>,
}

impl<L: Lookup> Featurizer<L> {
    pub fn new(lookup: L) -> Featurizer<L> {
        Featurizer {
            lookup,
            weather: BTreeMap::new(),
            planes: BTreeMap::new(),
            zones: BTreeMap::new(),
        }
    }

    /// The scheduled block time from `sched_dep` and `sched_arr` (local times) and the two
    /// airports' time zones; `None` without both times, with an airport the table does
    /// not know, or a result outside the accepted block times.
    pub fn sched_block(&mut self, row: &Row<'_>) -> Result<Option<f64>, String> {
        let (Some(dep), Some(arr)) = (row.sched_dep, row.sched_arr) else {
            return Ok(None);
        };
        let (Some(from), Some(to)) = (self.zone(row.input.origin)?, self.zone(row.input.dest)?)
        else {
            return Ok(None);
        };
        Ok(block_minutes(&dep, &from, &arr, &to)
            .filter(|b| (SCHED_BLOCK_RANGE.0..=SCHED_BLOCK_RANGE.1).contains(b)))
    }

    fn zone(&mut self, code: Code) -> Result<Option<Zone>, String> {
        if let Some(z) = self.zones.get(&code) {
            return Ok(*z);
        }
        let r = self
            .lookup
            .numbers(AIRPORTS_TABLE, code.as_str(), &AIRPORT_COLUMNS)?;
        let z = r.and_then(|v| match v.as_slice() {
            [Some(tz), dst] => Some(Zone {
                tz_hours: *tz,
                us_dst: dst.is_some_and(|d| d != 0.0),
            }),
            _ => None,
        });
        self.zones.insert(code, z);
        Ok(z)
    }

    /// The row's input with its conditions filled in.
    pub fn conditions(&mut self, row: &Row<'_>) -> Result<Conditions, String> {
        let mut c = row.input.conditions;
        if let Some(t) = row.sched_dep {
            let key = weather_key(row.input.origin, &t);
            c.weather = match self.weather.get(&key) {
                Some(&class) => class,
                None => {
                    let r = self.lookup.numbers(WEATHER_TABLE, &key, &WEATHER_COLUMNS)?;
                    let class = weather_class(r.as_deref());
                    self.weather.insert(key, class);
                    class
                }
            };
        }
        if let Some(tail) = row.tailnum {
            c.aircraft = match self.planes.get(tail) {
                Some(&class) => class,
                None => {
                    let r = self.lookup.numbers(PLANES_TABLE, tail, &PLANE_COLUMNS)?;
                    let class = aircraft_class(r.as_deref());
                    self.planes.insert(tail.to_string(), class);
                    class
                }
            };
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::schema::{Value, parse_row};

    /// Answers from a fixed map and counts the lookups.
    struct Fixed(Vec<(&'static str, &'static str, Vec<Option<f64>>)>, usize);

    impl Lookup for Fixed {
        fn numbers(
            &mut self,
            table: &str,
            key: &str,
            columns: &[&str],
        ) -> Result<Option<Vec<Option<f64>>>, String> {
            self.1 += 1;
            let want = match table {
                WEATHER_TABLE => 3,
                AIRPORTS_TABLE => 2,
                _ => 1,
            };
            assert_eq!(columns.len(), want);
            Ok(self
                .0
                .iter()
                .find(|(t, k, _)| *t == table && *k == key)
                .map(|(_, _, v)| v.clone()))
        }
    }

    #[test]
    fn classes() {
        assert_eq!(weather_class(None), 0);
        assert_eq!(weather_class(Some(&[Some(0.0), Some(10.0), Some(5.0)])), 1);
        assert_eq!(weather_class(Some(&[Some(0.1), Some(1.0), Some(25.0)])), 8);
        assert_eq!(weather_class(Some(&[None, None, None])), 1);
        assert_eq!(aircraft_class(None), 0);
        assert_eq!(aircraft_class(Some(&[None])), 0);
        assert_eq!(aircraft_class(Some(&[Some(55.0)])), 1);
        assert_eq!(aircraft_class(Some(&[Some(182.0)])), 2);
        assert_eq!(aircraft_class(Some(&[Some(400.0)])), 3);
    }

    #[test]
    fn looks_up_each_key_once_and_keys_by_local_hour() {
        let mut f = Featurizer::new(Fixed(
            vec![
                (
                    "weather",
                    "EWR|2013-01-05T06",
                    vec![Some(0.2), Some(10.0), Some(3.0)],
                ),
                ("planes", "N14228", vec![Some(149.0)]),
            ],
            0,
        ));
        let row = |dep: &'static str, tail: &'static str| {
            parse_row([
                ("origin", Value::Category("EWR")),
                ("dest", Value::Category("ORD")),
                ("sched_dep", Value::Category(dep)),
                ("tailnum", Value::Category(tail)),
            ])
            .unwrap()
        };
        let a = row("2013-01-05T06:59", "N14228");
        assert_eq!((a.input.month, a.input.sched_dep_hour), (1, 6));
        let c = f.conditions(&a).unwrap();
        // 2013-01-05 was a Saturday; light rain; a 149-seat plane.
        assert_eq!(c.weekday, Some(6));
        assert_eq!((c.weather, c.aircraft), (2, 2));
        assert_eq!(f.conditions(&row("2013-01-05T06:05", "N14228")).unwrap(), c);
        assert_eq!(f.lookup.1, 2, "one lookup per distinct key");
        let other = f.conditions(&row("2013-01-05T07:00", "N99999")).unwrap();
        assert_eq!((other.weather, other.aircraft), (0, 0));
        assert_eq!(f.lookup.1, 4);
    }

    /// The block time from local departure and arrival times and the airports' zones.
    #[test]
    fn sched_arr_gives_the_block_time_through_the_airports_table() {
        let mut f = Featurizer::new(Fixed(
            vec![
                ("airports", "EWR", vec![Some(-5.0), Some(1.0)]),
                ("airports", "LAX", vec![Some(-8.0), Some(1.0)]),
            ],
            0,
        ));
        let row = |dest: &'static str, arr: &'static str| {
            parse_row([
                ("origin", Value::Category("EWR")),
                ("dest", Value::Category(dest)),
                ("sched_dep", Value::Category("2013-07-01T06:00")),
                ("sched_arr", Value::Category(arr)),
            ])
            .unwrap()
        };
        // EWR 06:00 EDT → LAX 09:05 PDT: 6 h 05.
        assert_eq!(
            f.sched_block(&row("LAX", "2013-07-01T09:05")).unwrap(),
            Some(365.0)
        );
        // An airport the table does not know: no block time.
        assert_eq!(
            f.sched_block(&row("XNA", "2013-07-01T09:05")).unwrap(),
            None
        );
        // An arrival before the departure: not a block time.
        assert_eq!(
            f.sched_block(&row("LAX", "2013-07-01T02:00")).unwrap(),
            None
        );
        assert_eq!(f.lookup.1, 3, "EWR, LAX and XNA once each");
        let e = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("LAX")),
            ("month", Value::Number(7.0)),
            ("sched_dep_hour", Value::Number(6.0)),
            ("sched_arr", Value::Category("2013-07-01T09:05")),
        ])
        .unwrap_err();
        assert!(e.0.contains("needs `sched_dep`"), "{e}");
    }

    #[test]
    fn without_lookups_the_classes_stay_unknown() {
        let r = parse_row([
            ("origin", Value::Category("EWR")),
            ("dest", Value::Category("ORD")),
            ("month", Value::Number(1.0)),
            ("sched_dep_hour", Value::Number(6.0)),
            ("tailnum", Value::Category("N14228")),
        ])
        .unwrap();
        let c = Featurizer::new(NoLookup).conditions(&r).unwrap();
        assert_eq!(c, Conditions::default());
    }
}
