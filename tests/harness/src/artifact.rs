//! Finding (and if needed building) a filter's `.wasm` for a test.
//!
//! Tests must run on a clean checkout with plain `cargo test`, so a missing or stale
//! module is built with cargo first; `make wasm` does the same ahead of time.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The workspace root (this crate lives at `tests/harness`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$CARGO_TARGET_DIR` (or `CARGO_BUILD_TARGET_DIR`), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .find_map(std::env::var_os)
        .map(|dir| root.join(dir)) // an absolute dir replaces the root
        .unwrap_or_else(|| root.join("target"))
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest_source(&path)
            } else {
                entry.metadata().ok()?.modified().ok()
            }
        })
        .max()
}

/// Crates every filter may depend on: a change there makes every module stale.
const SHARED_SOURCES: &[&str] = &[
    "filters/filter-kit/src",
    "filters/tenant-registry/src",
    "filters/jwt-rules/src",
    "wit",
];

/// The release `wasm32-wasip1` module of `package`, rebuilt when any file under one of
/// `source_dirs` (relative to the workspace root) is newer than it.
pub fn wasm_module(package: &str, source_dirs: &[&str]) -> Result<PathBuf> {
    wasm_artifact(package, "wasm32-wasip1", source_dirs)
}

/// The release build of `package` for the Wasm `target` (`wasm32-wasip1` filters,
/// `wasm32-wasip2` model plugins), rebuilt when any file under `source_dirs`, the shared
/// crates or `wit/` is newer than it.
pub fn wasm_artifact(package: &str, target: &str, source_dirs: &[&str]) -> Result<PathBuf> {
    let file = format!("{}.wasm", package.replace('-', "_"));
    let wasm = target_dir().join(target).join("release").join(file);
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    let root = workspace_root();
    let newest = source_dirs
        .iter()
        .chain(SHARED_SOURCES)
        .filter_map(|d| newest_source(&root.join(d)))
        .max();
    let stale = match (built, newest) {
        (Some(built), Some(source)) => source > built,
        (built, _) => built.is_none(),
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", target_dir())
            .args(["build", "--release", "--target", target, "-p", package])
            .status()
            .with_context(|| format!("running cargo to build {package}"))?;
        if !status.success() {
            bail!("building {package} for {target} failed ({status}); run `make wasm`");
        }
    }
    if !wasm.exists() {
        bail!("{} is missing; run `make wasm`", wasm.display());
    }
    Ok(wasm)
}
