//! One call: find or load the model, take an instance slot, then on a blocking thread
//! build a fresh `Store` (limiter, host-call budget, epoch deadline), instantiate from
//! the model's `InstancePre`, `load(artifact)`, `predict(batch)`, and check the output
//! before handing it on. Every failure becomes a [`SandboxError`] and a
//! log line tagged with tenant, request id and model.

use super::batch::Prediction;
use super::bindings::{Alert, Batch, ModelError, Options, Predictions, RowError};
use super::cache::{CacheKey, ModelCache};
use super::engine::SandboxEngine;
use super::error::{ErrorKind, SandboxError, classify};
use super::host_api::{CallState, LookupClock};
use super::limits::{OutputRefused, OutputShape, check_output, check_rows};
use super::loader::{LoadedModel, Loader, model_error};
use super::precompiled::PrecompiledDir;
use super::{
    CacheOutcome, CallContext, CallStats, Limits, ModelInfo, ModelSource, PredictOutput,
    SandboxConfig, SandboxStats,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::Store;

/// Everything a `Sandbox` owns.
pub struct Runtime {
    pub config: SandboxConfig,
    pub engine: SandboxEngine,
    engine_hash: Arc<str>,
    pub cache: ModelCache,
    loader: Loader,
    /// One permit per pool instance slot: calls beyond the pool wait here instead of
    /// failing to instantiate.
    slots: Arc<Semaphore>,
    calls: AtomicU64,
    call_failures: AtomicU64,
}

impl Runtime {
    pub fn new(config: SandboxConfig) -> anyhow::Result<Runtime> {
        let engine = SandboxEngine::new(&config)?;
        let precompiled = config
            .data_dir
            .as_deref()
            .map(|dir| PrecompiledDir::new(dir, &engine.compat_hash));
        let loader = Loader::new(
            engine.engine.clone(),
            precompiled,
            config.cache.idle_plugins,
        )?;
        Ok(Runtime {
            engine_hash: engine.compat_hash.as_str().into(),
            cache: ModelCache::new(config.cache.clone()),
            loader,
            slots: Arc::new(Semaphore::new(config.pool.max_instances.max(1) as usize)),
            calls: AtomicU64::new(0),
            call_failures: AtomicU64::new(0),
            engine,
            config,
        })
    }

    /// Drops every resident model and idle plugin.
    pub fn clear(&self) {
        self.cache.clear();
        self.loader.drop_idle();
    }

    pub fn stats(&self) -> SandboxStats {
        let c = &self.cache.counters;
        let residency = self.cache.residency();
        SandboxStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            joined: c.joined.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_failures: c.load_failures.load(Ordering::Relaxed),
            load_time_us: c.load_time_us.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            compiles: self.loader.compiles.load(Ordering::Relaxed),
            deserializes: self.loader.deserializes.load(Ordering::Relaxed),
            resident_models: residency.models,
            resident_bytes: residency.bytes,
            calls: self.calls.load(Ordering::Relaxed),
            call_failures: self.call_failures.load(Ordering::Relaxed),
        }
    }

    fn limits_for(&self, ctx: &CallContext) -> Result<Limits, SandboxError> {
        let limits = ctx
            .limits
            .clone()
            .unwrap_or_else(|| self.config.limits.clone());
        if limits.memory_bytes > self.config.pool.max_memory_bytes {
            return Err(SandboxError::new(
                ErrorKind::Internal,
                format!(
                    "call memory limit {} exceeds the pool's slot size {}",
                    limits.memory_bytes, self.config.pool.max_memory_bytes
                ),
            ));
        }
        Ok(limits)
    }
}

/// [`super::Sandbox::preload`].
pub async fn preload(
    rt: &Arc<Runtime>,
    model: &ModelSource,
) -> Result<Arc<ModelInfo>, SandboxError> {
    let (loaded, _, _) = get_model(rt, model).await?;
    Ok(loaded.info.clone())
}

