//! `bulkhead registry …` and `bulkhead tenant …`, run as the real binary on temp files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bulkhead_registry::{Document, Registry, Status, Tier};
use common::{DEV, doc, initialised, ok, run};
use std::fs;

#[test]
fn the_dev_registry_is_valid_canonical_and_as_specified() {
    let r = Registry::parse(DEV.as_bytes()).unwrap();
    // Stored form: the first edit changes only what it edits.
    assert_eq!(r.document().to_json(), DEV);
    assert_eq!(r.document().revision, 1);
    let ids: Vec<&str> = r.tenants().map(|t| t.org_id).collect();
    assert_eq!(
        ids,
        [
            "9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX",
            "WN", "YV"
        ]
    );
    let ua = r.tenant("UA").unwrap();
    assert_eq!(
        (
            ua.tier,
            ua.data_plane,
            ua.data_plane_spec.cluster.as_str(),
            ua.plan
        ),
        (Tier::Silo, "silo-ua", "dp_silo_ua", "premium")
    );
    assert_eq!(ua.model.name, "eta-UA");
    for org in ["DL", "AA"] {
        let t = r.tenant(org).unwrap();
        assert_eq!((t.tier, t.data_plane), (Tier::Bridge, "pool-us"));
        assert_eq!(t.model.name, format!("eta-{org}"));
        assert_eq!(t.model.version, "production");
    }
    let b6 = r.tenant("B6").unwrap();
    assert_eq!(
        (b6.tier, b6.region, b6.residency, b6.data_plane),
        (Tier::Bridge, "eu-west-1", Some("eu"), "pool-eu")
    );
    assert_eq!(b6.data_plane_spec.cluster, "dp_pool_eu");
    assert_eq!(
        r.region("eu-west-1").unwrap().edge_url.as_deref(),
        Some("https://eu.bulkhead.localhost:10443")
    );
    let oo = r.tenant("OO").unwrap();
    assert_eq!(
        (oo.tier, oo.data_plane, oo.plan, oo.max_concurrency),
        (Tier::Pool, "pool-us", "standard", 8)
    );
    assert_eq!(
        (oo.model.name.as_str(), oo.model.version.as_str()),
        ("eta-global", "production")
    );
    assert_eq!(r.tenant("MQ").unwrap().name, "Envoy Air");
    let std_plan = &r.document().plans["standard"];
    assert_eq!((std_plan.per_second, std_plan.burst), (Some(5), Some(10)));
    let premium = &r.document().plans["premium"];
    assert_eq!((premium.per_second, premium.burst), (Some(100), Some(200)));
}

