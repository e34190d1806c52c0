//! The model sandbox: runs a tenant's model plugin (a WebAssembly component over
//! `wit/model.wit`) under wasmtime, with per-call limits, and caches loaded models.
//!
//! # Using it
//!
//! ```ignore
//! let sandbox = Sandbox::new(SandboxConfig { data_dir: Some(dir), ..Default::default() })?;
//! let model = ModelSource::new(key, "eta-UA@3", Arc::new(my_fetch)); // bytes fetched on a miss only
//! let ctx = CallContext::new("UA", request_id, Arc::new(NoFeatures));
//! match sandbox.predict(&model, ctx, rows).await {
//!     Ok(out) => /* out.predictions, out.stats (cache hit/miss, timings) */,
//!     Err(e) => /* e.kind: a metrics label and the HTTP status; e.message for the log */,
//! }
//! ```
//!
//! # What a call does
//!
//! A cache hit finds the model's [`InstancePre`](wasmtime::component::InstancePre) (shared
//! by every model of one plugin) and its artifact. Each call then gets a fresh `Store`
//! (nothing survives between requests, so one tenant's request cannot see another's),
//! instantiates the component from the pool, calls `load(artifact)`, then `predict(rows)`.
//! The wall-time limit covers all three (an epoch deadline); memory is capped across all
//! of the component's linear memories together; the output is checked *before* it is
//! copied out of the guest; host-call arguments are measured in guest memory before
//! they are copied. A plugin gets only the world's imports (`features.lookup`, answered
//! from the caller's [`FeatureSource`], and `log.log`); anything else it imports (the
//! WASI bits Rust's std links for its panic path) is linked as a function that traps.
//!
//! Measured on the 2-core dev box (host crate at opt-level 3, hostile plugin): a warm
//! call with 0 rows is ~35 µs end to end (instantiate ~7 µs, `load` ~9 µs); 100
//! ETA-shaped rows add ~240 µs, nearly all of it passing the rows in — the WIT's
//! `list<row>` of named features means ~900 strings per 100 rows, each a `cabi_realloc`
//! call into the guest (~270 ns each).
//!
//! # Why a blocking thread and not async wasmtime
//!
//! Wasm runs synchronously on tokio's blocking pool (`spawn_blocking`): every call is
//! bounded by its epoch deadline (tens of ms), so a blocking thread is held only briefly,
//! the async workers that accept and admit requests never run guest code (a spinning
//! plugin cannot stall the HTTP side), and synchronous calls skip async wasmtime's fiber
//! stacks and per-host-call context switches. The number of calls in flight is bounded
//! by the pooling allocator's instance count (excess calls queue on a semaphore rather
//! than fail).
//!
//! # Cache
//!
//! Loaded models live in an LRU bounded by entries and bytes, keyed by
//! ([`ModelKey`], engine compatibility hash). Concurrent misses for one key load once;
//! a failed load is not cached. Compiled plugins are written by the host to
//! `<data_dir>/precompiled/<plugin sha256>-<engine hash>.cwasm` after the plugin bytes
//! were verified against their sha256, so a cold load is a deserialize, not a compile; a
//! precompiled blob from anywhere else is never deserialized. A cold load from that
//! file is ~0.4 ms; a compile ~150 ms (single-threaded on purpose, see `engine.rs`).

mod batch;
mod bindings;
mod cache;
mod call;
mod engine;
mod error;
mod host_api;
mod limits;
mod loader;
mod precompiled;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use batch::{BatchBuilder, BatchError, Feature, Prediction, Row, batch_from_rows, row_of};
pub use bindings::{
    Alert, Batch, Categories, Column, ColumnValues, Description, FeatureKind, FeatureSpec,
    LogLevel, Options, RowError, Value,
};
pub use error::{ErrorKind, SandboxError};

/// Everything [`Sandbox::new`] needs. `Default` gives settings sized for the 2-core /
/// 24 GiB demo machine.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where precompiled plugins are kept (`<data_dir>/precompiled/`). `None`: compile in
    /// memory on every cold load (tests, tools).
    pub data_dir: Option<PathBuf>,
    /// Per-call limits used when a [`CallContext`] does not bring its own.
    pub limits: Limits,
    pub cache: CacheConfig,
    pub pool: PoolConfig,
    /// How often the epoch ticker advances the engine's epoch: the granularity of the
    /// wall-time limit (a call is interrupted at most one tick after its deadline).
    pub epoch_tick: Duration,
    /// Largest wasm stack a call may use (wasmtime `max_wasm_stack`).
    pub max_wasm_stack: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            data_dir: None,
            limits: Limits::default(),
            cache: CacheConfig::default(),
            pool: PoolConfig::default(),
            epoch_tick: Duration::from_millis(1),
            max_wasm_stack: 512 << 10,
        }
    }
}

