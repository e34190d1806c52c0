//! Admission: a per-tenant concurrency cap (the registry's `max_concurrency`) under a
//! global cap for the host. A request waits a bounded time for a slot, in a bounded
//! queue (the plan's `max_queue` waiters at most; one more is refused at once), then is
//! refused with 429 and `Retry-After`, so a tenant that floods the host queues behind
//! its own cap, not in front of everyone else.
//!
//! The tenant slot is taken first, then the global one, within one deadline: a tenant
//! over its own cap never holds a global slot while it waits.
//!
//! Two admission classes share the global cap: a quarter of it (at least one slot once
//! the cap is 2 or more) is reserved for bridge and silo tenants, who also use the rest;
//! pool tenants use only the rest. However many pool tenants flood the host, a bridge or
//! silo request finds a slot without queueing behind them.

use super::error::ApiError;
use axum::http::StatusCode;
use bulkhead_registry::Tier;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Held while a request runs; dropping it frees both slots.
#[derive(Debug)]
pub struct Admitted {
    _tenant: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Which cap refused a request (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::Global => "global",
        }
    }
}

/// Which part of the global cap a tenant may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Pool tenants: the shared slots only.
    Shared,
    /// Bridge and silo tenants: the reserved slots first, then the shared ones.
    Premium,
}

impl Class {
    pub fn of(tier: Tier) -> Class {
        match tier {
            Tier::Pool => Class::Shared,
            Tier::Bridge | Tier::Silo => Class::Premium,
        }
    }
}

/// The slots of a global cap reserved for [`Class::Premium`].
pub fn reserved_slots(global_cap: u32) -> u32 {
    if global_cap < 2 {
        0
    } else {
        (global_cap / 4).max(1)
    }
}

#[derive(Debug)]
pub struct Admission {
    /// `global_cap - reserved` slots for everyone.
    shared: Arc<Semaphore>,
    /// `reserved` slots for premium tenants only.
    reserved: Arc<Semaphore>,
    global_cap: u32,
    wait: Duration,
    /// One semaphore per tenant with the cap it was made for. Keys are verified,
    /// registered tenants only, so the map is bounded by the registry.
    tenants: Mutex<HashMap<String, TenantSlots>>,
}

/// A tenant's slots and waiting places, with the bounds they were made for.
#[derive(Debug)]
struct TenantSlots {
    cap: u32,
    queue: u32,
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

impl Admission {
    pub fn new(global_cap: u32, wait: Duration) -> Admission {
        let global_cap = global_cap.max(1);
        let reserved = reserved_slots(global_cap);
        Admission {
            shared: Arc::new(Semaphore::new((global_cap - reserved) as usize)),
            reserved: Arc::new(Semaphore::new(reserved as usize)),
            global_cap,
            wait,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    pub fn global_cap(&self) -> u32 {
        self.global_cap
    }

    /// Requests of `tenant` in flight now.
    pub fn in_flight(&self, tenant: &str) -> u32 {
        let map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.get(tenant)
            .map(|t| {
                t.cap
                    .saturating_sub(u32::try_from(t.slots.available_permits()).unwrap_or(u32::MAX))
            })
            .unwrap_or(0)
    }

    /// (slots, waiting places) of `tenant`.
    fn semaphores(&self, tenant: &str, cap: u32, queue: u32) -> (Arc<Semaphore>, Arc<Semaphore>) {
        let cap = cap.max(1);
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(tenant) {
            Some(t) if t.cap == cap && t.queue == queue => {
                (Arc::clone(&t.slots), Arc::clone(&t.waiting))
            }
            _ => {
                // Changed bounds take fresh semaphores: requests holding the old ones
                // finish on them, so for a moment the tenant may run old + new slots.
                let t = TenantSlots {
                    cap,
                    queue,
                    slots: Arc::new(Semaphore::new(cap as usize)),
                    waiting: Arc::new(Semaphore::new(queue as usize)),
                };
                let out = (Arc::clone(&t.slots), Arc::clone(&t.waiting));
                map.insert(tenant.to_string(), t);
                out
            }
        }
    }

    /// A slot for `tenant` (whose cap is `cap`, in `class`), waiting at most the
    /// configured time; as many may wait as run. (The tests' shorthand: requests come
    /// with their plan's queue, [`Admission::admit_queued`].)
    #[cfg(test)]
    pub async fn admit(
        &self,
        tenant: &str,
        cap: u32,
        class: Class,
    ) -> Result<Admitted, (Scope, ApiError)> {
        self.admit_queued(tenant, cap, cap, class).await
    }

    /// A slot for `tenant`, of which at most `queue` requests may wait: when they all
    /// are, the request is refused at once.
    pub async fn admit_queued(
        &self,
        tenant: &str,
        cap: u32,
        queue: u32,
        class: Class,
    ) -> Result<Admitted, (Scope, ApiError)> {
        let deadline = Instant::now() + self.wait;
        let (slots, waiting) = self.semaphores(tenant, cap, queue);
        let busy = || {
            (
                Scope::Tenant,
                refused(format!(
                    "the tenant's {} concurrent requests are all in use",
                    cap.max(1)
                )),
            )
        };
        let tenant_slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // A place in the tenant's queue first, held while waiting.
                let Ok(_place) = waiting.try_acquire_owned() else {
                    return Err((
                        Scope::Tenant,
                        refused(format!(
                            "the tenant's {} concurrent requests are all in use and {queue} more are waiting",
                            cap.max(1)
                        )),
                    ));
                };
                acquire(slots, deadline).await.ok_or_else(busy)?
            }
        };
        let global_slot = match class {
            Class::Shared => acquire(Arc::clone(&self.shared), deadline).await,
            Class::Premium => self.acquire_premium(deadline).await,
        };
        let global_slot = global_slot.ok_or_else(|| {
            (
                Scope::Global,
                refused("the host is at its concurrency limit".into()),
            )
        })?;
        Ok(Admitted {
            _tenant: tenant_slot,
            _global: global_slot,
        })
    }

