//! The `bulkhead serve` binary, as `make run` starts it: seeded model store, dev issuer,
//! the registry file; tokens from `bulkhead token`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bulkhead_testkit::client::http_request;
use common::{ok, seeded, serve_ready};

#[test]
fn serve_binary_answers_with_the_tenants_model() {
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let srv = serve_ready(&reg, state, &[]);
    let port = srv.addr.port();
    assert_eq!(srv.get("/healthz", &[]).status, 200);

    let tok = ok(&reg, &["--state-dir", state, "token", "--org", "DL"]);
    let auth = format!("Bearer {}", tok.trim());
    let body = br#"{"rows":[{"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null}]}"#;
    let r = http_request(
        port,
        "POST",
        "/v1/eta",
        &[("authorization", &auth), ("x-org-id", "DL")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json().unwrap();
    assert_eq!(j["model"]["name"], "eta-DL");
    assert_eq!(j["model"]["version"], "1");
    assert!(j["predictions"][0]["eta_minutes"].as_f64().unwrap() > 0.0);

    // Around Envoy, with a forged header or none: nothing.
    let r = http_request(
        port,
        "POST",
        "/v1/eta",
        &[("authorization", &auth), ("x-org-id", "AA")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 403);
    let r = http_request(port, "POST", "/v1/eta", &[("x-org-id", "DL")], body).unwrap();
    assert_eq!(r.status, 401);
}
