//! The measurements that run inside this process against the host library: the same
//! model natively vs through the sandbox, and cold loads (precompiled, compiled, and a
//! new tenant's artifact when the plugin's code is already in memory).

use crate::stats::{Summary, summarize};
use anyhow::{Context, Result, bail};
use bulkhead::sandbox::{
    Batch, CallContext, CodeSource, ColumnValues, ModelSource, NoFeatures, Row, Sandbox,
    SandboxConfig, batch_from_rows,
};
use bulkhead_eta_model::{Artifact, Column, Featurizer, NoLookup, predict_columns};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct NativeVsSandbox {
    /// decode + predict_columns: the plugin's work per call, natively.
    pub native: Summary,
    /// predict_columns alone (artifact already decoded), for reference.
    pub native_predict_only: Summary,
    /// `Sandbox::predict`, warm cache, wall time seen by the caller.
    pub sandbox: Summary,
    /// The parts of the sandbox call (p50s), from its `CallStats`.
    pub instantiate: Summary,
    pub artifact_load: Summary,
    pub predict: Summary,
    /// Wall time minus the three parts: cache lookup, `Store` set-up, blocking-pool hop.
    pub outside: Summary,
    /// The same call with a 1-row batch: the fixed cost of a call.
    pub native_1row: Summary,
    pub sandbox_1row: Summary,
    pub rounds: usize,
}

#[derive(Debug, Default)]
pub struct ColdLoads {
    /// `preload` after `clear_cache`: deserialize the host's own precompiled file.
    pub precompiled: Summary,
    /// The same, as the sandbox's own `load_time`.
    pub precompiled_load_time: Summary,
    /// First request after `clear_cache` (load + instantiate + load + predict, 100 rows).
    pub first_request: Summary,
    /// Compile from `.wasm` (no precompiled file: a sandbox without a data dir).
    pub compiled: Summary,
    /// A model not resident while another model of the same plugin is: read + verify +
    /// check the artifact, no code to load (what a Zipf miss costs in the sandbox).
    pub shared_code: Summary,
}

fn ctx() -> CallContext {
    CallContext::new("UA", "bench", Arc::new(NoFeatures))
}

/// What the plugin does per call, natively: decode the artifact (`load`), then
/// `predict_columns` over the batch's columns (`predict`) — the plugin's exact code.
fn native_call(artifact: &[u8], batch: &Batch, decoded: Option<&Artifact>) -> Result<usize> {
    let owned;
    let model = match decoded {
        Some(m) => m,
        None => {
            owned = Artifact::decode(artifact).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
            &owned
        }
    };
    let columns = batch.columns.iter().map(|c| {
        let column = match &c.values {
            ColumnValues::Numbers(v) => Column::Numbers(v),
            ColumnValues::Categories(cat) => Column::Categories {
                dictionary: &cat.dictionary,
                codes: &cat.codes,
            },
        };
        (c.name.as_str(), column)
    });
    // The bench rows carry no sched_dep/tailnum: no lookups, as in the sandboxed run.
    let mut features = Featurizer::new(NoLookup);
    let out = predict_columns(model, batch.rows as usize, columns, &mut features)
        .map_err(|e| anyhow::anyhow!("predict: {e}"))?;
    Ok(black_box(out).len())
}

fn columns(rows: &[Row]) -> Result<Batch> {
    batch_from_rows(rows).map_err(|e| anyhow::anyhow!("rows: {e}"))
}

