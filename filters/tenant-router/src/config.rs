//! The filter's JSON configuration (Envoy `StringValue` plugin configuration):
//!
//! ```json
//! {"tenant_header": "x-org-id",
//!  "edge_region": "us-east-1",
//!  "registry": {"cluster": "bulkhead_control", "path": "/v1/registry",
//!               "authority": "bulkhead-control", "refresh_seconds": 2, "timeout_ms": 1000},
//!  "scope": "default"}
//! ```
//!
//! Unknown fields are errors; every error names the field (`registry.refresh_seconds`).

use bulkhead_filter_kit::ids::{valid_header_name, valid_tenant_id};
use serde::Deserialize;

pub use bulkhead_filter_kit::ConfigError;

pub const DEFAULT_TENANT_HEADER: &str = "x-org-id";
pub const DEFAULT_SCOPE: &str = "default";
pub const DEFAULT_PATH: &str = "/v1/registry";
pub const DEFAULT_REFRESH_SECONDS: u64 = 5;
pub const MAX_REFRESH_SECONDS: u64 = 3600;
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;

fn default_tenant_header() -> String {
    DEFAULT_TENANT_HEADER.into()
}
fn default_scope() -> String {
    DEFAULT_SCOPE.into()
}
fn default_path() -> String {
    DEFAULT_PATH.into()
}
fn default_refresh() -> u64 {
    DEFAULT_REFRESH_SECONDS
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// The configuration document as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The verified tenant header (set by jwt-auth).
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// The region this edge runs in. When set, a residency-locked tenant whose zone is
    /// not this region's zone is refused with a pointer to its own region's edge.
    #[serde(default)]
    pub edge_region: Option<String>,
    pub registry: RegistrySource,
    /// Which shared registry copy (`bulkhead.registry.<scope>`); the rate-limit filter
    /// names the same scope.
    #[serde(default = "default_scope")]
    pub scope: String,
}

/// Where the registry is fetched from: the control API, through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    pub cluster: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority` of the fetch; default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

/// The validated source: every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
}

/// Everything validated, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub tenant_header: String,
    pub edge_region: Option<String>,
    pub registry: Source,
    pub scope: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(field, message)
}

/// Visible ASCII, no spaces: safe as a header value and in a log line.
fn token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Settings {
    pub fn parse(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let c: FilterConfig = bulkhead_filter_kit::parse_json(bytes)?;
        Settings::from_config(c)
    }

    pub fn from_config(c: FilterConfig) -> Result<Settings, ConfigError> {
        if !valid_header_name(&c.tenant_header) {
            return Err(err("tenant_header", "not a valid lower-case header name"));
        }
        if let Some(r) = &c.edge_region
            && !valid_tenant_id(r)
        {
            return Err(err(
                "edge_region",
                "a region name is 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        if c.scope.is_empty()
            || c.scope.len() > 64
            || !c
                .scope
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err("scope", "1-64 characters from [A-Za-z0-9_-]"));
        }
        let r = c.registry;
        if !token(&r.cluster) {
            return Err(err(
                "registry.cluster",
                "a cluster name: 1-255 visible ASCII characters",
            ));
        }
        if !r.path.starts_with('/') || !token(&r.path) {
            return Err(err(
                "registry.path",
                "must start with `/` and hold only visible ASCII characters",
            ));
        }
        if let Some(a) = &r.authority
            && !token(a)
        {
            return Err(err("registry.authority", "1-255 visible ASCII characters"));
        }
        if !(1..=MAX_REFRESH_SECONDS).contains(&r.refresh_seconds) {
            return Err(err(
                "registry.refresh_seconds",
                format!("must be within 1..={MAX_REFRESH_SECONDS}"),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&r.timeout_ms) {
            return Err(err(
                "registry.timeout_ms",
                format!("must be within 1..={MAX_TIMEOUT_MS}"),
            ));
        }
        Ok(Settings {
            tenant_header: c.tenant_header,
            edge_region: c.edge_region,
            registry: Source {
                authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
                cluster: r.cluster,
                path: r.path,
                refresh_seconds: r.refresh_seconds,
                timeout_ms: r.timeout_ms,
            },
            scope: c.scope,
        })
    }
}
