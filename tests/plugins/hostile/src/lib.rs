//! A hostile model plugin for the sandbox tests. The artifact is `MODE` or `MODE:TAG`
//! (the tag only makes artifacts distinct, for cache tests); `load` remembers the mode
//! and `predict` acts on it:
//!
//! - `ok`: one valid prediction per row (the sum of its numeric features, ± 1); also
//!   logs a line, and when a row has a `lookup` category feature, reads that key from
//!   the `weather` table and adds the first numeric column.
//! - `count`: one constant prediction per row, reading nothing (the cost of the call
//!   itself: passing the rows in and the predictions out).
//! - `loop`: never returns.
//! - `membomb`: allocates 1 MiB blocks until it can't.
//! - `trap`: executes `unreachable`.
//! - `panic`: panics (a trap too, after trying to print through WASI it isn't granted).
//! - `recurse`: unbounded recursion.
//! - `bigoutput`: returns ~100 MB of predictions (2.6 M × 40 bytes).
//! - `extra`: returns one prediction more than there are rows.
//! - `short`: returns no predictions.
//! - `hostcall_flood`: calls `features.lookup` with a 1 MiB key, over and over.
//! - `logflood`: logs a 1 MiB line, over and over.
//! - `badinput`: refuses the rows (`model-error::bad-input`).
//! - anything else (e.g. `bad_artifact`): `load` refuses the artifact.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "model",
});

use bulkhead::model::features::lookup;
use bulkhead::model::log::{Level, log};
use bulkhead::model::types::{FeatureKind, FeatureSpec, Value};
use std::cell::RefCell;
use std::hint::black_box;

struct Hostile;

thread_local! {
    static MODE: RefCell<String> = const { RefCell::new(String::new()) };
}

const MODES: &[&str] = &[
    "ok",
    "count",
    "loop",
    "membomb",
    "trap",
    "panic",
    "recurse",
    "bigoutput",
    "extra",
    "short",
    "hostcall_flood",
    "logflood",
    "badinput",
];

impl Guest for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            version: "0.1.0".into(),
            output: "whatever the mode says".into(),
            features: vec![FeatureSpec {
                name: "x".into(),
                kind: FeatureKind::Numeric,
                required: false,
                doc: "any number".into(),
            }],
            interval_level: Some(0.8),
        }
    }

    fn load(artifact: Vec<u8>) -> Result<(), ModelError> {
        let text =
            String::from_utf8(artifact).map_err(|_| ModelError::BadArtifact("not utf-8".into()))?;
        let mode = text.split(':').next().unwrap_or_default();
        if !MODES.contains(&mode) {
            return Err(ModelError::BadArtifact(format!("unknown mode {mode:?}")));
        }
        MODE.with(|m| *m.borrow_mut() = mode.to_string());
        Ok(())
    }

    fn predict(rows: Vec<Row>) -> Result<Vec<Prediction>, ModelError> {
        let mode = MODE.with(|m| m.borrow().clone());
        match mode.as_str() {
            "ok" => Ok(ok(&rows)),
            "count" => Ok(vec![prediction(0.0); rows.len()]),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[4096] = 1; // touch it
                    blocks.push(black_box(block));
                }
            }
            "trap" => trap(),
            #[allow(clippy::panic)]
            "panic" => panic!("the hostile plugin panics on purpose"),
            "recurse" => Ok(vec![
                prediction(recurse(black_box(u64::MAX)) as f64);
                rows.len()
            ]),
            "bigoutput" => Ok(vec![prediction(1.0); 2_600_000]),
            "extra" => Ok(vec![prediction(1.0); rows.len() + 1]),
            "short" => Ok(Vec::new()),
            "hostcall_flood" => {
                let key = "k".repeat(1 << 20);
                for _ in 0..10_000 {
                    let _ = black_box(lookup("weather", &key, &["temp".to_string()]));
                }
                Ok(ok(&rows))
            }
            "logflood" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..100_000 {
                    log(Level::Info, &line);
                }
                Ok(ok(&rows))
            }
            "badinput" => Err(ModelError::BadInput(
                "row 0: the hostile plugin refuses it".into(),
            )),
            other => Err(ModelError::Internal(format!(
                "no artifact loaded ({other:?})"
            ))),
        }
    }
}

fn prediction(value: f64) -> Prediction {
    Prediction {
        value,
        lower: Some(value - 1.0),
        upper: Some(value + 1.0),
    }
}

fn ok(rows: &[Row]) -> Vec<Prediction> {
    log(Level::Debug, &format!("scoring {} rows", rows.len()));
    rows.iter()
        .map(|row| {
            let mut sum = 0.0;
            for feature in &row.features {
                match (&feature.value, feature.name.as_str()) {
                    (Value::Number(x), _) => sum += x,
                    (Value::Category(key), "lookup") => {
                        if let Ok(Some(values)) = lookup("weather", key, &["temp".to_string()])
                            && let Some(Value::Number(t)) = values.first()
                        {
                            sum += t;
                        }
                    }
                    _ => {}
                }
            }
            prediction(sum)
        })
        .collect()
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

/// Not a tail call (the result is used after the call), so every level is a wasm frame.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let below = recurse(black_box(n - 1));
    black_box(below.wrapping_mul(31).wrapping_add(n))
}

export!(Hostile);
