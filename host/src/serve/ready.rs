//! Readiness: the host is ready once the registry is loaded (it always is: the host
//! does not start without a valid one) and the models it must answer for at once are
//! loaded — the models of its silo tenants, of tenants pinned to a version, and the
//! pooled (registry default) model its pool tenants share. A tenant's own model on the
//! `production` alias (bridge) loads on first use.
//!
//! A warm-up task loads them at start and again after every registry change; failures
//! are retried every period. Readiness, once reached, stays: a model added later that
//! fails to load is reported in `/readyz` and the log, but does not pull a host that
//! serves every other tenant out of rotation.

use super::backend::{Backend, ModelId};
use super::tenants::{TenantRoute, Tenants};
use bulkhead_registry::{ModelRef, Tier};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `name@version` as the registry says it.
fn key(m: &ModelRef) -> String {
    format!("{}@{}", m.name, m.version)
}

/// The models a host serving `tenants` must have loaded before it is ready: those of
/// silo tenants, pinned versions, and the registry's default (pooled) model when a
/// served tenant uses it. A tenant's own model on an alias loads on first use.
pub fn required(tenants: &[TenantRoute], pooled: &ModelRef) -> BTreeSet<(String, String)> {
    tenants
        .iter()
        .filter(|t| t.tier == Tier::Silo || t.model.version != "production" || &t.model == pooled)
        .map(|t| (t.model.name.clone(), t.model.version.clone()))
        .collect()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub ready: bool,
    pub registry_revision: u64,
    /// `name@version` (registry) → `name@version` (loaded).
    pub loaded: BTreeMap<String, String>,
    pub pending: Vec<String>,
    /// `name@version` → why it failed.
    pub failed: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_error: Option<String>,
}

#[derive(Default)]
struct State {
    /// The registry version `loaded` belongs to.
    etag: Option<String>,
    loaded: BTreeMap<String, ModelId>,
    failed: BTreeMap<String, String>,
    pending: BTreeSet<String>,
}

pub struct Readiness {
    ready: Arc<AtomicBool>,
    state: Mutex<State>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness {
            ready: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(State::default()),
        }
    }

    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn report(&self, tenants: &Tenants) -> Report {
        let (_, reg) = tenants.registry();
        let s = self.lock();
        Report {
            ready: self.is_ready(),
            registry_revision: reg.document().revision,
            loaded: s
                .loaded
                .iter()
                .map(|(k, m)| (k.clone(), format!("{}@{}", m.name, m.version)))
                .collect(),
            pending: s.pending.iter().cloned().collect(),
            failed: s.failed.clone(),
            registry_error: tenants.watcher().status().last_error,
        }
    }

    /// One warm-up pass: loads what the registry in force requires and has not been
    /// loaded for it yet. Returns true when everything required is loaded.
    pub async fn pass(&self, tenants: &Tenants, backend: &dyn Backend) -> bool {
        let (etag, reg) = tenants.registry();
        let need = required(&tenants.served(), &reg.document().defaults.model);
        let todo: Vec<(String, String)> = {
            let mut s = self.lock();
            if s.etag.as_deref() != Some(etag.as_str()) {
                // A new registry: everything required is warmed again (a cache hit
                // when nothing changed), so a re-pointed alias or pin is picked up.
                s.etag = Some(etag.clone());
                s.loaded.clear();
            }
            let pending: BTreeSet<String> = need.iter().map(|(n, v)| format!("{n}@{v}")).collect();
            s.failed.retain(|k, _| pending.contains(k));
            s.pending = pending;
            need.iter()
                .filter(|(n, v)| !s.loaded.contains_key(&format!("{n}@{v}")))
                .cloned()
                .collect()
        };
        for (name, version) in todo {
            let m = ModelRef { name, version };
            let k = key(&m);
            let result = backend.warm(m).await;
            let mut s = self.lock();
            match result {
                Ok(id) => {
                    tracing::info!(model = %k, loaded = %format!("{}@{}", id.name, id.version), "model warmed");
                    s.failed.remove(&k);
                    s.loaded.insert(k, id);
                }
                Err(e) => {
                    if s.failed.get(&k) != Some(&e.to_string()) {
                        tracing::warn!(model = %k, "warming the model failed (retrying): {e}");
                    }
                    s.failed.insert(k, e.to_string());
                }
            }
        }
        let mut s = self.lock();
        let loaded: BTreeSet<String> = s.loaded.keys().cloned().collect();
        s.pending = s.pending.difference(&loaded).cloned().collect();
        let done = s.pending.is_empty();
        if done && !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!(models = loaded.len(), "ready");
        }
        done
    }

    /// Warms now and then every `period`, until dropped.
    pub async fn run(
        self: Arc<Self>,
        tenants: Arc<Tenants>,
        backend: Arc<dyn Backend>,
        period: Duration,
    ) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pass(&tenants, backend.as_ref()).await;
        }
    }
}
