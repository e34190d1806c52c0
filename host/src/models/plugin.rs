//! Where the model components (eta-forecaster, demand-forecaster) are, and building them
//! for tests and dev tools.
//!
//! A component is built by cargo for `wasm32-wasip2` (`cargo build -p
//! eta-forecaster-plugin --target wasm32-wasip2 --release`); `make` does it ahead of
//! time, and tests call [`eta_forecaster_wasm`] / [`demand_forecaster_wasm`] so a plain
//! `cargo test` works on a clean checkout.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A plugin crate and the component file it builds.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub package: &'static str,
    pub wasm_file: &'static str,
}

pub const ETA: Component = Component {
    package: "eta-forecaster-plugin",
    wasm_file: "eta_forecaster_plugin.wasm",
};
pub const DEMAND: Component = Component {
    package: "demand-forecaster-plugin",
    wasm_file: "demand_forecaster_plugin.wasm",
};
pub const PACKAGE: &str = ETA.package;
pub const TARGET: &str = "wasm32-wasip2";

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

/// Where a release build of the eta-forecaster lands, relative to the current directory
/// (the CLI's default `--plugin`).
pub fn default_path() -> PathBuf {
    default_path_of(ETA)
}

/// Where a release build of `c` lands, relative to the current directory.
pub fn default_path_of(c: Component) -> PathBuf {
    target_dir(Path::new("."))
        .join(TARGET)
        .join("release")
        .join(c.wasm_file)
}

/// The release eta-forecaster, built with cargo first (once per process; cargo itself
/// decides whether anything is stale).
pub fn eta_forecaster_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build(ETA).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The release demand-forecaster, built the same way.
pub fn demand_forecaster_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build(DEMAND).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build(c: Component) -> Result<PathBuf> {
    let Component { package, wasm_file } = c;
    let root = workspace_root();
    let target = target_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--target", TARGET, "-p", package])
        .status()
        .with_context(|| format!("running cargo to build {package}"))?;
    if !status.success() {
        bail!("building {package} for {TARGET} failed ({status})");
    }
    let wasm = target.join(TARGET).join("release").join(wasm_file);
    if !wasm.is_file() {
        bail!("cargo built {package} but {} is missing", wasm.display());
    }
    Ok(wasm)
}
