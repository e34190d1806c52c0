//! The compiled filter (`rate_limit_filter.wasm`) in the proxy-wasm harness: frozen
//! clock, shared data across worker VMs, exact GCRA arithmetic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use proxy_wasm_harness::{Action, Process, RootId, StreamId, Vm, VmOptions};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

const NOW: u64 = 1_800_000_000;
const ROOT: &str = "rate_limit";

fn wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module("rate-limit-filter", &["filters/rate-limit/src"]).unwrap()
    })
}

fn process() -> Process {
    let p = Process::new();
    p.set_time(UNIX_EPOCH + Duration::from_secs(NOW));
    p
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// standard: 10/s, burst 5 (T = 100 ms, τ = 400 ms); slow: 6/min, burst 3 (T = 10 s).
fn config() -> Value {
    json!({
        "tenant_header": "x-org-id",
        "default_plan": "standard",
        "plans": {
            "standard": {"per_second": 10, "burst": 5},
            "slow": {"per_minute": 6, "burst": 3},
            "premium": {"per_second": 100, "burst": 200}
        },
        "tenants": {"UA": {"plan": "slow"}, "DL": {}, "AA": {"plan": "premium"}},
        "emit_ratelimit_headers": true
    })
}

fn worker(p: &Process, cfg: &Value) -> (Vm, RootId) {
    let mut vm = Vm::load(wasm(), p, VmOptions::default()).unwrap();
    let root = vm.configure(ROOT, cfg.to_string().as_bytes()).unwrap();
    (vm, root)
}

/// One request; for an allowed one, the upstream's 200 goes back through the filter.
fn send(vm: &mut Vm, root: RootId, tenant: Option<&str>) -> (StreamId, Action) {
    let s = vm.new_http(root).unwrap();
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/v1/eta"),
        (":authority", "edge"),
    ];
    if let Some(t) = tenant {
        headers.push(("x-org-id", t));
    }
    let a = vm.request_headers(s, &headers, true).unwrap();
    if a == Action::Continue {
        vm.response_headers(s, &[(":status", "200")], true).unwrap();
    }
    (s, a)
}

fn allowed(vm: &mut Vm, root: RootId, tenant: &str) -> bool {
    send(vm, root, Some(tenant)).1 == Action::Continue
}

/// (status, retry-after, ratelimit, body) of a local reply.
fn local(vm: &Vm, s: StreamId) -> (u16, Option<String>, Option<String>, Value) {
    let r = vm.stream(s).local_response.as_ref().expect("a local reply");
    (
        r.status,
        r.header("retry-after").map(str::to_string),
        r.header("ratelimit").map(str::to_string),
        serde_json::from_slice(&r.body).unwrap(),
    )
}

fn ratelimit(vm: &Vm, s: StreamId) -> Option<&str> {
    vm.stream(s).response_header("ratelimit")
}

fn stored_tat(p: &Process, tenant: &str) -> u64 {
    let (v, _) = p
        .shared_data(&format!("bulkhead.rl.default.{tenant}"))
        .unwrap();
    u64::from_le_bytes(v.try_into().unwrap())
}

#[test]
fn burst_then_steady_rate_with_exact_headers() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    // DL (standard, 10/s burst 5): five at once, with remaining counting down.
    for r in (0..5).rev() {
        let (s, a) = send(&mut vm, root, Some("DL"));
        assert_eq!(a, Action::Continue);
        // After n requests TAT = now + n × 100 ms: reset rounds up to 1 s.
        assert_eq!(
            ratelimit(&vm, s),
            Some(format!("\"standard\";r={r};t=1").as_str())
        );
        assert_eq!(
            vm.stream(s).response_header("ratelimit-policy"),
            Some("\"standard\";q=5;w=1")
        );
    }
    let (s, a) = send(&mut vm, root, Some("DL"));
    assert_eq!(a, Action::Pause);
    let (status, retry, rl, body) = local(&vm, s);
    assert_eq!(
        (status, retry.as_deref(), rl.as_deref()),
        (429, Some("1"), Some("\"standard\";r=0;t=1"))
    );
    assert_eq!(
        body,
        json!({"error": "rate_limited", "tenant": "DL", "plan": "standard", "retry_after_seconds": 1})
    );
    assert_eq!(
        vm.stream(s)
            .local_response
            .as_ref()
            .unwrap()
            .header("ratelimit-policy"),
        Some("\"standard\";q=5;w=1")
    );

    // Steady state: one request per T. 99 ms is not enough, 100 ms is.
    p.advance(ms(99));
    assert!(!allowed(&mut vm, root, "DL"));
    p.advance(ms(1));
    assert!(allowed(&mut vm, root, "DL"));
    assert!(!allowed(&mut vm, root, "DL"));
    // Hammering every millisecond for 2 s lets exactly 10/s through.
    let mut n = 0;
    for _ in 0..2000 {
        p.advance(ms(1));
        n += usize::from(allowed(&mut vm, root, "DL"));
    }
    assert_eq!(n, 20);
    assert_eq!(p.metric("rate_limit.allowed"), Some(5 + 1 + 20));
    assert_eq!(p.metric("rate_limit.limited"), Some(1 + 1 + 1 + 2000 - 20));
}

