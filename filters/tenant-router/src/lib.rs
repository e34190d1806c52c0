//! tenant-router: looks the verified tenant up in the tenant registry and sets the
//! routing headers Envoy's route table picks the data-plane cluster from.
//!
//! Policy is plain Rust, unit-testable natively; `wasm` is the thin proxy-wasm glue
//! compiled only for the Envoy target.
//!
//! - [`config`]: the filter's configuration, validated once, errors naming the field.
//! - [`route`]: registry + edge region + tenant → the routing headers, or a refusal.
//! - [`sync`]: per-worker registry bookkeeping: the fetch lease (one fetch per period
//!   for the whole Envoy process), conditional fetches, publishing a valid document in
//!   shared data, following what other workers published, keeping the last good copy.
//! - [`reply`]: the local replies (status + small JSON bodies).

pub mod config;
pub mod reply;
pub mod route;
pub mod sync;

#[cfg(target_arch = "wasm32")]
mod wasm;
