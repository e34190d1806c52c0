//! The filter's policy, natively: a fake host (clock, shared data with CAS), governor's
//! GCRA over it, configuration validation and header formatting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use governor::clock::Clock;
use governor::nanos::Nanos;
use rate_limit_filter::config::{ConfigError, Settings};
use rate_limit_filter::host::{Host, SetError};
use rate_limit_filter::limiter::{Decision, Limiter, PlanLimiter, Refusal, Usage};
use rate_limit_filter::reply;
use rate_limit_filter::store::{self, EpochClock, MAX_CAS_ATTEMPTS, Observed, SharedStore};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const NOW: u64 = 1_800_000_000 * SEC;

/// Envoy's shared data (CAS checked only for existing keys) and a frozen clock, plus
/// ways to misbehave: another worker writing between our read and our write, and
/// writes that fail.
#[derive(Default)]
struct FakeHost {
    now: Cell<u64>,
    data: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    last_cas: Cell<u32>,
    /// Before each of the next N CAS writes, "another worker" takes one request (+T).
    interfere: Cell<u32>,
    interfere_step: Cell<u64>,
    fail_writes: Cell<bool>,
    writes: Cell<u32>,
}

impl FakeHost {
    fn at(now: u64) -> Self {
        let h = FakeHost::default();
        h.now.set(now);
        h
    }
    fn advance(&self, ns: u64) {
        self.now.set(self.now.get() + ns);
    }
    fn tat(&self, key: &str) -> Option<u64> {
        self.data
            .borrow()
            .get(key)
            .and_then(|(v, _)| store::decode(v))
    }
    fn put(&self, key: &str, value: &[u8]) {
        self.last_cas.set(self.last_cas.get() + 1);
        self.data
            .borrow_mut()
            .insert(key.into(), (value.to_vec(), self.last_cas.get()));
    }
}

impl Host for FakeHost {
    fn now_nanos(&self) -> u64 {
        self.now.get()
    }
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.borrow().get(key).cloned()
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        self.writes.set(self.writes.get() + 1);
        if self.fail_writes.get() {
            return Err(SetError::Failed);
        }
        if cas.is_some() && self.interfere.get() > 0 {
            self.interfere.set(self.interfere.get() - 1);
            let other = self.tat(key).unwrap_or(0).max(self.now.get()) + self.interfere_step.get();
            self.put(key, &store::encode(other));
        }
        let current = self.data.borrow().get(key).map(|(_, c)| *c);
        if let (Some(c), Some(cur)) = (cas, current)
            && c != 0
            && c != cur
        {
            return Err(SetError::CasMismatch);
        }
        self.put(key, value);
        Ok(())
    }
}

fn cfg() -> Value {
    json!({
        "default_plan": "standard",
        "plans": {
            "standard": {"per_second": 10, "burst": 5},
            "hourly": {"per_hour": 3600},
            "minute": {"per_minute": 600, "burst": 20}
        },
        "tenants": {"UA": {}, "DL": {"plan": "hourly"}, "AA": {"plan": "minute"}}
    })
}

fn settings(v: &Value) -> Settings {
    Settings::parse(v.to_string().as_bytes()).unwrap()
}

fn limiter(host: &FakeHost) -> Limiter<&FakeHost> {
    Limiter::new(settings(&cfg()), host)
}

fn key(t: &str) -> String {
    format!("bulkhead.rl.default.{t}")
}

fn err(v: Value) -> ConfigError {
    Settings::parse(v.to_string().as_bytes()).err().unwrap()
}

#[test]
fn configuration_errors_name_the_field() {
    let base = || json!({"plans": {"s": {"per_second": 5}}, "tenants": {"UA": {"plan": "s"}}});
    let with = |path: &[&str], v: Value| {
        let mut c = base();
        let mut at = &mut c;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        c
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"tenants": {}}),
            "plans",
            "required unless `registry_scope`",
        ),
        (
            json!({"plans": {"s": {"per_second": 5}}}),
            "tenants",
            "required unless `registry_scope`",
        ),
        (
            json!({"registry_scope": "default", "tenants": {}}),
            "registry_scope",
            "plans come from the registry",
        ),
        (
            json!({"registry_scope": "a.b"}),
            "registry_scope",
            "[A-Za-z0-9_-]",
        ),
        (json!({"plans": {}, "tenants": {}}), "plans", "at least one"),
        (
            with(&["plans", "s", "burst"], json!(0)),
            "plans.s.burst",
            "1..=",
        ),
        (
            with(&["plans", "s", "burst"], json!("10")),
            "plans.s.burst",
            "invalid type",
        ),
        (
            with(&["plans", "s", "per_second"], json!(2_000_000)),
            "plans.s.per_second",
            "1..=",
        ),
        (
            with(&["plans", "s", "per_minute"], json!(5)),
            "plans.s",
            "exactly one",
        ),
        (
            with(&["plans", "t"], json!({"burst": 4})),
            "plans.t",
            "exactly one",
        ),
        (
            with(&["plans", "s", "per_day"], json!(5)),
            "plans.s.per_day",
            "unknown field",
        ),
        (
            with(&["plans", "bad name"], json!({"per_second": 1})),
            "plans.bad name",
            "plan name",
        ),
        (
            with(&["tenants", "UA", "plan"], json!("gold")),
            "tenants.UA.plan",
            "`gold`",
        ),
        (
            with(&["tenants", "UA", "tier"], json!("pool")),
            "tenants.UA.tier",
            "unknown field",
        ),
        (
            with(&["tenants", "DL"], json!({})),
            "tenants.DL.plan",
            "no `default_plan`",
        ),
        (
            with(&["tenants", "a/b"], json!({"plan": "s"})),
            "tenants.a/b",
            "tenant id",
        ),
        (
            with(&["default_plan"], json!("gold")),
            "default_plan",
            "`gold`",
        ),
        (
            with(&["tenant_header"], json!("X-Org-Id")),
            "tenant_header",
            "header name",
        ),
        (with(&["scope"], json!("a.b")), "scope", "[A-Za-z0-9_-]"),
        (
            with(&["emit_ratelimit_headers"], json!("yes")),
            "emit_ratelimit_headers",
            "invalid type",
        ),
        (
            with(&["tenant_headers"], json!("x")),
            "tenant_headers",
            "unknown field",
        ),
    ];
    for (c, field, msg) in cases {
        let e = err(c.clone());
        assert_eq!(e.field, field, "{c}: {e}");
        assert!(e.message.contains(msg), "{c}: {e}");
        assert!(e.to_string().contains(&format!("`{field}`")));
    }
}

