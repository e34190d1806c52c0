//! The plugin's input: rows column by column, as the WIT `batch` carries them, checked
//! and forecast. [`predict_columns`] is exactly what the plugin's `predict` runs, so a
//! native caller (tests, the host's evaluation) gets the same answers and refusals.

use crate::artifact::{Artifact, Forecast};
use crate::{Code, DAY, DEST, FEATURES, InputError, ORIGIN};

/// One column, borrowed. `S` is whatever string type the caller holds (`String` from
/// the WIT bindings, `&str` in tests).
#[derive(Debug)]
pub enum Column<'a, S> {
    /// One per row; NaN marks a missing value.
    Numbers(&'a [f64]),
    /// One code per row into `dictionary`; a code past its end marks a missing value.
    Categories {
        dictionary: &'a [S],
        codes: &'a [u32],
    },
}

// By hand: a derive would require `S: Copy`, but only references are copied.
impl<S> Clone for Column<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Column<'_, S> {}

impl<S: AsRef<str>> Column<'_, S> {
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Categories { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Row `row`'s airport code in a categorical column.
fn code<S: AsRef<str>>(
    name: &str,
    c: Option<&Column<'_, S>>,
    row: usize,
) -> Result<Code, InputError> {
    match c {
        Some(Column::Categories { dictionary, codes }) => {
            let s = codes
                .get(row)
                .and_then(|&i| dictionary.get(i as usize))
                .ok_or_else(|| InputError(format!("missing required feature `{name}`")))?;
            let s = s.as_ref();
            Code::parse(s).ok_or_else(|| {
                InputError(format!(
                    "feature `{name}`: {s:?} is not an airport code (1-4 letters/digits)"
                ))
            })
        }
        Some(Column::Numbers(_)) => Err(InputError(format!(
            "feature `{name}` is categorical, got a number"
        ))),
        None => Err(InputError(format!("missing required feature `{name}`"))),
    }
}

/// Row `row`'s day number.
fn day<S>(c: Option<&Column<'_, S>>, row: usize) -> Result<i32, InputError> {
    match c {
        Some(Column::Numbers(v)) => match v.get(row) {
            Some(x) if x.is_nan() => Err(InputError(format!("missing required feature `{DAY}`"))),
            Some(&x)
                if x.fract() == 0.0 && x >= f64::from(i32::MIN) && x <= f64::from(i32::MAX) =>
            {
                // Integral and in range, so the cast is exact.
                Ok(x as i32)
            }
            Some(x) => Err(InputError(format!(
                "feature `{DAY}`: {x} is not a whole number of days since 1970-01-01"
            ))),
            None => Err(InputError(format!("missing required feature `{DAY}`"))),
        },
        Some(Column::Categories { .. }) => Err(InputError(format!(
            "feature `{DAY}` is numeric, got a category"
        ))),
        None => Err(InputError(format!("missing required feature `{DAY}`"))),
    }
}

/// Checks and forecasts `rows` rows given as named columns, failing the batch on the
/// first bad row (named by its index): a lane the artifact does not have, a day not
/// after the last training day (or past the horizon), a missing or ill-typed feature.
/// Unknown column names are ignored; a known one given twice, or a column whose length
/// is not `rows`, is refused.
pub fn predict_columns<'a, S, I>(
    model: &Artifact,
    rows: usize,
    columns: I,
) -> Result<Vec<Forecast>, InputError>
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
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let f = code(ORIGIN, origin.as_ref(), row)
            .and_then(|o| Ok((o, code(DEST, dest.as_ref(), row)?)))
            .and_then(|(o, d)| model.forecast(o, d, day(days.as_ref(), row)?))
            .map_err(|e| InputError(format!("row {row}: {e}")))?;
        out.push(f);
    }
    Ok(out)
}
