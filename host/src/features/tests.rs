#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Isolation and the lookup allowlist, on stores built by `load` in a temp dir.

use super::FeatureStores;
use super::load::{build_public, build_tenant, lanes};
use super::store::RECHECK;
use crate::sandbox::{FeatureSource, Value};
use bulkhead_eta_model::Example;
use bulkhead_eta_model::schema::Code;

fn ex(origin: &str, dest: &str, month: u8, eta: f64, delay: Option<f64>) -> Example {
    Example {
        origin: Code::parse(origin).unwrap(),
        dest: Code::parse(dest).unwrap(),
        month,
        sched_dep_hour: 8,
        distance: 719.0,
        dep_delay: delay,
        sched_block: None,
        conditions: Default::default(),
        eta,
    }
}

/// UA's one plane, as `load::read_planes` makes a row.
fn ua_plane() -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as S;
    vec![
        S::Text("N14228".into()),
        S::Integer(1999),
        S::Integer(149),
        S::Integer(2),
        S::Text("737-824".into()),
    ]
}

const WEATHER: &str = "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n\
    EWR,2013,1,5,6,33.08,17.96,53.36,250,10.35,NA,0,1022.4,10,2013-01-05T11:00:00Z\n";

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn built() -> (tempfile::TempDir, FeatureStores) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("features");
    std::fs::create_dir_all(&dir).unwrap();
    let weather = tmp.path().join("weather.csv");
    std::fs::write(&weather, WEATHER).unwrap();
    assert_eq!(
        build_public(&dir, &weather, &Default::default()).unwrap(),
        1
    );
    // UA flies EWR-ORD three times in the training months (and once in November, which
    // must not count); DL flies EWR-ATL only.
    let ua = [
        ex("EWR", "ORD", 1, 140.0, Some(0.0)),
        ex("EWR", "ORD", 2, 150.0, Some(10.0)),
        ex("EWR", "ORD", 3, 160.0, None),
        ex("EWR", "ORD", 11, 999.0, Some(500.0)),
    ];
    let b = build_tenant(&dir, "UA", &ua, &[ua_plane()]).unwrap();
    assert_eq!((b.lanes, b.planes), (1, 1));
    let b = build_tenant(&dir, "DL", &[ex("EWR", "ATL", 1, 130.0, None)], &[]).unwrap();
    assert_eq!((b.lanes, b.planes), (1, 0));
    let stores = FeatureStores::new(&dir);
    (tmp, stores)
}

#[test]
fn a_tenant_reads_its_own_lanes_and_never_another_tenants() {
    let (_tmp, stores) = built();
    let lane = cols(&["flights", "mean_eta", "mean_dep_delay"]);
    let ua = stores
        .for_tenant("UA")
        .lookup("lanes", "EWR|ORD", &lane)
        .unwrap();
    assert_eq!(
        ua,
        Some(vec![
            Value::Number(3.0),
            Value::Number(150.0),
            Value::Number(5.0)
        ]),
        "three training flights (November excluded); the delay mean over the two known"
    );
    // The same key asked by DL: DL never flew it, so nothing — not UA's row.
    assert_eq!(
        stores
            .for_tenant("DL")
            .lookup("lanes", "EWR|ORD", &lane)
            .unwrap(),
        None
    );
    assert!(
        stores
            .for_tenant("DL")
            .lookup("lanes", "EWR|ATL", &lane)
            .unwrap()
            .is_some()
    );
    // A tenant without a store has no lanes at all, but still the public tables.
    assert_eq!(
        stores
            .for_tenant("AA")
            .lookup("lanes", "EWR|ORD", &lane)
            .unwrap(),
        None
    );
    let w = cols(&["temp", "wind_gust"]);
    for t in ["UA", "DL", "AA"] {
        assert_eq!(
            stores
                .for_tenant(t)
                .lookup("weather", "EWR|2013-01-05T06", &w)
                .unwrap(),
            Some(vec![Value::Number(33.08), Value::Missing]),
            "{t}: public weather, NA as missing"
        );
    }
}

#[test]
fn lookups_outside_the_schema_are_refused_by_name() {
    let (_tmp, stores) = built();
    let ua = stores.for_tenant("UA");
    let e = ua.lookup("flights", "x", &cols(&["eta"])).unwrap_err();
    assert_eq!(
        e,
        "unknown table `flights` (known: lanes, planes, weather, airports)"
    );
    let e = ua
        .lookup("lanes", "EWR|ORD", &cols(&["flights\" FROM main.lanes --"]))
        .unwrap_err();
    assert!(
        e.starts_with("table `lanes` has no column `flights\" FROM"),
        "{e}"
    );
    assert!(ua.lookup("lanes", "EWR|ORD", &[]).is_err());
    // A key is data, never SQL.
    assert_eq!(
        ua.lookup("lanes", "x' OR '1'='1", &cols(&["flights"]))
            .unwrap(),
        None
    );
    // A tenant id that cannot be a file name reads no tenant data (and no file).
    let odd = stores.for_tenant("../UA");
    assert_eq!(
        odd.lookup("lanes", "EWR|ORD", &cols(&["flights"])).unwrap(),
        None
    );
}

#[test]
fn a_rebuilt_store_is_picked_up() {
    let (tmp, stores) = built();
    let dir = tmp.path().join("features");
    let ua = stores.for_tenant("UA");
    let flights = cols(&["flights"]);
    assert_eq!(
        ua.lookup("lanes", "EWR|ORD", &flights).unwrap(),
        Some(vec![Value::Number(3.0)])
    );
    build_tenant(&dir, "UA", &[ex("EWR", "ORD", 1, 100.0, None)], &[]).unwrap();
    std::thread::sleep(RECHECK + std::time::Duration::from_millis(50));
    assert_eq!(
        ua.lookup("lanes", "EWR|ORD", &flights).unwrap(),
        Some(vec![Value::Number(1.0)])
    );
}

#[test]
fn lanes_use_only_the_training_months() {
    let l = lanes(&[
        ex("EWR", "ORD", 10, 100.0, None),
        ex("EWR", "ORD", 11, 200.0, None),
    ]);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].flights, l[0].mean_eta, l[0].mean_dep_delay),
        (1, 100.0, None)
    );
}

#[test]
fn a_repeated_weather_hour_keeps_the_first_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let weather = tmp.path().join("weather.csv");
    let repeated = WEATHER.to_string()
        + "EWR,2013,1,5,6,99,17.96,53.36,250,10.35,NA,0,1022.4,10,2013-01-05T12:00:00Z\n";
    std::fs::write(&weather, repeated).unwrap();
    assert_eq!(
        build_public(tmp.path(), &weather, &Default::default()).unwrap(),
        1
    );
    let got = FeatureStores::new(tmp.path())
        .for_tenant("UA")
        .lookup("weather", "EWR|2013-01-05T06", &cols(&["temp"]))
        .unwrap();
    assert_eq!(got, Some(vec![Value::Number(33.08)]));
}

#[test]
fn the_fleet_is_tenant_data() {
    let (_tmp, stores) = built();
    let seats = cols(&["seats", "model"]);
    let ua = stores
        .for_tenant("UA")
        .lookup("planes", "N14228", &seats)
        .unwrap()
        .unwrap();
    assert_eq!(
        ua,
        vec![Value::Number(149.0), Value::Category("737-824".into())]
    );
    // DL asking for UA's tail number finds nothing, not UA's plane.
    assert_eq!(
        stores
            .for_tenant("DL")
            .lookup("planes", "N14228", &seats)
            .unwrap(),
        None
    );
}
