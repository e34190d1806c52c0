//! Helpers for the sandbox tests: build a plugin component (wasm32-wasip2) on demand,
//! so `cargo test` works on a clean checkout, and small measuring tools.
//!
//! Other host tests may include this with `#[path = "sandbox_support/mod.rs"] mod …;`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The workspace root (this crate is `host/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$CARGO_TARGET_DIR` (absolute, or relative to the workspace root), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .find_map(std::env::var_os)
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
}

fn newest(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().ok()?.modified().ok()
            }
        })
        .max()
}

/// The release wasm32-wasip2 component of `package`, built with cargo when missing or
/// older than any file under `source_dirs` (relative to the workspace root) or `wit/`.
pub fn component_wasm(package: &str, source_dirs: &[&str]) -> PathBuf {
    // One build per test binary; cargo's own lock serialises binaries.
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built_here = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built_here = built_here.lock().unwrap();
    let wasm = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if built_here.iter().any(|p| p == package) {
        return wasm;
    }
    let root = workspace_root();
    let source = source_dirs
        .iter()
        .chain(&["wit"])
        .filter_map(|d| newest(&root.join(d)))
        .max();
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    let stale = match (built, source) {
        (Some(built), Some(source)) => source > built,
        (built, _) => built.is_none(),
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", target_dir())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                package,
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "building {package} for wasm32-wasip2 failed (rustup target add wasm32-wasip2?)"
        );
    }
    assert!(wasm.exists(), "{} missing after the build", wasm.display());
    built_here.push(package.to_string());
    wasm
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
