//! The filter's JSON configuration (Envoy `StringValue` plugin configuration).

use bulkhead_filter_kit::ids::valid_header_name;
use bulkhead_filter_kit::{ConfigError, parse_json};
use bulkhead_jwt::config::{ProviderConfig, RulesConfig};
use bulkhead_jwt::{Rules, config as rules_config};
use serde::Deserialize;

use crate::strip::StripRule;

fn default_tenant_header() -> String {
    "x-org-id".into()
}
fn default_realm() -> String {
    "bulkhead".into()
}
fn default_cache_entries() -> usize {
    8192
}

/// The configuration document. Unknown fields are errors: a typo must not silently
/// disable a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub providers: Vec<ProviderConfig>,
    #[serde(default = "rules_default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "rules_default_max_bytes")]
    pub max_token_bytes: usize,
    /// Header that carries the verified tenant upstream.
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// More inbound header names to strip, on top of the built-in identity/routing set.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    #[serde(default)]
    pub strip_header_prefixes: Vec<String>,
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Verified-token cache size per worker; 0 disables it.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

fn rules_default_skew() -> u64 {
    rules_config::DEFAULT_CLOCK_SKEW
}
fn rules_default_max_bytes() -> usize {
    rules_config::DEFAULT_MAX_TOKEN_BYTES
}

/// Everything validated, ready to serve.
pub struct Settings {
    pub rules: Rules,
    pub tenant_header: String,
    pub strip: StripRule,
    pub realm: String,
    pub cache_entries: usize,
}

impl Settings {
    pub fn parse(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let c: FilterConfig = parse_json(bytes)?;
        if !valid_header_name(&c.tenant_header) {
            return Err(ConfigError::new(
                "tenant_header",
                "not a valid lower-case header name",
            ));
        }
        let lists = [
            ("strip_headers", &c.strip_headers),
            ("strip_header_prefixes", &c.strip_header_prefixes),
        ];
        for (list, names) in lists {
            if let Some(i) = names.iter().position(|h| !valid_header_name(h)) {
                return Err(ConfigError::new(
                    format!("{list}[{i}]"),
                    "not a valid lower-case header name",
                ));
            }
        }
        if c.realm.is_empty() || c.realm.contains('"') || c.realm.contains('\\') {
            return Err(ConfigError::new(
                "realm",
                "must be non-empty and contain no quotes or backslashes",
            ));
        }
        if c.cache_entries > 1_000_000 {
            return Err(ConfigError::new("cache_entries", "at most 1000000"));
        }
        let strip = StripRule::new(&c.tenant_header, &c.strip_headers, &c.strip_header_prefixes);
        let rules = Rules::from_config(RulesConfig {
            providers: c.providers,
            clock_skew_seconds: c.clock_skew_seconds,
            max_token_bytes: c.max_token_bytes,
        })?;
        Ok(Settings {
            rules,
            tenant_header: c.tenant_header,
            strip,
            realm: c.realm,
            cache_entries: c.cache_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Settings::parse(json.as_bytes()).err().unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err("{}").field, "(root)");
        assert!(err("{}").message.contains("providers"));
        let e = err(
            r#"{"providers":[{"issuer":"i","audiences":["a"],"jwks":{"inline":{"keys":[]}},"tenant_clam":"x"}]}"#,
        );
        assert_eq!(e.field, "providers[0].tenant_clam");
        let e = err(
            r#"{"providers":[{"issuer":"i","audiences":["a"],"jwks":{"remote":{"cluster":"idp","path":"jwks"}}}]}"#,
        );
        assert_eq!(e.field, "providers[0].jwks.remote.path");
        let e = err(
            r#"{"providers":[{"issuer":"i","audiences":["a"],"jwks":{"remote":{"cluster":"idp","path":"/j"}}}],"tenant_header":"X Org"}"#,
        );
        assert_eq!(e.field, "tenant_header");
        let e = err(
            r#"{"providers":[{"issuer":"i","audiences":["a"],"jwks":{"remote":{"cluster":"idp","path":"/j"}}}],
                "strip_headers":["x-a"],"strip_header_prefixes":["x-ok-","X Bad-"]}"#,
        );
        assert_eq!(e.field, "strip_header_prefixes[1]");
    }
}
