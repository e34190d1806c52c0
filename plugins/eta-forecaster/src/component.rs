//! The WIT exports.

use bulkhead_eta_model::artifact::Artifact;
use bulkhead_eta_model::schema::{self, FEATURES, Kind};
use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../wit",
    world: "model",
});

use bulkhead::model::types::{FeatureKind, FeatureSpec, Value};

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

    fn predict(rows: Vec<Row>) -> Result<Vec<Prediction>, ModelError> {
        MODEL.with(|m| {
            let guard = m.borrow();
            let Some(model) = guard.as_ref() else {
                return Err(ModelError::Internal("predict before load".to_string()));
            };
            let named = rows.iter().map(|row| {
                row.features.iter().map(|f| {
                    let v = match &f.value {
                        Value::Number(x) => schema::Value::Number(*x),
                        Value::Category(s) => schema::Value::Category(s),
                        Value::Missing => schema::Value::Missing,
                    };
                    (f.name.as_str(), v)
                })
            });
            let etas = bulkhead_eta_model::predict_batch(model, named)
                .map_err(|e| ModelError::BadInput(e.to_string()))?;
            Ok(etas
                .into_iter()
                .map(|eta| Prediction {
                    value: eta.value,
                    lower: Some(eta.lower),
                    upper: Some(eta.upper),
                })
                .collect())
        })
    }
}

export!(Plugin);