#[test]
fn retry_after_and_reset_in_whole_seconds_and_refill_after_idle() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    // UA (slow: 6/min, burst 3 → T = 10 s, τ = 20 s).
    for r in [2, 1, 0] {
        let (s, _) = send(&mut vm, root, Some("UA"));
        let t = 10 * (3 - r);
        assert_eq!(
            ratelimit(&vm, s),
            Some(format!("\"slow\";r={r};t={t}").as_str())
        );
    }
    let (s, _) = send(&mut vm, root, Some("UA"));
    let (status, retry, rl, _) = local(&vm, s);
    assert_eq!(
        (status, retry.as_deref(), rl.as_deref()),
        (429, Some("10"), Some("\"slow\";r=0;t=30"))
    );
    assert_eq!(local(&vm, s).3["plan"], "slow");
    // 9.5 s later: half a second to go, rounded up.
    p.advance(ms(9_500));
    let (s, _) = send(&mut vm, root, Some("UA"));
    assert_eq!(local(&vm, s).1.as_deref(), Some("1"));
    p.advance(ms(500));
    let (s, a) = send(&mut vm, root, Some("UA"));
    assert_eq!(a, Action::Continue);
    assert_eq!(ratelimit(&vm, s), Some("\"slow\";r=0;t=30"));
    // Idle for a minute: the whole burst is back, and no more than it.
    p.advance(Duration::from_secs(60));
    let got: Vec<bool> = (0..4).map(|_| allowed(&mut vm, root, "UA")).collect();
    assert_eq!(got, [true, true, true, false]);
    // Partly idle (20 s = two T): two requests.
    p.advance(Duration::from_secs(20));
    let got: Vec<bool> = (0..3).map(|_| allowed(&mut vm, root, "UA")).collect();
    assert_eq!(got, [true, true, false]);
}

#[test]
fn state_is_one_epoch_timestamp_per_registered_tenant() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    // on_configure registered every tenant's key ("no state" yet) and nothing else.
    let keys = p.shared_data_keys();
    assert_eq!(
        keys,
        [
            "bulkhead.rl.default.AA",
            "bulkhead.rl.default.DL",
            "bulkhead.rl.default.UA"
        ]
    );
    assert!(allowed(&mut vm, root, "DL"));
    // TAT after one request = now + T, in nanoseconds since the Unix epoch.
    assert_eq!(stored_tat(&p, "DL"), NOW * 1_000_000_000 + 100_000_000);

    // Unknown and forged tenants: 403, and not one key more.
    for t in ["EVIL", "dl", "DL ", "UA,DL", "x".repeat(300).as_str()] {
        let (s, a) = send(&mut vm, root, Some(t));
        assert_eq!(a, Action::Pause);
        let (status, _, _, body) = local(&vm, s);
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("unknown_tenant")),
            "{t:?}"
        );
    }
    for i in 0..1000 {
        send(&mut vm, root, Some(&format!("org-{i}")));
    }
    assert_eq!(p.shared_data_keys(), keys);
    assert_eq!(p.metric("rate_limit.refused_unknown_tenant"), Some(1005));
}

#[test]
fn missing_tenant_header_is_refused_not_unlimited() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    for tenant in [None, Some("")] {
        let (s, a) = send(&mut vm, root, tenant);
        assert_eq!(a, Action::Pause);
        let (status, _, _, body) = local(&vm, s);
        assert_eq!(status, 403);
        assert_eq!(body["error"], "missing_tenant");
        assert!(body["reason"].as_str().unwrap().contains("x-org-id"));
    }
    assert_eq!(p.metric("rate_limit.refused"), Some(2));
    assert_eq!(p.metric("rate_limit.refused_missing_tenant"), Some(2));
    assert_eq!(p.metric("rate_limit.allowed"), Some(0));
}

#[test]
fn tenants_are_independent() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    while allowed(&mut vm, root, "DL") {}
    // DL is exhausted; UA and AA still have their whole bursts.
    assert_eq!((0..4).filter(|_| allowed(&mut vm, root, "UA")).count(), 3);
    assert_eq!(
        (0..250).filter(|_| allowed(&mut vm, root, "AA")).count(),
        200
    );
    assert!(!allowed(&mut vm, root, "DL"));
}

