//! The built plugin is a component wasmtime 48 loads, that imports only what the
//! bulkhead:model world grants, and that answers like the native model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_eta_model::fit::{Example, FitConfig, fit};
use bulkhead_eta_model::schema::{Code, Conditions};
use std::path::PathBuf;
use wasmtime::component::{Component, Linker, bindgen};
use wasmtime::{Config, Engine, Store};

bindgen!({ path: "../../wit", world: "model" });

use bulkhead::model::types::{Categories, Column, ColumnValues, Value};

/// The release component, built first when missing or stale (the harness's builder, which
/// also watches `wit/`).
fn plugin_wasm() -> PathBuf {
    proxy_wasm_harness::wasm_artifact(
        "eta-forecaster-plugin",
        "wasm32-wasip2",
        &[
            "plugins/eta-forecaster/src",
            "plugins/eta-model/src",
            "plugins/model-kit/src",
        ],
    )
    .unwrap()
}

/// Answers one weather row and one plane, and records what the plugin asked for.
#[derive(Default)]
struct Host {
    asked: Vec<(String, String, Vec<String>)>,
}

impl bulkhead::model::features::Host for Host {
    fn lookup(
        &mut self,
        table: String,
        key: String,
        columns: Vec<String>,
    ) -> Result<Option<Vec<Value>>, String> {
        let row = match (table.as_str(), key.as_str()) {
            // Rain, 1 mile visibility, 25 mph wind: weather class 8.
            ("weather", "EWR|2013-03-08T08") => Some(vec![
                Value::Number(0.3),
                Value::Number(1.0),
                Value::Number(25.0),
            ]),
            // 149 seats: aircraft class 2.
            ("planes", "N14228") => Some(vec![Value::Number(149.0)]),
            _ => None,
        };
        self.asked.push((table, key, columns));
        Ok(row)
    }
}

impl bulkhead::model::log::Host for Host {
    fn log(&mut self, _level: bulkhead::model::log::Level, _message: String) {}
}

impl bulkhead::model::types::Host for Host {}

fn examples() -> Vec<Example> {
    let code = |s| Code::parse(s).unwrap();
    let mut v = Vec::new();
    for i in 0..400u32 {
        let (dest, distance, block) = match i % 3 {
            0 => ("ORD", 719.0, 150.0),
            1 => ("LAX", 2454.0, 390.0),
            _ => ("ATL", 746.0, 135.0),
        };
        let dep_delay = f64::from(i % 40) - 10.0;
        v.push(Example {
            origin: code("EWR"),
            dest: code(dest),
            month: (i % 12 + 1) as u8,
            sched_dep_hour: (6 + i % 16) as u8,
            distance,
            dep_delay: Some(dep_delay),
            sched_block: None,
            conditions: Conditions {
                weekday: Some((i % 7) as u8),
                aircraft: (i / 13 % 3) as u8,
                weather: [1, 1, 8][(i / 5 % 3) as usize],
            },
            eta: block
                + dep_delay * 0.9
                + f64::from(i % 7)
                + if i / 5 % 3 == 2 { 30.0 } else { 0.0 },
        });
    }
    v
}

/// One row: origin, dest, distance, dep_delay (month 3, 08:00 for all).
type R<'a> = (&'a str, &'a str, Option<f64>, Option<f64>);

