//! `bulkhead control` over real HTTP: ETag / If-None-Match, live reload after a CLI edit,
//! the last valid registry kept when the file turns invalid, refusal to start on an
//! invalid file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Control, DEV, http, initialised, ok, wait_for};
use sha2::{Digest, Sha256};
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn expected_etag(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[test]
fn serves_the_file_with_etag_and_304() {
    let (_dir, path) = initialised();
    let c = Control::start(&path);

    let r = c.get("/v1/registry", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, DEV.as_bytes());
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(etag, expected_etag(DEV.as_bytes()));
    assert_eq!(etag.len(), 34);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        "*".into(),
        format!("\"x\", {etag}"),
    ] {
        let r = c.get("/v1/registry", &[("if-none-match", &inm)]);
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body.is_empty());
    }
    let r = c.get("/v1/registry", &[("if-none-match", "\"0000\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, DEV.as_bytes());

    let r = c.get("/healthz", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));

    let s = c.get("/v1/registry/status", &[]).json();
    assert_eq!(s["etag"], etag);
    assert_eq!(s["revision"], 1);
    assert_eq!(s["tenants"], 16);
    assert!(s["loaded_at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(s["last_error"].is_null());
    assert_eq!(s["path"], path.display().to_string());

    // Anything else: precise JSON errors.
    let r = c.get("/v1/registries", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    assert_eq!(r.json()["path"], "/v1/registries");
    let r = http(c.addr, "POST", "/v1/registry", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"], "method_not_allowed");
    assert!(
        r.header("allow").unwrap_or_default().contains("GET"),
        "{r:?}"
    );
    let r = http(c.addr, "HEAD", "/v1/registry", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
}

#[test]
fn reloads_edits_and_keeps_the_last_valid_registry() {
    let (_dir, path) = initialised();
    let c = Control::start(&path);
    let first = c.get("/v1/registry", &[]);
    let etag1 = first.header("etag").unwrap().to_string();

    // An edit through the CLI is served within about a second (no request needed: the
    // file is polled; the conditional request also re-checks it).
    ok(&path, &["tenant", "set-tier", "EV", "bridge"]);
    let on_disk = fs::read(&path).unwrap();
    let started = Instant::now();
    let r = wait_for(Duration::from_secs(1), || {
        let r = c.get("/v1/registry", &[("if-none-match", &etag1)]);
        (r.status == 200).then_some(r)
    })
    .expect("the edit was not served within 1 s");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(r.body, on_disk);
    let etag2 = r.header("etag").unwrap().to_string();
    assert_eq!(etag2, expected_etag(&on_disk));
    assert_ne!(etag2, etag1);
    let v: serde_json::Value = r.json();
    assert_eq!(v["tenants"]["EV"]["tier"], "bridge");
    assert_eq!(v["revision"], 2);

    // Pure polling, without requests triggering the re-read.
    ok(&path, &["tenant", "suspend", "EV", "--reason", "audit"]);
    let reloads = || {
        c.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("registry reloaded"))
            .count()
    };
    let polled = wait_for(Duration::from_secs(2), || (reloads() == 2).then_some(()));
    assert!(polled.is_some(), "{:?}", c.log.lock().unwrap());
    let s = c.get("/v1/registry/status", &[]).json();
    assert_eq!(s["revision"], 3);
    let served = c.get("/v1/registry", &[]);
    let etag3 = served.header("etag").unwrap().to_string();

    // An invalid file: the last valid registry stays served; status names the field.
    let mut broken: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    broken["tenants"]["DL"]["data_plane"] = "pool-mars".into();
    broken["revision"] = 99.into();
    fs::write(&path, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let s = wait_for(Duration::from_secs(2), || {
        let s = c.get("/v1/registry/status", &[]).json();
        (!s["last_error"].is_null()).then_some(s)
    })
    .expect("the invalid file was not noticed");
    let err = s["last_error"].as_str().unwrap();
    assert!(err.starts_with("field `tenants.DL.data_plane`"), "{err}");
    assert!(err.contains("pool-mars"), "{err}");
    assert_eq!(s["revision"], 3);
    assert_eq!(s["etag"], etag3);
    let r = c.get("/v1/registry", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, served.body);
    assert_eq!(r.header("etag"), Some(etag3.as_str()));
    assert_eq!(
        c.get("/v1/registry", &[("if-none-match", &etag3)]).status,
        304
    );
    assert!(
        c.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("refused") && l.contains("tenants.DL.data_plane")),
        "{:?}",
        c.log.lock().unwrap()
    );

    // Deleted: still served; fixed: served again, error cleared.
    fs::remove_file(&path).unwrap();
    let s = wait_for(Duration::from_secs(2), || {
        let s = c.get("/v1/registry/status", &[]).json();
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("reading "))
            .then_some(s)
    })
    .expect("the missing file was not noticed");
    assert_eq!(s["etag"], etag3);
    assert_eq!(c.get("/v1/registry", &[]).body, served.body);
    ok(&path, &["registry", "init"]);
    let r = wait_for(Duration::from_secs(2), || {
        let r = c.get("/v1/registry", &[("if-none-match", &etag3)]);
        (r.status == 200).then_some(r)
    })
    .expect("the restored file was not served");
    assert_eq!(r.body, DEV.as_bytes());
    assert_eq!(r.header("etag"), Some(etag1.as_str()));
    assert!(c.get("/v1/registry/status", &[]).json()["last_error"].is_null());
}

fn start_fails(path: &std::path::Path) -> (i32, String) {
    let mut child = common::bulkhead(path)
        .args(["control", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("control started on an invalid registry");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refuses_to_start_on_an_invalid_or_missing_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    let mut v: serde_json::Value = serde_json::from_str(DEV).unwrap();
    v["tenants"]["UA"]["plan"] = "platinum".into();
    fs::write(&path, v.to_string()).unwrap();
    let (code, stderr) = start_fails(&path);
    assert_ne!(code, 0);
    assert!(stderr.contains("field `tenants.UA.plan`"), "{stderr}");
    assert!(stderr.contains("registry.json"), "{stderr}");

    let (code, stderr) = start_fails(&dir.path().join("missing.json"));
    assert_ne!(code, 0);
    assert!(stderr.contains("missing.json"), "{stderr}");
}
