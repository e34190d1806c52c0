//! What the HTTP layer needs from the model side, as a small trait: resolve the tenant's
//! model, run it on the rows, report what it cost. The real implementation
//! ([`super::wasm::WasmBackend`]) is the model store plus the wasmtime sandbox; tests
//! plug in fakes to drive admission, errors and metrics without wasm.

use crate::sandbox::ErrorKind;
use bulkhead_registry::{ModelRef, Tier};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The batch is the sandbox's own (the WIT type), so a request's rows go to the plugin
/// without another conversion.
pub use crate::sandbox::{Alert, Batch, BatchBuilder, BatchError, Prediction, RowError, Value};

/// One prediction call.
#[derive(Debug, Clone)]
pub struct Call {
    pub tenant: String,
    pub request_id: String,
    /// The tenant's tier in the registry revision that routed the call: where its feature
    /// rows live (PostgreSQL keeps pool, bridge and silo tenants apart differently).
    pub tier: Tier,
    /// The tenant's model as the registry names it (`version` may be an alias).
    pub model: ModelRef,
    pub rows: Batch,
    /// Alert on rows predicted later than scheduled by more than this (minutes).
    pub alert_after_minutes: Option<f64>,
}

/// The model version actually used (an alias resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// Whether the compiled model was already resident.
    pub cache_hit: bool,
    /// Seconds spent loading it on a miss (compile or deserialize + instantiate-pre).
    pub load_seconds: Option<f64>,
    /// Seconds in the plugin's own code (host calls excluded).
    pub guest_seconds: f64,
    /// `features.lookup` calls the tenant's feature store answered…
    pub feature_lookups: u64,
    /// …and the seconds it took for them (part of the call, not of `guest_seconds`).
    pub feature_lookup_seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub model: ModelId,
    /// One per row (NaN values for a row in `errors`).
    pub predictions: Vec<Prediction>,
    /// Rows the model could not score, ascending.
    pub errors: Vec<RowError>,
    pub alerts: Vec<Alert>,
    pub stats: CallStats,
}

/// Process-wide model cache figures, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub evictions: u64,
    pub resident_models: u64,
    pub resident_bytes: u64,
    /// Resident bytes per model name (for per-tenant attribution).
    pub resident_bytes_by_model: Vec<(String, u64)>,
    /// Evictions per model name.
    pub evictions_by_model: Vec<(String, u64)>,
}

/// Why a call failed. Each kind is one metric label and one precise HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The registry names a model/version the model store does not have.
    ModelNotFound,
    /// A stored artifact or plugin does not match its recorded sha256.
    Integrity,
    /// The model store could not be read.
    Store,
    /// The registry names a model version that belongs to another tenant.
    NotOwned,
    /// The sandboxed call failed (timeout, memory, trap, …).
    Sandbox(ErrorKind),
    /// A failure of the serving code itself.
    Internal,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ModelNotFound => "model_not_found",
            FailureKind::Integrity => "integrity",
            FailureKind::Store => "store",
            FailureKind::NotOwned => "not_owned",
            FailureKind::Sandbox(k) => k.as_str(),
            FailureKind::Internal => "internal",
        }
    }

    /// Failures of the sandboxed call (counted per tenant and kind).
    pub fn is_sandbox(self) -> bool {
        matches!(self, FailureKind::Sandbox(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub kind: FailureKind,
    /// Short; only `bad_input`'s is shown to the caller (it is about the caller's rows).
    pub message: String,
    /// For the log only (wasm backtrace, error chain, file names).
    pub detail: Option<String>,
}

impl BackendError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> BackendError {
        self.detail = Some(detail.into());
        self
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for BackendError {}

pub trait Backend: Send + Sync + 'static {
    /// Resolves the model and runs it on the rows.
    fn predict(&self, call: Call) -> BoxFuture<'_, Result<Outcome, BackendError>>;

    /// Resolves and loads a model without running it (readiness).
    fn warm(&self, model: ModelRef) -> BoxFuture<'_, Result<ModelId, BackendError>>;

    fn cache_stats(&self) -> CacheStats;
}
