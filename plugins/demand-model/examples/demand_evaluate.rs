//! Fits the demand model per carrier on January–October and evaluates it against the
//! seasonal-naive baseline on November–December.
//!
//!     cargo run --release -p bulkhead-demand-model --example demand_evaluate -- [DATA_DIR] [CARRIER…]
//!
//! DATA_DIR holds flights.csv (default tests/data, the committed slice; scripts/data.sh
//! fetches the full set into .bulkhead/data). Without carriers: every carrier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_demand_model::days::days_from_civil;
use bulkhead_demand_model::fit::{FitConfig, fit_report};
use bulkhead_demand_model::nyc::{self, parse_flights};
use bulkhead_demand_model::{Artifact, Code, daily_counts_between, evaluate};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// The default configuration; for experiments, `SELECT_HORIZON=h` (choose parameters by
/// errors at horizons 1..=h) and `MIN_OWN_DAYS=n` (a huge n: every lane takes the
/// tenant's parameters) override it, and `CUT`/`END` (days after 2013-01-01) move the
/// split; `FLOWN_ONLY=1` counts flown flights only (cancelled ones dropped).
fn config() -> FitConfig {
    let env = |k: &str| std::env::var(k).ok().map(|v| v.parse::<usize>().unwrap());
    let mut c = FitConfig::default();
    if let Some(h) = env("SELECT_HORIZON") {
        c.select_horizon = h;
    }
    if let Some(n) = env("MIN_OWN_DAYS") {
        c.min_own_days = n;
    }
    c
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "tests/data".into()));
    let mut carriers: Vec<Code> = args.map(|c| Code::parse(&c).unwrap()).collect();
    let mut flights =
        parse_flights(&std::fs::read_to_string(dir.join("flights.csv")).unwrap()).unwrap();
    if std::env::var_os("FLOWN_ONLY").is_some() {
        flights.retain(|f| !f.cancelled);
    }
    if carriers.is_empty() {
        carriers = flights
            .iter()
            .map(|f| f.carrier)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    let (start, cut, end) = (
        days_from_civil(2013, 1, 1).unwrap(),
        std::env::var("CUT")
            .ok()
            .map(|v| v.parse::<i32>().unwrap() + days_from_civil(2013, 1, 1).unwrap())
            .unwrap_or(days_from_civil(2013, 10, 31).unwrap()),
        std::env::var("END")
            .ok()
            .map(|v| v.parse::<i32>().unwrap() + days_from_civil(2013, 1, 1).unwrap())
            .unwrap_or(days_from_civil(2013, 12, 31).unwrap()),
    );
    println!("{}: {} flights", dir.display(), flights.len());
    println!(
        "carrier  lanes  own  train  holdout  model WAPE  baseline WAPE  cover80  unknown-lane  bytes  fit ms  decode µs  α,γ (most lanes)"
    );
    let (mut sum_m, mut sum_b, mut sum_a) = (0.0, 0.0, 0.0);
    for c in carriers {
        let train = daily_counts_between(nyc::lanes_of(&flights, c), start, cut);
        let hold = daily_counts_between(nyc::lanes_of(&flights, c), cut + 1, end);
        let t = Instant::now();
        let Ok((a, report)) = fit_report(&train, &config()) else {
            println!("{c:>7}  (no training flights)");
            continue;
        };
        let fit_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = a.encode();
        let t = Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(Artifact::decode(std::hint::black_box(&bytes)).unwrap());
        }
        let decode_us = t.elapsed().as_secs_f64() * 1e3;
        let mut params: Vec<(String, usize)> = Vec::new();
        for r in &report {
            let k = format!("{},{}", r.alpha, r.gamma);
            match params.iter_mut().find(|(p, _)| *p == k) {
                Some((_, n)) => *n += 1,
                None => params.push((k, 1)),
            }
        }
        params.sort_by_key(|p| std::cmp::Reverse(p.1));
        let common = params
            .first()
            .map(|(p, n)| format!("{p} ({n})"))
            .unwrap_or_default();
        let trained: u64 = train.lanes.iter().map(|s| s.total()).sum();
        match evaluate(&a, &hold) {
            Some(e) => {
                sum_m += e.model_wape * e.flights as f64;
                sum_b += e.baseline_wape * e.flights as f64;
                sum_a += e.flights as f64;
                println!(
                    "{c:>7}  {:>5}  {:>3}  {trained:>5}  {:>7}  {:>9.1}%  {:>12.1}%  {:>7.3}  {:>12}  {:>5}  {fit_ms:>6.1}  {decode_us:>9.2}  {common}",
                    e.lanes,
                    report.iter().filter(|r| r.own).count(),
                    e.flights,
                    e.model_wape,
                    e.baseline_wape,
                    e.coverage,
                    e.unknown_lane_flights,
                    bytes.len()
                )
            }
            None => println!(
                "{c:>7}  {:>5}  {trained:>5}  (no holdout flights on its lanes)",
                a.lanes.len()
            ),
        }
    }
    if sum_a > 0.0 {
        println!(
            "all carriers (flight-weighted): model {:.1}%, baseline {:.1}%",
            sum_m / sum_a,
            sum_b / sum_a
        );
    }
}
