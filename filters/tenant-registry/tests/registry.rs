#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_registry::edit::{Edit, apply};
use bulkhead_registry::{Document, Registry, Status, Tier};

const DOC: &str = r#"{
  "revision": 1,
  "regions": {"us-east-1": {"residency": "us"},
              "eu-west-1": {"residency": "eu", "edge_url": "https://eu.edge.example"}},
  "data_planes": {"pool-us": {"region": "us-east-1", "cluster": "dp_pool_us"},
                  "silo-ua": {"region": "us-east-1", "cluster": "dp_silo_ua"},
                  "pool-eu": {"region": "eu-west-1", "cluster": "dp_pool_eu"}},
  "plans": {"standard": {"per_second": 5, "burst": 10}, "premium": {"per_minute": 6000}},
  "defaults": {"plan": "standard", "model": {"name": "eta", "version": "production"},
               "max_concurrency": 8},
  "tenants": {
    "DL": {"name": "Delta", "tier": "pool", "region": "us-east-1", "data_plane": "pool-us"},
    "UA": {"name": "United", "tier": "silo", "region": "us-east-1", "data_plane": "silo-ua",
           "plan": "premium", "model": {"name": "eta", "version": "7"}, "max_concurrency": 32},
    "LH": {"name": "Lufthansa", "tier": "bridge", "region": "eu-west-1", "residency": "eu",
           "data_plane": "pool-eu"},
    "XX": {"name": "Gone", "tier": "pool", "region": "us-east-1", "data_plane": "pool-us",
           "status": "suspended", "status_reason": "invoice overdue"}
  }
}"#;

fn registry() -> Registry {
    Registry::parse(DOC.as_bytes()).unwrap()
}

/// Parses DOC with `f` applied to its JSON; returns the error (field, message).
fn broken(f: impl FnOnce(&mut serde_json::Value)) -> (String, String) {
    let mut v: serde_json::Value = serde_json::from_str(DOC).unwrap();
    f(&mut v);
    let e = Registry::parse(v.to_string().as_bytes()).unwrap_err();
    (e.field, e.message)
}

#[test]
fn defaults_fill_in() {
    let r = registry();
    let dl = r.tenant("DL").unwrap();
    assert_eq!(
        (
            dl.tier,
            dl.plan,
            dl.model.version.as_str(),
            dl.max_concurrency
        ),
        (Tier::Pool, "standard", "production", 8)
    );
    assert_eq!(dl.data_plane_spec.cluster, "dp_pool_us");
    let ua = r.tenant("UA").unwrap();
    assert_eq!(
        (ua.plan, ua.model.version.as_str(), ua.max_concurrency),
        ("premium", "7", 32)
    );
    assert_eq!(r.tenant("XX").unwrap().status, Status::Suspended);
    assert_eq!(
        r.tenant("XX").unwrap().status_reason,
        Some("invoice overdue")
    );
    assert!(r.tenant("ua").is_none());
    assert_eq!(r.tenants().count(), 4);
}

#[test]
fn round_trips_through_the_stored_form() {
    let r = registry();
    let again = Registry::parse(r.document().to_json().as_bytes()).unwrap();
    assert_eq!(again, r);
}

