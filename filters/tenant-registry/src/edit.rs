//! The changes `bulkhead tenant …` makes. An edit applies to a copy; the result is
//! validated whole, so an edit that would break a rule changes nothing.

use crate::ConfigError;
use crate::document::{ModelRef, Status, TenantSpec, Tier};
use crate::validate::Registry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Add {
        org_id: String,
        spec: TenantSpec,
    },
    /// Moves a tenant to another tier, and to `data_plane` when given (a silo needs
    /// one of its own).
    SetTier {
        org_id: String,
        tier: Tier,
        data_plane: Option<String>,
    },
    SetDataPlane {
        org_id: String,
        data_plane: String,
    },
    SetPlan {
        org_id: String,
        plan: String,
    },
    SetModel {
        org_id: String,
        model: ModelRef,
    },
    SetMaxConcurrency {
        org_id: String,
        max: u32,
    },
    Suspend {
        org_id: String,
        reason: String,
    },
    Resume {
        org_id: String,
    },
    Remove {
        org_id: String,
    },
}

impl Edit {
    pub fn org_id(&self) -> &str {
        match self {
            Edit::Add { org_id, .. }
            | Edit::SetTier { org_id, .. }
            | Edit::SetDataPlane { org_id, .. }
            | Edit::SetPlan { org_id, .. }
            | Edit::SetModel { org_id, .. }
            | Edit::SetMaxConcurrency { org_id, .. }
            | Edit::Suspend { org_id, .. }
            | Edit::Resume { org_id }
            | Edit::Remove { org_id } => org_id,
        }
    }
}

/// `registry` with `edit` applied and the revision bumped, or why not.
pub fn apply(registry: &Registry, edit: Edit) -> Result<Registry, ConfigError> {
    let mut doc = registry.document().clone();
    let id = edit.org_id().to_string();
    let field = format!("tenants.{id}");
    if let Edit::Add { org_id, spec } = edit {
        if doc.tenants.contains_key(&org_id) {
            return Err(ConfigError::new(field, "already registered"));
        }
        doc.tenants.insert(org_id, spec);
    } else if let Edit::Remove { org_id } = edit {
        if doc.tenants.remove(&org_id).is_none() {
            return Err(ConfigError::new(field, "no such tenant"));
        }
    } else {
        let Some(t) = doc.tenants.get_mut(&id) else {
            return Err(ConfigError::new(field, "no such tenant"));
        };
        match edit {
            Edit::SetTier {
                tier, data_plane, ..
            } => {
                t.tier = tier;
                if let Some(dp) = data_plane {
                    t.data_plane = dp;
                }
            }
            Edit::SetDataPlane { data_plane, .. } => t.data_plane = data_plane,
            Edit::SetPlan { plan, .. } => t.plan = Some(plan),
            Edit::SetModel { model, .. } => t.model = Some(model),
            Edit::SetMaxConcurrency { max, .. } => t.max_concurrency = Some(max),
            Edit::Suspend { reason, .. } => {
                t.status = Status::Suspended;
                t.status_reason = Some(reason);
            }
            Edit::Resume { .. } => {
                t.status = Status::Active;
                t.status_reason = None;
            }
            Edit::Add { .. } | Edit::Remove { .. } => {}
        }
    }
    doc.revision += 1;
    Registry::from_document(doc)
}
