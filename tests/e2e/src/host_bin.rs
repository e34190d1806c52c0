//! The `bulkhead` binary (control API, tenant CLI) for end-to-end tests, built on demand
//! so plain `cargo test` works on a clean checkout.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the debug `bulkhead` binary, built (once per test process) if needed.
pub fn bulkhead_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    let root = proxy_wasm_harness::workspace_root();
    let target = proxy_wasm_harness::target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Cargo decides freshness; a no-op build takes well under a second.
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "-p", "bulkhead", "--bin", "bulkhead"])
        .status()
        .context("running cargo to build the bulkhead binary")?;
    if !status.success() {
        bail!("building the bulkhead binary failed ({status})");
    }
    let bin = target.join("debug/bulkhead");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}
