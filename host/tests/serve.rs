//! `bulkhead serve`'s HTTP layer over real HTTP on 127.0.0.1:0, with a fake model
//! backend: identity, tenant refusals, admission, error shape and request ids, health,
//! readiness and metrics. (The real model store + sandbox: `serve_wasm.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_common;

use bulkhead::dev::issuer::DevIssuer;
use bulkhead::sandbox::ErrorKind;
use bulkhead::serve::backend::{BackendError, FailureKind};
use bulkhead::serve::{Limits, Options};
use bulkhead_testkit::client::http_request;
use serve_common::{Fake, Server, eta_body, registry_with};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn auth(tok: &str) -> String {
    format!("Bearer {tok}")
}

#[test]
fn identity_is_checked_again_on_the_host() {
    let fake = Arc::new(Fake::default());
    let s = Server::start(
        Arc::clone(&fake) as _,
        &registry_with(&[]),
        Options::default(),
    );
    let tok = s.token("DL");
    let body = eta_body(2);

    // No token at all: 401 with the edge's bare challenge.
    let r = s.post("/v1/eta", &[("x-org-id", "DL")], &body);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"bulkhead\"")
    );
    let j = r.json().unwrap();
    assert_eq!(j["error"], "missing_token");

    // A token from another key (a forgery), and garbage: 401 invalid_token.
    let other = tempfile::tempdir().unwrap();
    let forged = DevIssuer::open(other.path())
        .unwrap()
        .token("DL", 60)
        .unwrap();
    for bad in [forged.as_str(), "a.b.c"] {
        let r = s.post(
            "/v1/eta",
            &[("authorization", &auth(bad)), ("x-org-id", "DL")],
            &body,
        );
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json().unwrap()["error"], "invalid_token");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }

    // A valid token with a forged or missing x-org-id: 403.
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth(&tok)), ("x-org-id", "AA")],
        &body,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "tenant_mismatch");
    let r = s.post("/v1/eta", &[("authorization", &auth(&tok))], &body);
    assert_eq!(r.status, 403);
    assert_eq!(r.json().unwrap()["error"], "missing_tenant_header");
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "no refused request reached a model"
    );

    // The right token and header: a prediction from the tenant's model.
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth(&tok)), ("x-org-id", "DL")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json().unwrap();
    assert_eq!(j["tenant"], "DL");
    assert_eq!(j["model"]["name"], "eta-DL");
    assert_eq!(j["model"]["version"], "7");
    assert_eq!(j["model"]["tier"], "bridge");
    assert_eq!(j["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(j["predictions"][1]["eta_minutes"], 1.0);
    assert_eq!(j["predictions"][1]["lower"], 0.0);
    assert_eq!(j["request_id"], r.header("x-request-id").unwrap());

    // A pool tenant gets the pooled model, with its tier.
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth(&s.token("EV"))), ("x-org-id", "EV")],
        &body,
    );
    let j = r.json().unwrap();
    assert_eq!(
        (j["model"]["name"].as_str(), j["model"]["tier"].as_str()),
        (Some("eta-global"), Some("pool"))
    );

    // Refused identities are counted by code, never labelled with a caller's tenant.
    let m = s.get("/metrics").text();
    assert!(
        m.contains("bulkhead_identity_refused_total{error=\"invalid_token\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("bulkhead_requests_total{tenant=\"-\",status=\"401\"} 3"),
        "{m}"
    );
    // DL's token: verified once (the forged-header request), then cached.
    assert!(m.contains("bulkhead_token_cache_hits_total 2"), "{m}");
    // The guest time the backend reported for EV's one call (the fake says 1.5 ms).
    assert!(
        m.contains("bulkhead_tenant_guest_seconds_total{tenant=\"EV\"} 0.0015"),
        "{m}"
    );
    // …and its feature lookups (3 taking 0.25 ms, the fake says).
    assert!(
        m.contains("bulkhead_tenant_feature_lookups_total{tenant=\"EV\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("bulkhead_tenant_feature_lookup_seconds_total{tenant=\"EV\"} 0.00025"),
        "{m}"
    );
}

#[test]
fn tenants_are_refused_by_the_registry() {
    let reg = registry_with(&[(
        "VX",
        r#""status": "suspended", "status_reason": "invoice overdue""#,
    )]);
    let s = Server::start(
        Arc::new(Fake::default()),
        &reg,
        Options {
            plane: Some("dp_pool_us".into()),
            ..Options::default()
        },
    );
    let body = eta_body(1);
    let call = |org: &str| {
        let tok = s.token(org);
        s.post(
            "/v1/eta",
            &[("authorization", &auth(&tok)), ("x-org-id", org)],
            &body,
        )
    };
    let r = call("ZZ");
    assert_eq!(
        (r.status, r.json().unwrap()["error"].clone()),
        (403, "unknown_tenant".into())
    );
    let r = call("VX");
    assert_eq!(r.status, 403);
    assert_eq!(r.json().unwrap()["error"], "tenant_suspended");
    assert_eq!(r.json().unwrap()["reason"], "invoice overdue");
    // UA is a silo tenant on its own data plane: a pool host does not serve it.
    let r = call("UA");
    assert_eq!(r.status, 421, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "wrong_data_plane");
    assert_eq!(call("DL").status, 200);
    // Registered tenants keep their label even when refused; an unknown one does not.
    let m = s.get("/metrics").text();
    for needle in [
        "bulkhead_requests_total{tenant=\"VX\",status=\"403\"} 1",
        "bulkhead_requests_total{tenant=\"UA\",status=\"421\"} 1",
        "bulkhead_requests_total{tenant=\"-\",status=\"403\"} 1",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
}

#[test]
fn admission_caps_a_tenant_with_a_bounded_wait() {
    // DL may run one request at a time; the model takes 600 ms.
    let reg = registry_with(&[("DL", r#""max_concurrency": 1"#)]);
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(600),
        ..Fake::default()
    });
    let s = Arc::new(Server::start(
        Arc::clone(&fake) as _,
        &reg,
        Options {
            admission_wait: Duration::from_millis(100),
            ..Options::default()
        },
    ));
    let tok = s.token("DL");
    let h = vec![
        ("authorization".to_string(), auth(&tok)),
        ("x-org-id".to_string(), "DL".to_string()),
    ];
    let first = {
        let (s, h) = (Arc::clone(&s), h.clone());
        std::thread::spawn(move || {
            let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            s.post("/v1/eta", &h, &eta_body(1))
        })
    };
    // Wait until the first request holds DL's only slot.
    let t0 = Instant::now();
    while fake.started.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let mut hv_rid = hv.clone();
    hv_rid.push(("x-request-id", "req-429"));
    let t = Instant::now();
    let r = s.post("/v1/eta", &hv_rid, &eta_body(1));
    let waited = t.elapsed();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let j = r.json().unwrap();
    assert_eq!(j["error"], "too_many_requests");
    assert_eq!(j["request_id"], "req-429");
    assert!(
        waited >= Duration::from_millis(90),
        "the refusal came after the bounded wait ({waited:?})"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "…and not much later ({waited:?})"
    );

    // Another tenant is not held up by DL's cap.
    let tok_aa = s.token("AA");
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth(&tok_aa)), ("x-org-id", "AA")],
        &eta_body(1),
    );
    assert_eq!(r.status, 200);

    assert_eq!(first.join().unwrap().status, 200);
    // The slot is free again.
    assert_eq!(s.post("/v1/eta", &hv, &eta_body(1)).status, 200);
    let m = s.get("/metrics").text();
    assert!(
        m.contains("bulkhead_admission_refused_total{tenant=\"DL\",scope=\"tenant\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("bulkhead_requests_total{tenant=\"DL\",status=\"429\"} 1"),
        "{m}"
    );
}

#[test]
fn global_cap_applies_across_tenants() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(600),
        ..Fake::default()
    });
    let s = Arc::new(Server::start(
        Arc::clone(&fake) as _,
        &registry_with(&[]),
        Options {
            global_concurrency: 1,
            admission_wait: Duration::from_millis(50),
            ..Options::default()
        },
    ));
    let (tok, s2) = (s.token("DL"), Arc::clone(&s));
    let first = std::thread::spawn(move || {
        s2.post(
            "/v1/eta",
            &[("authorization", &auth(&tok)), ("x-org-id", "DL")],
            &eta_body(1),
        )
    });
    let t0 = Instant::now();
    while fake.started.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let tok = s.token("AA");
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth(&tok)), ("x-org-id", "AA")],
        &eta_body(1),
    );
    assert_eq!(r.status, 429);
    assert!(
        r.json().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("host")
    );
    assert_eq!(first.join().unwrap().status, 200);
    assert!(
        s.get("/metrics")
            .text()
            .contains("bulkhead_admission_refused_total{tenant=\"AA\",scope=\"global\"} 1")
    );
}