/// The model from the cache, or loaded on a blocking thread (single-flight).
async fn get_model(
    rt: &Arc<Runtime>,
    model: &ModelSource,
) -> Result<(Arc<LoadedModel>, CacheOutcome, Duration), SandboxError> {
    let key = CacheKey {
        model: model.key.clone(),
        engine_hash: rt.engine_hash.clone(),
    };
    let start = Instant::now();
    let (result, outcome) = rt
        .cache
        .get_or_load(&key, || {
            let rt = rt.clone();
            let source = model.clone();
            async move {
                let limits = rt.config.limits.clone();
                let ticks = rt.engine.deadline_ticks(limits.timeout);
                // The load's validation call takes an instance slot like any call.
                let permit = rt.slots.clone().acquire_owned().await.map_err(|e| {
                    SandboxError::new(ErrorKind::Internal, format!("instance slots: {e}"))
                })?;
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    rt.loader.load(&source, &limits, ticks)
                })
                .await
                .map_err(|e| SandboxError::new(ErrorKind::Internal, format!("load task: {e}")))?
                .map(Arc::new)
            }
        })
        .await;
    let waited = if outcome == CacheOutcome::Hit {
        Duration::ZERO
    } else {
        start.elapsed()
    };
    match result {
        Ok(loaded) => Ok((loaded, outcome, waited)),
        Err(error) => {
            if outcome == CacheOutcome::Miss {
                tracing::warn!(
                    model = %model.label,
                    plugin = %model.key.plugin_sha256,
                    artifact = %model.key.artifact_sha256,
                    kind = %error.kind,
                    detail = error.detail.as_deref().unwrap_or(""),
                    "model load failed: {}", error.message
                );
            }
            Err(error)
        }
    }
}

/// [`super::Sandbox::predict`].
pub async fn predict(
    rt: &Arc<Runtime>,
    model: &ModelSource,
    ctx: CallContext,
    batch: Batch,
) -> Result<PredictOutput, SandboxError> {
    let start = Instant::now();
    rt.calls.fetch_add(1, Ordering::Relaxed);
    let result = predict_inner(rt, model, &ctx, batch, start).await;
    if let Err(error) = &result {
        rt.call_failures.fetch_add(1, Ordering::Relaxed);
        log_failure(&ctx, &model.label, error);
    }
    result
}

async fn predict_inner(
    rt: &Arc<Runtime>,
    model: &ModelSource,
    ctx: &CallContext,
    batch: Batch,
    start: Instant,
) -> Result<PredictOutput, SandboxError> {
    let limits = rt.limits_for(ctx)?;
    let (loaded, outcome, load) = get_model(rt, model).await?;
    let queued_at = Instant::now();
    let permit = rt
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| SandboxError::new(ErrorKind::Internal, format!("instance slots: {e}")))?;
    let queued = queued_at.elapsed();
    let state = CallState::new(
        &limits,
        ctx.tenant.as_str().into(),
        ctx.request_id.as_str().into(),
        model.label.as_str().into(),
        ctx.features.clone(),
    );
    let ticks = rt.engine.deadline_ticks(limits.timeout);
    let runtime = rt.clone();
    let model_ref = loaded.clone();
    let options = ctx.options;
    let (scored, timings) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        run(
            &runtime, &model_ref, state, &limits, ticks, &batch, &options,
        )
    })
    .await
    .map_err(|e| SandboxError::new(ErrorKind::Internal, format!("call task: {e}")))??;
    Ok(PredictOutput {
        predictions: scored.predictions,
        errors: scored.errors,
        alerts: scored.alerts,
        model: loaded.info.clone(),
        stats: CallStats {
            cache: outcome,
            load,
            code_source: (outcome == CacheOutcome::Miss).then_some(loaded.info.code_source),
            queued,
            guest: timings.guest,
            instantiate: timings.instantiate,
            artifact_load: timings.artifact_load,
            predict: timings.predict,
            total: start.elapsed(),
            memory_peak_bytes: timings.memory_peak,
            host_calls: timings.host_calls,
            feature_lookups: timings.lookups.count,
            feature_lookup: timings.lookups.total,
        },
    })
}

/// A call's checked output.
struct Scored {
    predictions: Vec<Prediction>,
    errors: Vec<RowError>,
    alerts: Vec<Alert>,
}

struct Timings {
    guest: Duration,
    instantiate: Duration,
    artifact_load: Duration,
    predict: Duration,
    memory_peak: usize,
    host_calls: u32,
    lookups: LookupClock,
}

