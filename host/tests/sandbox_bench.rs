//! Timings of the sandbox's call path, for the record (run with `--ignored --nocapture`,
//! ideally with an optimised host: `--config 'profile.dev.package.bulkhead.opt-level=3'`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sandbox_support;

use bulkhead::sandbox::{
    CallContext, Feature, ModelSource, NoFeatures, PoolConfig, Row, Sandbox, SandboxConfig, Value,
    batch_from_rows,
};
use sandbox_support::{hostile_wasm, percentile};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An ETA-shaped row: 3 categorical, 3 numeric features.
fn eta_rows(n: usize) -> Vec<Row> {
    let f = |name: &str, value: Value| Feature {
        name: name.into(),
        value,
    };
    (0..n)
        .map(|i| Row {
            features: vec![
                f("origin", Value::Category("EWR".into())),
                f("dest", Value::Category("ORD".into())),
                f("carrier", Value::Category("UA".into())),
                f("month", Value::Number((i % 12 + 1) as f64)),
                f("sched_dep_hour", Value::Number((i % 24) as f64)),
                f("distance", Value::Number(719.0)),
            ],
        })
        .collect()
}

async fn measure(sb: &Sandbox, mode: &str, rows: usize, n: usize) -> String {
    let model = ModelSource::from_bytes(mode, hostile_wasm(), mode.as_bytes().into());
    let batch = batch_from_rows(&eta_rows(rows)).unwrap();
    let ctx = || CallContext::new("UA", "bench", Arc::new(NoFeatures));
    for _ in 0..50 {
        sb.predict(&model, ctx(), batch.clone()).await.unwrap();
    }
    let (mut total, mut inst, mut load, mut pred, mut outside) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let start = Instant::now();
        let out = sb.predict(&model, ctx(), batch.clone()).await.unwrap();
        let t = start.elapsed();
        let s = out.stats;
        total.push(t);
        inst.push(s.instantiate);
        load.push(s.artifact_load);
        pred.push(s.predict);
        outside.push(t.saturating_sub(s.instantiate + s.artifact_load + s.predict));
    }
    format!(
        "{mode:>6} {rows:>4} rows: total p50 {:>9.1?} p99 {:>9.1?} | instantiate {:>8.1?} load {:>8.1?} predict {:>8.1?} other {:>8.1?} (p50s)",
        percentile(&mut total, 50.0),
        percentile(&mut total, 99.0),
        percentile(&mut inst, 50.0),
        percentile(&mut load, 50.0),
        percentile(&mut pred, 50.0),
        percentile(&mut outside, 50.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn call_path_timings() {
    for keep in [0usize, 64 << 10, 1 << 20] {
        let sb = Sandbox::new(SandboxConfig {
            pool: PoolConfig {
                linear_memory_keep_resident: keep,
                ..PoolConfig::default()
            },
            ..SandboxConfig::default()
        })
        .unwrap();
        eprintln!("linear_memory_keep_resident = {keep}");
        for (mode, rows) in [("count", 0), ("count", 1), ("count", 100), ("ok", 100)] {
            eprintln!("  {}", measure(&sb, mode, rows, 1000).await);
        }
    }
}

#[test]
#[ignore = "a measurement, not a check"]
fn spawn_blocking_handoff() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut samples = Vec::new();
        for _ in 0..2000 {
            let start = Instant::now();
            tokio::task::spawn_blocking(|| ()).await.unwrap();
            samples.push(start.elapsed());
        }
        eprintln!(
            "spawn_blocking round trip: p50 {:?} p99 {:?}",
            percentile(&mut samples, 50.0),
            percentile(&mut samples, 99.0)
        );
        let _ = Duration::ZERO;
    });
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "a measurement, not a check"]
fn pool_reservation() {
    let before = (vm_kib("VmSize:"), vm_kib("VmRSS:"));
    let start = Instant::now();
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let took = start.elapsed();
    let after = (vm_kib("VmSize:"), vm_kib("VmRSS:"));
    eprintln!(
        "Sandbox::new {took:?}: address space +{} GiB, RSS +{} MiB",
        (after.0 - before.0) >> 20,
        (after.1 - before.1) >> 10
    );
    drop(sb);
}

