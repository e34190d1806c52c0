//! rate-limit: the per-tenant GCRA filter, one limit per tenant across all Envoy workers.
//!
//! Policy (config, the GCRA decision over shared data, header formatting, replies) is
//! plain Rust behind the [`host::Host`] trait, unit-testable natively; `wasm` is the thin
//! proxy-wasm glue compiled only for the Envoy target.
//!
//! - [`config`]: plans and registered tenants, validated, errors naming the field.
//! - [`store`]: governor's `StateStore` over shared data (CAS retry loop) and a
//!   `Clock` whose origin is the Unix epoch in every VM.
//! - [`limiter`]: the decision for one request.
//! - [`reply`]: `RateLimit-Policy` / `RateLimit` / `Retry-After` and the local replies.

pub mod config;
pub mod host;
pub mod limiter;
pub mod reply;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod wasm;
