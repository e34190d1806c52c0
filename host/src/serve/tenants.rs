//! Tenant → what this host serves it: the registry's last valid version (the same
//! [`Watcher`] the control API uses, re-read and parsed when the file changes), and the
//! host's own refusals: unknown and suspended tenants (403, with the
//! tenant-router's codes) and tenants of another data plane (421: a silo host serves
//! only its silo tenants, a pool host never serves a silo tenant).

use super::error::ApiError;
use crate::registry::watch::Watcher;
use axum::http::StatusCode;
use bulkhead_registry::{ModelRef, Registry, Status, Tenant, Tier};
use std::sync::Arc;

/// What a request of one tenant needs from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoute {
    pub org_id: String,
    pub tier: Tier,
    /// The tenant's region (its usage events carry it).
    pub region: String,
    pub model: ModelRef,
    pub max_concurrency: u32,
    /// Requests that may wait for one of its concurrency slots.
    pub max_queue: u32,
    /// Exception alerts on shipments predicted later than this (minutes).
    pub alert_after_minutes: u32,
}

pub struct Tenants {
    watcher: Arc<Watcher>,
    /// This host's data plane (its Envoy cluster name); `None` serves every data plane.
    plane: Option<String>,
}

impl Tenants {
    pub fn new(watcher: Arc<Watcher>, plane: Option<String>) -> anyhow::Result<Tenants> {
        let registry = Arc::clone(&watcher.current().registry);
        if let Some(p) = &plane
            && !registry
                .document()
                .data_planes
                .values()
                .any(|d| &d.cluster == p)
        {
            tracing::warn!(
                plane = %p,
                "no data plane in the registry has this cluster name: no tenant will be served until one does"
            );
        }
        Ok(Tenants { watcher, plane })
    }

    pub fn watcher(&self) -> &Arc<Watcher> {
        &self.watcher
    }

    pub fn plane(&self) -> Option<&str> {
        self.plane.as_deref()
    }

    /// The registry now served, with its ETag (the watcher parsed it once).
    pub fn registry(&self) -> (String, Arc<Registry>) {
        let snap = self.watcher.current();
        (snap.etag.clone(), Arc::clone(&snap.registry))
    }

    /// The route of a verified tenant, or the refusal.
    pub fn route(&self, org_id: &str) -> Result<TenantRoute, ApiError> {
        let reg = Arc::clone(&self.watcher.current().registry);
        let t = reg.tenant(org_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_tenant",
                "the tenant is not registered",
            )
        })?;
        if t.status == Status::Suspended {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                t.status_reason.unwrap_or("suspended"),
            ));
        }
        if let Some(p) = &self.plane
            && &t.data_plane_spec.cluster != p
        {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "wrong_data_plane",
                format!(
                    "the tenant is served by data plane `{}`, not this one",
                    t.data_plane
                ),
            ));
        }
        Ok(route_of(&t))
    }

    /// Active tenants this host serves.
    pub fn served(&self) -> Vec<TenantRoute> {
        let (_, reg) = self.registry();
        reg.tenants()
            .filter(|t| t.status == Status::Active)
            .filter(|t| {
                self.plane
                    .as_ref()
                    .is_none_or(|p| &t.data_plane_spec.cluster == p)
            })
            .map(|t| route_of(&t))
            .collect()
    }
}

fn route_of(t: &Tenant<'_>) -> TenantRoute {
    TenantRoute {
        org_id: t.org_id.to_string(),
        tier: t.tier,
        region: t.region.to_string(),
        model: t.model.clone(),
        max_concurrency: t.max_concurrency,
        max_queue: t.max_queue,
        alert_after_minutes: t.alert_after_minutes,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::registry::{DEV_REGISTRY, store};

    #[test]
    fn routes_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registry.json");
        let doc = DEV_REGISTRY.replace(
            "\"name\": \"Virgin America\",",
            "\"name\": \"Virgin America\", \"status\": \"suspended\", \"status_reason\": \"invoice overdue\",",
        );
        std::fs::write(&p, doc).unwrap();
        let w = Arc::new(Watcher::open(&p).unwrap());
        let pool = Tenants::new(Arc::clone(&w), Some("dp_pool_us".into())).unwrap();
        let r = pool.route("DL").unwrap();
        assert_eq!(
            (r.tier, r.model.name.as_str(), r.max_concurrency),
            (Tier::Bridge, "eta-DL", 8)
        );
        assert_eq!(pool.route("EV").unwrap().model.name, "eta-global");
        let e = pool.route("ZZ").unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (403, "unknown_tenant"));
        let e = pool.route("VX").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.error, e.reason.as_str()),
            (403, "tenant_suspended", "invoice overdue")
        );
        let e = pool.route("UA").unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (421, "wrong_data_plane"));
        assert!(
            pool.served()
                .iter()
                .all(|t| t.org_id != "UA" && t.org_id != "VX" && t.org_id != "B6")
        );

        let silo = Tenants::new(Arc::clone(&w), Some("dp_silo_ua".into())).unwrap();
        assert_eq!(silo.route("UA").unwrap().max_concurrency, 8);
        assert_eq!(silo.route("DL").unwrap_err().status.as_u16(), 421);
        assert_eq!(silo.served().len(), 1);

        // A registry edit is seen without a restart.
        let edited = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"revision\": 1", "\"revision\": 2")
            .replace(
                "\"name\": \"Delta Air Lines Inc.\",",
                "\"name\": \"Delta Air Lines Inc.\", \"max_concurrency\": 3,",
            );
        store::write_atomic(&p, edited.as_bytes()).unwrap();
        w.refresh();
        assert_eq!(pool.route("DL").unwrap().max_concurrency, 3);
    }
}
