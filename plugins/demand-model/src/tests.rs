#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::artifact::{Artifact, Lane, MAX_HORIZON_DAYS};
use crate::days::{civil_from_days, days_from_civil, weekday};
use crate::fit::{FitConfig, fit, fit_report};
use crate::{Code, Column, Counts, Series, daily_counts, daily_counts_between, evaluate, wape};

fn code(s: &str) -> Code {
    Code::parse(s).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> i32 {
    days_from_civil(y, m, d).unwrap()
}

/// Deterministic noise in [-1, 1) (a 64-bit LCG): no randomness crate, same every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// One lane's counts from `first`, `weeks` weeks of `pattern` (Monday first) plus noise
/// of amplitude `noise`, rounded and clipped at 0.
fn series(first: i32, days: usize, pattern: [f64; 7], noise: f64, seed: u64) -> Vec<u32> {
    let mut rng = Lcg(seed);
    (0..days)
        .map(|t| {
            let x = pattern[weekday(first + t as i32)] + noise * rng.next();
            x.round().max(0.0) as u32
        })
        .collect()
}

fn counts(first: i32, lanes: Vec<(&str, &str, Vec<u32>)>) -> Counts {
    let days = lanes.first().map_or(0, |l| l.2.len());
    let mut lanes: Vec<Series> = lanes
        .into_iter()
        .map(|(o, d, c)| Series {
            origin: code(o),
            dest: code(d),
            counts: c,
        })
        .collect();
    lanes.sort_by_key(|s| (s.origin, s.dest));
    Counts {
        first,
        last: first + days as i32 - 1,
        lanes,
    }
}

// --- days -------------------------------------------------------------------------

#[test]
fn weekdays_of_known_dates() {
    assert_eq!(day(1970, 1, 1), 0);
    assert_eq!(weekday(0), 3, "1970-01-01 was a Thursday");
    assert_eq!(day(2013, 1, 1), 15_706);
    assert_eq!(weekday(day(2013, 1, 1)), 1, "2013-01-01 was a Tuesday");
    assert_eq!(
        weekday(day(2013, 11, 28)),
        3,
        "Thanksgiving 2013, a Thursday"
    );
    assert_eq!(weekday(day(2013, 12, 25)), 2, "Christmas 2013, a Wednesday");
    assert_eq!(weekday(day(2000, 1, 1)), 5, "2000-01-01 was a Saturday");
    assert_eq!(weekday(day(1969, 12, 31)), 2, "a Wednesday, before day 0");
    assert_eq!(day(2013, 12, 31) - day(2013, 1, 1), 364);
    assert_eq!(
        day(2012, 12, 31) - day(2012, 1, 1),
        365,
        "2012 is a leap year"
    );
    assert_eq!(days_from_civil(2013, 2, 29), None);
    assert_eq!(days_from_civil(2013, 13, 1), None);
    assert_eq!(days_from_civil(2013, 4, 31), None);
    assert!(days_from_civil(2000, 2, 29).is_some() && days_from_civil(1900, 2, 29).is_none());
    assert_eq!(crate::days::format(day(2013, 3, 9)), "2013-03-09");
}

#[test]
fn civil_and_days_round_trip() {
    let mut d = -800_000;
    while d < 800_000 {
        let (y, m, dd) = civil_from_days(d);
        assert_eq!(days_from_civil(y, m, dd), Some(d), "{d} -> {y}-{m}-{dd}");
        assert_eq!(weekday(d + 1), (weekday(d) + 1) % 7);
        d += 97;
    }
}

// --- series -----------------------------------------------------------------------

#[test]
fn daily_counts_fill_gaps_with_zeros_and_sort_lanes() {
    let (ewr, ord, lax) = (code("EWR"), code("ORD"), code("LAX"));
    let d0 = day(2013, 1, 1);
    let c = daily_counts([
        (ewr, ord, d0 + 3),
        (ewr, lax, d0),
        (ewr, ord, d0 + 3),
        (ewr, ord, d0 + 1),
    ])
    .unwrap();
    assert_eq!((c.first, c.last, c.days()), (d0, d0 + 3, 4));
    assert_eq!(c.lanes.len(), 2);
    assert_eq!(c.lanes[0].dest, lax, "sorted by (origin, dest)");
    assert_eq!(c.lanes[0].counts, vec![1, 0, 0, 0]);
    assert_eq!(c.lane(ewr, ord).unwrap().counts, vec![0, 1, 0, 2]);
    assert!(daily_counts(std::iter::empty()).is_none());

    let cut = daily_counts_between([(ewr, ord, d0), (ewr, ord, d0 + 9)], d0 + 1, d0 + 5);
    assert_eq!(cut.lanes.len(), 0, "flights outside the range are dropped");
    assert_eq!(cut.days(), 5);
}

// --- fit and forecast -------------------------------------------------------------

const PATTERN: [f64; 7] = [12.0, 10.0, 10.0, 11.0, 13.0, 6.0, 4.0];

#[test]
fn recovers_a_known_weekly_pattern() {
    let first = day(2013, 1, 1);
    let train = counts(
        first,
        vec![("EWR", "ORD", series(first, 20 * 7, PATTERN, 0.0, 1))],
    );
    let a = fit(&train, &FitConfig::default()).unwrap();
    assert_eq!(a.last_day, train.last);
    for h in 1..=21 {
        let d = train.last + h;
        let f = a.forecast(code("EWR"), code("ORD"), d).unwrap();
        assert!(
            (f.value - PATTERN[weekday(d)]).abs() < 1e-3,
            "day +{h}: {f:?} vs {}",
            PATTERN[weekday(d)]
        );
        assert!(f.lower <= f.value && f.value <= f.upper);
        assert_eq!(
            a.baseline(code("EWR"), code("ORD"), d).unwrap(),
            PATTERN[weekday(d)]
        );
    }
}

#[test]
fn follows_a_level_step() {
    // A timetable change: two more flights every day from week 15 on.
    let first = day(2013, 1, 1);
    let mut y = series(first, 14 * 7, PATTERN, 0.0, 1);
    y.extend(series(first + 98, 8 * 7, PATTERN.map(|x| x + 2.0), 0.0, 1));
    let a = fit(
        &counts(first, vec![("EWR", "ORD", y)]),
        &FitConfig::default(),
    )
    .unwrap();
    let d = a.last_day + 3;
    let f = a.forecast(code("EWR"), code("ORD"), d).unwrap();
    assert!(
        (f.value - (PATTERN[weekday(d)] + 2.0)).abs() < 0.25,
        "{f:?}"
    );
}

#[test]
fn beats_seasonal_naive_on_a_noisy_series() {
    let first = day(2013, 1, 1);
    let (train_days, hold_days) = (30 * 7, 8 * 7);
    let mut lanes = Vec::new();
    let mut holdout = Vec::new();
    for (i, dest) in ["ORD", "LAX", "ATL"].into_iter().enumerate() {
        let pattern = PATTERN.map(|x| x * (1.0 + i as f64));
        let y = series(
            first,
            train_days + hold_days,
            pattern,
            3.0 * (1.0 + i as f64),
            7 + i as u64,
        );
        lanes.push(("EWR", dest, y[..train_days].to_vec()));
        holdout.push(("EWR", dest, y[train_days..].to_vec()));
    }
    let train = counts(first, lanes);
    let hold = counts(train.last + 1, holdout);
    let a = fit(&train, &FitConfig::default()).unwrap();
    let e = evaluate(&a, &hold).unwrap();
    eprintln!("{e:?}");
    assert_eq!((e.days, e.lanes, e.unknown_lane_flights), (hold_days, 3, 0));
    assert!(
        e.model_wape < 0.75 * e.baseline_wape,
        "model {} vs seasonal naive {}",
        e.model_wape,
        e.baseline_wape
    );
    assert!((0.7..=0.97).contains(&e.coverage), "{}", e.coverage);
    assert_eq!(
        crate::eval::evaluate_wape(&a, &hold),
        Some((e.model_wape, e.baseline_wape, e.days))
    );
}

#[test]
fn a_thin_lane_takes_the_tenants_parameters() {
    let first = day(2013, 1, 1);
    let mut thin = vec![0; 26 * 7];
    thin.extend(series(first + 26 * 7, 4 * 7, [1.0; 7], 0.0, 3));
    let train = counts(
        first,
        vec![
            ("EWR", "ORD", series(first, 30 * 7, PATTERN, 2.0, 5)),
            ("EWR", "BOS", thin),
        ],
    );
    let (a, report) = fit_report(&train, &FitConfig::default()).unwrap();
    assert_eq!(a.lanes[0].dest, code("BOS"));
    assert!(!report[0].own && report[1].own, "{report:?}");
    assert_eq!(report[0].days, 28, "starts at its first flight");
    let f = a
        .forecast(code("EWR"), code("BOS"), a.last_day + 1)
        .unwrap();
    assert!((f.value - 1.0).abs() < 1e-3, "{f:?}");
}

#[test]
fn refuses_other_lanes_past_days_and_far_horizons() {
    let first = day(2013, 1, 1);
    let a = fit(
        &counts(
            first,
            vec![("EWR", "ORD", series(first, 70, PATTERN, 0.0, 1))],
        ),
        &FitConfig::default(),
    )
    .unwrap();
    let e = a
        .forecast(code("JFK"), code("LAX"), a.last_day + 1)
        .unwrap_err();
    assert!(e.0.contains("lane JFK-LAX is not in this model"), "{e}");
    let e = a
        .forecast(code("EWR"), code("ORD"), a.last_day)
        .unwrap_err();
    assert!(e.0.contains("not after the last training day"), "{e}");
    assert!(
        a.forecast(code("EWR"), code("ORD"), a.last_day + MAX_HORIZON_DAYS)
            .is_ok()
    );
    let e = a
        .forecast(code("EWR"), code("ORD"), a.last_day + MAX_HORIZON_DAYS + 1)
        .unwrap_err();
    assert!(e.0.contains("more than 366 days"), "{e}");
    assert!(
        a.baseline(code("JFK"), code("LAX"), a.last_day + 1)
            .is_err()
    );
}

#[test]
fn fit_refuses_nothing_to_learn_and_bad_config() {
    let empty = Counts {
        first: 0,
        last: 9,
        lanes: vec![],
    };
    assert!(fit(&empty, &FitConfig::default()).is_err());
    let zeros = counts(0, vec![("EWR", "ORD", vec![0; 30])]);
    assert!(fit(&zeros, &FitConfig::default()).is_err());
    let some = counts(0, vec![("EWR", "ORD", vec![1; 30])]);
    let bad = FitConfig {
        interval_level: 1.0,
        ..FitConfig::default()
    };
    assert!(fit(&some, &bad).is_err());
    let bad = FitConfig {
        alphas: vec![1.5],
        ..FitConfig::default()
    };
    assert!(fit(&some, &bad).is_err());
}

#[test]
fn wape_is_undefined_without_demand() {
    assert_eq!(wape([(1.0, 0.0), (0.0, 0.0)]), None);
    assert_eq!(wape([(1.0, 2.0), (3.0, 2.0)]), Some(50.0));
}

// --- artifact ---------------------------------------------------------------------

fn sample() -> Artifact {
    let lane = |o: &str, d: &str, level: f32| Lane {
        origin: code(o),
        dest: code(d),
        level,
        season: [1.0, 0.5, 0.0, -0.5, -1.0, 0.25, -0.25],
        lo: -2.0,
        hi: 3.0,
        last_week: [9.0, 8.0, 8.0, 8.0, 9.0, 4.0, 3.0],
    };
    Artifact {
        last_day: day(2013, 10, 31),
        interval_level: 0.8,
        lanes: vec![
            lane("EWR", "LAX", 4.0),
            lane("EWR", "ORD", 8.0),
            lane("JFK", "BOS", 6.5),
        ],
    }
}

const LANE_AT: usize = 24;
const LANE_SIZE: usize = 76;

#[test]
fn artifact_round_trips() {
    let a = sample();
    let bytes = a.encode();
    assert_eq!(bytes.len(), LANE_AT + 3 * LANE_SIZE);
    assert_eq!(Artifact::decode(&bytes).unwrap(), a);
    let first = day(2013, 1, 1);
    let fitted = fit(
        &counts(
            first,
            vec![
                ("EWR", "ORD", series(first, 300, PATTERN, 2.0, 9)),
                ("LGA", "ATL", series(first, 300, PATTERN, 1.0, 10)),
            ],
        ),
        &FitConfig::default(),
    )
    .unwrap();
    assert_eq!(Artifact::decode(&fitted.encode()).unwrap(), fitted);
}

#[test]
fn artifact_decode_refuses_every_malformation() {
    let good = sample().encode();
    let put = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let lane_field = |lane: usize, offset: usize, x: f32| {
        put(LANE_AT + lane * LANE_SIZE + offset, &x.to_le_bytes())
    };
    let swapped = {
        let mut b = good.clone();
        let (l0, l1) = (LANE_AT, LANE_AT + LANE_SIZE);
        let first: Vec<u8> = b[l0..l1].to_vec();
        b.copy_within(l1..l1 + LANE_SIZE, l0);
        b[l1..l1 + LANE_SIZE].copy_from_slice(&first);
        b
    };
    let duplicate = {
        let mut b = good.clone();
        b.copy_within(LANE_AT..LANE_AT + LANE_SIZE, LANE_AT + LANE_SIZE);
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "bad magic"),
        (put(0, b"BHETAMDL"), "bad magic"),
        (put(8, &2u16.to_le_bytes()), "format version 2"),
        (put(10, &1u16.to_le_bytes()), "unknown flags"),
        (put(12, &u32::MAX.to_le_bytes()), "lanes (at most"),
        (put(12, &4u32.to_le_bytes()), "need exactly"),
        (good[..good.len() - 1].to_vec(), "need exactly"),
        ([good.as_slice(), &[0]].concat(), "need exactly"),
        (good[..14].to_vec(), "truncated"),
        (put(16, &i32::MAX.to_le_bytes()), "last training day"),
        (
            put(20, &f32::NAN.to_le_bytes()),
            "interval level is not finite",
        ),
        (
            put(20, &1.0f32.to_le_bytes()),
            "interval level must be in (0, 1)",
        ),
        (put(LANE_AT, b"E\0WR"), "invalid airport code"),
        (put(LANE_AT + 4, b"ord\0"), "invalid airport code"),
        (lane_field(1, 8, f32::INFINITY), "level is not finite"),
        (lane_field(1, 12 + 4 * 6, f32::NAN), "season is not finite"),
        (lane_field(2, 40, 0.5), "low ≤ 0 ≤ high"),
        (lane_field(2, 44, -0.5), "low ≤ 0 ≤ high"),
        (
            lane_field(0, 44, f32::NEG_INFINITY),
            "interval high is not finite",
        ),
        (lane_field(0, 48, -1.0), "whole numbers ≥ 0"),
        (lane_field(0, 48 + 4 * 6, 2.5), "whole numbers ≥ 0"),
        (lane_field(0, 48, f32::NAN), "last week is not finite"),
        (swapped, "not strictly sorted"),
        (duplicate, "not strictly sorted"),
    ];
    for (bytes, want) in cases {
        let e = Artifact::decode(&bytes).unwrap_err();
        assert!(e.0.contains(want), "{e} !~ {want}");
    }
}

