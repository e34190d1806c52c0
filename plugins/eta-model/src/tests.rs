#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Artifact format and model behaviour on synthetic data.

use crate::artifact::{Artifact, MAGIC};
use crate::features::{Featurizer, NoLookup};
use crate::fit::{Example, FitConfig, fit};
use crate::schema::{Code, Conditions, EtaInput};

fn code(s: &str) -> Code {
    Code::parse(s).unwrap()
}

/// Two lanes with known block times, a late-evening penalty and a dep_delay effect.
fn synthetic() -> Vec<Example> {
    let mut v = Vec::new();
    for i in 0..3200u32 {
        let (dest, distance, block) = if i % 2 == 0 {
            ("ORD", 719.0, 140.0)
        } else {
            ("LAX", 2454.0, 380.0)
        };
        let hour = (6 + i % 16) as u8;
        let late = if hour >= 18 { 20.0 } else { 0.0 };
        let dep_delay = f64::from(i % 30) - 5.0;
        v.push(Example {
            origin: code("EWR"),
            dest: code(dest),
            month: (1 + i % 12) as u8,
            sched_dep_hour: hour,
            distance,
            dep_delay: Some(dep_delay),
            sched_block: None,
            conditions: Conditions::default(),
            eta: block + late + dep_delay + f64::from(i % 5) - 2.0,
        });
    }
    v
}

fn input(dest: &str, hour: u8, dep_delay: Option<f64>) -> EtaInput {
    EtaInput {
        origin: code("EWR"),
        dest: code(dest),
        month: 6,
        sched_dep_hour: hour,
        distance: None,
        dep_delay,
        sched_block: None,
        conditions: Conditions::default(),
    }
}

#[test]
fn learns_lanes_hours_and_delay() {
    let a = fit(&synthetic(), &FitConfig::default()).unwrap();
    assert_eq!(a.lanes.len(), 2);
    let ord = a.predict(&input("ORD", 8, Some(0.0))).unwrap();
    let lax = a.predict(&input("LAX", 8, Some(0.0))).unwrap();
    assert!((ord.value - 140.0).abs() < 6.0, "{ord:?}");
    assert!((lax.value - 380.0).abs() < 6.0, "{lax:?}");
    let late = a.predict(&input("ORD", 20, Some(0.0))).unwrap();
    assert!(
        (late.value - ord.value - 20.0).abs() < 5.0,
        "{late:?} vs {ord:?}"
    );
    let delayed = a.predict(&input("ORD", 8, Some(20.0))).unwrap();
    assert!(
        (delayed.value - ord.value - 20.0).abs() < 3.0,
        "{delayed:?}"
    );
    // Without dep_delay, the lane's typical delay is in the estimate.
    let unknown = a.predict(&input("ORD", 8, None)).unwrap();
    assert!(unknown.upper - unknown.lower > ord.upper - ord.lower);
    for e in [ord, lax, late, delayed, unknown] {
        assert!(e.lower <= e.value && e.value <= e.upper, "{e:?}");
    }
}

#[test]
fn unseen_lane_needs_distance() {
    let a = fit(&synthetic(), &FitConfig::default()).unwrap();
    let e = a.predict(&input("SFO", 8, None)).unwrap_err();
    assert!(e.0.contains("EWR-SFO") && e.0.contains("distance"), "{e}");
    let mut with = input("SFO", 8, None);
    with.distance = Some(2565.0);
    let p = a.predict(&with).unwrap();
    assert!(p.value > 300.0 && p.value < 500.0, "{p:?}");
}

#[test]
fn decode_refuses_anything_malformed() {
    let a = fit(&synthetic(), &FitConfig::default()).unwrap();
    let good = a.encode();
    assert_eq!(Artifact::decode(&good).unwrap(), a);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "bad magic"),
        (b"BHETAMDL".to_vec(), "truncated"),
        (
            {
                let mut b = good.clone();
                b[8] = 1;
                b
            },
            "format version 1",
        ),
        (
            {
                let mut b = good.clone();
                b[10] = 2;
                b
            },
            "flags",
        ),
        (good[..good.len() - 1].to_vec(), "need exactly"),
        (
            {
                let mut b = good.clone();
                b.push(0);
                b
            },
            "need exactly",
        ),
        (
            {
                let mut b = good.clone();
                b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
                b
            },
            "lanes (at most",
        ),
        (
            {
                let mut b = good.clone();
                b[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
                b
            },
            "intercept is not finite",
        ),
        (
            {
                // Swap the two lanes: no longer sorted.
                let mut b = good.clone();
                let n = b.len();
                let (first, second) = (b[n - 64..n - 32].to_vec(), b[n - 32..].to_vec());
                b[n - 64..n - 32].copy_from_slice(&second);
                b[n - 32..].copy_from_slice(&first);
                b
            },
            "not strictly sorted",
        ),
        (
            {
                let mut b = good.clone();
                let n = b.len();
                b[n - 32] = b'a';
                b
            },
            "invalid airport code",
        ),
    ];
    for (bytes, want) in cases {
        let e = Artifact::decode(&bytes).unwrap_err();
        assert!(e.0.contains(want), "{e} !~ {want}");
    }
    assert_eq!(&good[..8], &MAGIC);
}

