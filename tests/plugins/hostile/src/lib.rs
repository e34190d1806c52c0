//! A hostile model plugin for the sandbox tests. The artifact is `MODE` or `MODE:TAG`
//! (the tag only makes artifacts distinct, for cache tests); `load` remembers the mode
//! and `predict` acts on it:
//!
//! - `ok`: one valid prediction per row (the sum of its numeric features, ± 1); also
//!   logs a line; a row's `lookup` category is a key of the public `weather` table (its
//!   `temp` is added), a `lane` category a key of the tenant's own `lanes` table (its
//!   `flights` is added).
//! - `count`: one constant prediction per row, reading nothing (the cost of the call
//!   itself: passing the rows in and the predictions out).
//! - `loop`: never returns.
//! - `membomb`: allocates 1 MiB blocks until it can't.
//! - `trap`: executes `unreachable`.
//! - `panic`: panics (a trap too, after trying to print through WASI it isn't granted).
//! - `recurse`: unbounded recursion.
//! - `bigoutput`: returns 13 M predictions (~100 MB of values).
//! - `extra`: returns one prediction more than there are rows.
//! - `short`: returns no predictions.
//! - `hostcall_flood`: calls `features.lookup` with a 1 MiB key, over and over.
//! - `logflood`: logs a 1 MiB line, over and over.
//! - `badinput`: refuses the rows (`model-error::bad-input`).
//! - `rowerror`: refuses every even row (a row error, NaN values), predicts the odd ones
//!   as `ok` does and raises an alert on each of them (`late-minutes` = its value).
//! - `badrowerror`: a row error for a row past the end of the batch.
//! - anything else (e.g. `bad_artifact`): `load` refuses the artifact.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "model",
});

use bulkhead::model::features::lookup;
use bulkhead::model::log::{Level, log};
use bulkhead::model::types::{Alert, ColumnValues, FeatureKind, FeatureSpec, RowError, Value};
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
    "rowerror",
    "badrowerror",
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

    fn predict(batch: Batch, _options: Options) -> Result<Predictions, ModelError> {
        let rows = batch.rows as usize;
        let mode = MODE.with(|m| m.borrow().clone());
        match mode.as_str() {
            "ok" => Ok(ok(&batch)),
            "count" => Ok(predictions(vec![0.0; rows])),
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
            "recurse" => Ok(predictions(vec![recurse(black_box(u64::MAX)) as f64; rows])),
            "bigoutput" => Ok(Predictions {
                values: vec![1.0; 13_000_000],
                lower: Vec::new(),
                upper: Vec::new(),
                errors: Vec::new(),
                alerts: Vec::new(),
            }),
            "rowerror" => {
                let mut p = ok(&batch);
                for row in 0..batch.rows {
                    let i = row as usize;
                    if row % 2 == 0 {
                        p.values[i] = f64::NAN;
                        p.lower[i] = f64::NAN;
                        p.upper[i] = f64::NAN;
                        p.errors.push(RowError {
                            row,
                            message: "even rows are refused".into(),
                        });
                    } else {
                        p.alerts.push(Alert {
                            row,
                            late_minutes: p.values[i],
                            reason: "odd rows are late".into(),
                        });
                    }
                }
                Ok(p)
            }
            "badrowerror" => {
                let mut p = ok(&batch);
                p.errors.push(RowError {
                    row: batch.rows,
                    message: "past the end".into(),
                });
                Ok(p)
            }
            "extra" => Ok(predictions(vec![1.0; rows + 1])),
            "short" => Ok(predictions(Vec::new())),
            "hostcall_flood" => {
                let key = "k".repeat(1 << 20);
                for _ in 0..10_000 {
                    let _ = black_box(lookup("weather", &key, &["temp".to_string()]));
                }
                Ok(ok(&batch))
            }
            "logflood" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..100_000 {
                    log(Level::Info, &line);
                }
                Ok(ok(&batch))
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

/// Values with an interval of ± 1.
fn predictions(values: Vec<f64>) -> Predictions {
    Predictions {
        lower: values.iter().map(|v| v - 1.0).collect(),
        upper: values.iter().map(|v| v + 1.0).collect(),
        values,
        errors: Vec::new(),
        alerts: Vec::new(),
    }
}

fn ok(batch: &Batch) -> Predictions {
    log(Level::Debug, &format!("scoring {} rows", batch.rows));
    let mut sums = vec![0.0; batch.rows as usize];
    for column in &batch.columns {
        match (&column.values, column.name.as_str()) {
            (ColumnValues::Numbers(v), _) => {
                for (sum, x) in sums.iter_mut().zip(v) {
                    if !x.is_nan() {
                        *sum += x;
                    }
                }
            }
            (ColumnValues::Categories(c), name @ ("lookup" | "lane")) => {
                // `lookup`: the public weather table; `lane`: the tenant's own lanes.
                let (table, column) = match name {
                    "lookup" => ("weather", "temp"),
                    _ => ("lanes", "flights"),
                };
                for (sum, &code) in sums.iter_mut().zip(&c.codes) {
                    let Some(key) = c.dictionary.get(code as usize) else {
                        continue;
                    };
                    if let Ok(Some(values)) = lookup(table, key, &[column.to_string()])
                        && let Some(Value::Number(t)) = values.first()
                    {
                        *sum += t;
                    }
                }
            }
            _ => {}
        }
    }
    predictions(sums)
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
