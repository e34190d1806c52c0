//! What goes into a plugin and what comes out, host side.
//!
//! In: the WIT `batch` (rows column by column). [`BatchBuilder`] builds one row by row —
//! the HTTP API feeds it while parsing JSON, tools and tests through [`batch_from_rows`]
//! — so a feature's name is stored once per batch and a category once per column.
//! Out: the WIT `predictions` columns, checked against the row count and the output
//! limit before they are copied out of guest memory (`call.rs`), then handed to callers
//! as one [`Prediction`] per row.

use super::bindings::{Batch, Categories, Column, ColumnValues, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One row of named values, for callers that hold rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub value: Value,
}

/// One prediction: the value and, when the model gives one, its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub value: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// Why rows cannot become a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("feature `{name}` given twice in one row")]
    Twice { name: String },
    #[error("feature `{name}` is a number in one row and a category in another")]
    MixedKinds { name: String },
    #[error("more than {} rows or distinct categories in one batch", u32::MAX - 1)]
    TooLarge,
}

/// A column being built. Its kind is fixed by the first non-missing value.
enum Building {
    /// Only missing values so far.
    Unknown,
    Numbers(Vec<f64>),
    Categories {
        dictionary: Vec<String>,
        index: HashMap<String, u32>,
        codes: Vec<u32>,
    },
}

/// The code that marks a missing category: past the end of any dictionary.
const MISSING_CODE: u32 = u32::MAX;

/// One value as [`BatchBuilder`] stores it: a category borrowed until it is new to its
/// column's dictionary.
enum Cell<'a> {
    Number(f64),
    Category(&'a str),
    Missing,
}

struct BuildingColumn {
    name: String,
    values: Building,
    /// The last row that set this column, to refuse a name given twice in one row.
    last_row: Option<usize>,
}