// --- columns (the plugin's predict) --------------------------------------------------

#[test]
fn predict_columns_matches_forecast_and_names_the_bad_row() {
    let a = sample();
    let next = f64::from(a.last_day + 1);
    let dictionary: &'static [&'static str] = &["EWR", "ORD", "JFK", "BOS", "LAX"];
    let cols = |origins: &'static [u32], dests: &'static [u32], days: &'static [f64]| {
        vec![
            (
                "origin",
                Column::Categories {
                    dictionary,
                    codes: origins,
                },
            ),
            (
                "dest",
                Column::Categories {
                    dictionary,
                    codes: dests,
                },
            ),
            ("day", Column::Numbers(days)),
            ("ignored", Column::Numbers(days)),
        ]
    };
    let days: &'static [f64] = Box::leak(vec![next, next + 1.0, next + 30.0].into_boxed_slice());
    let got: Vec<_> = crate::predict_columns(&a, 3, cols(&[0, 0, 2], &[1, 4, 3], days))
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let want = [("EWR", "ORD", 0), ("EWR", "LAX", 1), ("JFK", "BOS", 30)]
        .map(|(o, d, h)| a.forecast(code(o), code(d), a.last_day + 1 + h).unwrap());
    assert_eq!(got, want);
    for f in &got {
        assert!(
            f.lower <= f.value && f.value <= f.upper && f.lower >= 0.0,
            "{f:?}"
        );
        assert_eq!((f.lower.fract(), f.upper.fract()), (0.0, 0.0));
    }

    // The batch's error, or its first row error (prefixed with the row).
    let fail = |c: Vec<(&'static str, Column<'static, &'static str>)>, rows: usize| {
        match crate::predict_columns(&a, rows, c) {
            Err(e) => e.0,
            Ok(out) => out
                .iter()
                .enumerate()
                .find_map(|(i, r)| r.as_ref().err().map(|e| format!("row {i}: {e}")))
                .unwrap(),
        }
    };
    // A bad row fails alone: the others are forecast.
    let out = crate::predict_columns(&a, 3, cols(&[0, 2, 0], &[1, 1, 1], days)).unwrap();
    assert!(out[0].is_ok() && out[1].is_err() && out[2].is_ok());
    let e = fail(cols(&[0, 2, 0], &[1, 1, 1], days), 3);
    assert!(
        e.starts_with("row 1:") && e.contains("lane JFK-ORD is not in this model"),
        "{e}"
    );
    let past: &'static [f64] = Box::leak(vec![next, next - 1.0].into_boxed_slice());
    let e = fail(cols(&[0, 0], &[1, 1], past), 2);
    assert!(
        e.starts_with("row 1:") && e.contains("not after the last training day"),
        "{e}"
    );
    let frac: &'static [f64] = Box::leak(vec![next + 0.5].into_boxed_slice());
    let e = fail(cols(&[0], &[1], frac), 1);
    assert!(
        e.starts_with("row 0:") && e.contains("not a whole number"),
        "{e}"
    );
    let nan: &'static [f64] = Box::leak(vec![f64::NAN].into_boxed_slice());
    let e = fail(cols(&[0], &[1], nan), 1);
    assert!(e.contains("missing required feature `day`"), "{e}");
    let e = fail(cols(&[0], &[9], &days[..1]), 1);
    assert!(e.contains("missing required feature `dest`"), "{e}");
    let e = fail(cols(&[0, 0, 0], &[1, 1, 1], days), 2);
    assert!(e.contains("has 3 values for 2 rows"), "{e}");
    let mut c = cols(&[0], &[1], &days[..1]);
    c.truncate(2);
    assert!(fail(c, 1).contains("missing required feature `day`"));
    let mut c = cols(&[0], &[1], &days[..1]);
    c.push(("origin", Column::Numbers(&days[..1])));
    assert!(fail(c, 1).contains("`origin` given twice"));
    let mut c = cols(&[0], &[1], &days[..1]);
    c[0].1 = Column::Numbers(&days[..1]);
    assert!(fail(c, 1).contains("`origin` is categorical"));
    let bad_code: &'static [&'static str] = &["E W R"];
    let c = vec![
        (
            "origin",
            Column::Categories {
                dictionary: bad_code,
                codes: &[0],
            },
        ),
        (
            "dest",
            Column::Categories {
                dictionary,
                codes: &[1],
            },
        ),
        ("day", Column::Numbers(&days[..1])),
    ];
    assert!(fail(c, 1).contains("not an airport code"));
    assert!(
        crate::predict_columns::<&str, _>(&a, 0, vec![])
            .unwrap()
            .is_empty()
    );
}