#[test]
fn init_writes_the_bundled_registry_and_refuses_to_overwrite() {
    let (_dir, path) = initialised();
    assert_eq!(fs::read_to_string(&path).unwrap(), DEV);
    let again = run(&path, &["registry", "init"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    fs::write(&path, "garbage").unwrap();
    let out = ok(&path, &["registry", "init", "--force"]);
    assert!(out.contains("revision 1, 16 tenants"), "{out}");
    assert_eq!(fs::read_to_string(&path).unwrap(), DEV);

    // --from: validated first, copied byte for byte.
    let src = path.with_file_name("src.json");
    let mut other: serde_json::Value = serde_json::from_str(DEV).unwrap();
    other["revision"] = 41.into();
    let other = serde_json::to_string(&other).unwrap();
    fs::write(&src, &other).unwrap();
    let dest = path.with_file_name("copy.json");
    ok(
        &dest,
        &["registry", "init", "--from", src.to_str().unwrap()],
    );
    assert_eq!(fs::read_to_string(&dest).unwrap(), other);
    fs::write(
        &src,
        other.replace("\"data_plane\":\"pool-eu\"", "\"data_plane\":\"pool-mars\""),
    )
    .unwrap();
    let bad = run(
        &dest,
        &[
            "registry",
            "init",
            "--force",
            "--from",
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("src.json is invalid: field `"),
        "{}",
        bad.stderr
    );
    assert_eq!(fs::read_to_string(&dest).unwrap(), other);
}

#[test]
fn registry_path_defaults_to_the_state_dir_and_honours_the_env() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_bulkhead");
    let st = std::process::Command::new(bin)
        .env_remove("BULKHEAD_REGISTRY")
        .args(["--state-dir"])
        .arg(dir.path())
        .args(["registry", "init"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::read_to_string(dir.path().join("registry.json")).unwrap(),
        DEV
    );

    let via_env = dir.path().join("sub/other.json");
    let st = std::process::Command::new(bin)
        .env("BULKHEAD_REGISTRY", &via_env)
        .args(["registry", "init"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(via_env.exists());
}

#[test]
fn set_tier_promotes_and_a_refused_edit_changes_nothing() {
    let (_dir, path) = initialised();
    let out = ok(&path, &["tenant", "set-tier", "EV", "bridge"]);
    assert_eq!(out.trim(), "EV: tier pool -> bridge; revision 2");
    let bytes = fs::read(&path).unwrap();
    let r = Registry::parse(&bytes).unwrap();
    assert_eq!(r.document().revision, 2);
    assert_eq!(r.tenant("EV").unwrap().tier, Tier::Bridge);
    // Only EV changed.
    let mut expected = Document::from_json(DEV.as_bytes()).unwrap();
    expected.revision = 2;
    expected.tenants.get_mut("EV").unwrap().tier = Tier::Bridge;
    assert_eq!(r.document(), &expected);

    // The same edit again changes nothing and does not bump the revision.
    let out = ok(&path, &["tenant", "set-tier", "EV", "bridge"]);
    assert!(out.contains("nothing to change; revision 2"), "{out}");
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // A silo cannot share pool-us: refused, exit 1, the field named, bytes unchanged.
    let refused = run(&path, &["tenant", "set-tier", "DL", "silo"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("field `tenants.DL.data_plane`"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("unchanged"), "{}", refused.stderr);
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // Free silo-ua, then DL can take it as a silo.
    let out = ok(&path, &["tenant", "remove", "UA"]);
    assert_eq!(out.trim(), "removed UA (United Air Lines Inc.); revision 3");
    let out = ok(
        &path,
        &[
            "tenant",
            "set-tier",
            "DL",
            "silo",
            "--data-plane",
            "silo-ua",
        ],
    );
    assert_eq!(
        out.trim(),
        "DL: tier bridge -> silo, data plane pool-us -> silo-ua; revision 4"
    );
    let t = doc(&path)["tenants"]["DL"].clone();
    assert_eq!(t["tier"], "silo");
    assert_eq!(t["data_plane"], "silo-ua");
}

#[test]
fn other_edits_and_their_refusals() {
    let (_dir, path) = initialised();
    let out = ok(&path, &["tenant", "set-plan", "OO", "premium"]);
    assert_eq!(out.trim(), "OO: plan standard -> premium; revision 2");
    let out = ok(&path, &["tenant", "set-model", "OO", "eta-OO@3"]);
    assert_eq!(
        out.trim(),
        "OO: model eta-global@production -> eta-OO@3; revision 3"
    );
    let out = ok(&path, &["tenant", "set-concurrency", "OO", "2"]);
    assert_eq!(out.trim(), "OO: max concurrency 8 -> 2; revision 4");
    let out = ok(&path, &["tenant", "set-data-plane", "OO", "pool-eu"]);
    assert_eq!(out.trim(), "OO: data plane pool-us -> pool-eu; revision 5");

    for (args, field) in [
        (&["tenant", "set-plan", "OO", "gold"][..], "tenants.OO.plan"),
        (
            &["tenant", "set-concurrency", "OO", "0"][..],
            "tenants.OO.max_concurrency",
        ),
        (
            &["tenant", "set-data-plane", "B6", "pool-us"][..],
            "tenants.B6.data_plane",
        ),
        (
            &["tenant", "set-model", "OO", "bad name@1"][..],
            "tenants.OO.model.name",
        ),
        (&["tenant", "resume", "ZZ"][..], "tenants.ZZ"),
        (&["tenant", "remove", "ZZ"][..], "tenants.ZZ"),
        (
            &[
                "tenant",
                "add",
                "LH",
                "--name",
                "Lufthansa",
                "--tier",
                "bridge",
                "--region",
                "eu-west-1",
                "--residency",
                "eu",
                "--data-plane",
                "pool-us",
            ][..],
            "tenants.LH.data_plane",
        ),
        (
            &[
                "tenant",
                "add",
                "DL",
                "--name",
                "Again",
                "--tier",
                "pool",
                "--region",
                "us-east-1",
                "--data-plane",
                "pool-us",
            ][..],
            "tenants.DL",
        ),
    ] {
        let before = fs::read(&path).unwrap();
        let r = run(&path, args);
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("field `{field}`")),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "{args:?} touched the file"
        );
    }
    // Usage errors (clap) exit 2 and never reach the file.
    for args in [
        &["tenant", "set-tier", "OO", "gold"][..],
        &["tenant", "set-model", "OO", "no-version"][..],
        &["tenant", "suspend", "OO"][..],
    ] {
        let r = run(&path, args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }

    let out = ok(
        &path,
        &[
            "tenant",
            "add",
            "LH",
            "--name",
            "Lufthansa",
            "--tier",
            "bridge",
            "--region",
            "eu-west-1",
            "--residency",
            "eu",
            "--data-plane",
            "pool-eu",
            "--plan",
            "premium",
            "--model",
            "eta-LH@production",
            "--max-concurrency",
            "4",
        ],
    );
    assert_eq!(
        out.trim(),
        "added LH (Lufthansa): bridge, region eu-west-1, data plane pool-eu, plan premium, model eta-LH@production; revision 6"
    );
    let show = ok(&path, &["tenant", "show", "LH"]);
    assert!(show.contains("residency:       eu"), "{show}");
    assert!(show.contains("max_concurrency: 4"), "{show}");
    let list = ok(&path, &["tenant", "list"]);
    assert_eq!(list.lines().count(), 18, "{list}");
    assert!(list.lines().next().unwrap().starts_with("ORG"));
    let missing = run(&path, &["tenant", "show", "ZZ"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no tenant `ZZ`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn suspend_and_resume() {
    let (_dir, path) = initialised();
    let out = ok(
        &path,
        &["tenant", "suspend", "WN", "--reason", "invoice overdue"],
    );
    assert_eq!(
        out.trim(),
        "WN: status active -> suspended (invoice overdue); revision 2"
    );
    let r = Registry::parse(&fs::read(&path).unwrap()).unwrap();
    let wn = r.tenant("WN").unwrap();
    assert_eq!(
        (wn.status, wn.status_reason),
        (Status::Suspended, Some("invoice overdue"))
    );
    assert_eq!(doc(&path)["tenants"]["WN"]["status"], "suspended");

    let refused = run(&path, &["tenant", "suspend", "WN", "--reason", "  "]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("field `tenants.WN.status_reason`"),
        "{}",
        refused.stderr
    );

    let out = ok(&path, &["tenant", "resume", "WN"]);
    assert_eq!(
        out.trim(),
        "WN: status suspended (invoice overdue) -> active; revision 3"
    );
    let v = doc(&path);
    assert!(
        v["tenants"]["WN"].get("status").is_none(),
        "active is the default"
    );
    assert!(v["tenants"]["WN"].get("status_reason").is_none());
    let out = ok(&path, &["tenant", "resume", "WN"]);
    assert!(out.contains("nothing to change; revision 3"), "{out}");
}

#[test]
fn check_names_the_broken_field() {
    let (dir, path) = initialised();
    let out = ok(&path, &["registry", "check", path.to_str().unwrap()]);
    assert!(
        out.contains("valid: revision 1, 16 tenants, 3 data planes"),
        "{out}"
    );
    assert!(out.contains("etag \""), "{out}");

    let broken = dir.path().join("broken.json");
    let mut v: serde_json::Value = serde_json::from_str(DEV).unwrap();
    v["tenants"]["DL"]["tier"] = "gold".into();
    fs::write(&broken, v.to_string()).unwrap();
    let r = run(&path, &["registry", "check", broken.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("broken.json is invalid"), "{}", r.stderr);
    assert!(r.stderr.contains("field `tenants.DL.tier`"), "{}", r.stderr);

    fs::write(&broken, "{ not json").unwrap();
    let r = run(&path, &["registry", "check", broken.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("broken.json is invalid: field `"),
        "{}",
        r.stderr
    );

    let r = run(
        &path,
        &[
            "registry",
            "check",
            dir.path().join("nope.json").to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nope.json"), "{}", r.stderr);

    // Without FILE: the --registry file. An edit of an invalid file is refused too.
    fs::write(&path, v.to_string()).unwrap();
    let r = run(&path, &["registry", "check"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("field `tenants.DL.tier`"), "{}", r.stderr);
    let r = run(&path, &["tenant", "suspend", "UA", "--reason", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("field `tenants.DL.tier`"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), v.to_string());
}

#[test]
fn concurrent_edits_are_serialised() {
    let (_dir, path) = initialised();
    let children: Vec<_> = (0..8)
        .map(|i| {
            common::bulkhead(&path)
                .args([
                    "tenant",
                    "add",
                    &format!("T{i}"),
                    "--name",
                    &format!("Tenant {i}"),
                    "--tier",
                    "pool",
                    "--region",
                    "us-east-1",
                    "--data-plane",
                    "pool-us",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r = Registry::parse(&fs::read(&path).unwrap()).unwrap();
    for i in 0..8 {
        assert!(r.tenant(&format!("T{i}")).is_some(), "T{i} lost");
    }
    assert_eq!(r.document().tenants.len(), 24);
    assert_eq!(r.document().revision, 9);
    // No temporary files left beside the registry.
    let mut names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["registry.json", "registry.json.lock"]);
}
