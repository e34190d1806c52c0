//! The batch plane through the real `bulkhead serve` on the demo models: NDJSON and CSV
//! jobs scored to the same predictions as `POST /v1/eta`, tenant-scoped job ids, a bad
//! line refused with its number, a kill -9 mid-job resumed after restart with each
//! chunk billed once, and the workers in SCHED_IDLE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bulkhead::batch::worker::chunk_event_id;
use bulkhead::metering::aggregate::Paths;
use bulkhead::metering::log;
use bulkhead_testkit::client::{Response, http_request};
use common::{Control, ok, seeded, serve_ready};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const ORIGINS: [(&str, &str, u32); 4] = [
    ("EWR", "ORD", 719),
    ("JFK", "LAX", 2475),
    ("LGA", "ATL", 762),
    ("JFK", "MIA", 1089),
];

fn row(i: usize) -> Value {
    let (o, d, dist) = ORIGINS[i % ORIGINS.len()];
    let delay = if i.is_multiple_of(3) {
        Value::Null
    } else {
        json!((i % 40) as i64 - 10)
    };
    json!({"origin": o, "dest": d, "month": 1 + i % 12, "sched_dep_hour": 5 + i % 18,
           "distance": dist, "dep_delay": delay})
}

fn ndjson(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        serde_json::to_writer(&mut out, &row(i)).unwrap();
        out.push(b'\n');
    }
    out
}

fn csv(n: usize) -> Vec<u8> {
    let mut out = String::from("origin,dest,month,sched_dep_hour,distance,dep_delay\n");
    for i in 0..n {
        let r = row(i);
        let cell = |k: &str| match &r[k] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        out.push_str(
            &[
                "origin",
                "dest",
                "month",
                "sched_dep_hour",
                "distance",
                "dep_delay",
            ]
            .map(cell)
            .join(","),
        );
        out.push('\n');
    }
    out.into_bytes()
}

fn serve(reg: &Path, state: &str, extra: &[&str]) -> Control {
    serve_ready(reg, state, extra)
}

struct Client {
    port: u16,
    auth: String,
    org: String,
}

impl Client {
    fn new(reg: &Path, state: &str, port: u16, org: &str) -> Client {
        let tok = ok(reg, &["--state-dir", state, "token", "--org", org]);
        Client {
            port,
            auth: format!("Bearer {}", tok.trim()),
            org: org.to_string(),
        }
    }