/// Rows as the WIT batch the host sends: a column per feature, categories
/// dictionary-coded, NaN for a missing number.
fn batch(rows: &[R<'static>]) -> Batch {
    let categories = |pick: &dyn Fn(&R<'static>) -> &'static str| {
        let mut dictionary: Vec<String> = Vec::new();
        let mut codes = Vec::new();
        for r in rows {
            let v = pick(r);
            let code = match dictionary.iter().position(|d| d == v) {
                Some(c) => c,
                None => {
                    dictionary.push(v.to_string());
                    dictionary.len() - 1
                }
            };
            codes.push(code as u32);
        }
        ColumnValues::Categories(Categories { dictionary, codes })
    };
    let numbers = |pick: &dyn Fn(&R<'static>) -> Option<f64>| {
        ColumnValues::Numbers(rows.iter().map(|r| pick(r).unwrap_or(f64::NAN)).collect())
    };
    let column = |name: &str, values| Column {
        name: name.into(),
        values,
    };
    Batch {
        rows: rows.len() as u32,
        columns: vec![
            column("origin", categories(&|r| r.0)),
            column("dest", categories(&|r| r.1)),
            column("month", numbers(&|_| Some(3.0))),
            column("sched_dep_hour", numbers(&|_| Some(8.0))),
            column("distance", numbers(&|r| r.2)),
            column("dep_delay", numbers(&|r| r.3)),
        ],
    }
}

#[test]
fn component_loads_imports_only_the_world_and_predicts_like_native() {
    let wasm = plugin_wasm();
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::from_file(&engine, &wasm).unwrap();

    // The world's own interfaces, plus what Rust's std on wasip2 links for its panic path
    // (stdio, environment, exit): never a filesystem, socket, clock or randomness. The
    // host defines those std imports as traps, as the sandbox does.
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    for name in &imports {
        assert!(
            ["bulkhead:model/", "wasi:cli/", "wasi:io/"]
                .iter()
                .any(|p| name.starts_with(p)),
            "unexpected import {name}: {imports:?}"
        );
    }

    let mut linker = Linker::new(&engine);
    Model::add_to_linker::<_, wasmtime::component::HasSelf<Host>>(&mut linker, |h| h).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let model = Model::instantiate(&mut store, &component, &linker).unwrap();

    let d = model.call_describe(&mut store).unwrap();
    assert_eq!(d.name, "eta-forecaster");
    assert_eq!(d.interval_level, Some(0.8));
    assert_eq!(d.features.len(), 10);

    // Garbage is refused as a bad artifact, not a trap.
    let bad = model.call_load(&mut store, b"not an artifact").unwrap();
    assert!(
        matches!(bad, Err(bulkhead::model::types::ModelError::BadArtifact(_))),
        "{bad:?}"
    );

    let artifact = fit(&examples(), &FitConfig::default()).unwrap();
    model
        .call_load(&mut store, &artifact.encode())
        .unwrap()
        .unwrap();
    let rows: Vec<R<'static>> = vec![
        ("EWR", "ORD", Some(719.0), None),
        ("EWR", "LAX", None, Some(30.0)),
        ("JFK", "SFO", Some(2586.0), None),
    ];
    let got = model
        .call_predict(&mut store, &batch(&rows), NO_ALERTS)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.values.len(), got.lower.len(), got.upper.len()),
        (3, 3, 3)
    );
    let native = [
        (
            Code::parse("EWR").unwrap(),
            Code::parse("ORD").unwrap(),
            Some(719.0),
            None,
        ),
        (
            Code::parse("EWR").unwrap(),
            Code::parse("LAX").unwrap(),
            None,
            Some(30.0),
        ),
        (
            Code::parse("JFK").unwrap(),
            Code::parse("SFO").unwrap(),
            Some(2586.0),
            None,
        ),
    ];
    for (i, (origin, dest, distance, dep_delay)) in native.into_iter().enumerate() {
        let want = artifact
            .predict(&bulkhead_eta_model::EtaInput {
                origin,
                dest,
                month: 3,
                sched_dep_hour: 8,
                distance,
                dep_delay,
                sched_block: None,
                conditions: Conditions::default(),
            })
            .unwrap();
        let (value, lower, upper) = (got.values[i], got.lower[i], got.upper[i]);
        assert_eq!(value, want.value);
        assert_eq!((lower, upper), (want.lower, want.upper));
        assert!(lower <= value && value <= upper);
    }

    // A row the model cannot score is a row error (NaN values); the others are scored.
    let out = model
        .call_predict(
            &mut store,
            &batch(&[rows[0], ("JFK", "SFO", None, None)]),
            NO_ALERTS,
        )
        .unwrap()
        .unwrap();
    assert_eq!(out.values[0], got.values[0]);
    assert!(out.values[1].is_nan() && out.lower[1].is_nan());
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].row, 1);
    assert!(
        out.errors[0].message.contains("distance"),
        "{:?}",
        out.errors
    );
}

const NO_ALERTS: Options = Options {
    alert_after_minutes: None,
};

/// With `sched_dep` and `tailnum`, the plugin asks the host for the origin's weather in
/// that local hour and for the plane (each key once per batch), and predicts what the
/// model predicts natively for the classes those rows give.
#[test]
fn plugin_looks_up_weather_and_aircraft_like_training_does() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::from_file(&engine, plugin_wasm()).unwrap();
    let mut linker = Linker::new(&engine);
    Model::add_to_linker::<_, wasmtime::component::HasSelf<Host>>(&mut linker, |h| h).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let mut store = Store::new(&engine, Host::default());
    let model = Model::instantiate(&mut store, &component, &linker).unwrap();
    let artifact = fit(&examples(), &FitConfig::default()).unwrap();
    model
        .call_load(&mut store, &artifact.encode())
        .unwrap()
        .unwrap();
    let cat = |v: &[&str]| {
        ColumnValues::Categories(Categories {
            dictionary: v.iter().map(|s| s.to_string()).collect(),
            codes: (0..v.len() as u32).collect(),
        })
    };
    let column = |name: &str, values| Column {
        name: name.into(),
        values,
    };
    // Friday 2013-03-08 08:15 (bad weather, known plane), the same hour again, and a
    // Saturday with no weather row and an unknown plane.
    let batch = Batch {
        rows: 3,
        columns: vec![
            column("origin", cat(&["EWR", "EWR", "EWR"])),
            column("dest", cat(&["ORD", "ORD", "ORD"])),
            column(
                "sched_dep",
                cat(&["2013-03-08T08:15", "2013-03-08T08:50", "2013-03-09T08:15"]),
            ),
            column("tailnum", cat(&["N14228", "N14228", "N99999"])),
        ],
    };
    let got = model
        .call_predict(&mut store, &batch, NO_ALERTS)
        .unwrap()
        .unwrap();
    let asked: Vec<(&str, &str)> = store
        .data()
        .asked
        .iter()
        .map(|(t, k, _)| (t.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            ("weather", "EWR|2013-03-08T08"),
            ("planes", "N14228"),
            ("weather", "EWR|2013-03-09T08"),
            ("planes", "N99999"),
        ]
    );
    assert_eq!(
        store.data().asked[0].2,
        ["precip", "visib", "wind_speed"],
        "the weather class's columns"
    );
    let native = |weekday, aircraft, weather| {
        artifact
            .predict(&bulkhead_eta_model::EtaInput {
                origin: Code::parse("EWR").unwrap(),
                dest: Code::parse("ORD").unwrap(),
                month: 3,
                sched_dep_hour: 8,
                distance: None,
                dep_delay: None,
                sched_block: None,
                conditions: Conditions {
                    weekday: Some(weekday),
                    aircraft,
                    weather,
                },
            })
            .unwrap()
            .value
    };
    assert_eq!(got.values[0], native(5, 2, 8));
    assert_eq!(got.values[1], got.values[0]);
    assert_eq!(got.values[2], native(6, 0, 0));
    // The learned +30 min of bad weather shows.
    assert!(got.values[0] - native(5, 2, 1) > 20.0, "{:?}", got.values);
}
