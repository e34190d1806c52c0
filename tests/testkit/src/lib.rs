//! # bulkhead-testkit
//!
//! Shared test support for Bulkhead's filters, host and end-to-end tests.
//!
//! | module | what it gives you |
//! | --- | --- |
//! | [`keys`] | fixture signing keys for RS/PS 256/384/512, ES256, ES384, EdDSA (+ HS256 for negative tests), their JWKs and JWKS documents |
//! | [`forge`] | compact JWS tokens from raw header/payload text, `alg: none`, JWE-shaped and oversize tokens |
//! | [`servers`] | [`EchoUpstream`] and [`JwksServer`]: loopback HTTP servers on their own background runtime |
//! | [`envoy`] | [`Envoy`]: launch a real Envoy, find its ports, read stats and logs |
//! | [`config`] | Envoy v3 YAML building blocks: clusters, wasm / native jwt_authn filters, listeners, bootstrap |
//! | [`client`] | [`http_get`] / [`http_request`]: a tiny blocking HTTP/1.1 client that never follows redirects |
//! | [`tls`] | [`tls::client_config`]: a rustls client trusting a CA, with or without a client certificate |
//! | [`postgres`] | [`postgres::Cluster`]: a throwaway PostgreSQL cluster on a unix socket |
//! | [`cases`] | the shared token suite: a data table of requests and the jwt-auth filter's expected verdicts, plus the standard provider config |
//!
//! ```no_run
//! use bulkhead_testkit::{config, forge, http_get, keys::{self, Alg}, Envoy, EchoUpstream};
//!
//! let echo = EchoUpstream::start();
//! let key = keys::key(Alg::ES256);
//! let jwt = config::native_jwt_authn(
//!     "https://issuer.test",
//!     &["api"],
//!     &config::JwksSource::Inline(keys::jwks(&[key])),
//! );
//! let yaml = config::bootstrap(
//!     &[config::listener("main", &[jwt], "echo")],
//!     &[config::echo_cluster("echo", echo.port())],
//! );
//! let envoy = Envoy::start(&yaml, 1).unwrap();
//! let now = forge::now();
//! let token = forge::standard(key, "https://issuer.test", "api".into(), "org-1", now, now + 60);
//! let auth = format!("Bearer {token}");
//! let resp = http_get(envoy.listener_port("main"), "/", &[("authorization", &auth)]).unwrap();
//! assert_eq!(resp.status, 200);
//! ```

pub mod cases;
pub mod client;
pub mod config;
pub mod envoy;
pub mod forge;
mod http1;
pub mod keys;
pub mod postgres;
pub mod servers;
pub mod tls;

pub use client::{Response, http_get, http_request};
pub use envoy::{Envoy, EnvoyOptions};
pub use keys::{Alg, TestKey};
pub use servers::{EchoUpstream, EchoedRequest, JwksServer};
