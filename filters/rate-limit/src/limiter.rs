//! The per-request policy: find the tenant, run governor's GCRA for its plan over
//! shared data, and say what to answer.

use crate::config::{Plan, Settings};
use crate::host::Host;
use crate::store::{EpochClock, Observed, SharedStore};
use governor::RateLimiter;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use std::time::Duration;

/// One plan's GCRA: governor's limiter, keyed by the tenant's shared-data key, over the
/// shared-data store and the epoch clock. (`NoOpMiddleware`'s default type parameter is
/// the instant of governor's default clock, not ours, hence spelled out.)
pub type PlanLimiter<H> = RateLimiter<String, SharedStore<H>, EpochClock<H>, NoOpMiddleware<Nanos>>;

/// The tenant's standing after a decision, for the `RateLimit` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Index into [`Settings::plans`].
    pub plan: usize,
    /// Requests that may follow right away (`r`).
    pub remaining: u32,
    /// Seconds until the whole burst is available again (`t`), rounded up.
    pub reset_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No (or an empty) tenant header: the request carries no verified tenant.
    MissingTenant,
    /// A tenant that is not registered: refused, and no state is created for it.
    UnknownTenant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(Usage),
    Limit {
        usage: Usage,
        retry_after_seconds: u64,
    },
    Refuse(Refusal),
    /// The decision could not be recorded in shared data: fail closed.
    Unavailable,
}

struct PlanState<H: Host> {
    limiter: PlanLimiter<H>,
    observed: Observed,
}

/// Per-worker filter state: the settings and one governor limiter per plan.
pub struct Limiter<H: Host> {
    pub settings: Settings,
    host: H,
    plans: Vec<PlanState<H>>,
    last_retries: std::cell::Cell<u32>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

const SECOND: u64 = 1_000_000_000;

impl<H: Host + Clone> Limiter<H> {
    pub fn new(settings: Settings, host: H) -> Self {
        let plans = settings
            .plans
            .iter()
            .map(|p| {
                let observed = Observed::default();
                let horizon = nanos(p.emission_interval() + p.tolerance());
                let store = SharedStore::new(host.clone(), horizon, observed.clone());
                // `new` takes `start` from the clock: the epoch, in every VM.
                let limiter = PlanLimiter::new(
                    p.quota,
                    store,
                    EpochClock::at_epoch(host.clone(), observed.clone()),
                );
                limiter.clock().run();
                PlanState { limiter, observed }
            })
            .collect();
        Limiter {
            settings,
            host,
            plans,
            last_retries: std::cell::Cell::new(0),
        }
    }

    /// Creates the shared-data key of every registered tenant that has none yet, so that
    /// requests always find one and write with CAS (Envoy has no create-if-absent: this
    /// one unconditional write can only race with the very first request of a newly
    /// registered tenant in another worker). Returns how many keys were created.
    pub fn register_tenants(&self) -> usize {
        let mut created = 0;
        for t in self.settings.tenants.values() {
            if self.host.get_shared(&t.key).is_none()
                && self
                    .host
                    .set_shared(&t.key, &crate::store::encode(0), None)
                    .is_ok()
            {
                created += 1;
            }
        }
        created
    }

    /// Decides one request from the value of the tenant header.
    pub fn check(&self, tenant: Option<&str>) -> Decision {
        self.last_retries.set(0);
        let Some(id) = tenant.filter(|t| !t.is_empty()) else {
            return Decision::Refuse(Refusal::MissingTenant);
        };
        let Some(t) = self.settings.tenants.get(id) else {
            return Decision::Refuse(Refusal::UnknownTenant);
        };
        let (Some(state), Some(plan)) = (self.plans.get(t.plan), self.settings.plans.get(t.plan))
        else {
            return Decision::Unavailable;
        };
        let result = state.limiter.check_key(&t.key);
        self.last_retries.set(state.observed.retries());
        let now = state.observed.now();
        let usage = usage(t.plan, plan, now, state.observed.tat().unwrap_or(now));
        match result {
            Ok(()) if state.observed.failed() => Decision::Unavailable,
            Ok(()) => Decision::Allow(usage),
            Err(not_until) => {
                let wait = nanos(not_until.wait_time_from(Nanos::from(now)));
                Decision::Limit {
                    usage,
                    retry_after_seconds: wait.div_ceil(SECOND).max(1),
                }
            }
        }
    }

    /// CAS mismatches retried by the last [`Limiter::check`]: contention between workers.
    pub fn last_cas_retries(&self) -> u32 {
        self.last_retries.get()
    }

    /// The plan behind a [`Usage`].
    pub fn plan(&self, usage: &Usage) -> Option<&Plan> {
        self.settings.plans.get(usage.plan)
    }
}

/// `remaining` as governor's `StateSnapshot::remaining_burst_capacity` computes it, and
/// the time until the TAT is no longer ahead of now (the whole burst is back).
fn usage(index: usize, plan: &Plan, now: u64, tat: u64) -> Usage {
    let t = nanos(plan.emission_interval()).max(1);
    let full = nanos(plan.tolerance()).saturating_add(t);
    let remaining = now.saturating_add(full).saturating_sub(tat).min(full) / t;
    Usage {
        plan: index,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_seconds: tat.saturating_sub(now).div_ceil(SECOND),
    }
}