/// Limits on one call (instantiate + `load` + `predict`). All configurable; the defaults
/// are the issue's (64 MiB, 50 ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory, summed over all of the component's memories. Must not exceed
    /// [`PoolConfig::max_memory_bytes`] (a memory can never grow past its pool slot).
    pub memory_bytes: usize,
    /// Table elements, summed over all tables.
    pub table_elements: usize,
    /// Wall time for the whole call, enforced by an epoch deadline.
    pub timeout: Duration,
    /// Bound on the output as it sits in guest memory (a `prediction` is 40 bytes there);
    /// the number of predictions must also equal the number of rows.
    pub max_output_bytes: usize,
    /// Bound on the argument bytes of one host call (`features.lookup`: table + key +
    /// columns), checked before they are copied out of the guest.
    pub max_hostcall_arg_bytes: usize,
    /// Bound on the argument bytes of all host calls of one request.
    pub max_hostcall_total_bytes: usize,
    /// Bound on the number of host calls (lookups and log lines) of one request.
    pub max_hostcalls: u32,
    /// Longest log line kept (longer ones are cut, not refused).
    pub max_log_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            timeout: Duration::from_millis(50),
            max_output_bytes: 4 << 20,
            max_hostcall_arg_bytes: 16 << 10,
            max_hostcall_total_bytes: 1 << 20,
            max_hostcalls: 10_000,
            max_log_line_bytes: 1024,
        }
    }
}

/// The model cache's capacity: whichever bound is hit first evicts the least recently
/// used model.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_entries: usize,
    /// Sum of the resident models' artifact bytes plus their plugins' compiled code
    /// (a plugin shared by several models is counted once).
    pub max_bytes: u64,
    /// Compiled plugins kept in memory after their last resident model left (most
    /// recently used first), so a reload or a retried failed load does not even
    /// deserialize. Not counted in `max_bytes`.
    pub idle_plugins: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100,
            max_bytes: 512 << 20,
            idle_plugins: 8,
        }
    }
}

/// The pooling instance allocator: every instance gets a pre-reserved slot, which makes
/// instantiation a few microseconds and bounds the host's wasm memory by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Component instances alive at once = calls in flight (more wait for a slot).
    pub max_instances: u32,
    /// Largest any one linear memory may grow (the slot size). Per-call
    /// [`Limits::memory_bytes`] must be ≤ this.
    pub max_memory_bytes: usize,
    /// Core instances / memories / tables a component may contain (a Rust wasip2
    /// component has a handful of core instances, one or two memories).
    pub max_core_instances_per_component: u32,
    pub max_memories_per_component: u32,
    pub max_tables_per_component: u32,
    /// Bytes of each memory slot kept mapped (zeroed with memset rather than released
    /// with madvise) when an instance is freed. Measured: 64 KiB and 0 cost the same per
    /// call, 1 MiB adds ~16 µs (the memset) for a plugin that touches little.
    pub linear_memory_keep_resident: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            max_core_instances_per_component: 16,
            max_memories_per_component: 2,
            max_tables_per_component: 4,
            linear_memory_keep_resident: 64 << 10,
        }
    }
}

/// What identifies a loaded model: the artifact (the tenant's parameters) and the plugin
/// (shared code), both as lowercase hex sha256. The cache adds the engine's
/// compatibility hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub artifact_sha256: String,
    pub plugin_sha256: String,
}

/// Gets a model's bytes — called only on a cache miss, on a blocking thread. The sandbox
/// checks both against the [`ModelKey`]'s hashes before using them (a mismatch fails
/// the load with [`ErrorKind::LoadFailed`]).
pub trait ModelFetch: Send + Sync {
    /// The plugin's `.wasm` component.
    fn plugin(&self) -> anyhow::Result<Vec<u8>>;
    /// The tenant's artifact.
    fn artifact(&self) -> anyhow::Result<Vec<u8>>;
}

/// Bytes already in memory (tests, tools, the offline evaluator).
#[derive(Debug, Clone)]
pub struct InMemory {
    pub plugin: Arc<[u8]>,
    pub artifact: Arc<[u8]>,
}

impl ModelFetch for InMemory {
    fn plugin(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.plugin.to_vec())
    }
    fn artifact(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.artifact.to_vec())
    }
}

