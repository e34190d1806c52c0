//! The promotion gate end to end: `bulkhead train --all` on the committed slice, then
//! requests through the shipped edge (`envoy/edge.yaml`) in a real Envoy to a real host
//! (`bulkhead serve` over mTLS, the model store `train` wrote). A tenant whose candidate
//! passed the gate is answered by its own version; a tenant the gate sent back to the
//! pool — too little data (OO: 24 training flights) or a candidate worse than the global
//! model (DL on the slice) — is answered by the global model, and the answer names it.
//! Promoting DL's refused candidate by hand (`bulkhead registry promote`) moves DL's
//! answers to it without a restart, and the move is in the alias history.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use bulkhead_e2e::{
    KillOnDrop, PlanePorts, bulkhead_cli, dev_tls, edge_eta, free_port, spawn_control,
    spawn_tls_host, start_edge, wait_until,
};
use bulkhead_testkit::{Envoy, Response};
use proxy_wasm_harness::workspace_root;
use serde_json::{Value, json};

/// One flight: Newark → Chicago O'Hare in January, scheduled 06:00, 719 miles.
const ROW: &str =
    r#"{"rows":[{"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719}]}"#;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn cli(state: &Path, args: &[&str]) -> String {
    bulkhead_cli(state, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The table row of `tenant` in `train`'s output: its columns.
fn row_of<'a>(table: &'a str, tenant: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tenant))
        .unwrap_or_else(|| panic!("no row for {tenant} in\n{table}"))
        .split_whitespace()
        .collect()
}

struct Edge {
    state: std::path::PathBuf,
    envoy: Envoy,
    _procs: Vec<KillOnDrop>,
}

impl Edge {
    /// `POST /v1/eta` through the edge with `org`'s token: (model name, version); the
    /// response says whether that is a fallback to the pooled model.
    fn model_for(&self, org: &str) -> (String, String) {
        self.served(org).0
    }

    /// (model name, version), and the response's `model.fallback`.
    fn served(&self, org: &str) -> ((String, String), bool) {
        let r = self.eta(org);
        assert_eq!(r.status, 200, "{org}: {}", r.text());
        let v: Value = r.json().unwrap();
        let eta = v["predictions"][0]["eta_minutes"].as_f64().unwrap();
        assert!((60.0..300.0).contains(&eta), "{v}");
        assert_eq!(v["tenant"], org, "{v}");
        (
            (
                v["model"]["name"].as_str().unwrap().to_string(),
                v["model"]["version"].as_str().unwrap().to_string(),
            ),
            v["model"]["fallback"].as_bool().unwrap(),
        )
    }

    fn eta(&self, org: &str) -> Response {
        edge_eta(&self.state, &self.envoy, org, ROW.as_bytes()).unwrap()
    }
}

#[test]
fn train_all_then_each_tenant_is_served_what_the_gate_decided() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();

    // Tenants on the pool-us host: DL and AA (bridge, their own models), US and OO made
    // bridge tenants naming eta-US / eta-OO, EV a pool tenant (the default model).
    let mut reg: Value = serde_json::from_str(bulkhead::registry::DEV_REGISTRY).unwrap();
    reg["plans"]["standard"] = json!({"per_second": 10_000, "burst": 10_000});
    for org in ["US", "OO"] {
        reg["tenants"][org]["tier"] = json!("bridge");
        reg["tenants"][org]["model"] =
            json!({"name": format!("eta-{org}"), "version": "production"});
    }
    std::fs::write(
        state.join("registry.json"),
        serde_json::to_string_pretty(&reg).unwrap(),
    )
    .unwrap();
    cli(&state, &["token", "--org", "EV"]); // creates the dev issuer key once

    // Train everything on the slice, with the gate scaled to it (~1/80 of the data).
    let store = state.join("hosts/pool-us");
    let plugin = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
    let table = cli(
        &state,
        &[
            "train",
            "--all",
            "--data",
            &s(&workspace_root().join("tests/data/flights.csv")),
            "--plugin",
            &s(&plugin),
            "--data-dir",
            &s(&store),
            "--min-train-rows",
            "100",
            "--max-mape",
            "25",
            "--allow-global-below-on-time",
        ],
    );
    let global = row_of(&table, "*");
    assert_eq!(global[1], "eta-global", "{table}");
    let global_version = global[2].to_string();
    let us = row_of(&table, "US");
    assert_eq!(us[8], "promoted", "{table}");
    let us_version = us[2].to_string();
    let oo = row_of(&table, "OO");
    assert_eq!(&oo[8..10], ["fallback:", "insufficient_data"], "{table}");
    let dl = row_of(&table, "DL");
    assert_eq!(&dl[8..10], ["fallback:", "worse_than_global"], "{table}");

    // One host for the pool-us plane, over mTLS; Envoy in front, as `make run` renders it.
    let tls = dev_tls(&state).unwrap();
    let (control, control_port) = spawn_control(&state).unwrap();
    let mut procs = vec![control];
    let host_port = free_port();
    procs.push(
        spawn_tls_host(
            &state,
            &store,
            &tls,
            ("dp_pool_us", host_port),
            &["--resolve-ttl-ms".to_string(), "100".to_string()],
        )
        .unwrap(),
    );
    // Every plane routes to the one host.
    let (envoy, _tls_port) =
        start_edge(&state, &tls, control_port, PlanePorts::all(host_port)).unwrap();
    let edge = Edge {
        state: state.clone(),
        envoy,
        _procs: procs,
    };
    let up = wait_until(Duration::from_secs(60), || edge.eta("EV").status == 200);
    let host_log = std::fs::read_to_string(state.join("dp_pool_us.log")).unwrap_or_default();
    assert!(up, "the edge never answered EV; host log:\n{host_log}");

    // Promoted: the tenant's own version.
    assert_eq!(
        edge.served("US"),
        (("eta-US".to_string(), us_version.clone()), false)
    );
    // Fallbacks: the global model, named as such and flagged as a fallback.
    let pooled = ("eta-global".to_string(), global_version.clone());
    assert_eq!(edge.served("OO"), (pooled.clone(), true));
    assert_eq!(edge.served("DL"), (pooled.clone(), true));
    // A pool tenant gets the global model as always: its model, not a fallback.
    assert_eq!(edge.served("EV"), (pooled.clone(), false));

    // A manual promotion of DL's refused candidate shows up without a restart, and a
    // rollback returns DL to the pool in one step.
    let dl_version = dl[2].to_string();
    let store_arg = s(&store);
    cli(
        &state,
        &[
            "registry",
            "promote",
            "eta-DL",
            &dl_version,
            "--data-dir",
            &store_arg,
            "--why",
            "e2e",
        ],
    );
    let moved = wait_until(Duration::from_secs(10), || {
        edge.model_for("DL") == ("eta-DL".to_string(), dl_version.clone())
    });
    assert!(moved, "DL still served {:?}", edge.model_for("DL"));
    let history = cli(
        &state,
        &["registry", "history", "eta-DL", "--data-dir", &store_arg],
    );
    assert!(
        history.contains("fallback") || history.contains("train"),
        "{history}"
    );
    assert!(history.contains("e2e"), "{history}");
}
