//! Fits and evaluates the ETA model per tenant on nycflights13 and times it natively.
//!
//!     cargo run --release -p bulkhead-eta-model --example evaluate -- [DATA_DIR] [CARRIER…]
//!
//! DATA_DIR holds flights.csv and airports.csv (default tests/data, the committed slice;
//! scripts/data.sh fetches the full set into .bulkhead/data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_eta_model::artifact::Artifact;
use bulkhead_eta_model::eval;
use bulkhead_eta_model::fit::{FitConfig, fit};
use bulkhead_eta_model::nyc::{self, Airports};
use bulkhead_eta_model::predict_batch;
use bulkhead_eta_model::schema::{Code, Value};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "tests/data".into()));
    let mut tenants: Vec<String> = args.collect();
    if tenants.is_empty() {
        tenants = ["*", "UA", "DL", "AA", "B6", "OO"]
            .map(String::from)
            .to_vec();
    }
    let t = Instant::now();
    let airports =
        Airports::parse(&std::fs::read_to_string(dir.join("airports.csv")).unwrap()).unwrap();
    let loaded = nyc::parse_flights(
        &std::fs::read_to_string(dir.join("flights.csv")).unwrap(),
        &airports,
    )
    .unwrap();
    println!(
        "{}: {} flights ({} without arrival, {} unknown airport) read in {:.0} ms",
        dir.display(),
        loaded.flights.len(),
        loaded.skipped_no_arrival,
        loaded.skipped_unknown_airport,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "tenant   train holdout  lanes  bytes   MAPE  MAPE+dd  baseline  cover80  fit ms  decode µs  predict100 µs  named100 µs"
    );
    for tenant in tenants {
        let carriers: Vec<Code> = if tenant == "*" {
            vec![]
        } else {
            vec![Code::parse(&tenant).unwrap()]
        };
        let rows = nyc::rows_of(&loaded, &carriers);
        let (train, holdout) = eval::split(&rows, 5);
        let t = Instant::now();
        let a = fit(&train, &FitConfig::default()).unwrap();
        let fit_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = a.encode();
        let decode_us = time_us(2000, || {
            std::hint::black_box(Artifact::decode(std::hint::black_box(&bytes)).unwrap());
        });
        let batch: Vec<_> = holdout
            .iter()
            .cycle()
            .take(100)
            .map(|r| r.input(false))
            .collect();
        let predict_us = time_us(2000, || {
            for r in &batch {
                std::hint::black_box(a.predict(std::hint::black_box(r)).unwrap());
            }
        });
        // The plugin's path: named features (as the WIT rows carry them), checked, predicted.
        let named: Vec<Vec<(&str, Value)>> = holdout
            .iter()
            .cycle()
            .take(100)
            .map(|r| {
                vec![
                    ("origin", Value::Category(r.origin.as_str())),
                    ("dest", Value::Category(r.dest.as_str())),
                    ("month", Value::Number(f64::from(r.month))),
                    ("sched_dep_hour", Value::Number(f64::from(r.sched_dep_hour))),
                    ("distance", Value::Number(r.distance)),
                    ("dep_delay", Value::Missing),
                ]
            })
            .collect();
        let named_us = time_us(2000, || {
            let rows = named.iter().map(|r| r.iter().copied());
            std::hint::black_box(predict_batch(&a, std::hint::black_box(rows)).unwrap());
        });
        let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.2}%"));
        println!(
            "{tenant:<6} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>9} {:>8} {:>7.1} {:>10.2} {:>14.2} {:>12.2}",
            train.len(),
            holdout.len(),
            a.lanes.len(),
            bytes.len(),
            pct(eval::model_mape(&a, &holdout, false)),
            pct(eval::model_mape(&a, &holdout, true)),
            pct(eval::baseline_mape(&train, &holdout)),
            eval::coverage(&a, &holdout, false).map_or("-".into(), |c| format!("{:.3}", c)),
            fit_ms,
            decode_us,
            predict_us,
            named_us,
        );
    }
}

/// Median of 7 rounds of the mean time of `n` runs, in µs.
fn time_us(n: u32, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}