type Breakage = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn every_rule_names_its_field() {
    let cases: Vec<(Breakage, &str, &str)> = vec![
        (
            Box::new(|v| v["tenants"]["DL"]["tier"] = "gold".into()),
            "tenants.DL.tier",
            "unknown variant `gold`",
        ),
        (
            Box::new(|v| v["tenants"]["LH"]["data_plane"] = "pool-us".into()),
            "tenants.LH.data_plane",
            "outside the tenant's residency zone `eu`",
        ),
        (
            Box::new(|v| v["tenants"]["LH"]["region"] = "us-east-1".into()),
            "tenants.LH.region",
            "must stay in `eu`",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["data_plane"] = "silo-ua".into()),
            "tenants.UA.data_plane",
            "shares data plane `silo-ua` with `DL`",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["region"] = "mars-1".into()),
            "tenants.DL.region",
            "unknown region `mars-1`",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["data_plane"] = "nope".into()),
            "tenants.DL.data_plane",
            "unknown data plane",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["plan"] = "gold".into()),
            "tenants.DL.plan",
            "no plan named `gold`",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["max_concurrency"] = 0.into()),
            "tenants.DL.max_concurrency",
            "1..=",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["status_reason"] = "x".into()),
            "tenants.DL.status_reason",
            "only a suspended",
        ),
        (
            Box::new(|v| v["tenants"]["DL"]["colour"] = "red".into()),
            "tenants.DL.colour",
            "unknown field `colour`",
        ),
        (
            Box::new(|v| {
                v["tenants"]["DL"]["model"] = serde_json::json!({"name": "eta", "version": "a b"})
            }),
            "tenants.DL.model.version",
            "model version",
        ),
        (
            Box::new(|v| v["tenants"]["LH"]["residency"] = "apac".into()),
            "tenants.LH.residency",
            "no region is in residency zone `apac`",
        ),
        (
            Box::new(|v| v["data_planes"]["pool-eu"]["cluster"] = "dp_pool_us".into()),
            "data_planes.pool-us.cluster",
            "already data plane `pool-eu`",
        ),
        (
            Box::new(|v| v["data_planes"]["pool-eu"]["region"] = "xx".into()),
            "data_planes.pool-eu.region",
            "unknown region `xx`",
        ),
        (
            Box::new(|v| v["plans"]["standard"]["per_minute"] = 5.into()),
            "plans.standard",
            "exactly one of",
        ),
        (
            Box::new(|v| v["plans"]["standard"]["burst"] = 0.into()),
            "plans.standard.burst",
            "1..=",
        ),
        (
            Box::new(|v| v["plans"]["standard"]["max_queue"] = 1_000_000.into()),
            "plans.standard.max_queue",
            "0..=",
        ),
        (
            Box::new(|v| v["tenants"]["UA"]["alert_after_minutes"] = 0.into()),
            "tenants.UA.alert_after_minutes",
            "1..=",
        ),
        (
            Box::new(|v| v["defaults"]["plan"] = "gold".into()),
            "defaults.plan",
            "no plan named `gold`",
        ),
        (
            Box::new(|v| v["regions"]["eu-west-1"]["edge_url"] = "ftp://x".into()),
            "regions.eu-west-1.edge_url",
            "http(s)",
        ),
    ];
    for (f, field, message) in cases {
        let (got_field, got_message) = broken(f);
        assert_eq!(got_field, field, "{got_message}");
        assert!(got_message.contains(message), "{field}: {got_message}");
    }
}

#[test]
fn duplicate_org_ids_are_refused() {
    let dup = DOC.replace(
        r#""DL": {"name": "Delta","#,
        r#""DL": {"name": "Delta", "tier": "pool", "region": "us-east-1", "data_plane": "pool-us"}, "DL": {"name": "Delta","#,
    );
    let e = Registry::parse(dup.as_bytes()).unwrap_err();
    assert_eq!(e.field, "tenants");
    assert!(e.message.contains("duplicate key `DL`"), "{e}");
}

#[test]
fn edits_apply_whole_or_not_at_all() {
    let r = registry();
    let r2 = apply(
        &r,
        Edit::SetTier {
            org_id: "DL".into(),
            tier: Tier::Bridge,
            data_plane: None,
        },
    )
    .unwrap();
    assert_eq!(r2.tenant("DL").unwrap().tier, Tier::Bridge);
    assert_eq!(r2.document().revision, 2);
    // Silo onto a shared data plane: refused, nothing changes.
    let e = apply(
        &r2,
        Edit::SetTier {
            org_id: "DL".into(),
            tier: Tier::Silo,
            data_plane: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.field, "tenants.DL.data_plane");
    assert_eq!(r2.tenant("DL").unwrap().tier, Tier::Bridge);
    // An EU-resident tenant cannot be moved to a US data plane.
    let e = apply(
        &r2,
        Edit::SetDataPlane {
            org_id: "LH".into(),
            data_plane: "pool-us".into(),
        },
    )
    .unwrap_err();
    assert!(e.message.contains("residency"), "{e}");
    let r3 = apply(
        &r2,
        Edit::Suspend {
            org_id: "DL".into(),
            reason: "audit".into(),
        },
    )
    .unwrap();
    assert_eq!(r3.tenant("DL").unwrap().status_reason, Some("audit"));
    let r4 = apply(
        &r3,
        Edit::Resume {
            org_id: "DL".into(),
        },
    )
    .unwrap();
    assert_eq!(
        (
            r4.tenant("DL").unwrap().status,
            r4.tenant("DL").unwrap().status_reason
        ),
        (Status::Active, None)
    );
    let e = apply(
        &r4,
        Edit::Remove {
            org_id: "ZZ".into(),
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("tenants.ZZ", "no such tenant")
    );
    let spec = r4.document().tenants["DL"].clone();
    assert!(
        apply(
            &r4,
            Edit::Add {
                org_id: "DL".into(),
                spec: spec.clone()
            }
        )
        .is_err()
    );
    let r5 = apply(
        &r4,
        Edit::Add {
            org_id: "B6".into(),
            spec,
        },
    )
    .unwrap();
    assert_eq!(r5.tenants().count(), 5);
    let _: Document = r5.into_document();
}