/// The real ETA plugin (plugins/eta-forecaster) through the sandbox vs the same model
/// natively, 100-row batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn eta_native_vs_sandbox() {
    use bulkhead_eta_model::schema::Code;
    use bulkhead_eta_model::{Artifact, Example, FitConfig, fit, predict_batch};
    let code = |s| Code::parse(s).unwrap();
    let mut examples = Vec::new();
    for i in 0..2000u32 {
        let (dest, distance, block) = match i % 3 {
            0 => ("ORD", 719.0, 150.0),
            1 => ("LAX", 2454.0, 390.0),
            _ => ("ATL", 746.0, 135.0),
        };
        examples.push(Example {
            origin: code("EWR"),
            dest: code(dest),
            month: (i % 12 + 1) as u8,
            sched_dep_hour: (6 + i % 16) as u8,
            distance,
            dep_delay: None,
            sched_block: None,
            conditions: Default::default(),
            eta: block + f64::from(i % 7),
        });
    }
    let artifact = fit(&examples, &FitConfig::default()).unwrap().encode();
    let plugin: Arc<[u8]> = std::fs::read(sandbox_support::component_wasm(
        "eta-forecaster-plugin",
        &["plugins/eta-forecaster", "plugins/eta-model"],
    ))
    .unwrap()
    .into();
    let rows: Vec<Row> = eta_rows(100)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.features[1].value = Value::Category(["ORD", "LAX", "ATL"][i % 3].into());
            r.features.retain(|f| f.name != "carrier");
            r
        })
        .collect();
    let as_native = |r: &Row| -> Vec<(String, Value)> {
        r.features
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect()
    };
    let owned: Vec<_> = rows.iter().map(as_native).collect();
    let native = |decode: bool| {
        let mut samples = Vec::new();
        let model = Artifact::decode(&artifact).unwrap();
        for _ in 0..2000 {
            let start = Instant::now();
            let m = if decode {
                Artifact::decode(&artifact).unwrap()
            } else {
                model.clone()
            };
            let out = predict_batch(
                &m,
                owned
                    .iter()
                    .map(|r| r.iter().map(|(n, v)| (n.as_str(), borrow(v)))),
            )
            .unwrap();
            assert_eq!(out.len(), 100);
            samples.push(start.elapsed());
        }
        samples
    };
    let mut predict_only = native(false);
    let mut decode_predict = native(true);

    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let model = ModelSource::from_bytes("eta", plugin, artifact.as_slice().into());
    let ctx = || CallContext::new("UA", "bench", Arc::new(NoFeatures));
    let mut total = Vec::new();
    let mut guest = Vec::new();
    let (mut inst, mut load, mut pred) = (Vec::new(), Vec::new(), Vec::new());
    let columns = batch_from_rows(&rows).unwrap();
    for i in 0..2100 {
        let batch = columns.clone();
        let start = Instant::now();
        let out = sb.predict(&model, ctx(), batch).await.unwrap();
        let t = start.elapsed();
        if i >= 100 {
            total.push(t);
            guest.push(out.stats.instantiate + out.stats.artifact_load + out.stats.predict);
            inst.push(out.stats.instantiate);
            load.push(out.stats.artifact_load);
            pred.push(out.stats.predict);
        }
    }
    eprintln!(
        "eta, 100 rows, artifact {} bytes:\n  native predict p50 {:?}; native decode+predict p50 {:?}\n  sandbox total p50 {:?} p99 {:?}; instantiate {:?} + load {:?} + predict {:?} = {:?} (p50s)",
        artifact.len(),
        percentile(&mut predict_only, 50.0),
        percentile(&mut decode_predict, 50.0),
        percentile(&mut total, 50.0),
        percentile(&mut total, 99.0),
        percentile(&mut inst, 50.0),
        percentile(&mut load, 50.0),
        percentile(&mut pred, 50.0),
        percentile(&mut guest, 50.0),
    );
}

fn borrow(v: &Value) -> bulkhead_eta_model::Value<'_> {
    match v {
        Value::Number(x) => bulkhead_eta_model::Value::Number(*x),
        Value::Category(s) => bulkhead_eta_model::Value::Category(s.as_str()),
        Value::Missing => bulkhead_eta_model::Value::Missing,
    }
}

/// Where the argument-passing time goes: rows with no features, numeric features only,
/// and the ETA mix (half categorical).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn marshalling_cost() {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let model = ModelSource::from_bytes("count", hostile_wasm(), b"count".as_slice().into());
    let ctx = || CallContext::new("UA", "bench", Arc::new(NoFeatures));
    let numeric = |n: usize, k: usize| -> Vec<Row> {
        (0..n)
            .map(|_| Row {
                features: (0..k)
                    .map(|j| Feature {
                        name: format!("f{j}"),
                        value: Value::Number(1.0),
                    })
                    .collect(),
            })
            .collect()
    };
    let cases: Vec<(&str, Vec<Row>)> = vec![
        ("100 rows x 0 features", numeric(100, 0)),
        ("100 rows x 6 numeric", numeric(100, 6)),
        ("100 rows x 6 (3 categorical)", eta_rows(100)),
        ("1000 rows x 6 (3 categorical)", eta_rows(1000)),
    ];
    for (name, rows) in cases {
        let batch = batch_from_rows(&rows).unwrap();
        let mut pred = Vec::new();
        for i in 0..600 {
            let out = sb.predict(&model, ctx(), batch.clone()).await.unwrap();
            if i >= 100 {
                pred.push(out.stats.predict);
            }
        }
        eprintln!("{name:<32} predict p50 {:?}", percentile(&mut pred, 50.0));
    }
}
