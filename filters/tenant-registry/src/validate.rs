//! Validation: a document becomes a [`Registry`] only if every rule holds; otherwise
//! it is refused whole with the first broken rule, naming the field, and whoever holds
//! the last valid registry keeps it.

use crate::ConfigError;
use crate::document::{DataPlaneSpec, Document, ModelRef, PlanSpec, RegionSpec, Status, Tier};
use bulkhead_filter_kit::ids::valid_tenant_id;
use std::collections::{BTreeMap, HashMap};

/// Largest `max_concurrency` and plan count accepted.
pub const MAX_CONCURRENCY: u32 = 100_000;
pub const MAX_PLAN_COUNT: u32 = 1_000_000;
/// Longest suspension reason: it goes into a response body.
pub const MAX_REASON_LEN: usize = 200;

/// A validated registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    doc: Document,
}

/// A tenant with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant<'a> {
    pub org_id: &'a str,
    pub name: &'a str,
    pub tier: Tier,
    pub region: &'a str,
    pub residency: Option<&'a str>,
    pub data_plane: &'a str,
    pub data_plane_spec: &'a DataPlaneSpec,
    pub model: &'a ModelRef,
    pub plan: &'a str,
    pub plan_spec: &'a PlanSpec,
    pub max_concurrency: u32,
    /// Requests that may wait for a concurrency slot (the plan's `max_queue`, else
    /// `max_concurrency`).
    pub max_queue: u32,
    pub alert_after_minutes: u32,
    pub status: Status,
    pub status_reason: Option<&'a str>,
}

/// Late by more than this (minutes) is an exception unless the tenant says otherwise: the
/// US DOT's definition of a late arrival.
pub const DEFAULT_ALERT_AFTER_MINUTES: u32 = 15;
/// The largest alert threshold accepted (a day).
pub const MAX_ALERT_AFTER_MINUTES: u32 = 1440;

impl Registry {
    pub fn parse(bytes: &[u8]) -> Result<Registry, ConfigError> {
        Registry::from_document(Document::from_json(bytes)?)
    }

    pub fn from_document(doc: Document) -> Result<Registry, ConfigError> {
        check(&doc)?;
        Ok(Registry { doc })
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn into_document(self) -> Document {
        self.doc
    }

    pub fn tenant(&self, org_id: &str) -> Option<Tenant<'_>> {
        let (id, t) = self.doc.tenants.get_key_value(org_id)?;
        let d = &self.doc.defaults;
        let plan = t.plan.as_deref().unwrap_or(&d.plan);
        Some(Tenant {
            org_id: id,
            name: &t.name,
            tier: t.tier,
            region: &t.region,
            residency: t.residency.as_deref(),
            data_plane: &t.data_plane,
            // Validation guarantees both exist; `?` keeps the lookup panic-free.
            data_plane_spec: self.doc.data_planes.get(&t.data_plane)?,
            model: t.model.as_ref().unwrap_or(&d.model),
            plan,
            plan_spec: self.doc.plans.get(plan)?,
            max_concurrency: t.max_concurrency.unwrap_or(d.max_concurrency),
            max_queue: self
                .doc
                .plans
                .get(plan)?
                .max_queue
                .unwrap_or(t.max_concurrency.unwrap_or(d.max_concurrency)),
            alert_after_minutes: t.alert_after_minutes.unwrap_or(DEFAULT_ALERT_AFTER_MINUTES),
            status: t.status,
            status_reason: t.status_reason.as_deref(),
        })
    }

    pub fn tenants(&self) -> impl Iterator<Item = Tenant<'_>> {
        self.doc.tenants.keys().filter_map(|id| self.tenant(id))
    }

    pub fn region(&self, name: &str) -> Option<&RegionSpec> {
        self.doc.regions.get(name)
    }

    /// The residency zone of `region`, if the region is declared.
    pub fn zone_of(&self, region: &str) -> Option<&str> {
        self.doc.regions.get(region).map(|r| r.residency.as_str())
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(field, message)
}

fn name_rule(field: String, what: &str, s: &str) -> Result<(), ConfigError> {
    if valid_tenant_id(s) {
        Ok(())
    } else {
        Err(err(
            field,
            format!("`{s}`: a {what} is 1-64 characters from [A-Za-z0-9._-]"),
        ))
    }
}

