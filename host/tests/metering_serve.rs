//! Metering in `bulkhead serve`'s HTTP layer (fake model backend, real HTTP): a 200 is
//! sent only with its usage event durable in the log; when the event cannot be written
//! the request fails with a precise 503 and nothing is delivered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serve_common;

use bulkhead::metering::event::{KeyKind, Metric, RequestKey, event_id};
use bulkhead::metering::{aggregate::Paths, log, sink::Meter};
use bulkhead::serve::Options;
use serve_common::{Fake, Server, eta_body, registry_with};
use std::sync::Arc;

fn events(dir: &std::path::Path) -> Vec<bulkhead::metering::event::Event> {
    log::read(&Paths::new(dir).log, None)
        .unwrap()
        .events
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn start(meter_dir: &std::path::Path) -> (Server, Arc<Meter>) {
    let (meter, _) = Meter::open(meter_dir, "//test/bulkhead-serve".into()).unwrap();
    let meter = Arc::new(meter);
    let s = Server::start(
        Arc::new(Fake::default()),
        &registry_with(&[]),
        Options {
            meter: Some(Arc::clone(&meter)),
            ..Options::default()
        },
    );
    (s, meter)
}

#[test]
fn a_prediction_is_answered_with_its_event_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (s, meter) = start(dir.path());
    let tok = format!("Bearer {}", s.token("DL"));
    let r = s.post(
        "/v1/eta",
        &[
            ("authorization", &tok),
            ("x-org-id", "DL"),
            ("x-request-id", "req-1"),
        ],
        &eta_body(3),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The response was sent after the append returned: the event is on disk now.
    let evs = events(dir.path());
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    let mut key = RequestKey::new(KeyKind::RequestId, "req-1");
    key.bind_body(&eta_body(3));
    assert_eq!(e.id, event_id("DL", Metric::Predictions, &key));
    assert_eq!(e.subject, "DL");
    assert_eq!(e.source, "//test/bulkhead-serve");
    assert_eq!((e.data.metric, e.data.quantity), (Metric::Predictions, 3));
    assert_eq!(
        (e.data.model_name.as_str(), e.data.model_version.as_str()),
        ("eta-DL", "7")
    );
    assert_eq!(
        (e.data.tier.as_str(), e.data.region.as_str()),
        ("bridge", "us-east-1")
    );
    assert!(e.data.latency_ms.is_some());
    assert!(e.period().is_some());
    assert!(meter.stats().fsyncs >= 1);

    // A client Idempotency-Key wins over the request id.
    let r = s.post(
        "/v1/eta",
        &[
            ("authorization", &tok),
            ("x-org-id", "DL"),
            ("x-request-id", "req-2"),
            ("idempotency-key", "order-42"),
        ],
        &eta_body(1),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut idem = RequestKey::new(KeyKind::IdempotencyKey, "order-42");
    idem.bind_body(&eta_body(1));
    assert_eq!(
        events(dir.path())[1].id,
        event_id("DL", Metric::Predictions, &idem)
    );
    // The same key with the same body is a retry: the same event id again (the log holds
    // it twice; aggregation counts it once).
    let order_42 = |body: &[u8]| {
        s.post(
            "/v1/eta",
            &[
                ("authorization", &tok),
                ("x-org-id", "DL"),
                ("idempotency-key", "order-42"),
            ],
            body,
        )
    };
    assert_eq!(order_42(&eta_body(1)).status, 200);
    assert_eq!(events(dir.path())[2].id, events(dir.path())[1].id);
    // The same key reused for a different request is a different event: billed too.
    assert_eq!(order_42(&eta_body(2)).status, 200);
    let evs = events(dir.path());
    assert_ne!(
        evs[3].id, evs[1].id,
        "a reused key must not hide a new request"
    );
    assert_eq!(evs[3].data.quantity, 2);
    // A malformed one is refused before any work.
    let r = s.post(
        "/v1/eta",
        &[
            ("authorization", &tok),
            ("x-org-id", "DL"),
            ("idempotency-key", "two words"),
        ],
        &eta_body(1),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "bad_request");
    // Refusals are not metered.
    let r = s.post("/v1/eta", &[("x-org-id", "DL")], &eta_body(1));
    assert_eq!(r.status, 401);
    assert_eq!(events(dir.path()).len(), 4);
    // The meter's own figures are on /metrics.
    let m = s.get("/metrics").text();
    assert!(m.contains("\nbulkhead_meter_events_total 4\n"), "{m}");
    assert!(m.contains("\nbulkhead_meter_failed 0\n"), "{m}");
    let fsyncs = metric(&m, "bulkhead_meter_fsyncs_total");
    assert!(
        fsyncs >= 4.0 && fsyncs == meter.stats().fsyncs as f64,
        "{fsyncs}"
    );
}

/// The value of an unlabelled series in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {page}"))
}

#[test]
fn when_the_event_cannot_be_made_durable_the_request_fails_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let (s, meter) = start(dir.path());
    let tok = format!("Bearer {}", s.token("DL"));
    meter.log().poison("fsync failed: EIO (test)");
    let r = s.post(
        "/v1/eta",
        &[
            ("authorization", &tok),
            ("x-org-id", "DL"),
            ("x-request-id", "req-503"),
        ],
        &eta_body(2),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let j = r.json().unwrap();
    assert_eq!(j["error"], "metering_unavailable");
    assert_eq!(j["request_id"], "req-503");
    assert!(
        j["reason"].as_str().unwrap().contains("not delivered"),
        "{j}"
    );
    assert!(j.get("predictions").is_none(), "no prediction leaks out");
    assert!(events(dir.path()).is_empty());
    // An SRE sees it without reading logs.
    let m = s.get("/metrics").text();
    assert_eq!(metric(&m, "bulkhead_meter_failed"), 1.0, "{m}");
    assert_eq!(metric(&m, "bulkhead_meter_events_total"), 0.0);
}

/// Only the rows the model scored are billed: a row error is not, and an answer with no
/// scored row is no event at all.
#[test]
fn row_errors_are_not_billed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _meter) = start(dir.path());
    let tok = format!("Bearer {}", s.token("DL"));
    let row = serde_json::json!({"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6});
    let mut bad = row.clone();
    bad["refuse"] = serde_json::json!(1);
    let send = |rid: &str, rows: Vec<serde_json::Value>| {
        s.post(
            "/v1/eta",
            &[
                ("authorization", &tok),
                ("x-org-id", "DL"),
                ("x-request-id", rid),
            ],
            &serde_json::to_vec(&serde_json::json!({ "rows": rows })).unwrap(),
        )
    };
    let r = send("mixed", vec![row.clone(), bad.clone(), row.clone()]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["predictions"][1],
        serde_json::json!({"error": "refused by the fake"})
    );
    let r = send("all-refused", vec![bad.clone(), bad]);
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = events(dir.path());
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].data.quantity, 2);
}