#[test]
fn too_few_rows_is_an_error() {
    let e = fit(&synthetic()[..5], &FitConfig::default()).unwrap_err();
    assert!(e.0.contains("at least"), "{e}");
    let mut bad = synthetic();
    bad[3].eta = f64::INFINITY;
    assert!(
        fit(&bad, &FitConfig::default())
            .unwrap_err()
            .0
            .contains("row 3")
    );
}

mod columns {
    use super::*;
    use crate::columns::{Column, OwnedColumns, predict_columns};
    use crate::predict_batch;
    use crate::schema::Value;

    fn rows() -> Vec<Vec<(&'static str, Value<'static>)>> {
        (0..40u32)
            .map(|i| {
                let dest = if i % 2 == 0 { "ORD" } else { "LAX" };
                let mut r = vec![
                    ("origin", Value::Category("EWR")),
                    ("dest", Value::Category(dest)),
                    ("month", Value::Number(f64::from(1 + i % 12))),
                    ("sched_dep_hour", Value::Number(f64::from(6 + i % 16))),
                ];
                if i % 3 == 0 {
                    r.push(("dep_delay", Value::Number(f64::from(i))));
                }
                r
            })
            .collect()
    }

    #[test]
    fn columns_predict_exactly_what_named_rows_predict() {
        let a = fit(&synthetic(), &FitConfig::default()).unwrap();
        let by_name = predict_batch(&a, rows()).unwrap();
        let cols = OwnedColumns::from_rows(rows()).unwrap();
        // Two distinct destinations: the dictionary holds each once.
        let dest = cols.columns.iter().find(|(n, _)| n == "dest").unwrap();
        assert!(
            matches!(&dest.1, crate::columns::OwnedColumn::Categories { dictionary, .. } if dictionary.len() == 2)
        );
        let by_column: Vec<_> =
            predict_columns(&a, cols.rows, cols.view(), &mut Featurizer::new(NoLookup))
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap().1)
                .collect();
        assert_eq!(by_name, by_column);
        // dep_delay is NaN (missing) in two rows of three, as in the named rows.
        assert_eq!(by_column.len(), 40);
    }

    #[test]
    fn refuses_bad_columns_naming_the_row_or_column() {
        let a = fit(&synthetic(), &FitConfig::default()).unwrap();
        let origin = ["EWR".to_string()];
        let dest = ["ORD".to_string()];
        let base = |codes: &'static [u32]| {
            vec![
                (
                    "origin",
                    Column::Categories {
                        dictionary: &origin[..],
                        codes: &[0, 0],
                    },
                ),
                (
                    "dest",
                    Column::Categories {
                        dictionary: &dest[..],
                        codes,
                    },
                ),
            ]
        };
        let month = [1.0, 2.0];
        let hour = [6.0, 7.0];
        let run = |extra: Vec<(&'static str, Column<'_, String>)>, codes: &'static [u32]| {
            let mut cols = base(codes);
            cols.push(("month", Column::Numbers(&month)));
            cols.push(("sched_dep_hour", Column::Numbers(&hour)));
            cols.extend(extra);
            predict_columns(&a, 2, cols, &mut Featurizer::new(NoLookup)).map_err(|e| e.to_string())
        };
        assert_eq!(run(vec![], &[0, 0]).unwrap().len(), 2);
        // A code past the dictionary is a missing value: a required feature missing. The
        // row fails on its own; the other is scored.
        let out = run(vec![], &[0, 7]).unwrap();
        assert!(out[0].is_ok());
        assert_eq!(
            out[1].as_ref().unwrap_err().0,
            "missing required feature `dest`"
        );
        let e = run(vec![("month", Column::Numbers(&month))], &[0, 0]).unwrap_err();
        assert_eq!(e, "feature `month` given twice");
        let e = run(vec![("distance", Column::Numbers(&[5.0]))], &[0, 0]).unwrap_err();
        assert_eq!(e, "column `distance` has 1 values for 2 rows");
        // NaN marks missing: an optional feature may be missing.
        let out = run(
            vec![("dep_delay", Column::Numbers(&[f64::NAN, 3.0]))],
            &[0, 0],
        )
        .unwrap();
        assert_eq!(out.len(), 2);
    }
}

