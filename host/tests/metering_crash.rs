//! kill -9 of the real `bulkhead serve` binary in the middle of a load: no acknowledged
//! prediction goes unbilled, and retries never bill twice.
//!
//! N requests with unique `x-request-id`s from 8 concurrent clients; the host is
//! SIGKILLed once a third of them have been answered, then restarted on the same meter
//! directory. Then: every request that got a 2xx has its event in the log; every event
//! in the log belongs to one of the N requests; retrying all N with the same ids adds no
//! distinct id beyond the requests that had failed; and `bulkhead meter aggregate`
//! equals the number of predictions counted independently from the responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bulkhead::metering::aggregate::Paths;
use bulkhead::metering::event::{KeyKind, Metric, RequestKey, event_id};
use bulkhead::metering::log;
use bulkhead_testkit::client::http_request;
use common::{Control, ok, run, seeded, serve_ready};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const N: usize = 300;
const CLIENTS: usize = 8;

fn rows(i: usize) -> usize {
    1 + i % 4
}

fn body(n: usize) -> Vec<u8> {
    let row = serde_json::json!({"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null});
    serde_json::to_vec(&serde_json::json!({ "rows": vec![row; n] })).unwrap()
}

fn rid(i: usize) -> String {
    format!("crash-{i:04}")
}

fn expected_id(i: usize) -> String {
    let mut key = RequestKey::new(KeyKind::RequestId, rid(i));
    key.bind_body(&body(rows(i)));
    event_id("DL", Metric::Predictions, &key)
}

fn serve(reg: &Path, state: &str, meter: &str) -> Control {
    serve_ready(reg, state, &["--meter-dir", meter])
}

/// Request `i` → `Some(predictions in the 2xx body)`, or `None` (error status or no
/// answer at all).
type Outcomes = Arc<Mutex<BTreeMap<usize, Option<u64>>>>;

/// Sends requests `0..N` from `CLIENTS` threads; `answered` counts answers.
fn load(port: u16, auth: &str, answered: &Arc<AtomicUsize>) -> Outcomes {
    let next = Arc::new(AtomicUsize::new(0));
    let out: Outcomes = Arc::default();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, out, answered) = (Arc::clone(&next), Arc::clone(&out), Arc::clone(answered));
            let auth = auth.to_string();
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= N {
                        break;
                    }
                    let id = rid(i);
                    let r = http_request(
                        port,
                        "POST",
                        "/v1/eta",
                        &[
                            ("authorization", &auth),
                            ("x-org-id", "DL"),
                            ("x-request-id", &id),
                            ("content-type", "application/json"),
                        ],
                        &body(rows(i)),
                    );
                    let got = match r {
                        Ok(r) if (200..300).contains(&r.status) => {
                            let j = r.json().unwrap();
                            assert_eq!(j["request_id"], id.as_str());
                            Some(j["predictions"].as_array().unwrap().len() as u64)
                        }
                        _ => None,
                    };
                    out.lock().unwrap().insert(i, got);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    out
}

fn log_events(meter: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, e) in log::read(&Paths::new(meter).log, None).unwrap().events {
        assert_eq!(e.subject, "DL");
        m.entry(e.id).or_default().push(e.data.quantity);
    }
    m
}

fn aggregate(reg: &Path, state: &str, meter: &str, period: &str) -> (u64, String) {
    let out = ok(
        reg,
        &[
            "--state-dir",
            state,
            "meter",
            "aggregate",
            "--period",
            period,
            "--meter-dir",
            meter,
        ],
    );
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 1, "{out}");
    assert_eq!(recs[0]["tenant"], "DL");
    assert_eq!(recs[0]["period"], period);
    (recs[0]["predictions"].as_u64().unwrap(), out)
}

