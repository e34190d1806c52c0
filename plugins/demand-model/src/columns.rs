//! The plugin's input: rows column by column, as the WIT `batch` carries them, checked
//! and forecast. [`predict_columns`] is exactly what the plugin's `predict` runs, so a
//! native caller (tests, the host's evaluation) gets the same answers and refusals.

use crate::artifact::{Artifact, Forecast};
use crate::{Code, DAY, DEST, FEATURES, InputError, ORIGIN};
pub use bulkhead_model_kit::Column;
use bulkhead_model_kit::Value;

/// Row `row`'s airport code in a categorical column.
fn code<S: AsRef<str>>(
    name: &str,
    c: Option<&Column<'_, S>>,
    row: usize,
) -> Result<Code, InputError> {
    match c.map(|c| c.value(row)) {
        Some(Value::Category(s)) => Code::parse(s).ok_or_else(|| {
            InputError(format!(
                "feature `{name}`: {s:?} is not an airport code (1-4 letters/digits)"
            ))
        }),
        Some(Value::Number(_)) => Err(InputError(format!(
            "feature `{name}` is categorical, got a number"
        ))),
        None | Some(Value::Missing) => {
            Err(InputError(format!("missing required feature `{name}`")))
        }
    }
}

/// Row `row`'s day number.
fn day<S: AsRef<str>>(c: Option<&Column<'_, S>>, row: usize) -> Result<i32, InputError> {
    match c.map(|c| c.value(row)) {
        Some(Value::Number(x))
            if x.fract() == 0.0 && x >= f64::from(i32::MIN) && x <= f64::from(i32::MAX) =>
        {
            // Integral and in range, so the cast is exact.
            Ok(x as i32)
        }
        Some(Value::Number(x)) => Err(InputError(format!(
            "feature `{DAY}`: {x} is not a whole number of days since 1970-01-01"
        ))),
        Some(Value::Category(_)) => Err(InputError(format!(
            "feature `{DAY}` is numeric, got a category"
        ))),
        None | Some(Value::Missing) => Err(InputError(format!("missing required feature `{DAY}`"))),
    }
}

/// Checks and forecasts `rows` rows given as named columns. A row that cannot be
/// forecast — a lane the artifact does not have, a day not after the last training day
/// (or past the horizon), a missing or ill-typed feature — is its own error; the batch
/// fails only when a known column is given twice or has a length other than `rows`.
/// Unknown column names are ignored.
pub fn predict_columns<'a, S, I>(
    model: &Artifact,
    rows: usize,
    columns: I,
) -> Result<Vec<Result<Forecast, InputError>>, InputError>
where
    S: AsRef<str> + 'a,
    I: IntoIterator<Item = (&'a str, Column<'a, S>)>,
{
    let mut by_feature: [Option<Column<'a, S>>; FEATURES.len()] = [None; FEATURES.len()];
    for (name, column) in columns {
        let Some(i) = FEATURES.iter().position(|f| f.name == name) else {
            continue;
        };
        if by_feature[i].is_some() {
            return Err(InputError(format!("feature `{name}` given twice")));
        }
        if column.len() != rows {
            return Err(InputError(format!(
                "column `{name}` has {} values for {rows} rows",
                column.len()
            )));
        }
        by_feature[i] = Some(column);
    }
    let [origin, dest, days] = &by_feature;
    Ok((0..rows)
        .map(|row| {
            let o = code(ORIGIN, origin.as_ref(), row)?;
            let d = code(DEST, dest.as_ref(), row)?;
            model.forecast(o, d, day(days.as_ref(), row)?)
        })
        .collect())
}
