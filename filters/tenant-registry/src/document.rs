//! The registry document. Unknown fields and duplicate keys are errors: a typo must not
//! quietly put a tenant on a default.
//!
//! ```json
//! {"revision": 3,
//!  "regions": {"us-east-1": {"residency": "us"},
//!              "eu-west-1": {"residency": "eu", "edge_url": "https://eu.api.example"}},
//!  "data_planes": {"pool-us": {"region": "us-east-1", "cluster": "dp_pool_us"}},
//!  "plans": {"standard": {"per_second": 50, "burst": 100}},
//!  "defaults": {"plan": "standard", "model": {"name": "eta", "version": "production"},
//!               "max_concurrency": 8},
//!  "tenants": {"DL": {"name": "Delta Air Lines", "tier": "pool",
//!                     "region": "us-east-1", "data_plane": "pool-us"}}}
//! ```

use bulkhead_filter_kit::unique_keys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Bumped by every edit; for people and logs (the control API's ETag is a hash).
    #[serde(default)]
    pub revision: u64,
    #[serde(deserialize_with = "unique_keys::btree_map")]
    pub regions: BTreeMap<String, RegionSpec>,
    #[serde(deserialize_with = "unique_keys::btree_map")]
    pub data_planes: BTreeMap<String, DataPlaneSpec>,
    #[serde(deserialize_with = "unique_keys::btree_map")]
    pub plans: BTreeMap<String, PlanSpec>,
    pub defaults: Defaults,
    #[serde(deserialize_with = "unique_keys::btree_map")]
    pub tenants: BTreeMap<String, TenantSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// The residency zone the region belongs to (`eu`, `us`, …): a tenant locked to a
    /// zone is never served from a region outside it.
    pub residency: String,
    /// Where this region's edge answers; named in the refusal an edge elsewhere sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlaneSpec {
    pub region: String,
    /// The Envoy cluster that serves it; the edge routes on it.
    pub cluster: String,
}

/// One rate plan: exactly one of `per_second` / `per_minute` / `per_hour` (the
/// sustained rate) and `burst` (default: the rate's count). The rate-limit filter turns
/// it into a GCRA quota. `included_predictions` is for billing (metering), not the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Predictions a month included in the plan; beyond them the host's metering bills
    /// overage. Absent: none included (every prediction is billable). The edge ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_predictions: Option<u64>,
    /// Requests of a tenant that may wait at the data plane for one of its concurrency
    /// slots; beyond them a request is refused (429) at once. Absent: as many as its
    /// `max_concurrency`. The edge ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub plan: String,
    pub model: ModelRef,
    pub max_concurrency: u32,
}

/// A model and its version: a pinned version, or `production` (the model registry's
/// production alias, resolved by the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Shared host, shared store, the pooled model.
    Pool,
    /// Shared host, the tenant's own store and model.
    Bridge,
    /// A data plane of its own.
    Silo,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Pool => "pool",
            Tier::Bridge => "bridge",
            Tier::Silo => "silo",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "pool" => Some(Tier::Pool),
            "bridge" => Some(Tier::Bridge),
            "silo" => Some(Tier::Silo),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Suspended,
}

fn is_active(s: &Status) -> bool {
    *s == Status::Active
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Display name.
    pub name: String,
    pub tier: Tier,
    /// Home region.
    pub region: String,
    /// A residency zone (`eu`): the tenant is never served outside that zone's regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<String>,
    pub data_plane: String,
    /// Default: `defaults.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Default: `defaults.plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// In-flight requests allowed at the data plane. Default: `defaults.max_concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Exception alerts: a shipment predicted later than scheduled by more than this many
    /// minutes is flagged. Default: [`crate::DEFAULT_ALERT_AFTER_MINUTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_after_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "is_active")]
    pub status: Status,
    /// Why the tenant is suspended (shown in the 403). Only with `status: suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
}

impl Document {
    /// Parses without validating (see [`crate::Registry::parse`] for the full check).
    pub fn from_json(bytes: &[u8]) -> Result<Document, crate::ConfigError> {
        bulkhead_filter_kit::parse_json(bytes)
    }

    /// The stored form: pretty JSON, keys in order, a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}
