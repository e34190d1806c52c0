//! The compiled filter (`jwt_auth_filter.wasm`) in the proxy-wasm harness: frozen clock,
//! shared data across two worker VMs, JWKS callouts answered by the test.

// Helpers outside #[test] fns are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_testkit::cases;
use bulkhead_testkit::forge;
use bulkhead_testkit::keys::{self, Alg};
use proxy_wasm_harness::{Action, Process, RootId, StreamId, Vm, VmOptions};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

const NOW: i64 = 1_800_000_000;

fn wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module(
            "jwt-auth-filter",
            &["filters/jwt-auth/src", "filters/jwt-rules/src"],
        )
        .unwrap()
    })
}

fn process_at(t: i64) -> Process {
    let p = Process::new();
    p.set_time(UNIX_EPOCH + Duration::from_secs(t as u64));
    p
}

fn worker(p: &Process, config: &Value) -> (Vm, RootId) {
    let mut vm = Vm::load(wasm(), p, VmOptions::default()).unwrap();
    let root = vm
        .configure("jwt_auth", config.to_string().as_bytes())
        .unwrap();
    (vm, root)
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

fn body_json(vm: &Vm, s: StreamId) -> Value {
    let r = vm
        .stream(s)
        .local_response
        .as_ref()
        .expect("a local response");
    serde_json::from_slice(&r.body).unwrap()
}

// The whole token table runs against this module in tests/e2e/tests/cases_frozen_clock.rs.

#[test]
fn skew_boundaries_to_the_second_and_the_cache_respects_exp() {
    let p = process_at(NOW);
    let (mut vm, root) = worker(&p, &cases::filter_config(cases::inline_jwks()));
    let key = keys::key(Alg::EdDSA);
    let exp_token = format!(
        "Bearer {}",
        forge::standard(key, cases::ISSUER, "bulkhead".into(), "UA", NOW, NOW + 10)
    );
    // Before exp the second request is served from the cache; exp + skew is the last
    // accepted second (no longer from the cache: an entry never outlives exp); then refused.
    for (t, ok) in [
        (NOW + 5, true),
        (NOW + 5, true),
        (NOW + 70, true),
        (NOW + 71, false),
    ] {
        p.set_time(UNIX_EPOCH + Duration::from_secs(t as u64));
        let (s, a) = send(&mut vm, root, &[("authorization", &exp_token)]);
        assert_eq!(a == Action::Continue, ok, "exp at t={t}");
        if !ok {
            assert_eq!(body_json(&vm, s)["reason"], "token expired");
        }
    }
    assert_eq!(p.metric("jwt_auth.cache_hits"), Some(1));
    let nbf_payload = json!({"iss": cases::ISSUER, "aud": "bulkhead", "org_id": "UA", "exp": NOW + 600, "nbf": NOW + 100});
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
    let nbf = format!(
        "Bearer {}",
        forge::token(key, &header.to_string(), &nbf_payload.to_string())
    );
    for (t, ok) in [(NOW + 39, false), (NOW + 40, true)] {
        p.set_time(UNIX_EPOCH + Duration::from_secs(t as u64));
        let (_, a) = send(&mut vm, root, &[("authorization", &nbf)]);
        assert_eq!(a == Action::Continue, ok, "nbf at t={t}");
    }
}

fn remote_config() -> Value {
    let mut jwks = cases::remote_jwks("idp", "/jwks.json");
    jwks["remote"]["unknown_kid_cooldown_seconds"] = json!(30);
    jwks["remote"]["refresh_seconds"] = json!(300);
    cases::filter_config(jwks)
}

fn good(key: &bulkhead_testkit::TestKey, org: &str) -> String {
    format!(
        "Bearer {}",
        forge::standard(key, cases::ISSUER, "bulkhead".into(), org, NOW, NOW + 3600)
    )
}

#[test]
fn remote_jwks_one_fetch_serves_both_workers_and_parks_requests_meanwhile() {
    let p = process_at(NOW);
    let (mut a, ra) = worker(&p, &remote_config());
    let (mut b, rb) = worker(&p, &remote_config());
    let key = keys::key(Alg::ES256);

    // First request on worker A: parked, one fetch dispatched through the `idp` cluster.
    let (sa, act) = send(&mut a, ra, &[("authorization", &good(key, "UA"))]);
    assert_eq!(act, Action::Pause);
    let calls = a.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "idp");
    assert_eq!(calls[0].header(":path"), Some("/jwks.json"));
    // Worker B, meanwhile: parked too, but it does not fetch.
    let (sb, act) = send(&mut b, rb, &[("authorization", &good(key, "DL"))]);
    assert_eq!(act, Action::Pause);
    assert!(b.pending_http_calls().is_empty());

    let body = keys::jwks(&[key]).to_string();
    a.respond_http_call(
        calls[0].token,
        200,
        &[("cache-control", "max-age=600")],
        body.as_bytes(),
    )
    .unwrap();
    assert!(a.stream(sa).resumed_request);
    assert_eq!(a.stream(sa).request_header("x-org-id"), Some("UA"));
    // B adopts the published keys on its next tick and resumes its request.
    b.tick(rb).unwrap();
    assert!(b.stream(sb).resumed_request);
    assert_eq!(b.stream(sb).request_header("x-org-id"), Some("DL"));
    assert!(b.pending_http_calls().is_empty());

    // A storm of unknown kids inside the cooldown: refused, and no fetch from either.
    for i in 0..40 {
        let k = keys::alternate(Alg::ES256).with_kid(format!("storm-{i}"));
        let vm = if i % 2 == 0 {
            (&mut a, ra)
        } else {
            (&mut b, rb)
        };
        let (s, act) = send(vm.0, vm.1, &[("authorization", &good(&k, "UA"))]);
        assert_eq!(act, Action::Pause);
        assert_eq!(
            vm.0.stream(s).local_response.as_ref().map(|r| r.status),
            Some(401)
        );
    }
    assert!(a.pending_http_calls().is_empty() && b.pending_http_calls().is_empty());

    // Rotation after the cooldown: a token signed by a new key is parked, fetched once, served.
    p.advance(Duration::from_secs(31));
    let new_key = keys::alternate(Alg::ES256).with_kid("rotated");
    let (s, act) = send(&mut b, rb, &[("authorization", &good(&new_key, "UA"))]);
    assert_eq!(act, Action::Pause);
    let calls = b.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let rotated = keys::jwks(&[key, &new_key]).to_string();
    b.respond_http_call(calls[0].token, 200, &[], rotated.as_bytes())
        .unwrap();
    assert_eq!(b.stream(s).request_header("x-org-id"), Some("UA"));
    assert_eq!(p.metric("jwt_auth.jwks_fetch_ok"), Some(2));
}

