//! Where the eta-forecaster component is, and building it for tests and dev tools.
//!
//! The component is built by cargo for `wasm32-wasip2` (`cargo build -p
//! eta-forecaster-plugin --target wasm32-wasip2 --release`); `make` does it ahead of
//! time, and tests call [`eta_forecaster_wasm`] so a plain `cargo test` works on a clean
//! checkout.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PACKAGE: &str = "eta-forecaster-plugin";
pub const TARGET: &str = "wasm32-wasip2";
pub const WASM_FILE: &str = "eta_forecaster_plugin.wasm";

/// This source tree's workspace root (tests and dev tools run from a checkout).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$CARGO_TARGET_DIR` (relative to `base` when relative), else `<base>/target`.
fn target_dir(base: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| base.join(d))
        .unwrap_or_else(|| base.join("target"))
}

/// Where a release build of the component lands, relative to the current directory (the
/// CLI's default `--plugin`).
pub fn default_path() -> PathBuf {
    target_dir(Path::new("."))
        .join(TARGET)
        .join("release")
        .join(WASM_FILE)
}

/// The release component, built with cargo first (once per process; cargo itself
/// decides whether anything is stale).
pub fn eta_forecaster_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    let root = workspace_root();
    let target = target_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--target", TARGET, "-p", PACKAGE])
        .status()
        .with_context(|| format!("running cargo to build {PACKAGE}"))?;
    if !status.success() {
        bail!("building {PACKAGE} for {TARGET} failed ({status})");
    }
    let wasm = target.join(TARGET).join("release").join(WASM_FILE);
    if !wasm.is_file() {
        bail!("cargo built {PACKAGE} but {} is missing", wasm.display());
    }
    Ok(wasm)
}
