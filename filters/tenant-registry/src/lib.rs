//! The tenant registry: "this org is in this tier, this region, on this data plane,
//! with this model and this rate plan".
//!
//! - [`document`]: the JSON document, exactly as stored and served;
//! - [`validate`]: turns a document into a [`Registry`] or refuses it whole, naming the
//!   field;
//! - [`shared`]: the copy the edge filters share through Envoy's shared data;
//! - [`edit`]: the changes the `bulkhead tenant …` commands make.
//!
//! Pure Rust with no I/O: the host (control API, CLI) and the edge filters (Wasm)
//! share it, so both judge a document by the same rules.

pub mod document;
pub mod edit;
pub mod shared;
pub mod validate;

pub use bulkhead_filter_kit::ConfigError;
pub use document::{
    DataPlaneSpec, Defaults, Document, ModelRef, PlanSpec, RegionSpec, Status, TenantSpec, Tier,
};
pub use validate::{DEFAULT_ALERT_AFTER_MINUTES, MAX_ALERT_AFTER_MINUTES, Registry, Tenant};