#[test]
fn errors_are_json_with_the_request_id() {
    let fake = Arc::new(Fake::default());
    let s = Server::start(
        Arc::clone(&fake) as _,
        &registry_with(&[]),
        Options {
            limits: Limits {
                max_body_bytes: 4096,
                ..Limits::default()
            },
            ..Options::default()
        },
    );
    let tok = s.token("DL");
    let a = auth(&tok);
    let h = |rid: &'static str| {
        vec![
            ("authorization", a.as_str()),
            ("x-org-id", "DL"),
            ("x-request-id", rid),
        ]
    };

    // Envoy's request id flows into the body and back as a header.
    let r = s.post(
        "/v1/eta",
        &h("9f1c2d3e-0000-4abc-8def-123456789abc"),
        b"{\"rows\": 1}",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json().unwrap();
    assert_eq!(
        j.as_object().unwrap().len(),
        3,
        "exactly error, reason, request_id: {j}"
    );
    assert_eq!(j["error"], "bad_request");
    assert!(j["reason"].as_str().unwrap().contains("rows"), "{j}");
    assert_eq!(j["request_id"], "9f1c2d3e-0000-4abc-8def-123456789abc");
    assert_eq!(
        r.header("x-request-id"),
        Some("9f1c2d3e-0000-4abc-8def-123456789abc")
    );

    // An unusable inbound id is replaced by a generated one.
    let r = s.post(
        "/v1/eta",
        &[
            ("authorization", &a),
            ("x-org-id", "DL"),
            ("x-request-id", "has space"),
        ],
        b"{}",
    );
    let rid = r.json().unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rid.len(), 32, "{rid}");
    assert_eq!(r.header("x-request-id"), Some(rid.as_str()));

    // Too large: 413, whether declared up front or streamed.
    let big = vec![b' '; 5000];
    let r = s.post("/v1/eta", &h("big-1"), &big);
    assert_eq!(
        (r.status, r.json().unwrap()["error"].clone()),
        (413, "body_too_large".into())
    );
    let mut chunked = b"1388\r\n".to_vec();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut hc = h("big-2");
    hc.push(("transfer-encoding", "chunked"));
    let r = s.post("/v1/eta", &hc, &chunked);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json().unwrap()["request_id"], "big-2");

    // A model failure: 5xx naming the kind, the id to find the log line with.
    *fake.fail.lock().unwrap() = Some(BackendError::new(
        FailureKind::Sandbox(ErrorKind::Trap),
        "wasm trap: unreachable",
    ));
    let r = s.post("/v1/eta", &h("trap-1"), &eta_body(1));
    assert_eq!(r.status, 500);
    let j = r.json().unwrap();
    assert_eq!(j["error"], "model_failed");
    assert!(j["reason"].as_str().unwrap().starts_with("trap:"), "{j}");
    assert!(
        !j["reason"].as_str().unwrap().contains("unreachable"),
        "internals stay in the log"
    );
    assert_eq!(j["request_id"], "trap-1");
    *fake.fail.lock().unwrap() = Some(BackendError::new(
        FailureKind::Sandbox(ErrorKind::Timeout),
        "deadline",
    ));
    assert_eq!(s.post("/v1/eta", &h("slow-1"), &eta_body(1)).status, 504);
    *fake.fail.lock().unwrap() = Some(BackendError::new(
        FailureKind::Sandbox(ErrorKind::BadInput),
        "row 0: origin is required",
    ));
    let r = s.post("/v1/eta", &h("in-1"), &eta_body(1));
    assert_eq!(r.status, 422);
    assert!(
        r.json().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("origin is required")
    );
    *fake.fail.lock().unwrap() = Some(BackendError::new(FailureKind::ModelNotFound, "no eta-DL"));
    let r = s.post("/v1/eta", &h("nf-1"), &eta_body(1));
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert_eq!(r.json().unwrap()["error"], "model_unavailable");
    *fake.fail.lock().unwrap() = None;

    // Unknown paths and methods answer in the same shape.
    let r = s.get("/v2/nothing");
    assert_eq!(
        (r.status, r.json().unwrap()["error"].clone()),
        (404, "not_found".into())
    );
    assert!(r.json().unwrap()["request_id"].is_string());
    let r = http_request(s.port(), "GET", "/v1/eta", &[], b"").unwrap();
    assert_eq!(
        (r.status, r.json().unwrap()["error"].clone()),
        (405, "method_not_allowed".into())
    );

    let m = s.get("/metrics").text();
    assert!(
        m.contains("bulkhead_model_failures_total{tenant=\"DL\",kind=\"trap\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("bulkhead_model_failures_total{tenant=\"DL\",kind=\"timeout\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("bulkhead_model_failures_total{tenant=\"DL\",kind=\"model_not_found\"} 1"),
        "{m}"
    );
}

#[test]
fn health_readiness_and_metrics() {
    // Warm-up waits until the test opens the gate.
    let fake = Arc::new(Fake::gated());
    let s = Server::start(
        Arc::clone(&fake) as _,
        &registry_with(&[]),
        Options {
            warm_period: Duration::from_millis(50),
            ..Options::default()
        },
    );
    let r = s.get("/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = s.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    let j = r.json().unwrap();
    assert_eq!(j["ready"], false);
    assert!(s.get("/metrics").text().contains("bulkhead_ready 0"));

    fake.open_gate();
    let t0 = Instant::now();
    let j = loop {
        let r = s.get("/readyz");
        if r.status == 200 {
            break r.json().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never ready: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Without --plane-name the host serves every plane: the silo tenant's model (UA),
    // the pooled model of the pool tenants; bridge tenants on `production` load lazily.
    let loaded: Vec<&String> = j["loaded"].as_object().unwrap().keys().collect();
    assert_eq!(
        loaded,
        ["eta-UA@production", "eta-global@production"],
        "{j}"
    );
    assert_eq!(j["pending"].as_array().unwrap().len(), 0);

    let tok = s.token("DL");
    for _ in 0..3 {
        assert_eq!(
            s.post(
                "/v1/eta",
                &[("authorization", &auth(&tok)), ("x-org-id", "DL")],
                &eta_body(1)
            )
            .status,
            200
        );
    }
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = r.text();
    for needle in [
        "bulkhead_ready 1",
        "bulkhead_requests_total{tenant=\"DL\",status=\"200\"} 3",
        "bulkhead_request_duration_seconds_count{tenant=\"DL\"} 3",
        "bulkhead_model_cache_hits_total{tenant=\"DL\"} 2",
        "bulkhead_model_cache_misses_total{tenant=\"DL\"} 1",
        "bulkhead_model_load_seconds_count{tenant=\"DL\"} 1",
        "bulkhead_requests_in_flight{tenant=\"DL\"} 0",
        "bulkhead_model_cache_evictions_total 4",
        "bulkhead_model_cache_resident_bytes 1234",
        "bulkhead_tenant_model_resident_bytes{tenant=\"DL\",model=\"eta-DL\"} 1000",
        "bulkhead_tenant_model_resident_bytes{tenant=\"EV\",model=\"eta-global\"} 234",
        "bulkhead_tenant_model_evictions_total{tenant=\"DL\",model=\"eta-DL\"} 3",
        "bulkhead_registry_revision 1",
        "# EOF",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
}
