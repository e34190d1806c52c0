//! Helpers for the sandbox tests: build a plugin component (wasm32-wasip2) on demand,
//! so `cargo test` works on a clean checkout, and small measuring tools.
//!
//! Other host tests may include this with `#[path = "sandbox_support/mod.rs"] mod …;`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The release wasm32-wasip2 component of `package`, built with cargo when missing or
/// stale (the harness's builder, which also watches `wit/`).
pub fn component_wasm(package: &str, source_dirs: &[&str]) -> PathBuf {
    proxy_wasm_harness::wasm_artifact(package, "wasm32-wasip2", source_dirs)
        .unwrap_or_else(|e| panic!("{e:#} (rustup target add wasm32-wasip2?)"))
}

/// The hostile test plugin's bytes.
pub fn hostile_wasm() -> Arc<[u8]> {
    static BYTES: OnceLock<Arc<[u8]>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let path = component_wasm("bulkhead-hostile-plugin", &["tests/plugins/hostile"]);
            std::fs::read(path).unwrap().into()
        })
        .clone()
}

/// Percentile (0–100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