/// The guest part of a call, on a blocking thread.
fn run(
    rt: &Runtime,
    model: &LoadedModel,
    state: CallState,
    limits: &Limits,
    deadline_ticks: u64,
    batch: &Batch,
    options: &Options,
) -> Result<(Scored, Timings), SandboxError> {
    let mut store = Store::new(&rt.engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.call_hook(|mut s, hook| {
        s.data_mut().guest.on(hook);
        Ok(())
    });
    // Always set: with epoch interruption on, a store without a deadline traps at once.
    store.set_epoch_deadline(deadline_ticks);
    store.epoch_deadline_trap();
    let fail =
        |e: wasmtime::Error, store: &Store<CallState>| classify(e, store.data().limiter.exceeded);

    let t0 = Instant::now();
    let instance = match model.plugin.pre.instance_pre().instantiate(&mut store) {
        Ok(instance) => instance,
        Err(e) => return Err(fail(e, &store)),
    };
    let t1 = Instant::now();
    type LoadFn<'a> = (&'a [u8],);
    type LoadResult = (Result<(), ModelError>,);
    let load =
        match instance.get_typed_func::<LoadFn<'_>, LoadResult>(&mut store, &model.plugin.load) {
            Ok(f) => f,
            Err(e) => return Err(fail(e, &store)),
        };
    match load.call(&mut store, (&model.artifact,)) {
        Ok((Ok(()),)) => {}
        Ok((Err(error),)) => return Err(model_error(error)),
        Err(e) => return Err(fail(e, &store)),
    }
    let t2 = Instant::now();
    // The result is copied out eagerly: wasmtime runs the guest's post-return (which
    // frees the lists) inside `call`, so a lazily read `WasmList` would read freed guest
    // memory (seen: allocator pointers in place of the first values). The copy is
    // bounded by the call's memory limit (a guest cannot return more than it holds);
    // the shape and byte checks below decide whether any of it reaches the caller.
    type PredictFn<'a> = (&'a Batch, &'a Options);
    type PredictResult = (Result<Predictions, ModelError>,);
    let func = match instance
        .get_typed_func::<PredictFn<'_>, PredictResult>(&mut store, &model.plugin.predict)
    {
        Ok(f) => f,
        Err(e) => return Err(fail(e, &store)),
    };
    let mut out = match func.call(&mut store, (batch, options)) {
        Ok((Ok(out),)) => out,
        Ok((Err(error),)) => return Err(model_error(error)),
        Err(e) => return Err(fail(e, &store)),
    };
    let shape = OutputShape {
        values: out.values.len(),
        lower: out.lower.len(),
        upper: out.upper.len(),
        errors: out.errors.len(),
        alerts: out.alerts.len(),
        text: out.errors.iter().map(|e| e.message.len()).sum::<usize>()
            + out.alerts.iter().map(|a| a.reason.len()).sum::<usize>(),
    };
    if let Err(refused) = check_output(limits, batch.rows as usize, shape) {
        return Err(fail(wasmtime::Error::new(refused), &store));
    }
    if let Err(why) = check_rows(&out) {
        return Err(fail(
            wasmtime::Error::new(OutputRefused {
                too_large: false,
                message: format!("plugin returned {why}"),
            }),
            &store,
        ));
    }
    let (errors, alerts) = (
        std::mem::take(&mut out.errors),
        std::mem::take(&mut out.alerts),
    );
    let predictions = per_row(out);
    let t3 = Instant::now();
    let data = store.data();
    Ok((
        Scored {
            predictions,
            errors,
            alerts,
        },
        Timings {
            guest: data.guest.total,
            instantiate: t1 - t0,
            artifact_load: t2 - t1,
            predict: t3 - t2,
            memory_peak: data.limiter.memory_peak(),
            host_calls: data.budget.calls,
            lookups: data.lookups,
        },
    ))
}

/// The checked columns as one prediction per row.
fn per_row(out: Predictions) -> Vec<Prediction> {
    out.values
        .iter()
        .enumerate()
        .map(|(i, &value)| Prediction {
            value,
            lower: out.lower.get(i).copied(),
            upper: out.upper.get(i).copied(),
        })
        .collect()
}

fn log_failure(ctx: &CallContext, model: &str, error: &SandboxError) {
    let detail = error.detail.as_deref().unwrap_or("");
    if error.kind.is_caller_error() {
        tracing::info!(
            tenant = %ctx.tenant,
            request_id = %ctx.request_id,
            model,
            kind = %error.kind,
            "model refused the input: {}", error.message
        );
    } else {
        tracing::warn!(
            tenant = %ctx.tenant,
            request_id = %ctx.request_id,
            model,
            kind = %error.kind,
            detail,
            "model call failed: {}", error.message
        );
    }
}
