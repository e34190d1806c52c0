//! Local development: a dev JWT issuer, an echo upstream, and Envoy config rendering.

pub mod echo;
pub mod envoy_config;
pub mod issuer;
