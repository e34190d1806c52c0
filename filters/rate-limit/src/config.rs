//! The filter's JSON configuration (Envoy `StringValue` plugin configuration). Plans
//! and tenants come from one of two sources:
//!
//! - the tenant registry (`"registry_scope": "default"`): the copy the tenant-router
//!   filter publishes in shared data (same `vm_id`), so routing and plans always agree;
//! - inline, in the registry's shape (for an edge without a control plane):
//!
//! ```json
//! {"tenant_header": "x-org-id", "default_plan": "standard",
//!  "plans": {"standard": {"per_second": 50, "burst": 100},
//!            "premium": {"per_minute": 6000, "burst": 500}},
//!  "tenants": {"UA": {"plan": "premium"}, "DL": {}},
//!  "emit_ratelimit_headers": true}
//! ```

use governor::Quota;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

/// Largest rate (per window) and burst accepted: far above any plan, small enough that
/// every GCRA quantity (burst × emission interval) fits comfortably in 64-bit nanoseconds.
pub const MAX_COUNT: u32 = 1_000_000;

pub use bulkhead_filter_kit::ConfigError;
pub use bulkhead_filter_kit::ids::{valid_header_name, valid_tenant_id};
use bulkhead_registry::Registry;

fn default_tenant_header() -> String {
    "x-org-id".into()
}
fn default_scope() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

/// The configuration document. Unknown fields are errors: a typo must not silently
/// give a tenant the default plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The verified tenant header (set by jwt-auth).
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// Plan of registered tenants that name none.
    #[serde(default)]
    pub default_plan: Option<String>,
    #[serde(default)]
    pub plans: Option<BTreeMap<String, PlanConfig>>,
    /// The registered tenants; any other tenant is refused (403) and gets no state.
    #[serde(default)]
    pub tenants: Option<BTreeMap<String, TenantConfig>>,
    /// Follow the tenant registry published under this scope instead of inline plans.
    #[serde(default)]
    pub registry_scope: Option<String>,
    /// `RateLimit-Policy` / `RateLimit` on allowed responses (429s always carry them).
    #[serde(default = "yes")]
    pub emit_ratelimit_headers: bool,
    /// Namespace of the shared-data keys: plugins with the same `vm_id` and `scope`
    /// share one limit per tenant.
    #[serde(default = "default_scope")]
    pub scope: String,
}

/// One plan, in the registry's shape: exactly one of `per_second` / `per_minute` /
/// `per_hour` and an optional `burst`.
pub use bulkhead_registry::PlanSpec as PlanConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub plan: Option<String>,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// governor's quota: emission interval `T` = window / count, burst.
    pub quota: Quota,
    pub burst: u32,
    /// `w` of `RateLimit-Policy`: the time to earn the whole burst back, in whole
    /// seconds (rounded up, at least 1).
    pub window_seconds: u64,
    /// The ready `RateLimit-Policy` value: `"standard";q=100;w=2`.
    pub policy_header: String,
}

impl Plan {
    /// GCRA emission interval `T` (one request's worth of time).
    pub fn emission_interval(&self) -> Duration {
        self.quota.replenish_interval()
    }

    /// GCRA burst tolerance `τ` = (burst − 1) × `T`.
    pub fn tolerance(&self) -> Duration {
        self.emission_interval() * (self.burst - 1)
    }
}

/// A registered tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Index into [`Settings::plans`].
    pub plan: usize,
    /// Its shared-data key, `bulkhead.rl.<scope>.<tenant>`.
    pub key: String,
}

/// Everything validated, ready to serve.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tenant_header: String,
    pub plans: Vec<Plan>,
    pub tenants: HashMap<String, Tenant>,
    pub emit_ratelimit_headers: bool,
    pub scope: String,
}

/// What the configuration says before any registry has arrived.
#[derive(Debug, Clone)]
pub enum Configured {
    /// Plans and tenants inline: ready to serve.
    Inline(Settings),
    /// Plans and tenants follow the shared registry copy.
    Registry(RegistryMode),
}