#[test]
fn plans_defaults_and_policy_headers() {
    let s = settings(&cfg());
    let plan = |t: &str| s.tenant(t).unwrap().1.clone();
    // 10/s burst 5: T = 100 ms, τ = 400 ms, the burst comes back in 0.5 s → w = 1.
    let p = plan("UA");
    assert_eq!(
        (p.name.as_str(), p.burst, p.window_seconds),
        ("standard", 5, 1)
    );
    assert_eq!(p.emission_interval().as_millis(), 100);
    assert_eq!(p.tolerance().as_millis(), 400);
    assert_eq!(p.policy_header, "\"standard\";q=5;w=1");
    // Burst defaults to the rate's count: 3600/h → burst 3600, refilled in an hour.
    assert_eq!(plan("DL").policy_header, "\"hourly\";q=3600;w=3600");
    // Minute windows: 600/min = one per 100 ms; burst 20 → w = 2.
    assert_eq!(plan("AA").policy_header, "\"minute\";q=20;w=2");
    assert_eq!(s.tenants["UA"].key, "bulkhead.rl.default.UA");
    assert!(s.emit_ratelimit_headers);
    assert_eq!(s.tenant_header, "x-org-id");

    let u = Usage {
        plan: 0,
        remaining: 3,
        reset_seconds: 1,
    };
    assert_eq!(reply::ratelimit_header(&p, &u), "\"standard\";r=3;t=1");
    let [(n1, v1), (n2, v2)] = reply::allowed_headers(&p, &u);
    assert_eq!(
        (n1, v1.as_str()),
        ("ratelimit-policy", "\"standard\";q=5;w=1")
    );
    assert_eq!((n2, v2.as_str()), ("ratelimit", "\"standard\";r=3;t=1"));
    let r = reply::limited("UA", &p, &Usage { remaining: 0, ..u }, 2);
    assert_eq!(r.status, 429);
    let h = |n: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h("retry-after"), Some("2"));
    assert_eq!(h("ratelimit"), Some("\"standard\";r=0;t=1"));
    assert_eq!(h("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"error": "rate_limited", "tenant": "UA", "plan": "standard", "retry_after_seconds": 2})
    );
    let m = reply::refused(Refusal::MissingTenant, "x-org-id");
    assert_eq!(
        (
            m.status,
            serde_json::from_str::<Value>(&m.body).unwrap()["error"].clone()
        ),
        (403, json!("missing_tenant"))
    );
    assert_eq!(reply::unavailable().status, 503);
}

#[test]
fn governor_origin_is_the_unix_epoch() {
    let host = FakeHost::at(NOW);
    let s = settings(&cfg());
    let plan = &s.plans[s.tenants["UA"].plan];
    let observed = Observed::default();
    let store = SharedStore::new(&host, 500 * MS, observed.clone());
    let lim: PlanLimiter<&FakeHost> = PlanLimiter::new(
        plan.quota,
        store,
        EpochClock::at_epoch(&host, observed.clone()),
    );
    lim.clock().run();
    assert_eq!(lim.clock().now(), Nanos::from(NOW));
    let k = key("UA");
    for _ in 0..5 {
        assert!(lim.check_key(&k).is_ok());
    }
    // Stored: absolute TAT, now + 5 T.
    assert_eq!(host.tat(&k), Some(NOW + 500 * MS));
    let not_until = lim.check_key(&k).unwrap_err();
    // governor reports start + (TAT − τ): with start = the epoch, an absolute time.
    assert_eq!(not_until.earliest_possible(), Nanos::from(NOW + 100 * MS));
}