/// Alternates blocks of native and sandboxed calls (`rounds` × `per_round` each), so a
/// change in machine load hits both sides alike.
pub async fn native_vs_sandbox(
    sb: &Sandbox,
    model: &ModelSource,
    artifact: &[u8],
    rows: &[Row],
    rounds: usize,
    per_round: usize,
) -> Result<NativeVsSandbox> {
    let decoded = Artifact::decode(artifact).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
    let all = columns(rows)?;
    let one = columns(&rows[..1.min(rows.len())])?;
    // Warm both sides: the model resident, caches and branch predictors trained.
    for _ in 0..200 {
        native_call(artifact, &all, None)?;
        sb.predict(model, ctx(), all.clone())
            .await
            .map_err(|e| anyhow::anyhow!("sandbox warm-up: {e:?}"))?;
    }
    let (mut native, mut predict_only, mut sandbox) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inst, mut load, mut pred) = (Vec::new(), Vec::new(), Vec::new());
    let (mut outside, mut native1, mut sandbox1) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..per_round {
            let t = Instant::now();
            let n = native_call(artifact, &all, None)?;
            native.push(t.elapsed());
            if n != rows.len() {
                bail!("native: {n} predictions for {} rows", rows.len());
            }
            let t = Instant::now();
            native_call(artifact, &all, Some(&decoded))?;
            predict_only.push(t.elapsed());
        }
        for _ in 0..per_round {
            let batch = all.clone();
            let t = Instant::now();
            let out = sb
                .predict(model, ctx(), batch)
                .await
                .map_err(|e| anyhow::anyhow!("sandbox: {e:?}"))?;
            sandbox.push(t.elapsed());
            if out.predictions.len() != rows.len() {
                bail!("sandbox: {} predictions", out.predictions.len());
            }
            let st = &out.stats;
            inst.push(st.instantiate);
            load.push(st.artifact_load);
            pred.push(st.predict);
            outside.push(
                sandbox[sandbox.len() - 1]
                    .saturating_sub(st.instantiate + st.artifact_load + st.predict),
            );
        }
        for _ in 0..per_round / 4 {
            let t = Instant::now();
            native_call(artifact, &one, None)?;
            native1.push(t.elapsed());
            let batch = one.clone();
            let t = Instant::now();
            sb.predict(model, ctx(), batch)
                .await
                .map_err(|e| anyhow::anyhow!("sandbox, 1 row: {e:?}"))?;
            sandbox1.push(t.elapsed());
        }
    }
    Ok(NativeVsSandbox {
        native: summarize(&native),
        native_predict_only: summarize(&predict_only),
        sandbox: summarize(&sandbox),
        instantiate: summarize(&inst),
        artifact_load: summarize(&load),
        predict: summarize(&pred),
        outside: summarize(&outside),
        native_1row: summarize(&native1),
        sandbox_1row: summarize(&sandbox1),
        rounds,
    })
}

/// Cold loads. `sb` has a data dir (so its precompiled file exists after the first
/// compile); `others` are further models of the same plugin.
pub async fn cold_loads(
    sb: &Sandbox,
    model: &ModelSource,
    others: &[ModelSource],
    rows: &[Row],
    samples: usize,
    compiles: usize,
) -> Result<ColdLoads> {
    let (mut wall, mut own, mut first) = (Vec::new(), Vec::new(), Vec::new());
    // Make sure the precompiled file exists (written on the first compile).
    sb.preload(model)
        .await
        .map_err(|e| anyhow::anyhow!("preload: {e:?}"))?;
    for _ in 0..samples {
        sb.clear_cache();
        let t = Instant::now();
        let info = sb
            .preload(model)
            .await
            .map_err(|e| anyhow::anyhow!("preload: {e:?}"))?;
        wall.push(t.elapsed());
        own.push(info.load_time);
        if info.code_source != CodeSource::Precompiled {
            bail!(
                "cold load came from {:?}, not the precompiled file",
                info.code_source
            );
        }
    }
    let all = columns(rows)?;
    for _ in 0..samples {
        sb.clear_cache();
        let batch = all.clone();
        let t = Instant::now();
        sb.predict(model, ctx(), batch)
            .await
            .map_err(|e| anyhow::anyhow!("first request: {e:?}"))?;
        first.push(t.elapsed());
    }
    // A new tenant's model while the plugin's code is resident.
    let mut shared = Vec::new();
    sb.clear_cache();
    sb.preload(model)
        .await
        .map_err(|e| anyhow::anyhow!("preload: {e:?}"))?;
    for m in others {
        let t = Instant::now();
        let info = sb
            .preload(m)
            .await
            .map_err(|e| anyhow::anyhow!("preload {}: {e:?}", m.label))?;
        shared.push(t.elapsed());
        if info.code_source != CodeSource::Shared {
            bail!("{}: code from {:?}, not shared", m.label, info.code_source);
        }
    }
    // Compiles: a sandbox without a data dir compiles on every cold load.
    let compiler = Sandbox::new(SandboxConfig::default()).context("compile sandbox")?;
    let mut compiled = Vec::new();
    for _ in 0..compiles {
        compiler.clear_cache();
        let t = Instant::now();
        let info = compiler
            .preload(model)
            .await
            .map_err(|e| anyhow::anyhow!("compile: {e:?}"))?;
        compiled.push(t.elapsed());
        if info.code_source != CodeSource::Compiled {
            bail!("expected a compile, got {:?}", info.code_source);
        }
    }
    Ok(ColdLoads {
        precompiled: summarize(&wall),
        precompiled_load_time: summarize(&own),
        first_request: summarize(&first),
        compiled: summarize(&compiled),
        shared_code: summarize(&shared),
    })
}

/// Size of the host's precompiled files (what a cold load reads).
pub fn precompiled_bytes(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("precompiled"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