/// With the schedule known, the model predicts the arrival against it: flights of one
/// lane whose scheduled block times differ are told apart, which no lane effect can do.
#[test]
fn the_schedule_modes_predict_against_the_schedule() {
    let mut rows = Vec::new();
    for i in 0..2000u32 {
        // Two schedules on one lane (120 and 160 min); every flight arrives 10 min late.
        let block = if i % 2 == 0 { 120.0 } else { 160.0 };
        rows.push(Example {
            origin: code("EWR"),
            dest: code("ORD"),
            month: (1 + i % 12) as u8,
            sched_dep_hour: (6 + i % 12) as u8,
            distance: 719.0,
            dep_delay: None,
            sched_block: Some(block),
            conditions: Conditions::default(),
            eta: block + 10.0,
        });
    }
    let a = fit(&rows, &FitConfig::default()).unwrap();
    assert!(a.schedule);
    assert_eq!(Artifact::decode(&a.encode()).unwrap(), a);
    let with = |block: Option<f64>| {
        let mut x = input("ORD", 8, None);
        x.sched_block = block;
        a.predict(&x).unwrap().value
    };
    assert!(
        (with(Some(120.0)) - 130.0).abs() < 1.0,
        "{}",
        with(Some(120.0))
    );
    assert!(
        (with(Some(160.0)) - 170.0).abs() < 1.0,
        "{}",
        with(Some(160.0))
    );
    // Without it, one value for the lane, somewhere between the two.
    assert!((130.0..=170.0).contains(&with(None)), "{}", with(None));
    // A model trained without schedules ignores one given at prediction time.
    let plain = fit(&synthetic(), &FitConfig::default()).unwrap();
    assert!(!plain.schedule);
    let mut x = input("ORD", 8, Some(0.0));
    let before = plain.predict(&x).unwrap();
    x.sched_block = Some(500.0);
    assert_eq!(plain.predict(&x).unwrap(), before);
}

/// Weekday, aircraft and weather classes each get an effect of their own: a synthetic
/// +15 min on Fridays, +25 min in bad weather (class 8) and -5 min for regional jets
/// (class 1) are recovered, and rows without the conditions get none of them.
#[test]
fn learns_weekday_aircraft_and_weather_effects() {
    let mut rows = Vec::new();
    for i in 0..6000u32 {
        let weekday = (i % 7) as u8;
        let weather = [1u8, 1, 1, 2, 8][(i % 5) as usize];
        // Not a function of i % 12 (month, hour): the effects are not aliased.
        let aircraft = [1u8, 2, 2][(i / 13 % 3) as usize];
        let eta = 140.0
            + if weekday == 5 { 15.0 } else { 0.0 }
            + if weather == 8 { 25.0 } else { 0.0 }
            + if aircraft == 1 { -5.0 } else { 0.0 };
        rows.push(Example {
            origin: code("EWR"),
            dest: code("ORD"),
            month: (1 + i % 12) as u8,
            sched_dep_hour: (6 + i % 12) as u8,
            distance: 719.0,
            dep_delay: None,
            sched_block: None,
            conditions: Conditions {
                weekday: Some(weekday),
                aircraft,
                weather,
            },
            eta,
        });
    }
    let a = fit(&rows, &FitConfig::default()).unwrap();
    assert_eq!(Artifact::decode(&a.encode()).unwrap(), a);
    let at = |weekday: Option<u8>, aircraft: u8, weather: u8| {
        let mut x = input("ORD", 8, None);
        x.conditions = Conditions {
            weekday,
            aircraft,
            weather,
        };
        a.predict(&x).unwrap().value
    };
    let base = at(Some(2), 2, 1);
    assert!((at(Some(5), 2, 1) - base - 15.0).abs() < 1.5, "Friday");
    assert!((at(Some(2), 2, 8) - base - 25.0).abs() < 1.5, "bad weather");
    assert!((at(Some(2), 1, 1) - base + 5.0).abs() < 1.5, "regional jet");
    // An unknown weekday has no effect of its own; unknown classes (0) were never seen
    // in training, so theirs is 0 too.
    let unknown = at(None, 0, 0);
    assert!(
        unknown.is_finite() && (unknown - base).abs() < 10.0,
        "{unknown} vs {base}"
    );
}

/// With the schedule and the departure delay known, a flight that left late arrives about
/// that late: the heavy tail of departure delays is explained, not clipped away. (Clipping
/// the whole arrival delay at ±45 min flattened the fitted slope to ~0.4.)
#[test]
fn long_departure_delays_carry_through_to_the_arrival() {
    let mut rows = Vec::new();
    for i in 0..3000u32 {
        // Most flights leave within minutes, one in five 1-3 hours late; en route each
        // makes up 5 minutes.
        let dep_delay = if i % 5 == 0 {
            60.0 + f64::from(i % 121)
        } else {
            f64::from(i % 11) - 5.0
        };
        rows.push(Example {
            origin: code("EWR"),
            dest: code("ORD"),
            month: (1 + i % 12) as u8,
            sched_dep_hour: (6 + i % 12) as u8,
            distance: 719.0,
            dep_delay: Some(dep_delay),
            sched_block: Some(140.0),
            conditions: Conditions::default(),
            eta: 140.0 + dep_delay - 5.0,
        });
    }
    let a = fit(&rows, &FitConfig::default()).unwrap();
    let at = |dep_delay: f64| {
        let mut x = input("ORD", 8, Some(dep_delay));
        x.sched_block = Some(140.0);
        a.predict(&x).unwrap().value
    };
    for d in [0.0, 60.0, 120.0, 180.0] {
        let want = 135.0 + d;
        assert!(
            (at(d) - want).abs() < 5.0,
            "left {d} min late: {} vs {want}",
            at(d)
        );
    }
}
