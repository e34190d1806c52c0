//! The router's policy, natively: every routing decision, the replies, configuration
//! errors, and the registry bookkeeping of two simulated workers sharing one
//! in-memory shared data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use bulkhead_filter_kit::{SetError, SharedData};
use bulkhead_registry::shared::{Poll, doc_key, etag_key};
use bulkhead_registry::{DataPlaneSpec, Registry};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use tenant_router_filter::config::{
    DEFAULT_PATH, DEFAULT_REFRESH_SECONDS, DEFAULT_TIMEOUT_MS, Settings, Source,
};
use tenant_router_filter::reply;
use tenant_router_filter::route::{self, ROUTING_HEADERS, Refusal, Route};
use tenant_router_filter::sync::{Fetch, Outcome, Response, Sync, lease_key};

const FIXTURE: &str = include_str!("fixtures/registry.json");

fn doc() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

fn registry_of(v: &Value) -> Registry {
    Registry::parse(v.to_string().as_bytes()).unwrap()
}

fn registry() -> Registry {
    registry_of(&doc())
}

fn routed(edge: Option<&str>, tenant: &str) -> Route {
    route::decide(Some(&registry()), edge, Some(tenant))
        .unwrap_or_else(|r| panic!("{tenant} refused at {edge:?}: {r:?}"))
}

fn refused(edge: Option<&str>, tenant: Option<&str>) -> Refusal {
    route::decide(Some(&registry()), edge, tenant).unwrap_err()
}

