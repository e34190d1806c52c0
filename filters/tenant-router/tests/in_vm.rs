//! The compiled filter (`tenant_router_filter.wasm`) in the proxy-wasm harness: the
//! registry fetched through a callout, shared between worker VMs, refreshed on the
//! frozen clock; requests routed or refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use proxy_wasm_harness::{Action, HttpCall, LogLevel, Process, RootId, StreamId, Vm, VmOptions};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

const NOW: u64 = 1_800_000_000;
const ROOT: &str = "tenant_router";
const FIXTURE: &str = include_str!("fixtures/registry.json");

fn wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module("tenant-router-filter", &["filters/tenant-router/src"])
            .unwrap()
    })
}

fn process() -> Process {
    let p = Process::new();
    p.set_time(UNIX_EPOCH + Duration::from_secs(NOW));
    p
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config() -> Value {
    json!({"tenant_header": "x-org-id",
           "edge_region": "us-east-1",
           "registry": {"cluster": "bulkhead_control", "path": "/v1/registry",
                        "authority": "bulkhead-control", "refresh_seconds": 2, "timeout_ms": 1000},
           "scope": "default"})
}

/// The fixture with DL promoted from pool to bridge, with its own model.
fn dl_moved() -> String {
    let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
    v["revision"] = json!(8);
    v["tenants"]["DL"]["tier"] = json!("bridge");
    v["tenants"]["DL"]["model"] = json!({"name": "eta-DL", "version": "production"});
    v.to_string()
}

fn worker(p: &Process) -> (Vm, RootId) {
    let mut vm = Vm::load(wasm(), p, VmOptions::default()).unwrap();
    let root = vm.configure(ROOT, config().to_string().as_bytes()).unwrap();
    (vm, root)
}

fn metric(p: &Process, name: &str) -> u64 {
    p.metric(&format!("tenant_router.{name}")).unwrap_or(0)
}

/// The one pending callout, checked against the configuration.
fn the_call(vm: &Vm) -> HttpCall {
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = calls.into_iter().next().unwrap();
    assert_eq!(c.upstream, "bulkhead_control");
    assert_eq!(c.timeout_ms, 1000);
    let h = |n: &str| {
        c.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h(":method"), Some("GET"));
    assert_eq!(h(":path"), Some("/v1/registry"));
    assert_eq!(h(":authority"), Some("bulkhead-control"));
    c
}

fn if_none_match(c: &HttpCall) -> Option<&str> {
    c.headers
        .iter()
        .find(|(k, _)| k == "if-none-match")
        .map(|(_, v)| v.as_str())
}

fn answer(vm: &mut Vm, c: &HttpCall, etag: &str, body: &str) {
    vm.respond_http_call(
        c.token,
        200,
        &[("etag", etag), ("content-type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
}

/// Tick → the callout → answered with the fixture under ETag "e1".
fn first_fetch(vm: &mut Vm, root: RootId) {
    vm.tick(root).unwrap();
    let c = the_call(vm);
    assert_eq!(if_none_match(&c), None);
    answer(vm, &c, "\"e1\"", FIXTURE);
}

fn send(vm: &mut Vm, root: RootId, headers: &[(&str, &str)]) -> (StreamId, Action) {
    let s = vm.new_http(root).unwrap();
    let mut all = vec![
        (":method", "GET"),
        (":path", "/v1/eta"),
        (":authority", "edge"),
    ];
    all.extend_from_slice(headers);
    let a = vm.request_headers(s, &all, true).unwrap();
    (s, a)
}

/// Routes `org`; returns (tier, model name, data plane).
fn route(vm: &mut Vm, root: RootId, org: &str) -> (String, String, String) {
    let (s, a) = send(vm, root, &[("x-org-id", org)]);
    assert_eq!(
        a,
        Action::Continue,
        "{org}: {:?}",
        vm.stream(s).local_response
    );
    let st = vm.stream(s);
    let one = |n: &str| {
        let all = st.request_header_all(n);
        assert_eq!(all.len(), 1, "{n}: {all:?}");
        all[0].to_string()
    };
    (
        one("x-tenant-tier"),
        one("x-model-name"),
        one("x-data-plane"),
    )
}

/// (status, JSON body) of the local reply to `org`.
fn refused(vm: &mut Vm, root: RootId, org: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = org.map(|o| ("x-org-id", o)).into_iter().collect();
    let (s, a) = send(vm, root, &headers);
    assert_eq!(a, Action::Pause, "{org:?} was routed");
    let r = vm.stream(s).local_response.clone().expect("a local reply");
    assert_eq!(r.header("content-type"), Some("application/json"));
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

fn tier(vm: &mut Vm, root: RootId, org: &str) -> String {
    route(vm, root, org).0
}

#[test]
fn fetches_the_registry_then_routes_every_tier() {
    let p = process();
    let (mut vm, root) = worker(&p);
    assert_eq!(vm.tick_period(root), Some(secs(1)));
    first_fetch(&mut vm, root);
    assert_eq!(metric(&p, "registry_fetch_ok"), 1);
    assert!(p.shared_data("bulkhead.registry.default").is_some());
    assert_eq!(
        p.shared_data("bulkhead.registry.default.etag").unwrap().0,
        b"\"e1\""
    );

    let (s, a) = send(&mut vm, root, &[("x-org-id", "UA")]);
    assert_eq!(a, Action::Continue);
    let st = vm.stream(s);
    for (h, v) in [
        ("x-tenant-tier", "silo"),
        ("x-tenant-region", "us-east-1"),
        ("x-model-name", "eta-UA"),
        ("x-model-version", "v12"),
        ("x-data-plane", "dp_silo_ua"),
        ("x-org-id", "UA"),
    ] {
        assert_eq!(st.request_header(h), Some(v), "{h}");
    }
    assert_eq!(
        route(&mut vm, root, "9E"),
        ("pool".into(), "eta-global".into(), "dp_pool_us".into())
    );
    assert_eq!(
        route(&mut vm, root, "AA"),
        ("bridge".into(), "eta-AA".into(), "dp_pool_us".into())
    );
    // Unlocked tenant homed in the EU: served from its EU data plane, even here.
    assert_eq!(
        route(&mut vm, root, "HA"),
        ("pool".into(), "eta-global".into(), "dp_pool_eu".into())
    );
    assert_eq!(metric(&p, "routed"), 4);
}

#[test]
fn spoofed_routing_headers_from_the_client_are_replaced() {
    let p = process();
    let (mut vm, root) = worker(&p);
    first_fetch(&mut vm, root);
    let (s, a) = send(
        &mut vm,
        root,
        &[
            ("x-data-plane", "dp_silo_ua"),
            ("x-tenant-tier", "silo"),
            ("x-org-id", "DL"),
            ("x-tenant-region", "eu-west-1"),
            ("x-model-name", "eta-UA"),
            ("x-model-version", "v12"),
            ("x-data-plane", "dp_pool_eu"),
            ("X-Tenant-Tier", "bridge"),
        ],
    );
    assert_eq!(a, Action::Continue);
    let st = vm.stream(s);
    for (h, v) in [
        ("x-tenant-tier", "pool"),
        ("x-tenant-region", "us-east-1"),
        ("x-model-name", "eta-global"),
        ("x-model-version", "production"),
        ("x-data-plane", "dp_pool_us"),
    ] {
        assert_eq!(st.request_header_all(h), [v], "{h}");
    }
}

#[test]
fn refusals_are_small_json_replies() {
    let p = process();
    let (mut vm, root) = worker(&p);
    first_fetch(&mut vm, root);
    assert_eq!(
        refused(&mut vm, root, Some("EVIL")),
        (
            403,
            json!({"error": "unknown_tenant", "reason": "the tenant is not registered"})
        )
    );
    assert_eq!(
        refused(&mut vm, root, Some("FL")),
        (
            403,
            json!({"error": "tenant_suspended", "reason": "unpaid invoice 2026-11"})
        )
    );
    assert_eq!(
        refused(&mut vm, root, Some("OO")),
        (
            403,
            json!({"error": "tenant_suspended", "reason": "suspended"})
        )
    );
    let (status, body) = refused(&mut vm, root, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("missing_tenant"))
    );
    let (status, body) = refused(&mut vm, root, Some(""));
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("missing_tenant"))
    );
    // This edge is us-east-1: the EU-resident tenant is sent to its own edge.
    let (status, body) = refused(&mut vm, root, Some("B6"));
    assert_eq!(status, 403);
    assert_eq!(body["error"], "wrong_region");
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(body["edge_url"], "https://eu.bulkhead.localhost:10443");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("https://eu.bulkhead.localhost:10443")
    );
    for (name, n) in [
        ("refused_unknown", 1),
        ("refused_suspended", 2),
        ("refused_missing_tenant", 2),
        ("refused_wrong_region", 1),
        ("refused_residency", 0),
        ("routed", 0),
    ] {
        assert_eq!(metric(&p, name), n, "{name}");
    }
}

#[test]
fn the_eu_edge_serves_the_resident_tenant() {
    let p = process();
    let mut vm = Vm::load(wasm(), &p, VmOptions::default()).unwrap();
    let mut cfg = config();
    cfg["edge_region"] = json!("eu-west-1");
    let root = vm.configure(ROOT, cfg.to_string().as_bytes()).unwrap();
    first_fetch(&mut vm, root);
    assert_eq!(
        route(&mut vm, root, "B6"),
        ("bridge".into(), "eta-global".into(), "dp_pool_eu".into())
    );
    let (status, body) = refused(&mut vm, root, Some("US"));
    assert_eq!((status, &body["edge_url"]), (403, &Value::Null));
    assert_eq!(tier(&mut vm, root, "DL"), "pool");
}

#[test]
fn no_registry_yet_is_503_and_wakes_the_fetch() {
    let p = process();
    let (mut vm, root) = worker(&p);
    let (status, body) = refused(&mut vm, root, Some("DL"));
    assert_eq!(
        (status, body),
        (
            503,
            json!({"error": "registry_unavailable", "reason": "the tenant registry has not been loaded yet"})
        )
    );
    // The request cannot make the callout itself (it would die with the 503'd
    // stream): it re-arms the root's timer to fire at once.
    assert_eq!(vm.tick_period(root), Some(Duration::from_millis(1)));
    assert!(vm.pending_http_calls().is_empty());
    vm.tick(root).unwrap();
    assert_eq!(vm.tick_period(root), Some(secs(1)));
    let c = the_call(&vm);
    // While that fetch is under way, requests are still refused, and wake nothing.
    assert_eq!(refused(&mut vm, root, Some("DL")).0, 503);
    assert_eq!(vm.tick_period(root), Some(secs(1)));
    // The control plane is down: still closed; retried a second later.
    vm.fail_http_call(c.token).unwrap();
    assert_eq!(refused(&mut vm, root, Some("DL")).0, 503);
    vm.tick(root).unwrap();
    assert!(vm.pending_http_calls().is_empty());
    p.advance(secs(1));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    vm.respond_http_call(c.token, 500, &[], b"oops").unwrap();
    p.advance(secs(1));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    answer(&mut vm, &c, "\"e1\"", FIXTURE);
    assert_eq!(tier(&mut vm, root, "DL"), "pool");
    assert_eq!(metric(&p, "unavailable"), 3);
    assert_eq!(metric(&p, "registry_fetch_failed"), 2);
    assert_eq!(metric(&p, "registry_fetch_ok"), 1);
    let warned = vm
        .logs()
        .iter()
        .filter(|(l, m)| {
            *l == LogLevel::Warn && m.contains("registry fetch from bulkhead_control failed")
        })
        .count();
    assert_eq!(warned, 2);
}

#[test]
fn refetched_after_refresh_seconds_with_if_none_match() {
    let p = process();
    let (mut vm, root) = worker(&p);
    first_fetch(&mut vm, root);
    assert_eq!(tier(&mut vm, root, "DL"), "pool");
    // refresh_seconds = 2: nothing after one second.
    p.advance(secs(1));
    vm.tick(root).unwrap();
    assert!(vm.pending_http_calls().is_empty());
    p.advance(secs(1));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    assert_eq!(if_none_match(&c), Some("\"e1\""));
    vm.respond_http_call(c.token, 304, &[("etag", "\"e1\"")], b"")
        .unwrap();
    assert_eq!(tier(&mut vm, root, "DL"), "pool");
    assert_eq!(metric(&p, "registry_fetch_not_modified"), 1);

    // `bulkhead tenant set-tier DL bridge`: the next fetch brings it.
    p.advance(secs(2));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    assert_eq!(if_none_match(&c), Some("\"e1\""));
    answer(&mut vm, &c, "\"e2\"", &dl_moved());
    assert_eq!(
        route(&mut vm, root, "DL"),
        ("bridge".into(), "eta-DL".into(), "dp_pool_us".into())
    );
    assert_eq!(metric(&p, "registry_fetch_ok"), 2);
    p.advance(secs(2));
    vm.tick(root).unwrap();
    assert_eq!(if_none_match(&the_call(&vm)), Some("\"e2\""));
}

#[test]
fn a_second_worker_adopts_through_shared_data_without_fetching() {
    let p = process();
    let (mut a, ra) = worker(&p);
    // Worker b starts before any registry exists.
    let (mut b, rb) = worker(&p);
    first_fetch(&mut a, ra);
    b.tick(rb).unwrap();
    assert!(b.pending_http_calls().is_empty());
    assert_eq!(tier(&mut b, rb, "DL"), "pool");
    // A third worker starting later has it from its first configure.
    let (mut c, rc) = worker(&p);
    assert_eq!(tier(&mut c, rc, "UA"), "silo");

    // The next refresh: one fetch for the whole process, whoever ticks first.
    p.advance(secs(2));
    a.tick(ra).unwrap();
    b.tick(rb).unwrap();
    c.tick(rc).unwrap();
    assert!(b.pending_http_calls().is_empty() && c.pending_http_calls().is_empty());
    let call = the_call(&a);
    answer(&mut a, &call, "\"e2\"", &dl_moved());
    assert_eq!(tier(&mut a, ra, "DL"), "bridge");
    // b holds its copy until its next tick (≤ 1 s), then follows.
    assert_eq!(tier(&mut b, rb, "DL"), "pool");
    p.advance(Duration::from_millis(500));
    b.tick(rb).unwrap();
    assert_eq!(tier(&mut b, rb, "DL"), "bridge");
    assert!(b.pending_http_calls().is_empty());
    // b may well be the next one to fetch.
    p.advance(secs(2));
    b.tick(rb).unwrap();
    a.tick(ra).unwrap();
    assert!(a.pending_http_calls().is_empty());
    assert_eq!(if_none_match(&the_call(&b)), Some("\"e2\""));
    assert_eq!(metric(&p, "registry_fetch_ok"), 2);
}

#[test]
fn control_plane_failures_keep_the_last_good_copy() {
    let p = process();
    let (mut vm, root) = worker(&p);
    first_fetch(&mut vm, root);
    let stored = p.shared_data("bulkhead.registry.default");

    p.advance(secs(2));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    vm.respond_http_call(c.token, 500, &[], b"internal error")
        .unwrap();
    assert_eq!(tier(&mut vm, root, "UA"), "silo");

    p.advance(secs(2));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    vm.fail_http_call(c.token).unwrap();
    assert_eq!(tier(&mut vm, root, "UA"), "silo");

    // A 200 with a document that does not validate: refused whole.
    p.advance(secs(2));
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    let mut bad: Value = serde_json::from_str(FIXTURE).unwrap();
    bad["tenants"]["UA"]["data_plane"] = json!("pool-us"); // silo sharing a data plane
    answer(&mut vm, &c, "\"bad\"", &bad.to_string());
    assert_eq!(tier(&mut vm, root, "UA"), "silo");
    assert_eq!(p.shared_data("bulkhead.registry.default"), stored);
    assert!(vm.logs().iter().any(|(l, m)| *l == LogLevel::Warn
        && m.contains("refused, keeping the last good copy")
        && m.contains("tenants.UA.data_plane")));

    // The next fetch still asks for the good copy's ETag.
    p.advance(secs(2));
    vm.tick(root).unwrap();
    assert_eq!(if_none_match(&the_call(&vm)), Some("\"e1\""));
    assert_eq!(metric(&p, "registry_fetch_failed"), 2);
    assert_eq!(metric(&p, "registry_invalid"), 1);
    assert_eq!(metric(&p, "registry_fetch_ok"), 1);
}

#[test]
fn a_registry_without_an_etag_header_is_keyed_by_its_revision() {
    let p = process();
    let (mut vm, root) = worker(&p);
    vm.tick(root).unwrap();
    let c = the_call(&vm);
    vm.respond_http_call(c.token, 200, &[], FIXTURE.as_bytes())
        .unwrap();
    assert_eq!(
        p.shared_data("bulkhead.registry.default.etag").unwrap().0,
        b"\"r7\""
    );
    assert_eq!(tier(&mut vm, root, "DL"), "pool");
}

#[test]
fn invalid_configuration_is_refused_naming_the_field() {
    let p = process();
    let mut vm = Vm::load(wasm(), &p, VmOptions::default()).unwrap();
    let mut cfg = config();
    cfg["registry"]["refresh_seconds"] = json!(0);
    let e = vm
        .configure(ROOT, cfg.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("registry.refresh_seconds"), "{e}");
    let e = vm
        .configure("other", br#"{"registry": {"cluster": "c", "colour": 1}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("registry.colour"), "{e}");
}
