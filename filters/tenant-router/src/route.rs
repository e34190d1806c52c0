//! The routing decision for one request: pure, no I/O.
//!
//! registry (if any) + this edge's region + the verified tenant header → the five
//! routing headers, or the reason the request is refused. The order of the checks:
//! missing tenant header, no registry, unknown tenant, suspended, residency violation
//! (the tenant's data plane outside its zone), wrong region (a residency-locked tenant
//! at an edge outside its zone).

use bulkhead_registry::{Registry, Tenant};

pub const TENANT_TIER: &str = "x-tenant-tier";
pub const TENANT_REGION: &str = "x-tenant-region";
pub const MODEL_NAME: &str = "x-model-name";
pub const MODEL_VERSION: &str = "x-model-version";
pub const DATA_PLANE: &str = "x-data-plane";

/// The headers the router owns: always replaced on a routed request, so nothing a
/// client sent under these names reaches a routing decision.
pub const ROUTING_HEADERS: [&str; 5] = [
    TENANT_TIER,
    TENANT_REGION,
    MODEL_NAME,
    MODEL_VERSION,
    DATA_PLANE,
];

/// A routed request: the headers to set (replacing any value), in
/// [`ROUTING_HEADERS`] order. `x-data-plane` is the data plane's Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub headers: [(&'static str, String); 5],
}

impl Route {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No registry copy yet: fail closed (503).
    Unavailable,
    /// No (or an empty) tenant header.
    MissingTenant,
    UnknownTenant,
    Suspended {
        /// The registry's `status_reason`, if any.
        reason: Option<String>,
    },
    /// The tenant is locked to `zone` but its data plane is in a region outside it (or
    /// in a region the registry does not declare). Validation refuses such documents;
    /// this is the per-request guard behind it.
    ResidencyViolation {
        zone: String,
        data_plane: String,
        data_plane_region: String,
    },
    /// A residency-locked tenant arrived at an edge outside its zone.
    WrongRegion {
        /// The tenant's residency zone.
        zone: String,
        /// The tenant's home region, and that region's edge, if the registry names one.
        region: String,
        edge_url: Option<String>,
        /// This edge's region and its zone (`None`: the registry does not know it).
        edge_region: String,
        edge_zone: Option<String>,
    },
}

impl Refusal {
    /// The `error` code of the reply.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unavailable => "registry_unavailable",
            Refusal::MissingTenant => "missing_tenant",
            Refusal::UnknownTenant => "unknown_tenant",
            Refusal::Suspended { .. } => "tenant_suspended",
            Refusal::ResidencyViolation { .. } => "residency_violation",
            Refusal::WrongRegion { .. } => "wrong_region",
        }
    }
}

/// The decision for one request. `tenant` is the tenant header's value, if present.
pub fn decide(
    registry: Option<&Registry>,
    edge_region: Option<&str>,
    tenant: Option<&str>,
) -> Result<Route, Refusal> {
    let org = tenant
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::MissingTenant)?;
    let registry = registry.ok_or(Refusal::Unavailable)?;
    let t = registry.tenant(org).ok_or(Refusal::UnknownTenant)?;
    check(registry, edge_region, &t)
}

/// The checks on a tenant found in `registry` (public so that a tenant the validator
/// would never let through can be judged too).
pub fn check(
    registry: &Registry,
    edge_region: Option<&str>,
    t: &Tenant<'_>,
) -> Result<Route, Refusal> {
    if t.status == bulkhead_registry::Status::Suspended {
        return Err(Refusal::Suspended {
            reason: t.status_reason.map(str::to_string),
        });
    }
    if let Some(zone) = t.residency {
        let dp_region = t.data_plane_spec.region.as_str();
        if registry.zone_of(dp_region) != Some(zone) {
            return Err(Refusal::ResidencyViolation {
                zone: zone.to_string(),
                data_plane: t.data_plane.to_string(),
                data_plane_region: dp_region.to_string(),
            });
        }
        if let Some(edge) = edge_region {
            let edge_zone = registry.zone_of(edge);
            if edge_zone != Some(zone) {
                return Err(Refusal::WrongRegion {
                    zone: zone.to_string(),
                    region: t.region.to_string(),
                    edge_url: registry.region(t.region).and_then(|r| r.edge_url.clone()),
                    edge_region: edge.to_string(),
                    edge_zone: edge_zone.map(str::to_string),
                });
            }
        }
    }
    Ok(Route {
        headers: [
            (TENANT_TIER, t.tier.as_str().to_string()),
            (TENANT_REGION, t.region.to_string()),
            (MODEL_NAME, t.model.name.clone()),
            (MODEL_VERSION, t.model.version.clone()),
            (DATA_PLANE, t.data_plane_spec.cluster.clone()),
        ],
    })
}
