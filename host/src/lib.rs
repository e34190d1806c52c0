//! The Bulkhead host. For now: the tenant registry's control API and command line
//! (`bulkhead control`, `bulkhead registry …`, `bulkhead tenant …`), and the developer
//! tools behind `make run` and `make token` (a local dev issuer, an echo upstream,
//! Envoy config rendering). The data plane (`bulkhead serve`) lands with the host issue.

pub mod batch;
pub mod dev;
pub mod features;
pub mod metering;
pub mod models;
pub mod registry;
pub mod sandbox;
pub mod serve;
pub mod top;
