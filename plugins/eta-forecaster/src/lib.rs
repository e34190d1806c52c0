//! The ETA forecaster plugin: the `bulkhead:model@0.3.0` world over
//! `bulkhead-eta-model`. The code is shared by every tenant; the artifact handed to
//! `load` is the tenant's model.
//!
//! It imports nothing it does not use: no feature lookups (the model needs only the
//! row), no logging on the hot path. State is one decoded artifact per instance (the
//! host makes a fresh instance per call, so `load` runs once per call and must be cheap;
//! see the artifact module of `bulkhead-eta-model`).

// The bindings exist only for the wasm component; natively this crate is empty, so
// `cargo test`/`clippy` on the workspace need no wasm toolchain.
#[cfg(target_arch = "wasm32")]
mod component;