fn check(doc: &Document) -> Result<(), ConfigError> {
    if doc.regions.is_empty() {
        return Err(err("regions", "at least one region is required"));
    }
    for (name, r) in &doc.regions {
        name_rule(format!("regions.{name}"), "region name", name)?;
        name_rule(
            format!("regions.{name}.residency"),
            "residency zone",
            &r.residency,
        )?;
        if let Some(url) = &r.edge_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(err(
                format!("regions.{name}.edge_url"),
                "must be an http(s) URL",
            ));
        }
    }
    let mut clusters: HashMap<&str, &str> = HashMap::new();
    for (name, dp) in &doc.data_planes {
        name_rule(format!("data_planes.{name}"), "data plane name", name)?;
        if !doc.regions.contains_key(&dp.region) {
            return Err(err(
                format!("data_planes.{name}.region"),
                format!("unknown region `{}`", dp.region),
            ));
        }
        name_rule(
            format!("data_planes.{name}.cluster"),
            "cluster name",
            &dp.cluster,
        )?;
        if let Some(other) = clusters.insert(&dp.cluster, name) {
            return Err(err(
                format!("data_planes.{name}.cluster"),
                format!("cluster `{}` is already data plane `{other}`", dp.cluster),
            ));
        }
    }
    if doc.plans.is_empty() {
        return Err(err("plans", "at least one plan is required"));
    }
    for (name, p) in &doc.plans {
        name_rule(format!("plans.{name}"), "plan name", name)?;
        check_plan(name, p)?;
    }
    let d = &doc.defaults;
    if !doc.plans.contains_key(&d.plan) {
        return Err(err("defaults.plan", format!("no plan named `{}`", d.plan)));
    }
    check_model("defaults.model", &d.model)?;
    check_concurrency("defaults.max_concurrency", d.max_concurrency)?;

    // Data plane → the tenants on it, to enforce silo exclusivity.
    let mut on_plane: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, t) in &doc.tenants {
        let at = |f: &str| format!("tenants.{id}.{f}");
        if !valid_tenant_id(id) {
            return Err(err(
                format!("tenants.{id}"),
                "an org id is 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        if t.name.trim().is_empty() || t.name.len() > 200 {
            return Err(err(at("name"), "1-200 characters, not blank"));
        }
        let Some(home) = doc.regions.get(&t.region) else {
            return Err(err(at("region"), format!("unknown region `{}`", t.region)));
        };
        let Some(dp) = doc.data_planes.get(&t.data_plane) else {
            return Err(err(
                at("data_plane"),
                format!("unknown data plane `{}`", t.data_plane),
            ));
        };
        if let Some(zone) = &t.residency {
            if !doc.regions.values().any(|r| &r.residency == zone) {
                return Err(err(
                    at("residency"),
                    format!("no region is in residency zone `{zone}`"),
                ));
            }
            if &home.residency != zone {
                return Err(err(
                    at("region"),
                    format!(
                        "region `{}` is in zone `{}`, but the tenant must stay in `{zone}`",
                        t.region, home.residency
                    ),
                ));
            }
            let dp_zone = doc
                .regions
                .get(&dp.region)
                .map(|r| r.residency.as_str())
                .unwrap_or_default();
            if dp_zone != zone {
                return Err(err(
                    at("data_plane"),
                    format!(
                        "data plane `{}` is in region `{}` (zone `{dp_zone}`), outside the tenant's residency zone `{zone}`",
                        t.data_plane, dp.region
                    ),
                ));
            }
        }
        if let Some(m) = &t.model {
            check_model(&at("model"), m)?;
        }
        if let Some(p) = &t.plan
            && !doc.plans.contains_key(p)
        {
            return Err(err(at("plan"), format!("no plan named `{p}`")));
        }
        if let Some(c) = t.max_concurrency {
            check_concurrency(&at("max_concurrency"), c)?;
        }
        if let Some(m) = t.alert_after_minutes
            && !(1..=MAX_ALERT_AFTER_MINUTES).contains(&m)
        {
            return Err(err(
                at("alert_after_minutes"),
                format!("must be within 1..={MAX_ALERT_AFTER_MINUTES}"),
            ));
        }
        match (t.status, &t.status_reason) {
            (Status::Active, Some(_)) => {
                return Err(err(
                    at("status_reason"),
                    "only a suspended tenant has a status reason",
                ));
            }
            (Status::Suspended, Some(r))
                if r.trim().is_empty()
                    || r.len() > MAX_REASON_LEN
                    || r.chars().any(char::is_control) =>
            {
                return Err(err(
                    at("status_reason"),
                    format!("1-{MAX_REASON_LEN} printable characters"),
                ));
            }
            _ => {}
        }
        on_plane.entry(&t.data_plane).or_default().push(id);
    }
    for (id, t) in &doc.tenants {
        if t.tier != Tier::Silo {
            continue;
        }
        if let Some(others) = on_plane.get(t.data_plane.as_str())
            && let Some(other) = others.iter().find(|o| **o != id.as_str())
        {
            return Err(err(
                format!("tenants.{id}.data_plane"),
                format!(
                    "silo tenant `{id}` shares data plane `{}` with `{other}`",
                    t.data_plane
                ),
            ));
        }
    }
    Ok(())
}

fn check_plan(name: &str, p: &PlanSpec) -> Result<(), ConfigError> {
    let at = |f: &str| format!("plans.{name}.{f}");
    let given: Vec<(&str, u32)> = [
        ("per_second", p.per_second),
        ("per_minute", p.per_minute),
        ("per_hour", p.per_hour),
    ]
    .into_iter()
    .filter_map(|(f, n)| n.map(|n| (f, n)))
    .collect();
    let [(field, count)] = given.as_slice() else {
        return Err(err(
            format!("plans.{name}"),
            "exactly one of `per_second`, `per_minute`, `per_hour` is required",
        ));
    };
    let in_range = |n: u32| (1..=MAX_PLAN_COUNT).contains(&n);
    if !in_range(*count) {
        return Err(err(
            at(field),
            format!("must be within 1..={MAX_PLAN_COUNT}"),
        ));
    }
    if let Some(b) = p.burst
        && !in_range(b)
    {
        return Err(err(
            at("burst"),
            format!("must be within 1..={MAX_PLAN_COUNT}"),
        ));
    }
    // 0: no waiting at all (a busy tenant is refused at once).
    if let Some(q) = p.max_queue
        && q > MAX_CONCURRENCY
    {
        return Err(err(
            at("max_queue"),
            format!("must be within 0..={MAX_CONCURRENCY}"),
        ));
    }
    Ok(())
}

fn check_model(field: &str, m: &ModelRef) -> Result<(), ConfigError> {
    name_rule(format!("{field}.name"), "model name", &m.name)?;
    name_rule(format!("{field}.version"), "model version", &m.version)
}

fn check_concurrency(field: &str, c: u32) -> Result<(), ConfigError> {
    if (1..=MAX_CONCURRENCY).contains(&c) {
        Ok(())
    } else {
        Err(err(field, format!("must be within 1..={MAX_CONCURRENCY}")))
    }
}
