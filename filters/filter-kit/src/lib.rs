//! What every Bulkhead edge filter shares, so each filter crate holds only its policy.
//!
//! - [`config`]: configuration errors that name the field, JSON parsing that keeps the path;
//! - [`ids`]: the tenant-id and header-name rules every component agrees on;
//! - [`unique_keys`]: maps that refuse duplicate keys;
//! - [`reply`]: the local replies filters send;
//! - [`lease`]: one fetch per period for the whole Envoy process;
//! - [`shared`]: process-wide shared data (compare-and-swap) behind a trait, so policy
//!   is testable natively (Kuadrant wasm-shim style);
//! - `proxy` (wasm32 only): those traits over proxy-wasm host calls, the clock, counters.

pub mod config;
pub mod ids;
pub mod lease;
pub mod reply;
pub mod shared;
pub mod unique_keys;

#[cfg(target_arch = "wasm32")]
pub mod proxy;

pub use config::{ConfigError, parse_json};
pub use reply::Reply;
pub use shared::{SetError, SharedData};
