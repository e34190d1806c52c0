//! Provider configuration: parsed from JSON, validated once, errors name the field.

use crate::alg::{Alg, AlgError};
use crate::jwks::KeySet;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

pub const DEFAULT_CLOCK_SKEW: u64 = 60;
/// RFC 7519 leaves skew to the verifier; five minutes is the most any IdP guide asks
/// for, and jwt-simple's 15-minute default is far too lenient for an edge.
pub const MAX_CLOCK_SKEW: u64 = 300;
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

pub use bulkhead_filter_kit::ConfigError;

fn default_tenant_claim() -> String {
    "org_id".into()
}
fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}

/// The JSON shape of one identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name for logs and metrics; defaults to the issuer.
    #[serde(default)]
    pub name: Option<String>,
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Allowed `alg` values; all asymmetric algorithms we support when absent.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    pub jwks: JwksConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JwksConfig {
    /// A JWKS object (or its JSON text) written into the configuration.
    Inline(Value),
    /// Fetched from the IdP through a proxy cluster.
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwks {
    /// The Envoy cluster that reaches the IdP.
    pub cluster: String,
    pub path: String,
    /// `:authority` of the fetch; defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "RemoteJwks::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Refresh period when the response has no usable `Cache-Control: max-age`.
    #[serde(default = "RemoteJwks::default_refresh")]
    pub refresh_seconds: u64,
    /// Bounds applied to `max-age`, so an IdP can neither hammer nor starve us.
    #[serde(default = "RemoteJwks::default_min_refresh")]
    pub min_refresh_seconds: u64,
    #[serde(default = "RemoteJwks::default_max_refresh")]
    pub max_refresh_seconds: u64,
    /// At most one fetch per this period is triggered by tokens with unknown `kid`s.
    #[serde(default = "RemoteJwks::default_cooldown")]
    pub unknown_kid_cooldown_seconds: u64,
    /// Retry period after a failed fetch.
    #[serde(default = "RemoteJwks::default_retry")]
    pub retry_seconds: u64,
}

impl RemoteJwks {
    fn default_timeout_ms() -> u64 {
        3000
    }
    fn default_refresh() -> u64 {
        300
    }
    fn default_min_refresh() -> u64 {
        30
    }
    fn default_max_refresh() -> u64 {
        86_400
    }
    fn default_cooldown() -> u64 {
        30
    }
    fn default_retry() -> u64 {
        5
    }
}

/// The JSON shape of the verification rules.
#[derive(Debug, Clone, Deserialize)]
pub struct RulesConfig {
    pub providers: Vec<ProviderConfig>,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

/// Where a validated provider's keys come from.
#[derive(Clone)]
pub enum JwksSource {
    Inline(Arc<KeySet>),
    Remote(RemoteJwks),
}

/// A validated identity provider.
#[derive(Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: HashSet<String>,
    pub tenant_claim: String,
    pub algorithms: Vec<Alg>,
    pub jwks: JwksSource,
}

/// Validated rules: what the verifier enforces.
#[derive(Clone)]
pub struct Rules {
    pub providers: Vec<Provider>,
    pub clock_skew_seconds: u64,
    pub max_token_bytes: usize,
}

impl Rules {
    pub fn from_config(c: RulesConfig) -> Result<Rules, ConfigError> {
        if c.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is required",
            ));
        }
        if c.clock_skew_seconds > MAX_CLOCK_SKEW {
            return Err(ConfigError::new(
                "clock_skew_seconds",
                format!(
                    "{} exceeds the cap of {MAX_CLOCK_SKEW}",
                    c.clock_skew_seconds
                ),
            ));
        }
        if !(256..=65_536).contains(&c.max_token_bytes) {
            return Err(ConfigError::new(
                "max_token_bytes",
                "must be within 256..=65536",
            ));
        }
        let mut providers = Vec::new();
        let mut issuers = HashSet::new();
        for (i, p) in c.providers.into_iter().enumerate() {
            let at = |f: &str| format!("providers[{i}].{f}");
            if p.issuer.is_empty() {
                return Err(ConfigError::new(at("issuer"), "must not be empty"));
            }
            if !issuers.insert(p.issuer.clone()) {
                return Err(ConfigError::new(
                    at("issuer"),
                    "another provider has this issuer",
                ));
            }
            if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    at("audiences"),
                    "needs one or more non-empty audiences",
                ));
            }
            if p.tenant_claim.is_empty() {
                return Err(ConfigError::new(at("tenant_claim"), "must not be empty"));
            }
            let algorithms = match p.algorithms {
                None => Alg::ALL.to_vec(),
                Some(names) if names.is_empty() => {
                    return Err(ConfigError::new(at("algorithms"), "must not be empty"));
                }
                Some(names) => names
                    .iter()
                    .map(|n| {
                        Alg::parse(n).map_err(|e| {
                            let why = match e {
                                AlgError::None => "`none` is never allowed".to_string(),
                                AlgError::Symmetric => {
                                    format!("{n}: symmetric algorithms are not allowed")
                                }
                                AlgError::Unsupported => format!("{n}: unsupported algorithm"),
                            };
                            ConfigError::new(at("algorithms"), why)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let jwks = match p.jwks {
                JwksConfig::Inline(v) => {
                    let doc = match v {
                        Value::String(s) => serde_json::from_str(&s).map_err(|e| {
                            ConfigError::new(at("jwks.inline"), format!("not JSON: {e}"))
                        })?,
                        other => other,
                    };
                    let set = KeySet::from_value(&doc)
                        .map_err(|e| ConfigError::new(at("jwks.inline"), e))?;
                    JwksSource::Inline(Arc::new(set))
                }
                JwksConfig::Remote(r) => {
                    validate_remote(&r, &at)?;
                    JwksSource::Remote(r)
                }
            };
            providers.push(Provider {
                name: p.name.unwrap_or_else(|| p.issuer.clone()),
                issuer: p.issuer,
                audiences: p.audiences.into_iter().collect(),
                tenant_claim: p.tenant_claim,
                algorithms,
                jwks,
            });
        }
        Ok(Rules {
            providers,
            clock_skew_seconds: c.clock_skew_seconds,
            max_token_bytes: c.max_token_bytes,
        })
    }
}

fn validate_remote(r: &RemoteJwks, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if r.cluster.is_empty() {
        return Err(ConfigError::new(
            at("jwks.remote.cluster"),
            "must not be empty",
        ));
    }
    if !r.path.starts_with('/') {
        return Err(ConfigError::new(
            at("jwks.remote.path"),
            "must start with `/`",
        ));
    }
    if !(1..=60_000).contains(&r.timeout_ms) {
        return Err(ConfigError::new(
            at("jwks.remote.timeout_ms"),
            "must be within 1..=60000",
        ));
    }
    if r.min_refresh_seconds == 0 || r.min_refresh_seconds > r.max_refresh_seconds {
        return Err(ConfigError::new(
            at("jwks.remote.min_refresh_seconds"),
            "must be at least 1 and at most max_refresh_seconds",
        ));
    }
    if !(r.min_refresh_seconds..=r.max_refresh_seconds).contains(&r.refresh_seconds) {
        return Err(ConfigError::new(
            at("jwks.remote.refresh_seconds"),
            "must lie between min_refresh_seconds and max_refresh_seconds",
        ));
    }
    if r.unknown_kid_cooldown_seconds == 0 {
        return Err(ConfigError::new(
            at("jwks.remote.unknown_kid_cooldown_seconds"),
            "must be at least 1",
        ));
    }
    if r.retry_seconds == 0 {
        return Err(ConfigError::new(
            at("jwks.remote.retry_seconds"),
            "must be at least 1",
        ));
    }
    Ok(())
}