impl Configured {
    pub fn parse(bytes: &[u8]) -> Result<Configured, ConfigError> {
        let c: FilterConfig = bulkhead_filter_kit::parse_json(bytes)?;
        check_names(&c.tenant_header, &c.scope)?;
        match (&c.registry_scope, &c.plans, &c.tenants) {
            (Some(scope), None, None) if c.default_plan.is_none() => {
                check_scope("registry_scope", scope)?;
                Ok(Configured::Registry(RegistryMode {
                    registry_scope: scope.clone(),
                    tenant_header: c.tenant_header,
                    emit_ratelimit_headers: c.emit_ratelimit_headers,
                    scope: c.scope,
                }))
            }
            (Some(_), _, _) => Err(ConfigError::new(
                "registry_scope",
                "plans come from the registry: drop `plans`, `tenants` and `default_plan`",
            )),
            (None, Some(_), Some(_)) => Settings::from_config(c).map(Configured::Inline),
            (None, None, _) => Err(ConfigError::new(
                "plans",
                "required unless `registry_scope` is set",
            )),
            (None, _, None) => Err(ConfigError::new(
                "tenants",
                "required unless `registry_scope` is set",
            )),
        }
    }
}

/// Registry mode: everything but the plans and tenants.
#[derive(Debug, Clone)]
pub struct RegistryMode {
    pub registry_scope: String,
    pub tenant_header: String,
    pub emit_ratelimit_headers: bool,
    pub scope: String,
}

impl RegistryMode {
    /// The settings for one registry copy: its plans, and every tenant in it with its
    /// plan (suspended ones too: the tenant-router refuses them before this filter).
    pub fn settings(&self, registry: &Registry) -> Result<Settings, ConfigError> {
        let doc = registry.document();
        build(
            &self.tenant_header,
            self.emit_ratelimit_headers,
            &self.scope,
            &doc.plans,
            Some(&doc.defaults.plan),
            registry.tenants().map(|t| (t.org_id, Some(t.plan))),
        )
        .map_err(|e| ConfigError::new(format!("registry {}", e.field), e.message))
    }
}

impl Settings {
    /// An inline configuration (see [`Configured::parse`] for both sources).
    pub fn parse(bytes: &[u8]) -> Result<Settings, ConfigError> {
        match Configured::parse(bytes)? {
            Configured::Inline(s) => Ok(s),
            Configured::Registry(_) => Err(ConfigError::new(
                "registry_scope",
                "expected an inline configuration",
            )),
        }
    }

    pub fn from_config(c: FilterConfig) -> Result<Settings, ConfigError> {
        check_names(&c.tenant_header, &c.scope)?;
        let plans = c.plans.unwrap_or_default();
        let tenants = c.tenants.unwrap_or_default();
        build(
            &c.tenant_header,
            c.emit_ratelimit_headers,
            &c.scope,
            &plans,
            c.default_plan.as_deref(),
            tenants
                .iter()
                .map(|(id, t)| (id.as_str(), t.plan.as_deref())),
        )
    }

    /// The registered tenant `id` and its plan.
    pub fn tenant(&self, id: &str) -> Option<(&Tenant, &Plan)> {
        let t = self.tenants.get(id)?;
        Some((t, self.plans.get(t.plan)?))
    }
}