#[test]
fn idp_down_fails_closed_first_and_keeps_last_good_keys_later() {
    let p = process_at(NOW);
    let (mut vm, root) = worker(&p, &remote_config());
    let key = keys::key(Alg::RS256);
    let (s, _) = send(&mut vm, root, &[("authorization", &good(key, "UA"))]);
    let call = vm.pending_http_calls()[0].token;
    vm.fail_http_call(call).unwrap();
    let r = vm.stream(s).local_response.clone().unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["error"],
        "jwks_unavailable"
    );

    // After the retry period the timer fetches again; this time the IdP answers.
    p.advance(Duration::from_secs(6));
    vm.tick(root).unwrap();
    let call = vm.pending_http_calls()[0].token;
    vm.respond_http_call(call, 200, &[], keys::jwks(&[key]).to_string().as_bytes())
        .unwrap();
    let (_, act) = send(&mut vm, root, &[("authorization", &good(key, "UA"))]);
    assert_eq!(act, Action::Continue);

    // Refresh due (300 s): the IdP is down, the last good keys stay in force.
    p.advance(Duration::from_secs(301));
    vm.tick(root).unwrap();
    let call = vm.pending_http_calls()[0].token;
    vm.respond_http_call(call, 503, &[], b"down").unwrap();
    let (_, act) = send(&mut vm, root, &[("authorization", &good(key, "DL"))]);
    assert_eq!(act, Action::Continue);
    assert_eq!(p.metric("jwt_auth.jwks_fetch_failed"), Some(2));
}

#[test]
fn a_bad_configuration_refuses_to_load_naming_the_field() {
    let p = process_at(NOW);
    for (patch, field) in [
        (json!({"clock_skew_seconds": 301}), "clock_skew_seconds"),
        (json!({"tenant_headr": "x"}), "tenant_headr"),
    ] {
        let mut cfg = cases::filter_config(cases::inline_jwks());
        for (k, v) in patch.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let mut vm = Vm::load(wasm(), &p, VmOptions::default()).unwrap();
        let err = vm
            .configure("jwt_auth", cfg.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("field `{field}`")), "{err}");
    }
    let mut cfg = cases::filter_config(cases::inline_jwks());
    cfg["providers"][0]["audiences"] = json!([]);
    let mut vm = Vm::load(wasm(), &p, VmOptions::default()).unwrap();
    let err = vm
        .configure("jwt_auth", cfg.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `providers[0].audiences`"), "{err}");
}