fn headers(r: &Route) -> Vec<(&str, &str)> {
    r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn body(r: &reply::Reply) -> Value {
    assert!(
        r.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    serde_json::from_str(&r.body).unwrap()
}

// ---------------------------------------------------------------- routing decisions

#[test]
fn pool_bridge_and_silo_tenants_get_their_five_headers() {
    assert_eq!(
        headers(&routed(None, "9E")),
        [
            ("x-tenant-tier", "pool"),
            ("x-tenant-region", "us-east-1"),
            ("x-model-name", "eta-global"),
            ("x-model-version", "production"),
            ("x-data-plane", "dp_pool_us"),
        ]
    );
    assert_eq!(
        headers(&routed(None, "AA")),
        [
            ("x-tenant-tier", "bridge"),
            ("x-tenant-region", "us-east-1"),
            ("x-model-name", "eta-AA"),
            ("x-model-version", "production"),
            ("x-data-plane", "dp_pool_us"),
        ]
    );
    assert_eq!(
        headers(&routed(None, "UA")),
        [
            ("x-tenant-tier", "silo"),
            ("x-tenant-region", "us-east-1"),
            ("x-model-name", "eta-UA"),
            ("x-model-version", "v12"),
            ("x-data-plane", "dp_silo_ua"),
        ]
    );
    // The EU-resident tenant, with no edge region configured: its EU data plane.
    let b6 = routed(None, "B6");
    assert_eq!(b6.header("x-data-plane"), Some("dp_pool_eu"));
    assert_eq!(b6.header("x-tenant-region"), Some("eu-west-1"));
    assert_eq!(
        ROUTING_HEADERS.to_vec(),
        b6.headers.iter().map(|(k, _)| *k).collect::<Vec<_>>()
    );
}

#[test]
fn unknown_and_missing_tenants_are_refused() {
    for t in ["EVIL", "dl", "DL ", "UA,DL", "", "x".repeat(300).as_str()] {
        let r = refused(None, Some(t));
        let want = if t.is_empty() {
            Refusal::MissingTenant
        } else {
            Refusal::UnknownTenant
        };
        assert_eq!(r, want, "{t:?}");
    }
    assert_eq!(refused(None, None), Refusal::MissingTenant);
    let rep = reply::refused(&Refusal::UnknownTenant, "x-org-id");
    assert_eq!(rep.status, 403);
    assert_eq!(
        body(&rep),
        json!({"error": "unknown_tenant", "reason": "the tenant is not registered"})
    );
    let rep = reply::refused(&Refusal::MissingTenant, "x-org-id");
    assert_eq!(rep.status, 403);
    assert_eq!(body(&rep)["error"], "missing_tenant");
    assert!(
        body(&rep)["reason"]
            .as_str()
            .unwrap()
            .contains("no x-org-id header")
    );
}

#[test]
fn suspended_tenants_are_refused_with_their_reason() {
    let r = refused(None, Some("FL"));
    assert_eq!(
        r,
        Refusal::Suspended {
            reason: Some("unpaid invoice 2026-11".into())
        }
    );
    let rep = reply::refused(&r, "x-org-id");
    assert_eq!(rep.status, 403);
    assert_eq!(
        body(&rep),
        json!({"error": "tenant_suspended", "reason": "unpaid invoice 2026-11"})
    );
    // No reason recorded: "suspended".
    let r = refused(None, Some("OO"));
    assert_eq!(r, Refusal::Suspended { reason: None });
    assert_eq!(
        body(&reply::refused(&r, "x-org-id")),
        json!({"error": "tenant_suspended", "reason": "suspended"})
    );
    // Suspension wins over a wrong region.
    let mut v = doc();
    v["tenants"]["B6"]["status"] = json!("suspended");
    let reg = registry_of(&v);
    assert_eq!(
        route::decide(Some(&reg), Some("us-east-1"), Some("B6")).unwrap_err(),
        Refusal::Suspended { reason: None }
    );
}

#[test]
fn residency_is_rechecked_per_request() {
    let reg = registry();
    // Validation refuses a document that puts the EU tenant on a US data plane...
    let mut v = doc();
    v["tenants"]["B6"]["data_plane"] = json!("pool-us");
    let e = Registry::parse(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.field, "tenants.B6.data_plane");
    // ...so the guard behind it is exercised with a tenant built by hand: the
    // registry's B6, re-pointed at the US pool.
    let mut b6 = reg.tenant("B6").unwrap();
    b6.data_plane = "pool-us";
    b6.data_plane_spec = &reg.document().data_planes["pool-us"];
    let r = route::check(&reg, None, &b6).unwrap_err();
    assert_eq!(
        r,
        Refusal::ResidencyViolation {
            zone: "eu".into(),
            data_plane: "pool-us".into(),
            data_plane_region: "us-east-1".into(),
        }
    );
    // Even at an EU edge (the data plane is what would serve it).
    assert_eq!(route::check(&reg, Some("eu-west-1"), &b6), Err(r.clone()));
    let rep = reply::refused(&r, "x-org-id");
    assert_eq!(rep.status, 403);
    let b = body(&rep);
    assert_eq!(b["error"], "residency_violation");
    let reason = b["reason"].as_str().unwrap();
    assert!(reason.contains("`eu`"), "{reason}");
    // Internal names stay out of the body.
    assert!(!rep.body.contains("pool-us") && !rep.body.contains("dp_"));

    // A data plane in a region the registry does not declare is outside every zone.
    let mars = DataPlaneSpec {
        region: "mars-1".into(),
        cluster: "dp_mars".into(),
    };
    let mut b6 = reg.tenant("B6").unwrap();
    b6.data_plane_spec = &mars;
    assert!(matches!(
        route::check(&reg, None, &b6),
        Err(Refusal::ResidencyViolation { .. })
    ));
    // The same hand-built tenant without residency is routed: the rule is residency's.
    b6.residency = None;
    assert_eq!(
        route::check(&reg, None, &b6)
            .unwrap()
            .header("x-data-plane"),
        Some("dp_mars")
    );
}

#[test]
fn a_resident_tenant_at_an_edge_outside_its_zone_is_told_where_to_go() {
    let r = refused(Some("us-east-1"), Some("B6"));
    assert_eq!(
        r,
        Refusal::WrongRegion {
            zone: "eu".into(),
            region: "eu-west-1".into(),
            edge_url: Some("https://eu.bulkhead.localhost:10443".into()),
            edge_region: "us-east-1".into(),
            edge_zone: Some("us".into()),
        }
    );
    let rep = reply::refused(&r, "x-org-id");
    assert_eq!(rep.status, 403);
    let b = body(&rep);
    assert_eq!(b["error"], "wrong_region");
    assert_eq!(b["region"], "eu-west-1");
    assert_eq!(b["edge_url"], "https://eu.bulkhead.localhost:10443");
    assert_eq!(
        b["reason"],
        "the tenant's data must stay in residency zone `eu`; this edge is in region \
         `us-east-1` (zone `us`): send requests to https://eu.bulkhead.localhost:10443 \
         (region `eu-west-1`)"
    );
    // At its own edge it is routed; so is everyone unlocked, wherever their home.
    assert_eq!(
        routed(Some("eu-west-1"), "B6").header("x-data-plane"),
        Some("dp_pool_eu")
    );
    for t in ["9E", "AA", "UA", "DL", "HA"] {
        routed(Some("us-east-1"), t);
        routed(Some("eu-west-1"), t);
    }
    // A US-locked tenant at the EU edge: its region has no edge_url.
    let r = refused(Some("eu-west-1"), Some("US"));
    let b = body(&reply::refused(&r, "x-org-id"));
    assert_eq!(b["region"], "us-east-1");
    assert_eq!(b["edge_url"], Value::Null);
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .ends_with("send requests to an edge in region `us-east-1`")
    );
    routed(Some("us-east-1"), "US");
}

#[test]
fn an_edge_region_unknown_to_the_registry_refuses_only_locked_tenants() {
    for t in ["B6", "US"] {
        let r = refused(Some("ap-south-1"), Some(t));
        let Refusal::WrongRegion { edge_zone, .. } = &r else {
            panic!("{t}: {r:?}")
        };
        assert_eq!(*edge_zone, None);
        let b = body(&reply::refused(&r, "x-org-id"));
        assert!(
            b["reason"]
                .as_str()
                .unwrap()
                .contains("this edge's region `ap-south-1` is not in the registry"),
            "{b}"
        );
    }
    for t in ["9E", "AA", "UA", "HA"] {
        routed(Some("ap-south-1"), t);
    }
}

#[test]
fn no_registry_yet_fails_closed_with_503() {
    let r = route::decide(None, None, Some("UA")).unwrap_err();
    assert_eq!(r, Refusal::Unavailable);
    let rep = reply::refused(&r, "x-org-id");
    assert_eq!(rep.status, 503);
    assert!(rep.headers.contains(&("retry-after".into(), "1".into())));
    assert_eq!(body(&rep)["error"], "registry_unavailable");
    // No tenant header at all is a 403 whether or not a registry is loaded.
    assert_eq!(
        route::decide(None, None, None).unwrap_err(),
        Refusal::MissingTenant
    );
    assert_eq!(reply::not_configured().status, 503);
}

#[test]
fn refusal_codes() {
    let codes: Vec<&str> = [
        Refusal::Unavailable,
        Refusal::MissingTenant,
        Refusal::UnknownTenant,
        Refusal::Suspended { reason: None },
        refused(Some("us-east-1"), Some("B6")),
    ]
    .iter()
    .map(Refusal::code)
    .collect();
    assert_eq!(
        codes,
        [
            "registry_unavailable",
            "missing_tenant",
            "unknown_tenant",
            "tenant_suspended",
            "wrong_region"
        ]
    );
}

// ---------------------------------------------------------------- configuration

fn config() -> Value {
    json!({"tenant_header": "x-org-id",
           "edge_region": "us-east-1",
           "registry": {"cluster": "bulkhead_control", "path": "/v1/registry",
                        "authority": "bulkhead-control", "refresh_seconds": 2, "timeout_ms": 1000},
           "scope": "default"})
}

fn config_err(v: &Value) -> (String, String) {
    let e = Settings::parse(v.to_string().as_bytes()).unwrap_err();
    (e.field, e.message)
}

#[test]
fn configuration_parses_with_defaults() {
    let s = Settings::parse(config().to_string().as_bytes()).unwrap();
    assert_eq!(s.tenant_header, "x-org-id");
    assert_eq!(s.edge_region.as_deref(), Some("us-east-1"));
    assert_eq!(s.scope, "default");
    assert_eq!(
        s.registry,
        Source {
            cluster: "bulkhead_control".into(),
            path: "/v1/registry".into(),
            authority: "bulkhead-control".into(),
            refresh_seconds: 2,
            timeout_ms: 1000,
        }
    );
    let s = Settings::parse(br#"{"registry": {"cluster": "ctl"}}"#).unwrap();
    assert_eq!(s.tenant_header, "x-org-id");
    assert_eq!(s.edge_region, None);
    assert_eq!(s.scope, "default");
    assert_eq!(
        s.registry,
        Source {
            cluster: "ctl".into(),
            path: DEFAULT_PATH.into(),
            authority: "ctl".into(),
            refresh_seconds: DEFAULT_REFRESH_SECONDS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    );
    assert_eq!((DEFAULT_REFRESH_SECONDS, DEFAULT_TIMEOUT_MS), (5, 2000));
    // Bounds are inclusive.
    for (f, n) in [
        ("refresh_seconds", 1),
        ("refresh_seconds", 3600),
        ("timeout_ms", 1),
        ("timeout_ms", 60_000),
    ] {
        let mut c = config();
        c["registry"][f] = json!(n);
        Settings::parse(c.to_string().as_bytes()).unwrap();
    }
}

#[test]
fn configuration_errors_name_the_field() {
    // (object, key, new value or None to remove it, the field the error must name)
    let cases: &[(&str, &str, Option<Value>, &str)] = &[
        (
            "/registry",
            "refresh_seconds",
            Some(json!(0)),
            "registry.refresh_seconds",
        ),
        (
            "/registry",
            "refresh_seconds",
            Some(json!(3601)),
            "registry.refresh_seconds",
        ),
        (
            "/registry",
            "refresh_seconds",
            Some(json!("2")),
            "registry.refresh_seconds",
        ),
        (
            "/registry",
            "refresh_seconds",
            Some(json!(-1)),
            "registry.refresh_seconds",
        ),
        (
            "/registry",
            "timeout_ms",
            Some(json!(0)),
            "registry.timeout_ms",
        ),
        (
            "/registry",
            "timeout_ms",
            Some(json!(60_001)),
            "registry.timeout_ms",
        ),
        (
            "/registry",
            "path",
            Some(json!("v1/registry")),
            "registry.path",
        ),
        (
            "/registry",
            "path",
            Some(json!("/v1/reg istry")),
            "registry.path",
        ),
        ("/registry", "cluster", Some(json!("")), "registry.cluster"),
        (
            "/registry",
            "authority",
            Some(json!("a b")),
            "registry.authority",
        ),
        ("/registry", "refresh", Some(json!(2)), "registry.refresh"),
        ("/registry", "cluster", None, "registry"),
        ("", "registry", None, "(root)"),
        (
            "",
            "tenant_header",
            Some(json!("X-Org-Id")),
            "tenant_header",
        ),
        ("", "edge_region", Some(json!("us east")), "edge_region"),
        ("", "edge_region", Some(json!(1)), "edge_region"),
        ("", "scope", Some(json!("a.b")), "scope"),
        ("", "scope", Some(json!("")), "scope"),
        ("", "plans", Some(json!({})), "plans"),
    ];
    for (at, key, value, field) in cases {
        let mut c = config();
        let obj = c.pointer_mut(at).unwrap().as_object_mut().unwrap();
        match value {
            Some(v) => obj.insert(key.to_string(), v.clone()),
            None => obj.remove(*key),
        };
        let (f, m) = config_err(&c);
        assert_eq!(f, *field, "{c}: {m}");
        assert!(!m.is_empty());
    }
    let (_, m) = config_err(&json!({"registry": {"cluster": "c", "refresh_seconds": 0}}));
    assert_eq!(m, "must be within 1..=3600");
}

// ---------------------------------------------------------------- registry sync

/// Envoy's shared data: CAS checked only when non-zero and the key exists; writes
/// can be made to fail.
#[derive(Default)]
struct Mem {
    data: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    fail: Cell<bool>,
}

impl SharedData for Mem {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        if self.fail.get() {
            return Err(SetError::Failed);
        }
        let mut d = self.data.borrow_mut();
        if let (Some(c), Some((_, cur))) = (cas, d.get(key))
            && c != 0
            && c != *cur
        {
            return Err(SetError::CasMismatch);
        }
        self.next_cas.set(self.next_cas.get() + 1);
        d.insert(key.into(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

impl Mem {
    fn cas(&self, key: &str) -> Option<u32> {
        self.get(key).map(|(_, c)| c)
    }
}

const T0: u64 = 1_800_000_000_000;

fn ok<'a>(etag: Option<&'a str>, body: &'a [u8]) -> Option<Response<'a>> {
    Some(Response {
        status: 200,
        etag,
        body,
    })
}

fn status(s: u16) -> Option<Response<'static>> {
    Some(Response {
        status: s,
        etag: None,
        body: b"",
    })
}

fn tier(sync: &Sync, org: &str) -> &'static str {
    sync.registry().unwrap().tenant(org).unwrap().tier.as_str()
}

#[test]
fn one_worker_fetches_and_the_others_adopt_through_shared_data() {
    let shared = Mem::default();
    let (mut a, mut b) = (Sync::new("default", 2, 1000), Sync::new("default", 2, 1000));
    // Nothing yet: one of the two workers claims the first fetch, unconditionally.
    let (poll, fetch) = a.on_tick(T0, &shared);
    assert_eq!(
        (poll, fetch),
        (
            Poll::Unchanged,
            Some(Fetch {
                if_none_match: None
            })
        )
    );
    assert_eq!(b.on_tick(T0, &shared), (Poll::Unchanged, None));
    assert!(a.in_flight() && !b.in_flight());
    assert!(!a.fetch_due(T0 + 500, &shared) && !b.fetch_due(T0 + 500, &shared));
    assert_eq!(
        shared.get(&lease_key("default")).unwrap().0,
        T0.to_string().as_bytes()
    );

    let body = FIXTURE.as_bytes();
    assert_eq!(
        a.on_response(ok(Some("\"e1\""), body), &shared),
        Outcome::Updated {
            etag: "\"e1\"".into(),
            revision: 7,
            tenants: 9,
            changed: true
        }
    );
    assert!(!a.in_flight());
    assert_eq!(a.etag(), Some("\"e1\""));
    assert_eq!(tier(&a, "DL"), "pool");
    // Published: `<etag>\n<body>` and the etag alone.
    let (stored, _) = shared.get(&doc_key("default")).unwrap();
    assert_eq!(stored, [b"\"e1\"\n".as_slice(), body].concat());
    assert_eq!(shared.get(&etag_key("default")).unwrap().0, b"\"e1\"");

    // The other worker adopts on its next tick, without a fetch of its own: with a
    // registry in force the period is refresh_seconds (2 s) since the last claim.
    assert_eq!(b.on_tick(T0 + 1000, &shared), (Poll::Updated, None));
    assert_eq!(tier(&b, "DL"), "pool");
    assert_eq!(a.on_tick(T0 + 1000, &shared), (Poll::Unchanged, None));
    assert_eq!(b.on_tick(T0 + 1999, &shared), (Poll::Unchanged, None));

    // 2 s after the first claim: exactly one worker refetches, conditionally.
    let (_, fetch) = b.on_tick(T0 + 2000, &shared);
    let fetch = fetch.unwrap();
    assert_eq!(fetch.if_none_match.as_deref(), Some("\"e1\""));
    assert_eq!(a.on_tick(T0 + 2000, &shared), (Poll::Unchanged, None));
    assert_eq!(
        fetch.headers("/v1/registry", "bulkhead-control"),
        [
            (":method", "GET"),
            (":path", "/v1/registry"),
            (":authority", "bulkhead-control"),
            ("accept", "application/json"),
            ("if-none-match", "\"e1\""),
        ]
    );
    // 304 keeps the copy; nothing is written.
    let cas = shared.cas(&etag_key("default"));
    assert_eq!(b.on_response(status(304), &shared), Outcome::NotModified);
    assert_eq!(shared.cas(&etag_key("default")), cas);
    assert_eq!(b.etag(), Some("\"e1\""));

    // The next one moves DL from pool to bridge; both workers end up with it.
    let (_, fetch) = a.on_tick(T0 + 4000, &shared);
    assert!(fetch.is_some());
    let mut v = doc();
    v["revision"] = json!(8);
    v["tenants"]["DL"]["tier"] = json!("bridge");
    let moved = v.to_string();
    assert!(matches!(
        a.on_response(ok(Some("\"e2\""), moved.as_bytes()), &shared),
        Outcome::Updated {
            revision: 8,
            changed: true,
            ..
        }
    ));
    assert_eq!(tier(&a, "DL"), "bridge");
    assert_eq!(tier(&b, "DL"), "pool");
    assert_eq!(b.on_tick(T0 + 4100, &shared).0, Poll::Updated);
    assert_eq!(tier(&b, "DL"), "bridge");
}

#[test]
fn failures_keep_the_last_good_copy() {
    let shared = Mem::default();
    let mut a = Sync::new("default", 2, 1000);
    let mut b = Sync::new("default", 2, 1000);
    assert!(a.on_tick(T0, &shared).1.is_some());
    a.on_response(ok(Some("\"e1\""), FIXTURE.as_bytes()), &shared);
    b.follow(&shared);
    let published = shared.get(&doc_key("default"));

    // A 200 whose body does not validate: refused whole, nothing published.
    assert!(a.on_tick(T0 + 2000, &shared).1.is_some());
    let mut v = doc();
    v["tenants"]["DL"]["tier"] = json!("platinum");
    match a.on_response(ok(Some("\"bad\""), v.to_string().as_bytes()), &shared) {
        Outcome::Invalid(e) => assert_eq!(e.field, "tenants.DL.tier"),
        o => panic!("{o:?}"),
    }
    match a.on_response(ok(Some("\"bad\""), b"not json"), &shared) {
        Outcome::Invalid(_) => {}
        o => panic!("{o:?}"),
    }
    assert_eq!(shared.get(&doc_key("default")), published);
    assert_eq!(a.etag(), Some("\"e1\""));
    assert_eq!(tier(&a, "DL"), "pool");

    // Error statuses, a failed call, and a shared-data write that fails.
    for r in [status(500), status(503), status(404), None] {
        assert!(matches!(a.on_response(r, &shared), Outcome::Failed(_)));
    }
    assert_eq!(
        a.on_response(status(500), &shared),
        Outcome::Failed("HTTP 500".into())
    );
    shared.fail.set(true);
    let mut v = doc();
    v["revision"] = json!(9);
    assert!(matches!(
        a.on_response(ok(Some("\"e9\""), v.to_string().as_bytes()), &shared),
        Outcome::Failed(_)
    ));
    shared.fail.set(false);
    for w in [&mut a, &mut b] {
        assert_eq!(w.follow(&shared), Poll::Unchanged);
        assert_eq!(w.etag(), Some("\"e1\""));
        assert_eq!(tier(w, "UA"), "silo");
    }
    // With a registry, a failure does not shorten the period: next claim 2 s later.
    assert!(b.on_tick(T0 + 3000, &shared).1.is_none());
    assert!(b.on_tick(T0 + 4000, &shared).1.is_some());
}

#[test]
fn without_a_registry_fetches_are_retried_every_second() {
    let shared = Mem::default();
    let (mut a, mut b) = (
        Sync::new("default", 30, 1000),
        Sync::new("default", 30, 1000),
    );
    assert_eq!(a.gap_ms(), 1000);
    assert!(a.fetch_due(T0, &shared));
    assert!(a.on_tick(T0, &shared).1.is_some());
    assert!(!b.fetch_due(T0 + 999, &shared));
    assert!(matches!(
        a.on_response(status(503), &shared),
        Outcome::Failed(_)
    ));
    // Another worker picks it up one second after the last claim.
    assert!(b.fetch_due(T0 + 1000, &shared));
    assert!(b.on_tick(T0 + 1000, &shared).1.is_some());
    assert!(!a.fetch_due(T0 + 1000, &shared));
    assert!(matches!(
        b.on_response(ok(None, FIXTURE.as_bytes()), &shared),
        Outcome::Updated { changed: true, .. }
    ));
    assert_eq!(b.gap_ms(), 30_000);
    // Then refresh_seconds apply.
    a.follow(&shared);
    assert!(a.on_tick(T0 + 29_999, &shared).1.is_none());
    assert!(a.on_tick(T0 + 31_000, &shared).1.is_some());
}

#[test]
fn a_lost_answer_does_not_stop_refreshes() {
    let shared = Mem::default();
    let mut a = Sync::new("default", 1, 1000);
    assert!(a.on_tick(T0, &shared).1.is_some());
    // Never answered: in flight until the timeout (+1 s of slack) has passed.
    assert!(a.on_tick(T0 + 1500, &shared).1.is_none());
    assert!(!a.fetch_due(T0 + 2000, &shared));
    assert!(a.on_tick(T0 + 2001, &shared).1.is_some());
    // A dispatch that fails at once leaves the lease taken: retried one period later.
    a.on_dispatch_failed();
    assert!(!a.in_flight());
    assert!(a.on_tick(T0 + 2500, &shared).1.is_none());
    assert!(a.on_tick(T0 + 3001, &shared).1.is_some());
}

#[test]
fn etags_from_the_header_or_from_the_revision() {
    let shared = Mem::default();
    let mut a = Sync::new("default", 2, 1000);
    // No ETag header: the revision stands in.
    match a.on_response(ok(None, FIXTURE.as_bytes()), &shared) {
        Outcome::Updated { etag, changed, .. } => {
            assert_eq!(etag, "\"r7\"");
            assert!(changed);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(a.etag(), Some("\"r7\""));
    // An unusable one (blank, control characters, overlong) too.
    for bad in ["", "  ", "\"a\u{1}b\"", &"x".repeat(201)] {
        match a.on_response(ok(Some(bad), FIXTURE.as_bytes()), &shared) {
            Outcome::Updated { etag, changed, .. } => {
                assert_eq!(etag, "\"r7\"");
                assert!(!changed, "same etag: nothing republished");
            }
            o => panic!("{o:?}"),
        }
    }
    // The same ETag as the copy in force: not written again (no churn for followers).
    a.on_response(ok(Some("W/\"e1\""), FIXTURE.as_bytes()), &shared);
    let cas = shared.cas(&etag_key("default"));
    assert!(matches!(
        a.on_response(ok(Some(" W/\"e1\" "), FIXTURE.as_bytes()), &shared),
        Outcome::Updated { changed: false, .. }
    ));
    assert_eq!(shared.cas(&etag_key("default")), cas);
    assert_eq!(a.etag(), Some("W/\"e1\""));
}

#[test]
fn scopes_are_separate() {
    let shared = Mem::default();
    let mut a = Sync::new("default", 2, 1000);
    let mut other = Sync::new("staging", 2, 1000);
    assert!(a.on_tick(T0, &shared).1.is_some());
    assert!(other.on_tick(T0, &shared).1.is_some());
    a.on_response(ok(Some("\"e1\""), FIXTURE.as_bytes()), &shared);
    assert_eq!(other.follow(&shared), Poll::Unchanged);
    assert!(other.registry().is_none());
    assert_eq!(lease_key("staging"), "bulkhead.registry.staging.lease");
}

/// The dev registry the host ships (`host/registry.dev.json`), as the demo's edge
/// (us-east-1) routes it.
#[test]
fn the_shipped_dev_registry_routes_as_specified() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../host/registry.dev.json");
    let bytes = std::fs::read(path).unwrap();
    let reg = Registry::parse(&bytes).unwrap();
    let at = |edge: &str, org: &str| route::decide(Some(&reg), Some(edge), Some(org));
    let plane = |org: &str| {
        let r = at("us-east-1", org).unwrap();
        (
            r.header("x-tenant-tier").unwrap().to_string(),
            r.header("x-model-name").unwrap().to_string(),
            r.header("x-data-plane").unwrap().to_string(),
        )
    };
    let t =
        |tier: &str, model: &str, dp: &str| (tier.to_string(), model.to_string(), dp.to_string());
    assert_eq!(plane("UA"), t("silo", "eta-UA", "dp_silo_ua"));
    assert_eq!(plane("DL"), t("bridge", "eta-DL", "dp_pool_us"));
    assert_eq!(plane("AA"), t("bridge", "eta-AA", "dp_pool_us"));
    for org in [
        "9E", "AS", "EV", "F9", "FL", "HA", "MQ", "OO", "US", "VX", "WN", "YV",
    ] {
        assert_eq!(plane(org), t("pool", "eta-global", "dp_pool_us"), "{org}");
    }
    // B6: EU-resident, refused at the US edge with a pointer, served at the EU edge.
    assert!(matches!(
        at("us-east-1", "B6"),
        Err(Refusal::WrongRegion {
            edge_url: Some(_),
            ..
        })
    ));
    assert_eq!(
        at("eu-west-1", "B6").unwrap().header("x-data-plane"),
        Some("dp_pool_eu")
    );
}
