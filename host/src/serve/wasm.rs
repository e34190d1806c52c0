//! The real backend: the model store says which bytes a tenant's model is, the sandbox
//! runs them.
//!
//! Per request: resolve `name@selector` in the store (cached for a short TTL, so a
//! promotion is picked up within it without two file reads per request), check that the
//! version belongs to the calling tenant (or is the pooled `*` model), then call the
//! sandbox with the version's (artifact, plugin) sha256 as the cache key. Bytes are read
//! (and their sha256 verified by the store, and again by the sandbox) only on a miss.

use super::backend::{
    Backend, BackendError, BoxFuture, CacheStats, Call, CallStats, FailureKind, ModelId, Outcome,
};
use crate::models::{ModelStore, ModelVersion, StoreError};
use crate::sandbox::{
    CacheOutcome, CallContext, FeatureSource, ModelFetch, ModelKey, ModelSource, NoFeatures,
    Sandbox, SandboxError,
};
use bulkhead_registry::ModelRef;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tenant of the pooled global model in a manifest.
pub const POOLED: &str = "*";

pub struct WasmBackend {
    store: Arc<ModelStore>,
    sandbox: Arc<Sandbox>,
    features: Arc<dyn FeatureSource>,
    resolve_ttl: Duration,
    resolved: Mutex<HashMap<(String, String), (Instant, ModelVersion)>>,
}

/// Reads a version's bytes from the store on a cache miss (the store verifies them).
struct StoreFetch {
    store: Arc<ModelStore>,
    version: ModelVersion,
    /// Set when the store refused bytes that do not match the manifest, so the
    /// sandbox's `load_failed` can be reported as what it is: an integrity failure.
    tampered: Arc<AtomicBool>,
}

impl StoreFetch {
    fn note<T>(&self, r: Result<T, StoreError>) -> anyhow::Result<T> {
        if let Err(StoreError::Tampered { .. }) = &r {
            self.tampered.store(true, Ordering::Relaxed);
        }
        Ok(r?)
    }
}

impl ModelFetch for StoreFetch {
    fn plugin(&self) -> anyhow::Result<Vec<u8>> {
        self.note(self.store.read_plugin(&self.version))
    }
    fn artifact(&self) -> anyhow::Result<Vec<u8>> {
        self.note(self.store.read_artifact(&self.version))
    }
}