#[test]
fn kill_9_mid_load_loses_no_billed_prediction_and_retries_add_nothing() {
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let meter_path = dir.path().join("meter");
    let meter = meter_path.to_str().unwrap();
    let tok = ok(&reg, &["--state-dir", state, "token", "--org", "DL"]);
    let auth = format!("Bearer {}", tok.trim());

    // 1. Load, and kill -9 once a third of the requests have been answered.
    let srv = serve(&reg, state, meter);
    let port = srv.addr.port();
    let answered = Arc::new(AtomicUsize::new(0));
    let killer = {
        let answered = Arc::clone(&answered);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while answered.load(Ordering::SeqCst) < N / 3 && t0.elapsed() < Duration::from_secs(120)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(srv); // Child::kill: SIGKILL, then reaped.
        })
    };
    let first = load(port, &auth, &answered);
    killer.join().unwrap();
    let first = first.lock().unwrap().clone();
    assert_eq!(first.len(), N);
    let acked: BTreeSet<usize> = first
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(i, _)| *i)
        .collect();
    eprintln!("before the kill: {} of {N} requests got a 2xx", acked.len());
    assert!(acked.len() >= N / 3, "{} acknowledged", acked.len());
    assert!(acked.len() < N, "the kill did not land mid-load");

    // 2. Restart on the same meter directory (recovers any torn tail).
    let srv = serve(&reg, state, meter);
    let port = srv.addr.port();
    let before = log_events(&meter_path);
    let known: BTreeMap<String, usize> = (0..N).map(|i| (expected_id(i), i)).collect();
    for i in &acked {
        let q = before
            .get(&expected_id(*i))
            .unwrap_or_else(|| panic!("request {} got a 2xx but has no event", rid(*i)));
        assert_eq!(q, &vec![rows(*i) as u64], "{}", rid(*i));
    }
    for id in before.keys() {
        assert!(known.contains_key(id), "an event for no request: {id}");
    }
    eprintln!(
        "after restart: {} distinct events ({} acknowledged, {} durable but unanswered)",
        before.len(),
        acked.len(),
        before.len() - acked.len()
    );
    let period = log::read(&Paths::new(&meter_path).log, None)
        .unwrap()
        .events[0]
        .1
        .period()
        .unwrap();
    let (agg_before, _) = aggregate(&reg, state, meter, &period);
    let logged_rows: u64 = before.keys().map(|id| rows(known[id]) as u64).sum();
    assert_eq!(agg_before, logged_rows);

    // 3. Retry every request with the same id: all answered now.
    let answered = Arc::new(AtomicUsize::new(0));
    let second = load(port, &auth, &answered);
    let second = second.lock().unwrap().clone();
    let failed: Vec<usize> = second
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(i, _)| *i)
        .collect();
    assert!(failed.is_empty(), "retries failed: {failed:?}");
    let after = log_events(&meter_path);
    assert_eq!(after.len(), N, "one distinct event per request, no more");
    for id in after.keys().filter(|id| !before.contains_key(*id)) {
        assert!(
            !acked.contains(&known[id]),
            "retrying {} (already acknowledged) made a new id",
            rid(known[id])
        );
    }
    // Each retry of an already-logged request appended the same id again.
    assert!(after.values().any(|q| q.len() > 1));

    // 4. The aggregate equals the predictions counted from the responses, and stays so.
    let from_responses: u64 = second.values().map(|v| v.unwrap()).sum();
    assert_eq!(from_responses, (0..N).map(|i| rows(i) as u64).sum::<u64>());
    let (agg, out) = aggregate(&reg, state, meter, &period);
    assert_eq!(agg, from_responses);
    let (again, out_again) = aggregate(&reg, state, meter, &period);
    assert_eq!(
        (again, &out_again),
        (agg, &out),
        "re-running changes nothing"
    );
    ok(
        &reg,
        &[
            "--state-dir",
            state,
            "meter",
            "reconcile",
            "--meter-dir",
            meter,
        ],
    );

    // 5. A tampered aggregate: reconcile fails, naming the tenant and the amounts.
    let state_file = Paths::new(&meter_path).state();
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let p = &mut s["usage"][period.as_str()]["DL"]["predictions"];
    *p = (p.as_u64().unwrap() - 3).into();
    std::fs::write(&state_file, serde_json::to_vec(&s).unwrap()).unwrap();
    let r = run(
        &reg,
        &[
            "--state-dir",
            state,
            "meter",
            "reconcile",
            "--meter-dir",
            meter,
        ],
    );
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("DL predictions")
            && r.stderr.contains(&format!("stored {}", agg - 3))
            && r.stderr.contains(&format!("recomputed from the log {agg}")),
        "{}",
        r.stderr
    );
    drop(srv);
}
