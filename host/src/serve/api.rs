//! The JSON of `POST /v1/eta`: rows in, predictions out.
//!
//! A row is a flat object of named features: a number is numeric, a string is
//! categorical, `null` is an explicit missing value. Anything else (booleans, nested
//! values), an unknown top-level member or an empty batch is a 400 naming the place.
//! The model decides which features it needs (a missing required one is its `bad_input`).

use super::backend::{Alert, Batch, BatchBuilder, BatchError, Prediction, RowError, Value};
use super::error::ApiError;
use serde::{Deserialize, Serialize};

/// Bounds that keep one request's parsing cheap and its labels sane.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_rows: usize,
    pub max_features: usize,
    pub max_name_len: usize,
    pub max_category_len: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_rows: 10_000,
            max_features: 64,
            max_name_len: 64,
            max_category_len: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtaRequest {
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Parses and checks a request body into the batch the model gets.
pub fn parse_rows(body: &[u8], b: &Bounds) -> Result<Batch, ApiError> {
    let req: EtaRequest = bulkhead_filter_kit::parse_json(body)
        .map_err(|e| ApiError::bad_request(format!("body: field `{}`: {}", e.field, e.message)))?;
    if req.rows.is_empty() {
        return Err(ApiError::bad_request("rows: at least one row is required"));
    }
    if req.rows.len() > b.max_rows {
        return Err(ApiError::bad_request(format!(
            "rows: {} rows, at most {} per request",
            req.rows.len(),
            b.max_rows
        )));
    }
    let mut batch = BatchBuilder::new();
    for (i, obj) in req.rows.into_iter().enumerate() {
        parse_row(&mut batch, &|| format!("rows[{i}]"), obj, b)?;
    }
    Ok(batch.finish())
}

/// Checks one row object and adds it to `batch` as its next row. `place` names the row in
/// errors (`rows[3]` for `POST /v1/eta`, `line 7` for a batch upload); a feature's name
/// is appended to it (`rows[3].origin`).
pub fn parse_row(
    batch: &mut BatchBuilder,
    place: &dyn Fn() -> String,
    obj: serde_json::Map<String, serde_json::Value>,
    b: &Bounds,
) -> Result<(), ApiError> {
    if obj.len() > b.max_features {
        return Err(ApiError::bad_request(format!(
            "{}: at most {} features per row",
            place(),
            b.max_features
        )));
    }
    batch
        .next_row()
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", place())))?;
    for (name, v) in obj {
        let at = || format!("{}.{}", place(), printable(&name));
        if name.is_empty() || name.len() > b.max_name_len {
            return Err(ApiError::bad_request(format!(
                "{}: feature names are 1-{} bytes",
                at(),
                b.max_name_len
            )));
        }
        let value = match v {
            serde_json::Value::Null => Value::Missing,
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Value::Number(f),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{}: not a finite number",
                        at()
                    )));
                }
            },
            serde_json::Value::String(s) if s.len() <= b.max_category_len => Value::Category(s),
            serde_json::Value::String(_) => {
                return Err(ApiError::bad_request(format!(
                    "{}: categories are at most {} bytes",
                    at(),
                    b.max_category_len
                )));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{}: a feature is a number, a string or null",
                    at()
                )));
            }
        };
        batch.set(&name, value).map_err(|e| match e {
            BatchError::MixedKinds { .. } => ApiError::bad_request(format!(
                "{}: a number here, a string in an earlier row (a feature has one kind per request)",
                at()
            )),
            e => ApiError::bad_request(format!("{}: {e}", at())),
        })?;
    }
    Ok(())
}

/// A feature name as it may appear in an error: at most 64 characters, control
/// characters replaced.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EtaPrediction {
    pub eta_minutes: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

impl From<&Prediction> for EtaPrediction {
    fn from(p: &Prediction) -> EtaPrediction {
        EtaPrediction {
            eta_minutes: p.value,
            lower: p.lower,
            upper: p.upper,
        }
    }
}

/// One row of the answer: its prediction, or why the model could not score it (the other
/// rows are answered all the same).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EtaRow {
    Predicted(EtaPrediction),
    Refused { error: String },
}

/// The rows of an answer, row errors in place.
pub fn rows_out(predictions: &[Prediction], errors: &[RowError]) -> Vec<EtaRow> {
    let mut errors = errors.iter().peekable();
    (0u32..)
        .zip(predictions)
        .map(|(i, p)| match errors.next_if(|e| e.row == i) {
            Some(e) => EtaRow::Refused {
                error: e.message.clone(),
            },
            None => EtaRow::Predicted(EtaPrediction::from(p)),
        })
        .collect()
}

impl EtaRow {
    pub fn is_predicted(&self) -> bool {
        matches!(self, EtaRow::Predicted(_))
    }
}

/// An exception alert: the row, how late past the scheduled arrival, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertOut {
    pub row: u32,
    pub late_minutes: f64,
    pub reason: String,
}

impl From<&Alert> for AlertOut {
    fn from(a: &Alert) -> AlertOut {
        AlertOut {
            row: a.row,
            late_minutes: a.late_minutes,
            reason: a.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// The tenant's tier (`pool` tenants are served the pooled model).
    pub tier: String,
    /// Whether this is the pooled model standing in for the tenant's own (which the
    /// promotion gate refused).
    #[serde(default)]
    pub fallback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EtaResponse {
    pub predictions: Vec<EtaRow>,
    /// Rows predicted later than scheduled by more than the tenant's threshold.
    #[serde(default)]
    pub alerts: Vec<AlertOut>,
    pub model: ModelInfo,
    pub tenant: String,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn rows_become_typed_columns() {
        let batch = parse_rows(
            br#"{"rows":[{"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719,"dep_delay":null},{"origin":"JFK","month":2}]}"#,
            &Bounds::default(),
        )
        .unwrap();
        assert_eq!(batch.rows, 2);
        assert_eq!(batch.columns.len(), 6);
        let row = |i| crate::sandbox::row_of(&batch, i).features;
        let f = |name: &str, value: Value| crate::sandbox::Feature {
            name: name.into(),
            value,
        };
        assert!(row(0).contains(&f("origin", Value::Category("EWR".into()))));
        assert!(row(0).contains(&f("distance", Value::Number(719.0))));
        assert!(row(0).contains(&f("dep_delay", Value::Missing)));
        assert!(row(1).contains(&f("origin", Value::Category("JFK".into()))));
        // Absent from the second row: missing there.
        assert!(row(1).contains(&f("dest", Value::Missing)));
    }

    #[test]
    fn refusals_name_the_place() {
        let b = Bounds {
            max_rows: 2,
            ..Bounds::default()
        };
        let e = |body: &str| parse_rows(body.as_bytes(), &b).unwrap_err().reason;
        assert!(e(r#"{"rows":[]}"#).contains("at least one row"));
        assert!(e(r#"{"rows":[{},{},{}]}"#).contains("at most 2"));
        assert!(
            e(r#"{"rows":[{"a":1}],"x":1}"#).contains("field `x`"),
            "{}",
            e(r#"{"rows":[{"a":1}],"x":1}"#)
        );
        assert!(e(r#"{"rows":[{"a":1},{"ok":true}]}"#).starts_with("rows[1].ok:"));
        assert!(e(r#"{"rows":[{"a":{"b":1}}]}"#).contains("number, a string or null"));
        assert!(e(r#"{"rows":[{"a":1},{"a":"x"}]}"#).starts_with("rows[1].a: a number here"));
        assert!(e("not json").starts_with("body:"));
    }
}