/// A model to call: its key, a label for logs, and where to get its bytes on a miss.
#[derive(Clone)]
pub struct ModelSource {
    pub key: ModelKey,
    /// For logs and errors, e.g. `eta-UA@3`.
    pub label: String,
    pub fetch: Arc<dyn ModelFetch>,
}

impl ModelSource {
    pub fn new(key: ModelKey, label: impl Into<String>, fetch: Arc<dyn ModelFetch>) -> Self {
        ModelSource {
            key,
            label: label.into(),
            fetch,
        }
    }

    /// A source over bytes in memory; the key is computed from them.
    pub fn from_bytes(label: impl Into<String>, plugin: Arc<[u8]>, artifact: Arc<[u8]>) -> Self {
        let key = ModelKey {
            artifact_sha256: sha256_hex(&artifact),
            plugin_sha256: sha256_hex(&plugin),
        };
        ModelSource::new(key, label, Arc::new(InMemory { plugin, artifact }))
    }
}

impl std::fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSource")
            .field("key", &self.key)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tenant-scoped feature store a plugin reads through its `features.lookup` import.
/// Implementations answer only from the calling tenant's own data. Called on the
/// blocking thread that runs the guest, inside the call's wall-time budget.
pub trait FeatureSource: Send + Sync {
    /// The `columns` of the row with `key` in `table`, in the order asked; `Ok(None)`
    /// when there is no such row; `Err` is handed to the plugin as the WIT error string.
    fn lookup(
        &self,
        table: &str,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String>;

    /// The call is over: release what its lookups held (a pooled connection and its
    /// transaction). Called when the call's store is dropped, on its blocking thread.
    fn end_call(&self) {}
}

/// A feature source with no rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFeatures;

impl FeatureSource for NoFeatures {
    fn lookup(&self, _: &str, _: &str, _: &[String]) -> Result<Option<Vec<Value>>, String> {
        Ok(None)
    }
}

/// Who is calling: tags the plugin's log lines and errors, scopes its feature lookups.
#[derive(Clone)]
pub struct CallContext {
    pub tenant: String,
    pub request_id: String,
    pub features: Arc<dyn FeatureSource>,
    /// Overrides [`SandboxConfig::limits`] for this call.
    pub limits: Option<Limits>,
    /// Passed to the plugin's `predict` (the tenant's alert threshold).
    pub options: Options,
}

impl CallContext {
    pub fn new(
        tenant: impl Into<String>,
        request_id: impl Into<String>,
        features: Arc<dyn FeatureSource>,
    ) -> Self {
        CallContext {
            tenant: tenant.into(),
            request_id: request_id.into(),
            features,
            limits: None,
            options: Options {
                alert_after_minutes: None,
            },
        }
    }

    /// Ask for alerts on rows predicted more than `minutes` late.
    pub fn with_alerts_after(mut self, minutes: Option<f64>) -> Self {
        self.options.alert_after_minutes = minutes;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("tenant", &self.tenant)
            .field("request_id", &self.request_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// How the model was found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Resident.
    Hit,
    /// Not resident; this call loaded it.
    Miss,
    /// Not resident; another call was loading it and this one waited for that load.
    Joined,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Joined => "joined",
        }
    }
}

/// What one call cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStats {
    pub cache: CacheOutcome,
    /// Time spent loading the model (a miss, or waiting on another call's load).
    pub load: Duration,
    /// How the plugin's code was obtained when this call loaded it.
    pub code_source: Option<CodeSource>,
    /// Waiting for a free instance slot.
    pub queued: Duration,
    pub instantiate: Duration,
    /// The guest's `load(artifact)`.
    pub artifact_load: Duration,
    /// The guest's `predict(rows)`, including copying the predictions out.
    pub predict: Duration,
    /// Time in the plugin's own code during the call (wasmtime call hooks: from entering
    /// wasm to leaving it, host calls excluded) — the tenant's share of the CPUs.
    pub guest: Duration,
    /// Wall time of the whole `Sandbox::predict`.
    pub total: Duration,
    /// Largest total linear memory the call reached.
    pub memory_peak_bytes: usize,
    pub host_calls: u32,
    /// `features.lookup` calls the store answered during the call…
    pub feature_lookups: u32,
    /// …and the time it took for them (inside `predict`/`artifact_load`, outside `guest`).
    pub feature_lookup: Duration,
}

