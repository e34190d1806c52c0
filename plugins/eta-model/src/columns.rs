//! Rows column by column, as the WIT `batch` carries them: a feature's name once per
//! batch, numbers as one `f64` slice (NaN = missing), categories dictionary-coded.
//!
//! [`predict_columns`] is what the plugin's `predict` runs, and what a native caller runs
//! to measure the same work outside the sandbox. Each row is checked by
//! [`schema::check_slots`](crate::schema::check_slots), exactly as a row of named values.

use crate::artifact::{Artifact, Eta};
use crate::features::{Featurizer, Lookup};
use crate::schema::{EtaInput, FEATURES, InputError, Slots, Value, check_slots, feature_index};
pub use bulkhead_model_kit::Column;
use std::fmt;

/// Why a batch got no predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictError {
    /// A row the model cannot score (the WIT `bad-input`).
    Input(InputError),
    /// A feature lookup failed (the store, not the row: the WIT `internal`).
    Lookup(String),
}

impl fmt::Display for PredictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PredictError::Input(e) => e.fmt(f),
            PredictError::Lookup(e) => write!(f, "feature lookup: {e}"),
        }
    }
}

impl std::error::Error for PredictError {}

impl From<InputError> for PredictError {
    fn from(e: InputError) -> Self {
        PredictError::Input(e)
    }
}

/// One row's outcome: its checked, featurized input and its prediction, or why it could
/// not be scored.
pub type RowOutcome = Result<(EtaInput, Eta), InputError>;

/// Checks, featurizes (the lookups of `features`) and predicts `rows` rows given as
/// named columns. A row that cannot be scored is its own error; the batch fails only when
/// it cannot be read (a known column given twice, or one whose length is not `rows`) or
/// a lookup fails. Unknown column names are ignored.
pub fn predict_columns<'a, S, I, L>(
    model: &Artifact,
    rows: usize,
    columns: I,
    features: &mut Featurizer<L>,
) -> Result<Vec<RowOutcome>, PredictError>
where
    S: AsRef<str> + 'a,
    I: IntoIterator<Item = (&'a str, Column<'a, S>)>,
    L: Lookup,
{
    let mut by_feature: [Option<Column<'a, S>>; FEATURES.len()] = [None; FEATURES.len()];
    for (name, column) in columns {
        let Some(i) = feature_index(name) else {
            continue;
        };
        if by_feature[i].is_some() {
            return Err(InputError(format!("feature `{name}` given twice")).into());
        }
        if column.len() != rows {
            return Err(InputError(format!(
                "column `{name}` has {} values for {rows} rows",
                column.len()
            ))
            .into());
        }
        by_feature[i] = Some(column);
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut slots: Slots<'a> = [None; FEATURES.len()];
        for (slot, column) in slots.iter_mut().zip(&by_feature) {
            *slot = column.as_ref().map(|c| c.value(row));
        }
        let checked = match check_slots(slots) {
            Ok(c) => c,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let mut input = checked.input;
        let lookup_failed = |e: String| PredictError::Lookup(format!("row {row}: {e}"));
        input.conditions = features.conditions(&checked).map_err(lookup_failed)?;
        // A given block time wins over one derived from the local times.
        if input.sched_block.is_none() {
            input.sched_block = features.sched_block(&checked).map_err(lookup_failed)?;
        }
        out.push(model.predict(&input).map(|eta| (input, eta)));
    }
    Ok(out)
}

/// Owned columns built from rows of named values: for native callers and tests that
/// hold rows. Numbers stay numbers, categories are dictionary-coded in order of first
/// appearance; a feature absent from a row is missing there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnedColumns {
    pub rows: usize,
    pub columns: Vec<(String, OwnedColumn)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OwnedColumn {
    Numbers(Vec<f64>),
    Categories {
        dictionary: Vec<String>,
        codes: Vec<u32>,
    },
}

impl OwnedColumns {
    /// Fails when one name carries numbers in one row and categories in another.
    pub fn from_rows<'a, R, F>(rows: R) -> Result<OwnedColumns, InputError>
    where
        R: IntoIterator<Item = F>,
        F: IntoIterator<Item = (&'a str, Value<'a>)>,
    {
        let rows: Vec<Vec<(&str, Value)>> =
            rows.into_iter().map(|r| r.into_iter().collect()).collect();
        let n = rows.len();
        let mut out = OwnedColumns {
            rows: n,
            columns: Vec::new(),
        };
        for (i, row) in rows.iter().enumerate() {
            for &(name, value) in row {
                let col = match out.columns.iter().position(|(c, _)| c == name) {
                    Some(c) => c,
                    None => {
                        let fresh = match value {
                            Value::Category(_) => OwnedColumn::Categories {
                                dictionary: Vec::new(),
                                codes: vec![u32::MAX; n],
                            },
                            _ => OwnedColumn::Numbers(vec![f64::NAN; n]),
                        };
                        out.columns.push((name.to_string(), fresh));
                        out.columns.len() - 1
                    }
                };
                let Some((_, column)) = out.columns.get_mut(col) else {
                    continue;
                };
                match (column, value) {
                    (_, Value::Missing) => {}
                    (OwnedColumn::Numbers(v), Value::Number(x)) => v[i] = x,
                    (OwnedColumn::Categories { dictionary, codes }, Value::Category(s)) => {
                        let code = match dictionary.iter().position(|d| d == s) {
                            Some(c) => c,
                            None => {
                                dictionary.push(s.to_string());
                                dictionary.len() - 1
                            }
                        };
                        codes[i] = u32::try_from(code).unwrap_or(u32::MAX);
                    }
                    _ => {
                        return Err(InputError(format!(
                            "row {i}: feature `{name}` mixes numbers and categories"
                        )));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Borrowed views for [`predict_columns`].
    pub fn view(&self) -> impl Iterator<Item = (&str, Column<'_, String>)> {
        self.columns.iter().map(|(name, c)| {
            let column = match c {
                OwnedColumn::Numbers(v) => Column::Numbers(v),
                OwnedColumn::Categories { dictionary, codes } => {
                    Column::Categories { dictionary, codes }
                }
            };
            (name.as_str(), column)
        })
    }
}
