//! The WIT exports.

use bulkhead_demand_model::artifact::Artifact;
use bulkhead_demand_model::columns::{Column, predict_columns};
use bulkhead_demand_model::{self as model, FEATURES, Kind};
use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../wit",
    world: "model",
});

use bulkhead::model::types::{ColumnValues, FeatureKind, FeatureSpec, RowError};

thread_local! {
    // A component instance is single-threaded; `load` fills this, `predict` reads it.
    static MODEL: RefCell<Option<Artifact>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Description {
        Description {
            name: model::PLUGIN_NAME.to_string(),
            version: model::PLUGIN_VERSION.to_string(),
            output: model::OUTPUT.to_string(),
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
            interval_level: Some(model::INTERVAL_LEVEL),
        }
    }

    fn load(artifact: Vec<u8>) -> Result<(), ModelError> {
        let decoded =
            Artifact::decode(&artifact).map_err(|e| ModelError::BadArtifact(e.to_string()))?;
        MODEL.with(|m| *m.borrow_mut() = Some(decoded));
        Ok(())
    }

    /// No alerts: `options` is for the ETA model's lateness threshold.
    fn predict(batch: Batch, _options: Options) -> Result<Predictions, ModelError> {
        MODEL.with(|m| {
            let guard = m.borrow();
            let Some(artifact) = guard.as_ref() else {
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
            let out = predict_columns(artifact, batch.rows as usize, columns)
                .map_err(|e| ModelError::BadInput(e.to_string()))?;
            let mut p = Predictions {
                values: Vec::with_capacity(out.len()),
                lower: Vec::with_capacity(out.len()),
                upper: Vec::with_capacity(out.len()),
                errors: Vec::new(),
                alerts: Vec::new(),
            };
            for (row, f) in (0u32..).zip(out) {
                let (value, lower, upper) = match f {
                    Ok(f) => (f.value, f.lower, f.upper),
                    Err(e) => {
                        p.errors.push(RowError {
                            row,
                            message: e.to_string(),
                        });
                        (f64::NAN, f64::NAN, f64::NAN)
                    }
                };
                p.values.push(value);
                p.lower.push(lower);
                p.upper.push(upper);
            }
            Ok(p)
        })
    }
}

export!(Plugin);