/// Builds a [`Batch`] row by row: [`BatchBuilder::next_row`], then [`BatchBuilder::set`]
/// for each of the row's features. A feature a row does not set is missing there.
#[derive(Default)]
pub struct BatchBuilder {
    rows: usize,
    columns: Vec<BuildingColumn>,
    by_name: HashMap<String, usize>,
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::default()
    }

    /// Starts the next row.
    pub fn next_row(&mut self) -> Result<(), BatchError> {
        if self.rows >= (MISSING_CODE - 1) as usize {
            return Err(BatchError::TooLarge);
        }
        self.rows += 1;
        Ok(())
    }

    /// Sets `name` in the current row.
    pub fn set(&mut self, name: &str, value: Value) -> Result<(), BatchError> {
        match &value {
            Value::Number(x) => self.put(name, Cell::Number(*x)),
            Value::Category(s) => self.put(name, Cell::Category(s)),
            Value::Missing => self.put(name, Cell::Missing),
        }
    }

    /// Sets category `value` of `name` in the current row, copying it only the first time
    /// the column sees it (a value repeated over many rows is one dictionary entry).
    pub fn set_category(&mut self, name: &str, value: &str) -> Result<(), BatchError> {
        self.put(name, Cell::Category(value))
    }

    fn put(&mut self, name: &str, value: Cell<'_>) -> Result<(), BatchError> {
        let row = self.rows.saturating_sub(1);
        let at = match self.by_name.get(name) {
            Some(&at) => at,
            None => {
                self.columns.push(BuildingColumn {
                    name: name.to_string(),
                    values: Building::Unknown,
                    last_row: None,
                });
                self.by_name
                    .insert(name.to_string(), self.columns.len() - 1);
                self.columns.len() - 1
            }
        };
        let Some(column) = self.columns.get_mut(at) else {
            return Ok(());
        };
        if column.last_row == Some(row) {
            return Err(BatchError::Twice {
                name: name.to_string(),
            });
        }
        column.last_row = Some(row);
        let mixed = || BatchError::MixedKinds {
            name: name.to_string(),
        };
        match (&mut column.values, value) {
            (_, Cell::Missing) => {}
            (values @ Building::Unknown, Cell::Number(x)) => {
                let mut v = vec![f64::NAN; row];
                v.push(x);
                *values = Building::Numbers(v);
            }
            (values @ Building::Unknown, Cell::Category(s)) => {
                let mut codes = vec![MISSING_CODE; row];
                codes.push(0);
                *values = Building::Categories {
                    index: HashMap::from([(s.to_string(), 0)]),
                    dictionary: vec![s.to_string()],
                    codes,
                };
            }
            (Building::Numbers(v), Cell::Number(x)) => {
                v.resize(row, f64::NAN);
                v.push(x);
            }
            (
                Building::Categories {
                    dictionary,
                    index,
                    codes,
                },
                Cell::Category(s),
            ) => {
                let code = match index.get(s) {
                    Some(&code) => code,
                    None => {
                        let code = u32::try_from(dictionary.len())
                            .ok()
                            .filter(|&c| c < MISSING_CODE)
                            .ok_or(BatchError::TooLarge)?;
                        index.insert(s.to_string(), code);
                        dictionary.push(s.to_string());
                        code
                    }
                };
                codes.resize(row, MISSING_CODE);
                codes.push(code);
            }
            (Building::Numbers(_), Cell::Category(_))
            | (Building::Categories { .. }, Cell::Number(_)) => return Err(mixed()),
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The batch, every column padded with missing values to the row count. A column
    /// with no value in any row is numeric (all NaN).
    pub fn finish(self) -> Batch {
        let rows = self.rows;
        let columns = self
            .columns
            .into_iter()
            .map(|c| {
                let values = match c.values {
                    Building::Unknown => ColumnValues::Numbers(vec![f64::NAN; rows]),
                    Building::Numbers(mut v) => {
                        v.resize(rows, f64::NAN);
                        ColumnValues::Numbers(v)
                    }
                    Building::Categories {
                        dictionary,
                        mut codes,
                        ..
                    } => {
                        codes.resize(rows, MISSING_CODE);
                        ColumnValues::Categories(Categories { dictionary, codes })
                    }
                };
                Column {
                    name: c.name,
                    values,
                }
            })
            .collect();
        Batch {
            // `next_row` keeps `rows` below u32::MAX.
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            columns,
        }
    }
}

/// Rows of named values as one batch.
pub fn batch_from_rows(rows: &[Row]) -> Result<Batch, BatchError> {
    let mut b = BatchBuilder::new();
    for row in rows {
        b.next_row()?;
        for f in &row.features {
            b.set(&f.name, f.value.clone())?;
        }
    }
    Ok(b.finish())
}

/// Row `i` of `batch` as named values (missing ones included): the inverse of
/// [`batch_from_rows`], for tests and logs.
pub fn row_of(batch: &Batch, i: usize) -> Row {
    let features = batch
        .columns
        .iter()
        .map(|c| {
            let value = match &c.values {
                ColumnValues::Numbers(v) => match v.get(i) {
                    Some(x) if !x.is_nan() => Value::Number(*x),
                    _ => Value::Missing,
                },
                ColumnValues::Categories(cat) => match cat
                    .codes
                    .get(i)
                    .and_then(|&code| cat.dictionary.get(code as usize))
                {
                    Some(s) => Value::Category(s.clone()),
                    None => Value::Missing,
                },
            };
            Feature {
                name: c.name.clone(),
                value,
            }
        })
        .collect();
    Row { features }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn f(name: &str, value: Value) -> Feature {
        Feature {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn rows_become_columns_with_each_category_once() {
        let rows = vec![
            Row {
                features: vec![
                    f("origin", Value::Category("EWR".into())),
                    f("month", Value::Number(1.0)),
                ],
            },
            Row {
                features: vec![f("origin", Value::Category("JFK".into()))],
            },
            Row {
                features: vec![
                    f("month", Value::Number(3.0)),
                    f("origin", Value::Category("EWR".into())),
                    f("dep_delay", Value::Missing),
                ],
            },
        ];
        let b = batch_from_rows(&rows).unwrap();
        assert_eq!(b.rows, 3);
        let origin = &b.columns[0];
        assert_eq!(origin.name, "origin");
        assert_eq!(
            origin.values,
            ColumnValues::Categories(Categories {
                dictionary: vec!["EWR".into(), "JFK".into()],
                codes: vec![0, 1, 0],
            })
        );
        let ColumnValues::Numbers(month) = &b.columns[1].values else {
            panic!("month is numeric")
        };
        assert_eq!(month[0], 1.0);
        assert!(month[1].is_nan());
        assert_eq!(month[2], 3.0);
        // Never given a value: numeric, all missing.
        let ColumnValues::Numbers(delay) = &b.columns[2].values else {
            panic!("all-missing column is numeric")
        };
        assert!(delay.len() == 3 && delay.iter().all(|x| x.is_nan()));
        // Back to rows: every value where it was, absent ones missing.
        assert_eq!(
            row_of(&b, 1).features,
            vec![
                f("origin", Value::Category("JFK".into())),
                f("month", Value::Missing),
                f("dep_delay", Value::Missing),
            ]
        );
    }

    #[test]
    fn refuses_a_name_twice_in_a_row_and_mixed_kinds() {
        let twice = Row {
            features: vec![f("x", Value::Number(1.0)), f("x", Value::Missing)],
        };
        assert_eq!(
            batch_from_rows(&[twice]).unwrap_err(),
            BatchError::Twice { name: "x".into() }
        );
        let mixed = [
            Row {
                features: vec![f("x", Value::Number(1.0))],
            },
            Row {
                features: vec![f("x", Value::Category("a".into()))],
            },
        ];
        assert_eq!(
            batch_from_rows(&mixed).unwrap_err(),
            BatchError::MixedKinds { name: "x".into() }
        );
    }

    #[test]
    fn borrowed_categories_build_the_same_batch() {
        let mut owned = BatchBuilder::new();
        let mut borrowed = BatchBuilder::new();
        for code in ["EWR", "JFK", "EWR", "EWR"] {
            owned.next_row().unwrap();
            owned.set("origin", Value::Category(code.into())).unwrap();
            borrowed.next_row().unwrap();
            borrowed.set_category("origin", code).unwrap();
        }
        assert_eq!(
            borrowed.set_category("origin", "LGA").unwrap_err(),
            BatchError::Twice {
                name: "origin".into()
            }
        );
        let (owned, borrowed) = (owned.finish(), borrowed.finish());
        assert_eq!(owned, borrowed);
        assert_eq!(
            borrowed.columns[0].values,
            ColumnValues::Categories(Categories {
                dictionary: vec!["EWR".into(), "JFK".into()],
                codes: vec![0, 1, 0, 0],
            })
        );
    }
}