fn check_scope(field: &str, scope: &str) -> Result<(), ConfigError> {
    if scope.is_empty()
        || scope.len() > 64
        || !scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            field,
            "1-64 characters from [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

fn check_names(tenant_header: &str, scope: &str) -> Result<(), ConfigError> {
    if !valid_header_name(tenant_header) {
        return Err(ConfigError::new(
            "tenant_header",
            "not a valid lower-case header name",
        ));
    }
    check_scope("scope", scope)
}

/// Settings from plans and `(tenant, plan name)` pairs, whichever source they came from.
fn build<'a>(
    tenant_header: &str,
    emit_ratelimit_headers: bool,
    scope: &str,
    plan_specs: &BTreeMap<String, PlanConfig>,
    default_plan: Option<&str>,
    tenant_plans: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Settings, ConfigError> {
    if plan_specs.is_empty() {
        return Err(ConfigError::new("plans", "at least one plan is required"));
    }
    let mut plans = Vec::with_capacity(plan_specs.len());
    let mut index = HashMap::new();
    for (name, p) in plan_specs {
        let plan = plan(name, p)?;
        index.insert(name.as_str(), plans.len());
        plans.push(plan);
    }
    let default_plan = match default_plan {
        None => None,
        Some(d) => Some(
            *index
                .get(d)
                .ok_or_else(|| ConfigError::new("default_plan", format!("no plan named `{d}`")))?,
        ),
    };
    let mut tenants = HashMap::new();
    for (id, p) in tenant_plans {
        if !valid_tenant_id(id) {
            return Err(ConfigError::new(
                format!("tenants.{id}"),
                "a tenant id is 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        let plan = match p {
            Some(p) => *index.get(p).ok_or_else(|| {
                ConfigError::new(format!("tenants.{id}.plan"), format!("no plan named `{p}`"))
            })?,
            None => default_plan.ok_or_else(|| {
                ConfigError::new(
                    format!("tenants.{id}.plan"),
                    "no plan given and no `default_plan`",
                )
            })?,
        };
        let key = format!("bulkhead.rl.{scope}.{id}");
        tenants.insert(id.to_string(), Tenant { plan, key });
    }
    Ok(Settings {
        tenant_header: tenant_header.to_string(),
        plans,
        tenants,
        emit_ratelimit_headers,
        scope: scope.to_string(),
    })
}

fn plan(name: &str, p: &PlanConfig) -> Result<Plan, ConfigError> {
    let at = |f: &str| format!("plans.{name}.{f}");
    if !valid_tenant_id(name) {
        return Err(ConfigError::new(
            format!("plans.{name}"),
            "a plan name is 1-64 characters from [A-Za-z0-9._-]",
        ));
    }
    let windows = [
        ("per_second", p.per_second, 1u64),
        ("per_minute", p.per_minute, 60),
        ("per_hour", p.per_hour, 3600),
    ];
    let mut given = windows.iter().filter(|(_, n, _)| n.is_some());
    let (Some((field, Some(count), window)), None) = (given.next(), given.next()) else {
        return Err(ConfigError::new(
            format!("plans.{name}"),
            "exactly one of `per_second`, `per_minute`, `per_hour` is required",
        ));
    };
    let count = checked_count(*count)
        .ok_or_else(|| ConfigError::new(at(field), format!("must be within 1..={MAX_COUNT}")))?;
    let burst = match p.burst {
        None => count,
        Some(b) => checked_count(b).ok_or_else(|| {
            ConfigError::new(at("burst"), format!("must be within 1..={MAX_COUNT}"))
        })?,
    };
    let quota = match *window {
        1 => Quota::per_second(count),
        60 => Quota::per_minute(count),
        _ => Quota::per_hour(count),
    }
    .allow_burst(burst);
    let window_seconds = quota
        .burst_size_replenished_in()
        .as_nanos()
        .div_ceil(1_000_000_000)
        .max(1) as u64;
    Ok(Plan {
        name: name.to_string(),
        policy_header: format!("\"{name}\";q={burst};w={window_seconds}"),
        quota,
        burst: burst.get(),
        window_seconds,
    })
}

fn checked_count(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n).filter(|n| n.get() <= MAX_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Settings::parse(json.as_bytes()).err().unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"tenants":{}}"#).field, "plans");
        assert!(err(r#"{"tenants":{}}"#).message.contains("registry_scope"));
        let e = err(r#"{"plans":{"s":{"per_second":5,"brust":3}},"tenants":{}}"#);
        assert_eq!(e.field, "plans.s.brust");
        let e = err(r#"{"plans":{"s":{"per_second":-5}},"tenants":{}}"#);
        assert_eq!(e.field, "plans.s.per_second");
    }
}
