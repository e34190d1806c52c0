//! The built plugin is a component wasmtime 48 loads, that imports only what the
//! bulkhead:model world grants, and that answers exactly like the native model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_demand_model::days::{days_from_civil, weekday};
use bulkhead_demand_model::{Artifact, Code, Counts, FitConfig, Series, fit};
use std::path::PathBuf;
use wasmtime::component::{Component, Linker, bindgen};
use wasmtime::{Config, Engine, Store};

bindgen!({ path: "../../wit", world: "model" });

use bulkhead::model::types::{Categories, Column, ColumnValues, Value};

/// The release component, built first when missing or stale (the harness's builder, which
/// also watches `wit/`).
fn plugin_wasm() -> PathBuf {
    proxy_wasm_harness::wasm_artifact(
        "demand-forecaster-plugin",
        "wasm32-wasip2",
        &[
            "plugins/demand-forecaster/src",
            "plugins/demand-model/src",
            "plugins/model-kit/src",
        ],
    )
    .unwrap()
}

struct Host;

impl bulkhead::model::features::Host for Host {
    fn lookup(
        &mut self,
        _table: String,
        _key: String,
        _columns: Vec<String>,
    ) -> Result<Option<Vec<Value>>, String> {
        Ok(None)
    }
}

impl bulkhead::model::log::Host for Host {
    fn log(&mut self, _level: bulkhead::model::log::Level, _message: String) {}
}

impl bulkhead::model::types::Host for Host {}

fn code(s: &str) -> Code {
    Code::parse(s).unwrap()
}

/// A tenant with two lanes, 30 weeks of a weekly pattern with some wobble.
fn artifact() -> Artifact {
    let first = days_from_civil(2013, 1, 1).unwrap();
    let days: usize = 30 * 7;
    let lane = |o: &str, d: &str, scale: u32| Series {
        origin: code(o),
        dest: code(d),
        counts: (0..days)
            .map(|t| {
                let w = weekday(first + t as i32) as u32;
                scale * [10, 9, 9, 10, 11, 5, 4][w as usize] + (t as u32 * 7 + w) % 3
            })
            .collect(),
    };
    fit(
        &Counts {
            first,
            last: first + days as i32 - 1,
            lanes: vec![lane("EWR", "ORD", 2), lane("JFK", "BOS", 1)],
        },
        &FitConfig::default(),
    )
    .unwrap()
}

/// Rows (origin, dest, day) as the WIT batch the host sends: a column per feature,
/// categories dictionary-coded.
fn batch(rows: &[(&str, &str, f64)]) -> Batch {
    let categories = |pick: &dyn Fn(&(&str, &str, f64)) -> String| {
        let mut dictionary: Vec<String> = Vec::new();
        let mut codes = Vec::new();
        for r in rows {
            let v = pick(r);
            let code = match dictionary.iter().position(|d| *d == v) {
                Some(c) => c,
                None => {
                    dictionary.push(v);
                    dictionary.len() - 1
                }
            };
            codes.push(code as u32);
        }
        ColumnValues::Categories(Categories { dictionary, codes })
    };
    let column = |name: &str, values| Column {
        name: name.into(),
        values,
    };
    Batch {
        rows: rows.len() as u32,
        columns: vec![
            column(
                "day",
                ColumnValues::Numbers(rows.iter().map(|r| r.2).collect()),
            ),
            column("origin", categories(&|r| r.0.to_string())),
            column("dest", categories(&|r| r.1.to_string())),
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
    let mut store = Store::new(&engine, Host);
    let model = Model::instantiate(&mut store, &component, &linker).unwrap();

    let d = model.call_describe(&mut store).unwrap();
    assert_eq!(d.name, "demand-forecaster");
    assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(d.output, "flights per day on the lane");
    assert_eq!(d.interval_level, Some(0.8));
    let features: Vec<(&str, bool)> = d
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.required))
        .collect();
    assert_eq!(features, [("origin", true), ("dest", true), ("day", true)]);

    // Predict before load is an internal error, not a trap.
    let early = model
        .call_predict(&mut store, &batch(&[]), NO_OPTIONS)
        .unwrap();
    assert!(matches!(early, Err(ModelError::Internal(_))), "{early:?}");

    // Garbage is refused as a bad artifact, not a trap.
    let bad = model.call_load(&mut store, b"not an artifact").unwrap();
    assert!(matches!(bad, Err(ModelError::BadArtifact(_))), "{bad:?}");

    let artifact = artifact();
    model
        .call_load(&mut store, &artifact.encode())
        .unwrap()
        .unwrap();
    let next = artifact.last_day + 1;
    let mut rows = Vec::new();
    for h in 0..28 {
        rows.push(("EWR", "ORD", f64::from(next + h)));
        rows.push(("jfk", "BOS", f64::from(next + h * 3)));
    }
    let got = model
        .call_predict(&mut store, &batch(&rows), NO_OPTIONS)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.values.len(), got.lower.len(), got.upper.len()),
        (rows.len(), rows.len(), rows.len())
    );
    for (i, &(o, d, day)) in rows.iter().enumerate() {
        let want = artifact.forecast(code(o), code(d), day as i32).unwrap();
        assert_eq!(
            (got.values[i], got.lower[i], got.upper[i]),
            (want.value, want.lower, want.upper),
            "row {i}"
        );
        assert!(got.lower[i] <= got.values[i] && got.values[i] <= got.upper[i]);
    }

    // A row the model cannot score is a row error (the others are forecast): a lane this
    // tenant never flew, a day not after the training end. The first one, with its row.
    let refused = |rows: &[(&str, &str, f64)], store: &mut Store<Host>| {
        let out = model
            .call_predict(&mut *store, &batch(rows), NO_OPTIONS)
            .unwrap()
            .unwrap();
        let e = out.errors.first().unwrap();
        assert!(out.values[e.row as usize].is_nan());
        format!("row {}: {}", e.row, e.message)
    };
    let ok = ("EWR", "ORD", f64::from(next));
    let m = refused(&[ok, ("LGA", "ATL", f64::from(next))], &mut store);
    assert!(m.starts_with("row 1:") && m.contains("lane LGA-ATL"), "{m}");
    let m = refused(&[ok, ok, ("EWR", "ORD", f64::from(next - 1))], &mut store);
    assert!(
        m.starts_with("row 2:") && m.contains("last training day"),
        "{m}"
    );
    let m = refused(&[("EWR", "ORD", f64::NAN)], &mut store);
    assert!(m.starts_with("row 0:") && m.contains("`day`"), "{m}");

    // Time a 56-row batch in the sandbox (informational; the host's bench measures the
    // whole call).
    let b = batch(&rows);
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = std::time::Instant::now();
            model
                .call_predict(&mut store, &b, NO_OPTIONS)
                .unwrap()
                .unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "sandboxed predict, {} rows: p50 {:.1} µs, p99 {:.1} µs; artifact {} bytes",
        rows.len(),
        times[100],
        times[198],
        artifact.encode().len()
    );

    // The same instance still answers after a refused batch.
    let again = model
        .call_predict(&mut store, &batch(&[ok]), NO_OPTIONS)
        .unwrap()
        .unwrap();
    assert_eq!(again.values[0], got.values[0]);
}

const NO_OPTIONS: Options = Options {
    alert_after_minutes: None,
};
