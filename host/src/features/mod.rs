//! Tenant-isolated feature stores: what a plugin's `features.lookup` reads.
//!
//! The plugin asks for a table, a key and columns; it never names a tenant. The host
//! answers from the store of the verified tenant of the request ([`FeatureStores::for_tenant`]
//! in the data plane's backend) plus the shared public tables.
//!
//! - [`schema`]: the tables, their columns and whose data each is (the lookup allowlist).
//! - [`store`]: the SQLite files and the lookups.
//! - [`postgres`]: the PostgreSQL backend (pool/bridge/silo by tier) and its loader.
//! - [`featurize`]: the model's lookups answered from a store (what training reads).
//! - [`load`]: building the files from the data set (`bulkhead features load`).
//! - [`cli`]: `bulkhead features load|get`.

pub mod cli;
pub mod featurize;
pub mod load;
pub mod postgres;
pub mod schema;
pub mod store;

pub use store::{FeatureStores, TenantFeatures};

/// The feature stores' directory inside a data-plane directory.
pub const DIR: &str = "features";

#[cfg(test)]
mod tests;
