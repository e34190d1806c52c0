//! The filter's policy, natively: fake headers and shared data, real keys and tokens.

// Helpers outside #[test] fns are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_testkit::forge;
use bulkhead_testkit::keys::{self, Alg};
use jwt_auth_filter::auth::{Auth, Decision};
use jwt_auth_filter::config::Settings;
use jwt_auth_filter::host::{HeaderPairs, RequestHeaders, SetError, SharedData};
use jwt_auth_filter::remote_keys::{Miss, MissKind, RemoteKeys};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

const ISS: &str = "https://issuer.test";
const NOW: i64 = 1_800_000_000;

#[derive(Default)]
struct FakeShared(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut m = self.0.borrow_mut();
        let cur = m.get(key).map(|(_, c)| *c).unwrap_or(0);
        if cas.is_some_and(|c| c != cur) {
            return Err(SetError::CasMismatch);
        }
        m.insert(key.to_string(), (value.to_vec(), cur + 1));
        Ok(())
    }
}

/// Header map as Envoy holds it (names lower case, values bytes), counting removals.
#[derive(Default)]
struct FakeHeaders {
    map: Vec<(String, Vec<u8>)>,
    removals: usize,
}

impl FakeHeaders {
    fn names(&self) -> Vec<String> {
        self.map.iter().map(|(k, _)| k.clone()).collect()
    }
    fn get(&self, name: &str) -> Option<String> {
        self.map
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

impl RequestHeaders for FakeHeaders {
    fn pairs(&self) -> Option<HeaderPairs> {
        Some(HeaderPairs::serialize(
            self.map.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
        ))
    }
    fn remove(&mut self, name: &[u8]) {
        self.removals += 1;
        self.map.retain(|(k, _)| k.as_bytes() != name);
    }
    fn set(&mut self, name: &str, value: &str) {
        self.map.retain(|(k, _)| k != name);
        self.map.push((name.into(), value.into()));
    }
}

fn headers(pairs: &[(&str, &str)]) -> FakeHeaders {
    raw_headers(
        &pairs
            .iter()
            .map(|(k, v)| (*k, v.as_bytes()))
            .collect::<Vec<_>>(),
    )
}

fn raw_headers(pairs: &[(&str, &[u8])]) -> FakeHeaders {
    FakeHeaders {
        map: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        removals: 0,
    }
}

/// A host that cannot hand out the header map.
struct NoHeaders;

impl RequestHeaders for NoHeaders {
    fn pairs(&self) -> Option<HeaderPairs> {
        None
    }
    fn remove(&mut self, _: &[u8]) {}
    fn set(&mut self, _: &str, _: &str) {
        panic!("nothing may be set on a request that could not be read");
    }
}

fn inline_auth() -> Auth {
    let cfg = json!({"providers": [{"issuer": ISS, "audiences": ["bulkhead"],
        "jwks": {"inline": keys::jwks(&[keys::key(Alg::ES256)])}}]});
    Auth::new(Settings::parse(cfg.to_string().as_bytes()).unwrap(), "t")
}

fn remote_cfg() -> serde_json::Value {
    json!({"providers": [{"issuer": ISS, "audiences": ["bulkhead"],
        "jwks": {"remote": {"cluster": "idp", "path": "/jwks", "unknown_kid_cooldown_seconds": 30,
                            "retry_seconds": 5, "refresh_seconds": 300}}}]})
}

/// A valid ES256 token of tenant UA, good for ten minutes from NOW.
fn ua_token() -> String {
    forge::standard(
        keys::key(Alg::ES256),
        ISS,
        "bulkhead".into(),
        "UA",
        NOW,
        NOW + 600,
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn strips_spoofed_headers_even_when_rejecting() {
    let mut auth = inline_auth();
    let shared = FakeShared::default();
    let mut h = headers(&[
        ("x-org-id", "EVIL"),
        ("x-tenant-tier", "silo"),
        ("x-request-id", "r1"),
    ]);
    let d = auth.on_request(&mut h, NOW as u64 * 1000, &shared, true);
    assert!(matches!(d, Decision::Deny(ref r) if r.status() == 401));
    assert_eq!(h.names(), vec!["x-request-id".to_string()]);
}

#[test]
fn strips_every_reserved_name_and_prefix_with_one_removal_per_name() {
    let mut auth = inline_auth();
    let shared = FakeShared::default();
    let mut h = raw_headers(&[
        (":path", b"/"),
        ("x-org-id", b"EVIL"),
        ("x-tenant-tier", b"silo"),
        ("x-org-id", b"EVIL2"),
        ("x-tenant-region", b"eu\xff"),
        ("x-tenant-\u{e9}", b"x"),
        ("x-bulkhead-route", b"a"),
        ("x-model-version", b"7"),
        ("x-model-name", b"eta-UA"),
        ("x-data-plane", b"b"),
        ("x-request-id", b"r1"),
        ("x-tenantless", b"kept"),
    ]);
    let d = auth.on_request(&mut h, NOW as u64 * 1000, &shared, true);
    assert!(matches!(d, Decision::Deny(ref r) if r.status() == 401));
    assert_eq!(h.names(), vec![":path", "x-request-id", "x-tenantless"]);
    assert_eq!(h.removals, 8, "x-org-id twice in the map, removed once");
}

#[test]
fn header_bytes_that_are_not_utf8_neither_crash_nor_pass() {
    let mut auth = inline_auth();
    let shared = FakeShared::default();
    for (value, status, error) in [
        (&b"Bearer \xff\xfe"[..], 401, "invalid_token"),
        (b"bearer abc\x80def", 401, "invalid_token"),
        (b"Basic \xff", 401, "missing_token"),
        (b"\xff", 401, "missing_token"),
    ] {
        let mut h = raw_headers(&[("authorization", value), ("x-bin", b"\xff\x00\x01")]);
        let d = auth.on_request(&mut h, NOW as u64 * 1000, &shared, true);
        let Decision::Deny(r) = d else {
            panic!("{value:?} let through: {d:?}");
        };
        assert_eq!((r.status(), r.error_code()), (status, error), "{value:?}");
    }
    // A valid token next to a binary header still passes: only the token is read.
    let t = bearer(&ua_token());
    let mut h = raw_headers(&[("x-bin", b"\xff"), ("authorization", t.as_bytes())]);
    let d = auth.on_request(&mut h, NOW as u64 * 1000, &shared, true);
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
}

#[test]
fn an_unreadable_header_map_is_refused() {
    let mut auth = inline_auth();
    let d = auth.on_request(
        &mut NoHeaders,
        NOW as u64 * 1000,
        &FakeShared::default(),
        true,
    );
    assert!(
        matches!(d, Decision::Deny(ref r) if r.status() == 401),
        "{d:?}"
    );
}

#[test]
fn verified_tenant_replaces_spoofed_one_and_cache_serves_repeats() {
    let mut auth = inline_auth();
    let shared = FakeShared::default();
    let b = bearer(&ua_token());
    for (i, cached) in [(0, false), (1, true)] {
        let mut h = headers(&[("authorization", &b), ("x-org-id", "EVIL")]);
        let d = auth.on_request(&mut h, NOW as u64 * 1000 + i, &shared, true);
        assert_eq!(
            d,
            Decision::Allow {
                tenant: "UA".into(),
                cached
            }
        );
        assert_eq!(h.get("x-org-id").as_deref(), Some("UA"));
        assert_eq!(h.map.iter().filter(|(k, _)| k == "x-org-id").count(), 1);
    }
    // Past exp + skew the cached entry no longer answers: the full check rejects.
    let mut h = headers(&[("authorization", &b)]);
    let late = (NOW as u64 + 600 + 61) * 1000;
    assert!(matches!(
        auth.on_request(&mut h, late, &shared, true),
        Decision::Deny(_)
    ));
}

#[test]
fn unknown_kid_is_fetched_once_across_workers() {
    let shared = FakeShared::default();
    let settings = || Settings::parse(remote_cfg().to_string().as_bytes()).unwrap();
    let mut a = Auth::new(settings(), "p");
    let mut b = Auth::new(settings(), "p");
    let key = keys::key(Alg::ES256);
    let t = bearer(&forge::standard(
        key,
        ISS,
        "bulkhead".into(),
        "UA",
        NOW,
        NOW + 600,
    ));
    let ms = NOW as u64 * 1000;

    // No keys yet: worker A claims the fetch, worker B waits for it.
    let d = a.on_request(&mut headers(&[("authorization", &t)]), ms, &shared, true);
    assert_eq!(
        d,
        Decision::Park {
            provider: 0,
            fetch: true
        }
    );
    let d = b.on_request(
        &mut headers(&[("authorization", &t)]),
        ms + 10,
        &shared,
        true,
    );
    assert_eq!(
        d,
        Decision::Park {
            provider: 0,
            fetch: false
        }
    );

    // A's fetch answers; A verifies, B adopts the published keys without fetching.
    let body = keys::jwks(&[key]).to_string();
    let rk = a.remote_mut(0).unwrap();
    assert_eq!(
        rk.on_response(ms + 20, Some(200), None, body.as_bytes(), &shared),
        Ok(1)
    );
    let d = a.on_request(
        &mut headers(&[("authorization", &t)]),
        ms + 30,
        &shared,
        false,
    );
    assert_eq!(
        d,
        Decision::Allow {
            tenant: "UA".into(),
            cached: false
        }
    );
    let d = b.on_request(
        &mut headers(&[("authorization", &t)]),
        ms + 30,
        &shared,
        false,
    );
    assert_eq!(
        d,
        Decision::Allow {
            tenant: "UA".into(),
            cached: false
        }
    );

    // A storm of unknown kids inside the cooldown: no new fetch on either worker.
    for i in 0..20u64 {
        let k = keys::alternate(Alg::ES256).with_kid(format!("rand-{i}"));
        let tk = bearer(&forge::standard(
            &k,
            ISS,
            "bulkhead".into(),
            "UA",
            NOW,
            NOW + 600,
        ));
        let w = if i % 2 == 0 { &mut a } else { &mut b };
        let d = w.on_request(
            &mut headers(&[("authorization", &tk)]),
            ms + 5_000 + i,
            &shared,
            true,
        );
        assert!(
            matches!(d, Decision::Deny(ref r) if r.status() == 401),
            "{d:?}"
        );
    }
    // After the cooldown one worker may fetch again.
    let k = keys::alternate(Alg::ES256).with_kid("later");
    let tk = bearer(&forge::standard(
        &k,
        ISS,
        "bulkhead".into(),
        "UA",
        NOW,
        NOW + 600,
    ));
    let d = a.on_request(
        &mut headers(&[("authorization", &tk)]),
        ms + 31_000,
        &shared,
        true,
    );
    assert_eq!(
        d,
        Decision::Park {
            provider: 0,
            fetch: true
        }
    );
}

#[test]
fn failed_refresh_keeps_last_good_keys_and_max_age_is_bounded() {
    let shared = FakeShared::default();
    let cfg: bulkhead_jwt::RemoteJwks =
        serde_json::from_value(json!({"cluster": "idp", "path": "/j",
        "min_refresh_seconds": 60, "max_refresh_seconds": 3600, "refresh_seconds": 300}))
        .unwrap();
    let mut rk = RemoteKeys::new("x", cfg);
    assert_eq!(rk.ttl_seconds(Some("public, max-age=5")), 60);
    assert_eq!(rk.ttl_seconds(Some("Max-Age=600")), 600);
    assert_eq!(rk.ttl_seconds(Some("max-age=999999")), 3600);
    assert_eq!(rk.ttl_seconds(None), 300);
    assert_eq!(rk.on_miss(MissKind::NoKeys, 0, &shared), Miss::Fetch);
    let body = keys::jwks(&[keys::key(Alg::EdDSA)]).to_string();
    rk.on_response(10, Some(200), Some("max-age=120"), body.as_bytes(), &shared)
        .unwrap();
    let g = rk.generation();
    // Not due before max-age; due after.
    assert!(!rk.on_tick(100_000, &shared));
    assert!(rk.on_tick(131_000, &shared));
    assert!(
        rk.on_response(131_100, Some(503), None, b"down", &shared)
            .is_err()
    );
    assert!(rk.keys().is_some(), "last good keys stay");
    assert_eq!(rk.generation(), g);
    assert!(
        rk.on_response(131_200, Some(200), None, b"{not json", &shared)
            .is_err()
    );
    assert!(rk.keys().is_some());
}
