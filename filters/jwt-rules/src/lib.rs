//! JWT verification rules shared by the `jwt-auth` edge filter and the host.
//!
//! Nothing here touches the proxy-wasm host or a clock: callers pass `now` and the key
//! sets, so the same rules run natively in tests, inside Envoy, and in the data plane.

pub mod alg;
pub mod cache;
pub mod claims;
pub mod config;
pub mod jwks;
pub mod rejection;
pub mod rsa_public;
pub mod signature;
pub mod strict_json;
pub mod token;
pub mod verifier;

pub use alg::Alg;
pub use cache::VerifiedCache;
pub use config::{ConfigError, JwksSource, Provider, RemoteJwks, Rules, RulesConfig};
pub use jwks::KeySet;
pub use rejection::Rejection;
pub use verifier::{Verified, Verifier};
