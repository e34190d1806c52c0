//! jwt-auth: the edge identity filter.
//!
//! Policy (config, header stripping, verification, remote JWKS bookkeeping, replies) is
//! plain Rust behind the [`host::Host`] trait, unit-testable natively; `wasm` is the thin
//! proxy-wasm glue compiled only for the Envoy target.

pub mod auth;
pub mod config;
pub mod host;
pub mod remote_keys;
pub mod reply;
pub mod strip;

#[cfg(target_arch = "wasm32")]
mod wasm;