impl WasmBackend {
    pub fn new(store: ModelStore, sandbox: Arc<Sandbox>, resolve_ttl: Duration) -> WasmBackend {
        WasmBackend {
            store: Arc::new(store),
            sandbox,
            // No tenant feature store is wired to the data plane yet: lookups find nothing.
            features: Arc::new(NoFeatures),
            resolve_ttl,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The version `m` names now. Store reads run on a blocking thread.
    async fn resolve(&self, m: &ModelRef) -> Result<ModelVersion, BackendError> {
        let k = (m.name.clone(), m.version.clone());
        {
            let map = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = map.get(&k)
                && at.elapsed() < self.resolve_ttl
            {
                return Ok(v.clone());
            }
        }
        let store = Arc::clone(&self.store);
        let (name, sel) = k.clone();
        let v = tokio::task::spawn_blocking(move || store.resolve(&name, &sel))
            .await
            .map_err(|e| BackendError::new(FailureKind::Internal, format!("resolve task: {e}")))?
            .map_err(store_error)?;
        let mut map = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the registry's distinct model references.
        map.insert(k, (Instant::now(), v.clone()));
        Ok(v)
    }

    /// The sandbox's view of `v`, and the flag its fetch raises on tampered bytes.
    fn source(&self, v: &ModelVersion) -> (ModelSource, Arc<AtomicBool>) {
        let tampered = Arc::new(AtomicBool::new(false));
        let source = ModelSource::new(
            ModelKey {
                artifact_sha256: v.artifact_sha256().to_string(),
                plugin_sha256: v.plugin_sha256().to_string(),
            },
            format!("{}@{}", v.name(), v.version()),
            Arc::new(StoreFetch {
                store: Arc::clone(&self.store),
                version: v.clone(),
                tampered: Arc::clone(&tampered),
            }),
        );
        (source, tampered)
    }
}

fn store_error(e: StoreError) -> BackendError {
    let kind = match &e {
        StoreError::NotFound { .. } => FailureKind::ModelNotFound,
        StoreError::Tampered { .. } => FailureKind::Integrity,
        _ => FailureKind::Store,
    };
    BackendError::new(kind, e.to_string())
}

fn sandbox_error(e: SandboxError, tampered: &AtomicBool) -> BackendError {
    let kind = if tampered.load(Ordering::Relaxed) {
        FailureKind::Integrity
    } else {
        FailureKind::Sandbox(e.kind)
    };
    let mut b = BackendError::new(kind, e.message);
    if let Some(d) = e.detail {
        b = b.with_detail(d);
    }
    b
}

fn id(v: &ModelVersion) -> ModelId {
    ModelId {
        name: v.name().to_string(),
        version: v.version().to_string(),
    }
}

impl Backend for WasmBackend {
    fn predict(&self, call: Call) -> BoxFuture<'_, Result<Outcome, BackendError>> {
        Box::pin(async move {
            let v = self.resolve(&call.model).await?;
            let owner = v.manifest.tenant.as_str();
            if owner != POOLED && owner != call.tenant {
                // The registry must never hand one tenant's model to another: refuse
                // rather than serve it (defence in depth against a bad registry edit).
                return Err(BackendError::new(
                    FailureKind::NotOwned,
                    format!(
                        "{}@{} belongs to tenant {owner}, not {}",
                        v.name(),
                        v.version(),
                        call.tenant
                    ),
                ));
            }
            let ctx = CallContext::new(&call.tenant, &call.request_id, Arc::clone(&self.features));
            let (source, tampered) = self.source(&v);
            let out = self
                .sandbox
                .predict(&source, ctx, call.rows)
                .await
                .map_err(|e| sandbox_error(e, &tampered))?;
            Ok(Outcome {
                model: id(&v),
                predictions: out.predictions,
                stats: CallStats {
                    cache_hit: out.stats.cache == CacheOutcome::Hit,
                    load_seconds: (out.stats.cache == CacheOutcome::Miss)
                        .then_some(out.stats.load.as_secs_f64()),
                },
            })
        })
    }

    fn warm(&self, model: ModelRef) -> BoxFuture<'_, Result<ModelId, BackendError>> {
        Box::pin(async move {
            let v = self.resolve(&model).await?;
            let (source, tampered) = self.source(&v);
            self.sandbox
                .preload(&source)
                .await
                .map_err(|e| sandbox_error(e, &tampered))?;
            Ok(id(&v))
        })
    }

    fn cache_stats(&self) -> CacheStats {
        let s = self.sandbox.stats();
        CacheStats {
            hits: s.hits,
            misses: s.misses,
            loads: s.loads,
            evictions: s.evictions,
            resident_models: s.resident_models,
            resident_bytes: s.resident_bytes,
            // Per model name (the sandbox labels models `name@version`; metrics shows a
            // tenant its model's name). The plugin's compiled code is shared by every
            // model, so only the tenant's own artifact counts here.
            resident_bytes_by_model: by_model_name(
                self.sandbox
                    .resident_models()
                    .into_iter()
                    .map(|m| (m.label, m.artifact_bytes)),
            ),
            evictions_by_model: by_model_name(self.sandbox.evictions_by_model().into_iter()),
        }
    }
}

/// Sums `(name@version, n)` pairs per model name, sorted by name.
fn by_model_name(pairs: impl Iterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (label, n) in pairs {
        let name = label.split_once('@').map_or(label.as_str(), |(n, _)| n);
        *sums.entry(name.to_string()).or_default() += n;
    }
    sums.into_iter().collect()
}