    fn req(&self, method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> Response {
        let mut h = vec![
            ("authorization", self.auth.as_str()),
            ("x-org-id", self.org.as_str()),
        ];
        if let Some(ct) = ct {
            h.push(("content-type", ct));
        }
        http_request(self.port, method, path, &h, body).unwrap()
    }

    fn submit(&self, ct: &str, body: &[u8]) -> String {
        let r = self.req("POST", "/v1/batch/eta", Some(ct), body);
        assert_eq!(r.status, 202, "{}", r.text());
        let j = r.json().unwrap();
        let id = j["job_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(j["status"], "queued");
        assert_eq!(
            r.header("location"),
            Some(format!("/v1/batch/{id}").as_str())
        );
        id
    }

    fn status(&self, id: &str) -> Value {
        let r = self.req("GET", &format!("/v1/batch/{id}"), None, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap()
    }

    fn wait_done(&self, id: &str, within: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let s = self.status(id);
            match s["status"].as_str().unwrap() {
                "done" => return s,
                "failed" => panic!("job failed: {s}"),
                _ => {}
            }
            assert!(t0.elapsed() < within, "not done in {within:?}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn results(&self, id: &str) -> Vec<Value> {
        let r = self.req("GET", &format!("/v1/batch/{id}/results"), None, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The batch meter log's events: id → quantities (one per record).
fn batch_events(meter: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let Ok(scan) = log::read(&Paths::new(meter).log, None) else {
        return m;
    };
    for (_, e) in scan.events {
        m.entry(e.id).or_default().push(e.data.quantity);
    }
    m
}

/// The scheduling policy (field 41 of /proc/PID/task/TID/stat) of each thread whose
/// name starts with `prefix`.
fn policies(pid: u32, prefix: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the ")" that closes the name: field 3 is the first.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let policy: u32 = rest.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        out.push((comm, policy));
    }
    out
}

const SCHED_IDLE: u32 = 5;

/// The tests of this file run one at a time: each host's batch workers are SCHED_IDLE, so
/// on a 2-core machine another test's host (normal class) would starve them (and their
/// uploads) for as long as it is busy.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn batch_jobs_score_like_the_interactive_api_and_stay_with_their_tenant() {
    let _one_at_a_time = one_at_a_time();
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let meter = dir.path().join("meter");
    let batch_meter = dir.path().join("batch-meter");
    let srv = serve(
        &reg,
        state,
        &[
            "--batch-chunk-rows",
            "7",
            "--meter-dir",
            meter.to_str().unwrap(),
            "--batch-meter-dir",
            batch_meter.to_str().unwrap(),
        ],
    );
    let dl = Client::new(&reg, state, srv.addr.port(), "DL");
    let aa = Client::new(&reg, state, srv.addr.port(), "AA");
    const N: usize = 25;

    // The interactive answer for the same rows.
    let rows: Vec<Value> = (0..N).map(row).collect();
    let r = dl.req(
        "POST",
        "/v1/eta",
        Some("application/json"),
        &serde_json::to_vec(&json!({ "rows": rows })).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let eta = r.json().unwrap();
    let interactive = eta["predictions"].as_array().unwrap();

    for (ct, body) in [("application/x-ndjson", ndjson(N)), ("text/csv", csv(N))] {
        let id = dl.submit(ct, &body);
        let s = dl.wait_done(&id, Duration::from_secs(60));
        assert_eq!(s["rows"], N as u64, "{s}");
        assert_eq!(s["rows_done"], N as u64, "{s}");
        assert_eq!(s["rows_failed"], 0, "{s}");
        assert_eq!(s["model"]["name"], eta["model"]["name"], "{s}");
        assert_eq!(s["model"]["version"], eta["model"]["version"], "{s}");
        let res = dl.results(&id);
        assert_eq!(res.len(), N, "{ct}");
        for (i, (b, p)) in res.iter().zip(interactive).enumerate() {
            assert_eq!(b["row"], i as u64);
            for k in ["eta_minutes", "lower", "upper"] {
                assert_eq!(b[k], p[k], "{ct} row {i} {k}");
            }
        }
        // Each chunk of 7 rows is one usage event in the batch plane's own log.
        let evs = batch_events(&batch_meter);
        for c in 0..N.div_ceil(7) as u64 {
            let q = &evs[&chunk_event_id("DL", &id, c)];
            assert_eq!(q, &vec![if c == 3 { 4 } else { 7 }], "chunk {c}");
        }

        // Another tenant's view of this job: exactly an unknown id's 404.
        let theirs = aa.req("GET", &format!("/v1/batch/{id}"), None, b"");
        let unknown = aa.req("GET", &format!("/v1/batch/{}", "0".repeat(32)), None, b"");
        assert_eq!((theirs.status, unknown.status), (404, 404));
        let strip = |r: &Response| {
            let mut j = r.json().unwrap();
            j.as_object_mut().unwrap().remove("request_id");
            j
        };
        assert_eq!(strip(&theirs), strip(&unknown));
        let theirs = aa.req("GET", &format!("/v1/batch/{id}/results"), None, b"");
        assert_eq!(theirs.status, 404);
    }
    // The interactive meter log has the one /v1/eta request only.
    let interactive_events = batch_events(&meter);
    assert_eq!(interactive_events.len(), 1);

    // A bad line fails the upload, naming the line; no job is left behind.
    let mut body = ndjson(2);
    body.extend_from_slice(b"{\"origin\": true}\n");
    body.extend_from_slice(&ndjson(2));
    let r = dl.req("POST", "/v1/batch/eta", Some("application/x-ndjson"), &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let reason = r.json().unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("line 3.origin"), "{reason}");
    // The same with megabytes still to come after the bad line: the rest is read and
    // dropped, so the client (or Envoy in front) gets the 400, not a reset connection.
    let mut body = ndjson(2);
    body.extend_from_slice(b"{\"origin\": true}\n");
    body.extend_from_slice(&ndjson(30_000));
    let r = dl.req("POST", "/v1/batch/eta", Some("application/x-ndjson"), &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("line 3.origin"), "{}", r.text());
    let r = dl.req("POST", "/v1/batch/eta", Some("text/csv"), b"a,b\n1,2\n3\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("line 3"), "{}", r.text());
    let r = dl.req("POST", "/v1/batch/eta", Some("image/png"), b"x");
    assert_eq!(r.status, 415, "{}", r.text());
    let jobs = std::fs::read_dir(dir.path().join("data-plane/batch/DL"))
        .unwrap()
        .count();
    assert_eq!(jobs, 2, "only the two accepted jobs are on disk");
    // No identity, no job.
    let r = http_request(srv.addr.port(), "POST", "/v1/batch/eta", &[], &ndjson(1)).unwrap();
    assert_eq!(r.status, 401);

    // The batch threads (workers and their runtime's blocking threads) run in
    // SCHED_IDLE; every other thread (the HTTP runtime's among them) does not.
    let (batch, others): (Vec<_>, Vec<_>) = policies(srv.pid(), "")
        .into_iter()
        .partition(|(name, _)| name.starts_with("batch-"));
    assert!(batch.iter().any(|(n, _)| n == "batch-w0"), "{batch:?}");
    assert!(
        batch.iter().any(|(n, _)| n.starts_with("batch-w0-blk")),
        "{batch:?}"
    );
    assert!(batch.iter().all(|(_, p)| *p == SCHED_IDLE), "{batch:?}");
    assert!(others.len() > 2, "{others:?}");
    assert!(others.iter().all(|(_, p)| *p == 0), "{others:?}");
    assert!(
        srv.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("batch worker started") && l.contains("SCHED_IDLE")),
    );
}

/// `serve` args for chunks of 100 rows billed to `<dir>/batch-meter`, and that path.
fn chunked(dir: &Path) -> ([String; 4], std::path::PathBuf) {
    let meter = dir.join("batch-meter");
    let args = [
        "--batch-chunk-rows".to_string(),
        "100".to_string(),
        "--batch-meter-dir".to_string(),
        meter.to_str().unwrap().to_string(),
    ];
    (args, meter)
}

/// Rows of the long jobs: 400 chunks, long enough to act on one mid-way.
const N: usize = 40_000;

#[test]
fn a_job_killed_mid_way_resumes_after_restart_and_bills_each_chunk_once() {
    let _one_at_a_time = one_at_a_time();
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let (args, batch_meter) = chunked(dir.path());
    let args = args.each_ref().map(String::as_str);
    let srv = serve(&reg, state, &args);
    let dl = Client::new(&reg, state, srv.addr.port(), "DL");
    let id = dl.submit("application/x-ndjson", &ndjson(N));
    // Kill -9 once some chunks are scored.
    let t0 = Instant::now();
    let at_kill = loop {
        let s = dl.status(&id);
        let done = s["rows_done"].as_u64().unwrap();
        if done >= 1000 {
            break done;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{s}");
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(srv);
    assert!(at_kill < N as u64, "the job finished before the kill");

    let srv = serve(&reg, state, &args);
    let dl = Client::new(&reg, state, srv.addr.port(), "DL");
    let s = dl.wait_done(&id, Duration::from_secs(180));
    assert_eq!(s["rows_done"], N as u64);
    let res = dl.results(&id);
    assert_eq!(res.len(), N);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(r["row"], i as u64);
        assert!(r["eta_minutes"].as_f64().is_some(), "{r}");
    }
    // Every chunk billed under its one id; its records (a chunk scored again after the
    // kill may repeat its record) all carry the same quantity, and the distinct ids sum
    // to the rows.
    let evs = batch_events(&batch_meter);
    let chunks = N.div_ceil(100) as u64;
    assert_eq!(evs.len() as u64, chunks);
    let mut total = 0;
    for c in 0..chunks {
        let q = &evs[&chunk_event_id("DL", &id, c)];
        assert!(q.iter().all(|&x| x == 100), "chunk {c}: {q:?}");
        assert!(q.len() <= 2, "chunk {c} scored {} times", q.len());
        total += q[0];
    }
    assert_eq!(total, N as u64);
    assert!(
        srv.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("resuming unfinished jobs")),
    );
    // Aggregation bills the rows once.
    let period = &bulkhead::metering::event::rfc3339(std::time::SystemTime::now())[..7];
    let out = ok(
        &reg,
        &[
            "--state-dir",
            state,
            "meter",
            "aggregate",
            "--period",
            period,
            "--meter-dir",
            batch_meter.to_str().unwrap(),
        ],
    );
    let rec: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(rec["tenant"], "DL");
    assert_eq!(rec["predictions"], N as u64);
}

#[test]
fn suspending_a_tenant_stops_its_running_job_and_bills_only_what_was_scored() {
    let _one_at_a_time = one_at_a_time();
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let (args, batch_meter) = chunked(dir.path());
    let srv = serve(&reg, state, &args.each_ref().map(String::as_str));
    let dl = Client::new(&reg, state, srv.addr.port(), "DL");
    let id = dl.submit("application/x-ndjson", &ndjson(N));
    let t0 = Instant::now();
    while dl.status(&id)["rows_done"].as_u64().unwrap() < 500 {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(
        &reg,
        &["tenant", "suspend", "DL", "--reason", "invoice overdue"],
    );
    // The job stops at its next chunk once the host sees the registry change.
    let t0 = Instant::now();
    let s = loop {
        let r = dl.req("GET", &format!("/v1/batch/{id}"), None, b"");
        if r.status == 403 {
            // The API refuses the suspended tenant now; read the job's file instead.
            let path = dir
                .path()
                .join(format!("data-plane/batch/DL/{id}/status.json"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let s: Value = serde_json::from_str(&text).unwrap();
                if s["status"] == "failed" {
                    break s;
                }
            }
        } else if r.json().unwrap()["status"] == "failed" {
            break r.json().unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let error = s["error"].as_str().unwrap();
    assert!(error.contains("tenant_suspended: invoice overdue"), "{s}");
    let done = s["rows_done"].as_u64().unwrap();
    assert!((500..N as u64).contains(&done), "{s}");
    // Nothing more is scored or billed after it stopped; what was scored is billed once.
    std::thread::sleep(Duration::from_millis(500));
    let evs = batch_events(&batch_meter);
    let billed: u64 = evs.values().map(|q| q[0]).sum();
    assert_eq!(billed, done, "billed rows = rows scored before the stop");
    assert_eq!(batch_events(&batch_meter), evs);
}
