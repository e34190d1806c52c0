//! Tenant-isolated feature stores through the real data plane (no Envoy): a plugin asks
//! for `lanes` by key and never names a tenant; the host answers from the verified
//! tenant's own store only. DL and AA run the same plugin on the same rows; only DL's
//! store has the lane, so only DL's answer carries it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sandbox_support;
mod serve_common;

use bulkhead::features::load::{build_public, build_tenant};
use bulkhead::models::store::{ModelStore, PRODUCTION, Publish, TrainedOn};
use bulkhead::sandbox::{Sandbox, SandboxConfig};
use bulkhead::serve::Options;
use bulkhead::serve::wasm::WasmBackend;
use bulkhead_eta_model::Example;
use bulkhead_eta_model::schema::Code;
use serde_json::json;
use serve_common::{Server, registry_with};
use std::sync::Arc;
use std::time::Duration;

fn flight(month: u8) -> Example {
    Example {
        origin: Code::parse("EWR").unwrap(),
        dest: Code::parse("ORD").unwrap(),
        month,
        sched_dep_hour: 8,
        distance: 719.0,
        dep_delay: None,
        sched_block: None,
        conditions: Default::default(),
        eta: 140.0,
    }
}

#[test]
fn lookups_answer_from_the_verified_tenants_store_only() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data-plane");
    let store = ModelStore::open(&data_dir).unwrap();
    let plugin = sandbox_support::hostile_wasm();
    for (name, tenant) in [("eta-DL", "DL"), ("eta-AA", "AA")] {
        store
            .publish(Publish {
                name,
                tenant,
                plugin_name: "hostile",
                plugin_version: "0.1.0",
                plugin_wasm: &plugin,
                artifact: format!("ok:{tenant}").as_bytes(),
                trained_on: TrainedOn {
                    tenants: vec![tenant.into()],
                    rows: 0,
                    rows_sha256: String::new(),
                    rows_format: String::new(),
                    data_sha256: String::new(),
                    data_file: None,
                },
                evaluation: None,
                gate: None,
                aliases: &[PRODUCTION],
            })
            .unwrap();
    }
    // DL flew EWR-ORD twice in its training months; AA has a store without that lane.
    let features = data_dir.join("features");
    build_tenant(&features, "DL", &[flight(1), flight(2)], &[]).unwrap();
    build_tenant(&features, "AA", &[], &[]).unwrap();
    let weather = dir.path().join("weather.csv");
    std::fs::write(
        &weather,
        "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n\
         EWR,2013,1,5,6,33,17,53,250,10,NA,0,1022,10,x\n",
    )
    .unwrap();
    build_public(&features, &weather, &Default::default()).unwrap();

    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let backend = Arc::new(WasmBackend::new(
        ModelStore::open(&data_dir).unwrap(),
        Arc::new(sandbox),
        Duration::from_millis(200),
    ));
    // The dev registry: DL and AA are bridge tenants on `eta-DL` / `eta-AA` production.
    let reg = registry_with(&[]);
    let s = Server::start(
        backend,
        &reg,
        Options {
            plane: Some("dp_pool_us".into()),
            ..Options::default()
        },
    );
    // Row 0 asks for DL's lane, row 1 for a lane nobody flew, row 2 for public weather.
    let body = serde_json::to_vec(&json!({"rows": [
        {"x": 0, "lane": "EWR|ORD"},
        {"x": 0, "lane": "JFK|LAX"},
        {"x": 0, "lookup": "EWR|2013-01-05T06"},
    ]}))
    .unwrap();
    let ask = |org: &str| {
        let auth = format!("Bearer {}", s.token(org));
        let r = s.post(
            "/v1/eta",
            &[("authorization", &auth), ("x-org-id", org)],
            &body,
        );
        assert_eq!(r.status, 200, "{org}: {}", r.text());
        let j = r.json().unwrap();
        j["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["eta_minutes"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ask("DL"),
        vec![2.0, 0.0, 33.0],
        "DL: its own lane, public weather"
    );
    assert_eq!(
        ask("AA"),
        vec![0.0, 0.0, 33.0],
        "AA: the same key finds nothing of DL's; weather is shared"
    );
}