/// How a plugin's compiled code was obtained on a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// Already in memory (another resident model uses the same plugin).
    Shared,
    /// Deserialized from the host's own precompiled file.
    Precompiled,
    /// Compiled from the `.wasm` (and, with a data dir, written out precompiled).
    Compiled,
}

/// Predictions (one per row, in order) and what they cost.
#[derive(Debug, Clone)]
pub struct PredictOutput {
    /// One per row, in order; NaN values for a row in `errors`.
    pub predictions: Vec<Prediction>,
    /// The rows the model could not score, ascending (checked: in range, NaN values).
    pub errors: Vec<RowError>,
    /// The alerts `CallContext::options` asked for, ascending by row, never on an error row.
    pub alerts: Vec<Alert>,
    pub model: Arc<ModelInfo>,
    pub stats: CallStats,
}

/// A loaded model, as the plugin describes itself.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub key: ModelKey,
    pub label: String,
    pub description: Description,
    pub artifact_bytes: usize,
    /// Time the load took (fetch, verify, compile or deserialize, validate).
    pub load_time: Duration,
    pub code_source: CodeSource,
}

/// One model in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentModel {
    pub key: ModelKey,
    pub label: String,
    pub artifact_bytes: u64,
    /// The compiled code of its plugin, shared with every other model of that plugin
    /// (counted once in [`SandboxStats::resident_bytes`]).
    pub plugin_code_bytes: u64,
    /// Time since it was loaded.
    pub loaded_for: Duration,
}

/// Counters since start (monotonic) and current residency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxStats {
    pub hits: u64,
    pub misses: u64,
    /// Misses that waited on another call's load instead of loading.
    pub joined: u64,
    /// Loads started (successful or not).
    pub loads: u64,
    pub load_failures: u64,
    /// Total time of successful loads, µs.
    pub load_time_us: u64,
    pub evictions: u64,
    /// Plugins compiled from `.wasm`.
    pub compiles: u64,
    /// Plugins deserialized from the precompiled directory.
    pub deserializes: u64,
    pub resident_models: u64,
    /// Artifact bytes plus distinct plugins' code bytes of the resident models.
    pub resident_bytes: u64,
    pub calls: u64,
    pub call_failures: u64,
}

/// The sandbox: one wasmtime `Engine` (with its epoch ticker), the linker with the host's
/// imports, and the model cache. Cheap to share (`Arc<Sandbox>`); all methods take `&self`.
pub struct Sandbox {
    inner: Arc<call::Runtime>,
}

impl Sandbox {
    /// Builds the engine (pooling allocator, epoch interruption, Cranelift at `speed`)
    /// and starts the epoch ticker thread (stopped when the `Sandbox` is dropped).
    pub fn new(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        Ok(Sandbox {
            inner: Arc::new(call::Runtime::new(config)?),
        })
    }

    /// Scores the rows of `batch` with `model` for the caller in `ctx`. Loads the model on a miss
    /// (single-flight), then runs instantiate + `load` + `predict` in a fresh store on a
    /// blocking thread. Any failure is the caller's alone: see [`ErrorKind`].
    pub async fn predict(
        &self,
        model: &ModelSource,
        ctx: CallContext,
        batch: Batch,
    ) -> Result<PredictOutput, SandboxError> {
        call::predict(&self.inner, model, ctx, batch).await
    }

    /// Loads `model` into the cache if it is not resident (for readiness checks and
    /// warm-up) and returns what it is.
    pub async fn preload(&self, model: &ModelSource) -> Result<Arc<ModelInfo>, SandboxError> {
        call::preload(&self.inner, model).await
    }

    /// Drops every resident model and idle plugin code (the precompiled files stay):
    /// the next call of each model is a cold load.
    pub fn clear_cache(&self) {
        self.inner.clear();
    }

    pub fn stats(&self) -> SandboxStats {
        self.inner.stats()
    }

    /// The resident models, most recently used first (for per-model residency metrics).
    pub fn resident_models(&self) -> Vec<ResidentModel> {
        self.inner.cache.resident()
    }

    /// Evictions since start per model label ([`ModelSource::label`]), sorted by label.
    /// Bounded by the number of distinct models ever loaded.
    pub fn evictions_by_model(&self) -> Vec<(String, u64)> {
        self.inner.cache.evictions_by_model()
    }

    /// The engine's compatibility hash (hex) that keys precompiled files and the cache.
    pub fn engine_hash(&self) -> &str {
        &self.inner.engine.compat_hash
    }

    /// The configuration the sandbox runs with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("engine_hash", &self.engine_hash())
            .finish_non_exhaustive()
    }
}