#[test]
fn workers_on_one_host_share_one_limit() {
    let host = FakeHost::at(NOW);
    let workers: Vec<_> = (0..4).map(|_| limiter(&host)).collect();
    let mut allowed = 0;
    for i in 0..40 {
        allowed += usize::from(matches!(
            workers[i % 4].check(Some("UA")),
            Decision::Allow(_)
        ));
    }
    assert_eq!(allowed, 5);
    let mut allowed = 0;
    for i in 0..1000 {
        host.advance(MS);
        allowed += usize::from(matches!(
            workers[i % 4].check(Some("UA")),
            Decision::Allow(_)
        ));
    }
    assert_eq!(allowed, 10);
}

#[test]
fn cas_conflicts_are_retried_against_the_other_workers_writes() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    l.register_tenants();
    // Three other requests land between our read and our write: we retry each time
    // and our request is decided on their TAT.
    host.interfere.set(3);
    host.interfere_step.set(100 * MS);
    let d = l.check(Some("UA"));
    assert_eq!(
        d,
        Decision::Allow(Usage {
            plan: 2,
            remaining: 1,
            reset_seconds: 1
        })
    );
    assert_eq!(l.last_cas_retries(), 3);
    assert_eq!(host.tat(&key("UA")), Some(NOW + 400 * MS));
    // The other workers' 3 + ours + one more = the burst of 5.
    assert!(matches!(l.check(Some("UA")), Decision::Allow(_)));
    assert!(matches!(l.check(Some("UA")), Decision::Limit { .. }));
}

#[test]
fn endless_conflicts_or_failed_writes_fail_closed() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    l.register_tenants();
    host.interfere.set(u32::MAX);
    host.interfere_step.set(0);
    let before = host.writes.get();
    assert_eq!(l.check(Some("UA")), Decision::Unavailable);
    assert_eq!(host.writes.get() - before, MAX_CAS_ATTEMPTS);
    host.interfere.set(0);
    host.fail_writes.set(true);
    assert_eq!(l.check(Some("UA")), Decision::Unavailable);
    host.fail_writes.set(false);
    assert!(matches!(l.check(Some("UA")), Decision::Allow(_)));
}

#[test]
fn clock_stepped_back_costs_at_most_one_window() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    while matches!(l.check(Some("UA")), Decision::Allow(_)) {}
    // NTP steps the wall clock back an hour: the stored TAT is an hour ahead. Without
    // the clamp the tenant would be locked out for an hour.
    host.now.set(NOW - 3600 * SEC);
    match l.check(Some("UA")) {
        Decision::Limit {
            retry_after_seconds,
            usage,
        } => {
            assert_eq!(retry_after_seconds, 1);
            assert_eq!(usage.reset_seconds, 1);
        }
        d => panic!("{d:?}"),
    }
    host.advance(100 * MS);
    assert!(matches!(l.check(Some("UA")), Decision::Allow(_)));
}

#[test]
fn corrupt_state_counts_as_none_and_is_replaced() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    host.put(&key("UA"), b"garbage");
    assert!(matches!(
        l.check(Some("UA")),
        Decision::Allow(Usage { remaining: 4, .. })
    ));
    assert_eq!(host.tat(&key("UA")), Some(NOW + 100 * MS));
}

#[test]
fn registration_creates_keys_for_registered_tenants_only_and_keeps_state() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    assert_eq!(l.register_tenants(), 3);
    let keys: Vec<String> = host.data.borrow().keys().cloned().collect();
    assert_eq!(keys, [key("AA"), key("DL"), key("UA")]);
    assert!(host.tat(&key("UA")).is_none(), "registered, no state yet");
    assert!(matches!(l.check(Some("UA")), Decision::Allow(_)));
    let tat = host.tat(&key("UA"));
    // A configuration update registers again: nothing new, state kept.
    let again = limiter(&host);
    assert_eq!(again.register_tenants(), 0);
    assert_eq!(host.tat(&key("UA")), tat);
    for t in ["EVIL", "ua", ""] {
        assert!(matches!(again.check(Some(t)), Decision::Refuse(_)));
    }
    assert_eq!(again.check(None), Decision::Refuse(Refusal::MissingTenant));
    assert_eq!(
        again.check(Some("EVIL")),
        Decision::Refuse(Refusal::UnknownTenant)
    );
    assert_eq!(host.data.borrow().len(), 3);
}

#[test]
fn minute_plan_arithmetic() {
    let host = FakeHost::at(NOW);
    let l = limiter(&host);
    // 600/min burst 20: 20 at once, then one per 100 ms.
    let mut last = None;
    for _ in 0..20 {
        last = Some(l.check(Some("AA")));
    }
    assert_eq!(
        last,
        Some(Decision::Allow(Usage {
            plan: 1,
            remaining: 0,
            reset_seconds: 2
        }))
    );
    assert_eq!(
        l.check(Some("AA")),
        Decision::Limit {
            usage: Usage {
                plan: 1,
                remaining: 0,
                reset_seconds: 2
            },
            retry_after_seconds: 1
        }
    );
    host.advance(60 * SEC);
    assert_eq!(
        (0..30)
            .filter(|_| matches!(l.check(Some("AA")), Decision::Allow(_)))
            .count(),
        20
    );
}
