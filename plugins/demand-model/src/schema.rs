//! The shared vocabulary, from `bulkhead-model-kit`: airport codes (the ETA model's
//! rules), feature kinds and specs, input errors.

pub use bulkhead_model_kit::{Code, FeatureSpec, InputError, Kind};
