//! The demand forecaster plugin: the `bulkhead:model@0.3.0` world over
//! `bulkhead-demand-model`. The code is shared by every tenant; the artifact handed to
//! `load` is the tenant's model (its own lanes' smoothing state, trained only on its
//! flights).
//!
//! A row is (origin, dest, day); the answer is that lane's flights on that day with an
//! interval. It imports nothing it uses: no feature lookups (the artifact holds all the
//! history the model needs), no logging on the hot path.

// The bindings exist only for the wasm component; natively this crate is empty, so
// `cargo test`/`clippy` on the workspace need no wasm toolchain.
#[cfg(target_arch = "wasm32")]
mod component;