    /// A reserved slot, else a shared one, whichever frees first.
    async fn acquire_premium(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = Arc::clone(&self.reserved).try_acquire_owned() {
            return Some(p);
        }
        if let Ok(p) = Arc::clone(&self.shared).try_acquire_owned() {
            return Some(p);
        }
        let (reserved, shared) = (Arc::clone(&self.reserved), Arc::clone(&self.shared));
        let either = async move {
            tokio::select! {
                p = reserved.acquire_owned() => p,
                p = shared.acquire_owned() => p,
            }
        };
        tokio::time::timeout_at(deadline, either)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

async fn acquire(s: Arc<Semaphore>, deadline: Instant) -> Option<OwnedSemaphorePermit> {
    // Fast path without arming a timer.
    if let Ok(p) = Arc::clone(&s).try_acquire_owned() {
        return Some(p);
    }
    tokio::time::timeout_at(deadline, s.acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
}

fn refused(reason: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", reason).retry_after(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn caps_per_tenant_under_a_global_cap() {
        let a = Admission::new(3, Duration::from_millis(20));
        let a1 = a.admit("A", 2, Class::Premium).await.unwrap();
        let _a2 = a.admit("A", 2, Class::Premium).await.unwrap();
        assert_eq!(a.in_flight("A"), 2);
        let (scope, e) = a.admit("A", 2, Class::Premium).await.unwrap_err();
        assert_eq!(
            (scope, e.status.as_u16(), e.retry_after),
            (Scope::Tenant, 429, Some(1))
        );
        let _b1 = a.admit("B", 5, Class::Premium).await.unwrap();
        let (scope, _) = a.admit("B", 5, Class::Premium).await.unwrap_err();
        assert_eq!(scope, Scope::Global);
        drop(a1);
        // A freed slot is handed to a waiter within the bounded wait.
        let a = Arc::new(Admission::new(1, Duration::from_millis(500)));
        let held = a.admit("A", 1, Class::Shared).await.unwrap();
        let a2 = Arc::clone(&a);
        let waiter = tokio::spawn(async move { a2.admit("A", 1, Class::Shared).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }

    /// Beyond the plan's queue a request is refused at once, not after the wait.
    #[tokio::test]
    async fn the_queue_is_bounded() {
        let a = Arc::new(Admission::new(8, Duration::from_millis(300)));
        let held = a.admit_queued("A", 1, 1, Class::Shared).await.unwrap();
        let a2 = Arc::clone(&a);
        let waiter =
            tokio::spawn(async move { a2.admit_queued("A", 1, 1, Class::Shared).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let (scope, e) = a.admit_queued("A", 1, 1, Class::Shared).await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "refused at once"
        );
        assert_eq!((scope, e.status.as_u16()), (Scope::Tenant, 429));
        assert!(e.reason.contains("1 more are waiting"), "{}", e.reason);
        drop(held);
        assert!(waiter.await.unwrap(), "the queued one got the slot");
        // A queue of 0: never waits.
        let _h = a.admit_queued("B", 1, 0, Class::Shared).await.unwrap();
        let start = Instant::now();
        assert!(a.admit_queued("B", 1, 0, Class::Shared).await.is_err());
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn pool_floods_never_take_the_reserved_slots() {
        // 8 slots: 2 reserved for bridge/silo, 6 shared.
        let a = Admission::new(8, Duration::from_millis(30));
        assert_eq!(reserved_slots(8), 2);
        let mut pool = Vec::new();
        for i in 0..6 {
            pool.push(a.admit(&format!("P{i}"), 10, Class::Shared).await.unwrap());
        }
        // The seventh pool request waits its bounded time and is refused, with 2 free.
        let (scope, _) = a.admit("P6", 10, Class::Shared).await.unwrap_err();
        assert_eq!(scope, Scope::Global);
        // Bridge and silo tenants still get in at once, up to the reserve.
        let start = Instant::now();
        let _b = a.admit("B", 10, Class::Premium).await.unwrap();
        let _s = a.admit("S", 10, Class::Premium).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(10),
            "premium queued"
        );
        let (scope, _) = a.admit("S", 10, Class::Premium).await.unwrap_err();
        assert_eq!(scope, Scope::Global);
        // A premium tenant also uses a shared slot when one frees.
        drop(pool.pop());
        assert!(a.admit("S", 10, Class::Premium).await.is_ok());
        assert_eq!(
            (reserved_slots(1), reserved_slots(2), reserved_slots(64)),
            (0, 1, 16)
        );
    }
}
