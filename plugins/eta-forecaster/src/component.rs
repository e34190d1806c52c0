//! The WIT exports.

use bulkhead_eta_model::alerts::alert;
use bulkhead_eta_model::artifact::Artifact;
use bulkhead_eta_model::columns::{Column, PredictError, predict_columns};
use bulkhead_eta_model::features::{Featurizer, Lookup};
use bulkhead_eta_model::schema::{self, FEATURES, Kind};
use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../wit",
    world: "model",
});

use bulkhead::model::types::{Alert, ColumnValues, FeatureKind, FeatureSpec, RowError, Value};

/// Feature lookups through the host: it answers from the calling tenant's store only.
struct HostLookup;

impl Lookup for HostLookup {
    fn numbers(
        &mut self,
        table: &str,
        key: &str,
        columns: &[&str],
    ) -> Result<Option<Vec<Option<f64>>>, String> {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_string()).collect();
        let row = bulkhead::model::features::lookup(table, key, &columns)?;
        Ok(row.map(|values| {
            values
                .into_iter()
                .map(|v| match v {
                    Value::Number(x) => Some(x),
                    Value::Category(_) | Value::Missing => None,
                })
                .collect()
        }))
    }
}

thread_local! {
    // A component instance is single-threaded; `load` fills this, `predict` reads it.
    static MODEL: RefCell<Option<Artifact>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Description {
        Description {
            name: schema::PLUGIN_NAME.to_string(),
            version: schema::PLUGIN_VERSION.to_string(),
            output: schema::OUTPUT.to_string(),
            features: FEATURES
                .iter()
                .map(|f| FeatureSpec {
                    name: f.name.to_string(),
                    kind: match f.kind {
                        Kind::Numeric => FeatureKind::Numeric,
                        Kind::Categorical => FeatureKind::Categorical,
                    },
                    required: f.required,
                    doc: f.doc.to_string(),
                })
                .collect(),
            interval_level: Some(schema::INTERVAL_LEVEL),
        }
    }

    fn load(artifact: Vec<u8>) -> Result<(), ModelError> {
        let model =
            Artifact::decode(&artifact).map_err(|e| ModelError::BadArtifact(e.to_string()))?;
        MODEL.with(|m| *m.borrow_mut() = Some(model));
        Ok(())
    }

    fn predict(batch: Batch, options: Options) -> Result<Predictions, ModelError> {
        MODEL.with(|m| {
            let guard = m.borrow();
            let Some(model) = guard.as_ref() else {
                return Err(ModelError::Internal("predict before load".to_string()));
            };
            let columns = batch.columns.iter().map(|c| {
                let column = match &c.values {
                    ColumnValues::Numbers(v) => Column::Numbers(v),
                    ColumnValues::Categories(cat) => Column::Categories {
                        dictionary: &cat.dictionary,
                        codes: &cat.codes,
                    },
                };
                (c.name.as_str(), column)
            });
            let mut features = Featurizer::new(HostLookup);
            let outcomes = predict_columns(model, batch.rows as usize, columns, &mut features)
                .map_err(|e| match e {
                    PredictError::Input(e) => ModelError::BadInput(e.to_string()),
                    e @ PredictError::Lookup(_) => ModelError::Internal(e.to_string()),
                })?;
            let n = outcomes.len();
            let mut out = Predictions {
                values: Vec::with_capacity(n),
                lower: Vec::with_capacity(n),
                upper: Vec::with_capacity(n),
                errors: Vec::new(),
                alerts: Vec::new(),
            };
            for (row, outcome) in (0u32..).zip(outcomes) {
                match outcome {
                    Ok((input, eta)) => {
                        out.values.push(eta.value);
                        out.lower.push(eta.lower);
                        out.upper.push(eta.upper);
                        let after = options.alert_after_minutes;
                        if let Some(a) = after.and_then(|t| alert(model, &input, &eta, t)) {
                            out.alerts.push(Alert {
                                row,
                                late_minutes: a.late_minutes,
                                reason: a.reason,
                            });
                        }
                    }
                    Err(e) => {
                        out.values.push(f64::NAN);
                        out.lower.push(f64::NAN);
                        out.upper.push(f64::NAN);
                        out.errors.push(RowError {
                            row,
                            message: e.to_string(),
                        });
                    }
                }
            }
            Ok(out)
        })
    }
}

export!(Plugin);