#[test]
fn two_workers_share_one_limit() {
    let p = process();
    let (mut a, ra) = worker(&p, &config());
    // The second worker starts later (its own VM, its own configure time): the origin
    // is the epoch in both, so they agree on the stored state.
    p.advance(Duration::from_secs(5));
    let (mut b, rb) = worker(&p, &config());
    let mut n = 0;
    for i in 0..20 {
        let ok = if i % 2 == 0 {
            allowed(&mut a, ra, "DL")
        } else {
            allowed(&mut b, rb, "DL")
        };
        n += usize::from(ok);
    }
    assert_eq!(n, 5, "one burst for the process, not one per worker");
    // One T later exactly one more, whichever worker asks first.
    p.advance(ms(100));
    assert!(allowed(&mut b, rb, "DL"));
    assert!(!allowed(&mut a, ra, "DL"));
    // Steady rate across both: 10/s in total.
    let mut n = 0;
    for i in 0..1000 {
        p.advance(ms(1));
        n += usize::from(if i % 2 == 0 {
            allowed(&mut a, ra, "DL")
        } else {
            allowed(&mut b, rb, "DL")
        });
    }
    assert_eq!(n, 10);
    assert_eq!(p.metric("rate_limit.allowed"), Some(5 + 1 + 10));
}

#[test]
fn plan_change_applies_at_once_and_keeps_other_tenants_state() {
    let p = process();
    let (mut vm, root) = worker(&p, &config());
    // AA (premium, burst 200) spends 150; DL (standard, burst 5) spends 3.
    assert_eq!(
        (0..150).filter(|_| allowed(&mut vm, root, "AA")).count(),
        150
    );
    assert_eq!((0..3).filter(|_| allowed(&mut vm, root, "DL")).count(), 3);
    let aa_tat = stored_tat(&p, "AA");
    assert_eq!(aa_tat, NOW * 1_000_000_000 + 150 * 10_000_000);

    // Configuration update (no restart): AA is downgraded to standard (burst 5).
    let mut cfg = config();
    cfg["tenants"]["AA"]["plan"] = json!("standard");
    vm.configure(ROOT, cfg.to_string().as_bytes()).unwrap();
    // AA's TAT (now + 1.5 s) is further ahead than standard's whole window (T + τ =
    // 500 ms): clamped to "burst used up now", so AA waits one T of its new plan,
    // not the 1.1 s the old TAT would impose.
    let (s, a) = send(&mut vm, root, Some("AA"));
    assert_eq!(a, Action::Pause);
    let (status, retry, rl, body) = local(&vm, s);
    assert_eq!(
        (status, retry.as_deref(), rl.as_deref()),
        (429, Some("1"), Some("\"standard\";r=0;t=1"))
    );
    assert_eq!(body["plan"], "standard");
    p.advance(ms(100));
    assert!(allowed(&mut vm, root, "AA"));
    assert!(!allowed(&mut vm, root, "AA"));
    // DL's state survived the update untouched: 2 of its 5 left (plus one earned).
    assert_eq!((0..5).filter(|_| allowed(&mut vm, root, "DL")).count(), 3);

    // Upgrade back to premium: the stored TAT keeps its meaning (ns since the epoch).
    let (s, _) = {
        vm.configure(ROOT, config().to_string().as_bytes()).unwrap();
        send(&mut vm, root, Some("AA"))
    };
    // AA's TAT is now + 500 ms (the clamp wrote now + 500 ms, then 100 ms passed and
    // one request added 100 ms): 50 premium slots of 10 ms, plus this request.
    assert_eq!(ratelimit(&vm, s), Some("\"premium\";r=149;t=1"));
}

#[test]
fn allowed_responses_carry_ratelimit_unless_turned_off() {
    let p = process();
    let mut cfg = config();
    cfg["emit_ratelimit_headers"] = json!(false);
    let (mut vm, root) = worker(&p, &cfg);
    let (s, a) = send(&mut vm, root, Some("UA"));
    assert_eq!(a, Action::Continue);
    assert_eq!(ratelimit(&vm, s), None);
    assert_eq!(vm.stream(s).response_header("ratelimit-policy"), None);
    // 429s carry them regardless.
    send(&mut vm, root, Some("UA"));
    send(&mut vm, root, Some("UA"));
    let (s, _) = send(&mut vm, root, Some("UA"));
    assert_eq!(local(&vm, s).2.as_deref(), Some("\"slow\";r=0;t=30"));
    // The request itself is not modified.
    let (s, _) = send(&mut vm, root, Some("DL"));
    assert_eq!(vm.stream(s).request_header("x-org-id"), Some("DL"));
}

