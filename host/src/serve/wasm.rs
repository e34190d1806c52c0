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
use crate::features::FeatureStores;
use crate::features::postgres::PgFeatureStores;
use crate::models::{ModelStore, ModelVersion, StoreError};
use crate::sandbox::{
    CacheOutcome, CallContext, FeatureSource, ModelFetch, ModelKey, ModelSource, Sandbox,
    SandboxError,
};
use bulkhead_registry::{ModelRef, Tier};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tenant of the pooled global model in a manifest.
pub const POOLED: &str = "*";

pub struct WasmBackend {
    store: Arc<ModelStore>,
    sandbox: Arc<Sandbox>,
    /// Lookups are scoped to the verified tenant of each call.
    features: Features,
    resolve_ttl: Duration,
    resolved: Mutex<HashMap<(String, String), (Instant, ModelVersion)>>,
}

/// Where a call's feature lookups go.
enum Features {
    /// One SQLite file per tenant (the tier does not matter: each tenant has its own file).
    Files(Arc<FeatureStores>),
    /// PostgreSQL, where the tier decides the placement (pool table under row-level
    /// security, the tenant's schema, or its database). The handle is per tenant and is
    /// replaced when the tenant's registry tier changes, so a promotion moves its lookups
    /// to the new placement with the registry revision that routes the request.
    Postgres(Arc<PgFeatureStores>),
}

impl Features {
    fn for_call(&self, tenant: &str, tier: Tier) -> Arc<dyn FeatureSource> {
        match self {
            Features::Files(f) => f.for_tenant(tenant),
            // One transaction for all of the call's lookups (ended when the call drops it).
            Features::Postgres(p) => Arc::new(p.for_tenant(tenant, tier).for_call()),
        }
    }
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
        let features = FeatureStores::new(store.root().join(crate::features::DIR));
        WasmBackend {
            store: Arc::new(store),
            sandbox,
            // `<data-dir>/features` (`bulkhead features load`): absent files find nothing.
            features: Features::Files(Arc::new(features)),
            resolve_ttl,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// Answers feature lookups from PostgreSQL (`serve --features-postgres`) instead of
    /// the SQLite files.
    pub fn with_postgres(mut self, stores: Arc<PgFeatureStores>) -> WasmBackend {
        self.features = Features::Postgres(stores);
        self
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The version `m` names now. Store reads run on a blocking thread.
    ///
    /// A model on the pooled fallback resolves to the pooled model's version
    /// ([`ModelStore::resolve_serving`]), so the response names the version actually
    /// used. When the version changes (a promotion, a rollback, or the first resolve),
    /// the new version's bytes are verified before it is adopted — a tampered version is
    /// refused and logged, and the last good version keeps serving — and the version
    /// production had before is preloaded (or kept warm) in the sandbox, so the first
    /// request after a rollback is a cache hit.
    async fn resolve(&self, m: &ModelRef) -> Result<ModelVersion, BackendError> {
        let k = (m.name.clone(), m.version.clone());
        let cached = {
            let map = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&k) {
                Some((at, v)) if at.elapsed() < self.resolve_ttl => return Ok(v.clone()),
                Some((_, v)) => Some(v.clone()),
                None => None,
            }
        };
        let store = Arc::clone(&self.store);
        let (name, sel) = k.clone();
        let last_good = cached.clone();
        let (v, keep_warm) = tokio::task::spawn_blocking(move || {
            resolve_checked(&store, &name, &sel, last_good.as_ref())
        })
        .await
        .map_err(|e| BackendError::new(FailureKind::Internal, format!("resolve task: {e}")))?
        .map_err(store_error)?;
        if let Some(prev) = keep_warm {
            let (source, _) = self.source(&prev);
            let sandbox = Arc::clone(&self.sandbox);
            tokio::spawn(async move {
                if let Err(e) = sandbox.preload(&source).await {
                    tracing::warn!(model = %source.label, "keeping the previous version warm: {}", e.message);
                }
            });
        }
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

/// On a blocking thread: what `name@sel` serves now, and the version to keep warm beside
/// it (when the version changed). `last_good` is what this host served until now.
fn resolve_checked(
    store: &ModelStore,
    name: &str,
    sel: &str,
    last_good: Option<&ModelVersion>,
) -> Result<(ModelVersion, Option<ModelVersion>), StoreError> {
    let v = store.resolve_serving(name, sel)?;
    if last_good == Some(&v) {
        return Ok((v, None));
    }
    // A new version for this host: its bytes must be intact before it serves anything.
    if let Err(e) = verify(store, &v) {
        let StoreError::Tampered { .. } = &e else {
            return Err(e);
        };
        tracing::error!(
            model = %format!("{}@{}", v.name(), v.version()),
            "refusing a tampered model version: {e}"
        );
        if let Some(good) = last_good {
            tracing::warn!(
                model = %format!("{}@{}", good.name(), good.version()),
                "still serving the last good version"
            );
            return Ok((good.clone(), None));
        }
        // Nothing served yet in this process: the version production had before.
        let prev = store
            .previous_production(v.name())?
            .map(|p| store.resolve(v.name(), &p))
            .transpose()?;
        return match prev {
            Some(p) if verify(store, &p).is_ok() => {
                tracing::warn!(
                    model = %format!("{}@{}", p.name(), p.version()),
                    "serving the previous production version instead"
                );
                Ok((p, None))
            }
            _ => Err(e),
        };
    }
    // Keep the version it replaces warm; on a first resolve, the one production had
    // before its last move (the rollback target).
    let keep = match last_good {
        Some(good) => Some(good.clone()),
        None if sel == crate::models::PRODUCTION => store
            .previous_production(v.name())
            .ok()
            .flatten()
            .and_then(|p| store.resolve(v.name(), &p).ok()),
        None => None,
    };
    Ok((v, keep))
}

/// Reads (and so hash-checks) a version's artifact and plugin.
fn verify(store: &ModelStore, v: &ModelVersion) -> Result<(), StoreError> {
    store.read_artifact(v)?;
    store.read_plugin(v)?;
    Ok(())
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
            let features = self.features.for_call(&call.tenant, call.tier);
            let ctx = CallContext::new(&call.tenant, &call.request_id, features)
                .with_alerts_after(call.alert_after_minutes);
            let (source, tampered) = self.source(&v);
            let out = self
                .sandbox
                .predict(&source, ctx, call.rows)
                .await
                .map_err(|e| sandbox_error(e, &tampered))?;
            Ok(Outcome {
                model: id(&v),
                predictions: out.predictions,
                errors: out.errors,
                alerts: out.alerts,
                stats: CallStats {
                    cache_hit: out.stats.cache == CacheOutcome::Hit,
                    load_seconds: (out.stats.cache == CacheOutcome::Miss)
                        .then_some(out.stats.load.as_secs_f64()),
                    guest_seconds: out.stats.guest.as_secs_f64(),
                    feature_lookups: u64::from(out.stats.feature_lookups),
                    feature_lookup_seconds: out.stats.feature_lookup.as_secs_f64(),
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
