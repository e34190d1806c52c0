//! Demand models end to end on the host: `train --demand` on the committed slice (fit,
//! scored through the demand-forecaster component against seasonal naive, gated,
//! published), then `POST /v1/forecast/demand` answered from the tenant's own model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_common;

use bulkhead::models::demand::{self, DemandGate, DemandTraining};
use bulkhead::models::evaluate::Evaluator;
use bulkhead::models::plugin::demand_forecaster_wasm;
use bulkhead::models::store::{ModelStore, PRODUCTION};
use bulkhead::serve::Options;
use serde_json::json;
use serve_common::{Server, registry_with};
use std::path::Path;

#[test]
fn each_tenant_forecasts_its_own_lanes() {
    let wasm = std::fs::read(demand_forecaster_wasm().unwrap()).unwrap();
    let flights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/flights.csv");
    let data = demand::load(&flights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data-plane");
    let store = ModelStore::open(&data_dir).unwrap();
    let evaluator = Evaluator::for_plugin("demand-forecaster", &wasm).unwrap();
    let run = DemandTraining {
        store: &store,
        data: &data,
        plugin_wasm: &wasm,
        evaluator: &evaluator,
        // The slice has two days a month: every model is poor, so the gate is opened
        // wide enough that UA's candidate or its seasonal naive serves.
        gate: DemandGate {
            max_wape: 1000.0,
            min_train_flights: 100,
        },
        by: "test".into(),
    };
    let ua = run.train_tenant("UA").unwrap();
    assert!(ua.version.is_some(), "{ua:?}");
    assert!(ua.lanes > 5 && ua.holdout_lane_days > 0, "{ua:?}");
    assert!(ua.candidate_wape.is_some() && ua.baseline_wape.is_some());
    let served = store.resolve("demand-UA", PRODUCTION).unwrap();
    assert_eq!(served.manifest.tenant, "UA");
    let e = served.manifest.evaluation.clone().unwrap();
    assert_eq!(e.metric.as_deref(), Some("wape"));
    assert!(e.evaluated_by.unwrap().contains("demand-forecaster"));
    // OO (32 flights) falls back to seasonal naive for insufficient data.
    let oo = run.train_tenant("OO").unwrap();
    assert!(oo.decision.contains("insufficient_data"), "{oo:?}");

    let backend = serve_common::wasm_backend(&data_dir);
    let s = Server::start(backend, &registry_with(&[]), Options::default());
    let ask = |org: &str, body: serde_json::Value| {
        let auth = format!("Bearer {}", s.token(org));
        s.post(
            "/v1/forecast/demand",
            &[("authorization", &auth), ("x-org-id", org)],
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    // A UA lane and one UA never flew: the first forecast day by day, the second an
    // error in its place.
    let lane = &data
        .flights
        .iter()
        .find(|f| f.carrier.as_str() == "UA")
        .map(|f| (f.origin.to_string(), f.dest.to_string()))
        .unwrap();
    let body = json!({
        "lanes": [{"origin": lane.0, "dest": lane.1}, {"origin": "EWR", "dest": "XNA"}],
        "start": "2013-11-01",
        "horizon_days": 7
    });
    let r = ask("UA", body.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json().unwrap();
    assert_eq!(j["model"]["name"], "demand-UA", "{j}");
    assert_eq!(j["tenant"], "UA");
    let known = j["forecasts"][0]["days"].as_array().unwrap();
    assert_eq!(known.len(), 7);
    assert_eq!(known[0]["date"], "2013-11-01");
    assert_eq!(known[6]["date"], "2013-11-07");
    for d in known {
        let (f, lo, hi) = (
            d["flights"].as_f64().unwrap(),
            d["lower"].as_f64().unwrap(),
            d["upper"].as_f64().unwrap(),
        );
        assert!(f >= 0.0 && lo <= f && f <= hi, "{d}");
        // Two decimals, not f32 noise.
        for x in [f, lo, hi] {
            assert!(((x * 100.0).round() - x * 100.0).abs() < 1e-6, "{d}");
        }
    }
    let unknown = &j["forecasts"][1]["days"][0];
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("lane EWR-XNA is not in this model"),
        "{unknown}"
    );
    // A tenant without a demand model, and bad bodies.
    let r = ask("DL", body);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "model_unavailable");
    let r = ask(
        "UA",
        json!({"lanes": [{"origin": "EWR", "dest": "ORD"}], "start": "2013-11-01", "horizon_days": 0}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("horizon_days"));
}
