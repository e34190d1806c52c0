//! The built plugin is a component wasmtime 48 loads, that imports only what the
//! bulkhead:model world grants, and that answers like the native model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_eta_model::fit::{Example, FitConfig, fit};
use bulkhead_eta_model::schema::Code;
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmtime::component::{Component, Linker, bindgen};
use wasmtime::{Config, Engine, Store};

bindgen!({ path: "../../wit", world: "model" });

use bulkhead::model::types::{Feature, Value};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The release component, built first (cargo is a no-op when it is up to date).
fn plugin_wasm() -> PathBuf {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "eta-forecaster-plugin",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "building the plugin failed");
    target.join("wasm32-wasip2/release/eta_forecaster_plugin.wasm")
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
            eta: block + dep_delay * 0.9 + f64::from(i % 7),
        });
    }
    v
}

fn row(origin: &str, dest: &str, distance: Option<f64>, dep_delay: Option<f64>) -> Row {
    let num = |x: Option<f64>| x.map_or(Value::Missing, Value::Number);
    Row {
        features: vec![
            Feature {
                name: "origin".into(),
                value: Value::Category(origin.into()),
            },
            Feature {
                name: "dest".into(),
                value: Value::Category(dest.into()),
            },
            Feature {
                name: "month".into(),
                value: Value::Number(3.0),
            },
            Feature {
                name: "sched_dep_hour".into(),
                value: Value::Number(8.0),
            },
            Feature {
                name: "distance".into(),
                value: num(distance),
            },
            Feature {
                name: "dep_delay".into(),
                value: num(dep_delay),
            },
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
    assert_eq!(d.name, "eta-forecaster");
    assert_eq!(d.interval_level, Some(0.8));
    assert_eq!(d.features.len(), 6);

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
    let rows = vec![
        row("EWR", "ORD", Some(719.0), None),
        row("EWR", "LAX", None, Some(30.0)),
        row("JFK", "SFO", Some(2586.0), None),
    ];
    let got = model.call_predict(&mut store, &rows).unwrap().unwrap();
    assert_eq!(got.len(), 3);
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
    for (p, (origin, dest, distance, dep_delay)) in got.iter().zip(native) {
        let want = artifact
            .predict(&bulkhead_eta_model::EtaInput {
                origin,
                dest,
                month: 3,
                sched_dep_hour: 8,
                distance,
                dep_delay,
            })
            .unwrap();
        assert_eq!(p.value, want.value);
        assert_eq!((p.lower, p.upper), (Some(want.lower), Some(want.upper)));
        assert!(p.lower.unwrap() <= p.value && p.value <= p.upper.unwrap());
    }

    // A row the model cannot score fails the batch as bad input, naming the row.
    let e = model
        .call_predict(
            &mut store,
            &[rows[0].clone(), row("JFK", "SFO", None, None)],
        )
        .unwrap()
        .unwrap_err();
    match e {
        bulkhead::model::types::ModelError::BadInput(m) => {
            assert!(m.starts_with("row 1:") && m.contains("distance"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}