// --- nyc ----------------------------------------------------------------------------

#[test]
fn reads_flights_csv() {
    let text = "year,month,day,dep_time,carrier,flight,origin,dest\n\
        2013,1,1,517,UA,1545,EWR,IAH\n\
        2013,12,31,,B6,1,JFK,BOS\n\n";
    let f = crate::nyc::parse_flights(text).unwrap();
    assert_eq!(f.len(), 2, "a cancelled flight (no dep_time) still counts");
    assert_eq!(
        (f[0].carrier, f[0].origin, f[0].dest, f[0].day),
        (code("UA"), code("EWR"), code("IAH"), day(2013, 1, 1))
    );
    assert_eq!(f[1].day, day(2013, 12, 31));
    assert!(!f[0].cancelled && f[1].cancelled);
    assert_eq!(crate::nyc::lanes_of(&f, code("B6")).count(), 1);
    for bad in [
        "year,month,carrier,origin,dest\n",
        "year,month,day,carrier,origin,dest\n2013,2,30,UA,EWR,IAH\n",
        "year,month,day,carrier,origin,dest\n2013,1,1,UA,EWR,\n",
        "year,month,day,carrier,origin,dest\n2013,1,1,\"UA\",EWR,IAH\n",
        "",
    ] {
        assert!(crate::nyc::parse_flights(bad).is_err(), "{bad:?}");
    }
}