#[test]
fn custom_tenant_header_and_scope() {
    let p = process();
    let mut cfg = config();
    cfg["tenant_header"] = json!("x-tenant");
    cfg["scope"] = json!("edge");
    let (mut vm, root) = worker(&p, &cfg);
    let s = vm.new_http(root).unwrap();
    vm.request_headers(s, &[(":path", "/"), ("x-tenant", "DL")], true)
        .unwrap();
    assert!(vm.stream(s).local_response.is_none());
    let (s, _) = send(&mut vm, root, Some("DL")); // only x-org-id: not our header
    assert_eq!(local(&vm, s).3["error"], "missing_tenant");
    assert!(p.shared_data("bulkhead.rl.edge.DL").is_some());
}

#[test]
fn invalid_configuration_is_refused_naming_the_field() {
    let p = process();
    let mut vm = Vm::load(wasm(), &p, VmOptions::default()).unwrap();
    let mut cfg = config();
    cfg["tenants"]["UA"]["plan"] = json!("gold");
    let e = vm
        .configure(ROOT, cfg.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tenants.UA.plan") && e.contains("gold"), "{e}");
    let e = vm
        .configure("other", br#"{"plans":{"s":{"per_second":0}},"tenants":{}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plans.s.per_second"), "{e}");
}

/// A registry in which DL is on `plan` (standard: 10/s burst 5).
fn registry(dl_plan: &str) -> String {
    json!({
        "regions": {"us-east-1": {"residency": "us"}},
        "data_planes": {"pool-us": {"region": "us-east-1", "cluster": "dp_pool_us"}},
        "plans": {"standard": {"per_second": 10, "burst": 5},
                  "premium": {"per_second": 100, "burst": 200}},
        "defaults": {"plan": "standard", "model": {"name": "eta", "version": "production"},
                     "max_concurrency": 8},
        "tenants": {
            "DL": {"name": "Delta", "tier": "pool", "region": "us-east-1",
                   "data_plane": "pool-us", "plan": dl_plan},
            "EV": {"name": "ExpressJet", "tier": "pool", "region": "us-east-1",
                   "data_plane": "pool-us"}
        }
    })
    .to_string()
}

/// What the tenant-router does after a fetch (bulkhead_registry::shared::publish).
fn publish(p: &Process, etag: &str, doc: &str) {
    p.set_shared_data(
        "bulkhead.registry.default",
        format!("{etag}\n{doc}").as_bytes(),
    );
    p.set_shared_data("bulkhead.registry.default.etag", etag.as_bytes());
}

#[test]
fn registry_mode_follows_the_shared_registry_copy() {
    let p = process();
    let cfg = json!({"tenant_header": "x-org-id", "registry_scope": "default"});
    let (mut vm, root) = worker(&p, &cfg);
    assert_eq!(vm.tick_period(root), Some(Duration::from_secs(1)));
    // No registry yet: fail closed.
    let (s, a) = send(&mut vm, root, Some("DL"));
    assert_eq!(a, Action::Pause);
    let (status, _, _, body) = local(&vm, s);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("registry_unavailable"))
    );

    // The router publishes; the next request adopts it without waiting for the tick.
    publish(&p, "\"e1\"", &registry("standard"));
    for _ in 0..5 {
        assert!(allowed(&mut vm, root, "DL"));
    }
    let (s, _) = send(&mut vm, root, Some("DL"));
    assert_eq!(local(&vm, s).0, 429);
    // Keys exist only for registered tenants; an unregistered one is refused.
    let (s, _) = send(&mut vm, root, Some("UA"));
    assert_eq!(local(&vm, s).0, 403);
    assert!(p.shared_data("bulkhead.rl.default.UA").is_none());
    assert!(p.shared_data("bulkhead.rl.default.EV").is_some());

    // A second worker follows the same copy and shares DL's limit.
    let (mut vm2, root2) = worker(&p, &cfg);
    let (s, _) = send(&mut vm2, root2, Some("DL"));
    assert_eq!(local(&vm2, s).0, 429);

    // DL is moved to premium: after the next tick both workers use the new plan.
    publish(&p, "\"e2\"", &registry("premium"));
    vm.tick(root).unwrap();
    let (s, a) = send(&mut vm, root, Some("DL"));
    assert_eq!(a, Action::Continue);
    assert_eq!(
        vm.stream(s).response_header("ratelimit-policy"),
        Some("\"premium\";q=200;w=2")
    );

    // A document that does not validate leaves the last good copy in force.
    publish(&p, "\"e3\"", r#"{"regions":{}}"#);
    vm.tick(root).unwrap();
    assert!(allowed(&mut vm, root, "DL"));
    assert!(
        vm.logs()
            .iter()
            .any(|(_, m)| m.contains("keeping the last good registry")),
        "{:?}",
        vm.logs()
    );
}
