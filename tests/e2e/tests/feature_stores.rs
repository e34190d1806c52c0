//! Feature lookups end to end, through the shipped edge (`envoy/edge.yaml`) in a real
//! Envoy to a real host (`bulkhead serve` over mTLS), once with the SQLite stores and once
//! with PostgreSQL (`serve --features-postgres`, a throwaway cluster, the stores loaded by
//! `bulkhead features load --postgres`).
//!
//! Two pool tenants, EV and 9E, are served by the same pooled model (eta-global, fitted on
//! the committed slice with the aircraft and weather features). A tail number from EV's
//! fleet that 9E never flew goes in the same row, sent once with EV's token and once with
//! 9E's: EV's prediction uses its plane (it differs from the row without `tailnum`), 9E's
//! equals the prediction of the row without `tailnum` — absent, not EV's. With PostgreSQL
//! both tenants' fleets sit in one table (`bulkhead_pool.planes`, row-level security), and
//! the SQLite files are removed before the host starts, so every answer came from
//! PostgreSQL. The host's /metrics counts the lookups and their time per tenant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_e2e::{
    KillOnDrop, PlanePorts, bulkhead_cli, dev_tls, edge_eta, free_port, spawn_control,
    spawn_tls_host, start_edge, wait_until,
};
use bulkhead_testkit::postgres::Cluster;
use bulkhead_testkit::{Envoy, Response};
use proxy_wasm_harness::workspace_root;
use serde_json::{Value, json};

/// The tenant whose fleet has the plane, and the one whose fleet does not.
const A: &str = "EV";
const B: &str = "9E";
/// The data plane the one host serves (every plane of the shipped edge routes to it).
const PLANE: &str = "dp_pool_us";

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn cli(state: &Path, args: &[&str]) -> String {
    bulkhead_cli(state, args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn data(file: &str) -> PathBuf {
    workspace_root().join("tests/data").join(file)
}

/// A tail number A flew in the training months (so it is in A's fleet) that B never flew,
/// with a seat count in planes.csv.
fn a_only_tail() -> String {
    let flights = std::fs::read_to_string(data("flights.csv")).unwrap();
    let planes = std::fs::read_to_string(data("planes.csv")).unwrap();
    // (header, rows) of a CSV without quoted fields, and a column's index.
    let split = |text: &str| -> (Vec<String>, Vec<Vec<String>>) {
        let mut lines = text
            .lines()
            .map(|l| l.split(',').map(str::to_string).collect());
        (lines.next().unwrap(), lines.collect())
    };
    let at = |head: &[String], name: &str| head.iter().position(|c| c == name).unwrap();
    let (head, rows) = split(&flights);
    let (month, carrier, tail) = (
        at(&head, "month"),
        at(&head, "carrier"),
        at(&head, "tailnum"),
    );
    let mut a = BTreeSet::new();
    let mut b = BTreeSet::new();
    for f in &rows {
        let m: u8 = f[month].parse().unwrap();
        if f[carrier] == A && m <= 10 {
            a.insert(f[tail].clone());
        } else if f[carrier] == B {
            b.insert(f[tail].clone());
        }
    }
    let (head, rows) = split(&planes);
    let (pt, ps) = (at(&head, "tailnum"), at(&head, "seats"));
    let seated: BTreeSet<&String> = rows
        .iter()
        .filter(|f| f[ps].parse::<u32>().is_ok())
        .map(|f| &f[pt])
        .collect();
    a.into_iter()
        .find(|t| !b.contains(t) && seated.contains(t))
        .unwrap_or_else(|| panic!("no tail number of {A}'s fleet that {B} never flew"))
}

/// One flight EWR → ORD on a January morning, with the plane when given.
fn row(tail: Option<&str>) -> String {
    let mut r =
        json!({"origin": "EWR", "dest": "ORD", "sched_dep": "2013-01-05T06:00", "distance": 719});
    if let Some(t) = tail {
        r["tailnum"] = json!(t);
    }
    json!({ "rows": [r] }).to_string()
}

struct Stack {
    state: PathBuf,
    envoy: Envoy,
    host_port: u16,
    as_envoy: Arc<rustls::ClientConfig>,
    // Dropped after the processes: the host must not outlive its database.
    _procs: Vec<KillOnDrop>,
    _pg: Option<Cluster>,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(postgres: bool) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let mut reg: Value = serde_json::from_str(bulkhead::registry::DEV_REGISTRY).unwrap();
        reg["plans"]["standard"] = json!({"per_second": 10_000, "burst": 10_000});
        for org in [A, B] {
            assert_eq!(reg["tenants"][org]["tier"], "pool");
            assert_eq!(reg["tenants"][org]["data_plane"], "pool-us");
        }
        std::fs::write(
            state.join("registry.json"),
            serde_json::to_string_pretty(&reg).unwrap(),
        )
        .unwrap();
        cli(&state, &["token", "--org", A]); // creates the dev issuer key once

        // The SQLite stores (each carrier's lanes and fleet, the public weather), then the
        // pooled model fitted with the features they give.
        let store = state.join("hosts/pool-us");
        let flights = s(&data("flights.csv"));
        cli(
            &state,
            &[
                "features",
                "--data-dir",
                &s(&store),
                "load",
                "--flights",
                &flights,
            ],
        );
        let plugin = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
        let fit = cli(
            &state,
            &[
                "model",
                "--data-dir",
                &s(&store),
                "fit",
                "--name",
                "eta-global",
                "--tenant",
                "*",
                "--data",
                &flights,
                "--plugin",
                &s(&plugin),
                "--promote",
            ],
        );
        assert!(fit.contains("promoted to production"), "{fit}");

        let mut serve_extra: Vec<String> = Vec::new();
        let pg = postgres.then(|| {
            let pg = Cluster::start();
            let out = cli(
                &state,
                &[
                    "features",
                    "load",
                    "--flights",
                    &flights,
                    "--tenant",
                    A,
                    "--tenant",
                    B,
                    "--postgres",
                    &pg.url(),
                ],
            );
            assert!(out.contains("pool tier"), "{out}");
            // From here on only PostgreSQL can answer a lookup.
            std::fs::remove_dir_all(store.join(bulkhead::features::DIR)).unwrap();
            serve_extra = vec!["--features-postgres".into(), pg.url()];
            pg
        });

        let tls = dev_tls(&state).unwrap();
        let as_envoy = bulkhead_testkit::tls::client_config(
            &tls.join("mesh-ca.pem"),
            Some((
                &tls.join("envoy-client.pem"),
                &tls.join("envoy-client-key.pem"),
            )),
        )
        .unwrap();
        let (control, control_port) = spawn_control(&state).unwrap();
        let host_port = free_port();
        let host = (PLANE, host_port);
        let procs = vec![
            control,
            spawn_tls_host(&state, &store, &tls, host, &serve_extra).unwrap(),
        ];
        // Every plane routes to the one host.
        let (envoy, _tls_port) =
            start_edge(&state, &tls, control_port, PlanePorts::all(host_port)).unwrap();
        let stack = Stack {
            state,
            envoy,
            host_port,
            as_envoy,
            _procs: procs,
            _pg: pg,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(60), || {
            stack.eta(A, &row(None)).status == 200
        });
        assert!(
            up,
            "the edge never answered {A}; host log:\n{}",
            stack.host_log()
        );
        stack
    }

    fn host_log(&self) -> String {
        std::fs::read_to_string(self.state.join(format!("{PLANE}.log"))).unwrap_or_default()
    }

    fn eta(&self, org: &str, body: &str) -> Response {
        edge_eta(&self.state, &self.envoy, org, body.as_bytes()).unwrap()
    }

    /// The one prediction of `body` sent through the edge with `org`'s token.
    fn predict(&self, org: &str, body: &str) -> f64 {
        let r = self.eta(org, body);
        assert_eq!(r.status, 200, "{org}: {}\n{}", r.text(), self.host_log());
        let v: Value = r.json().unwrap();
        assert_eq!(v["tenant"], org, "{v}");
        assert_eq!(v["model"]["name"], "eta-global", "{v}");
        assert_eq!(v["model"]["tier"], "pool", "{v}");
        let eta = v["predictions"][0]["eta_minutes"].as_f64().unwrap();
        assert!((60.0..300.0).contains(&eta), "{v}");
        eta
    }

    /// The host's /metrics, fetched the way Envoy reaches it (mTLS, Envoy's certificate).
    fn host_metrics(&self) -> String {
        let name = rustls::pki_types::ServerName::try_from("host.bulkhead.localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&self.as_envoy), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", self.host_port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(
            b"GET /metrics HTTP/1.1\r\nhost: host.bulkhead.localhost\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        let mut raw = Vec::new();
        // A peer that closes without close_notify still gave us the whole answer.
        let _ = tls.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    }
}

/// The value of the sample `name{tenant="org"}` in a Prometheus text page (0 when absent).
fn sample(metrics: &str, name: &str, org: &str) -> f64 {
    let want = format!("{name}{{tenant=\"{org}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn each_pool_tenant_sees_only_its_own_fleet(postgres: bool) {
    let stack = Stack::start(postgres);
    let tail = a_only_tail();
    let (with, without) = (row(Some(&tail)), row(None));

    let a_with = stack.predict(A, &with);
    let a_without = stack.predict(A, &without);
    let b_with = stack.predict(B, &with);
    let b_without = stack.predict(B, &without);
    assert_ne!(
        a_with, a_without,
        "{A}'s prediction must use its plane {tail} (the model has an aircraft effect)"
    );
    assert_eq!(
        b_with, b_without,
        "{B} asked for {A}'s plane {tail}: it must be absent for {B} (not {A}'s row)"
    );
    // The same pooled model: without the plane, the two tenants' answers agree.
    assert_eq!(a_without, b_without);
    // Asked again, the same answers (no state leaks between calls).
    assert_eq!(stack.predict(B, &with), b_without);
    assert_eq!(stack.predict(A, &with), a_with);

    // Each call looked up the weather (and, with `tailnum`, the plane): counted per tenant.
    let m = stack.host_metrics();
    for org in [A, B] {
        let n = sample(&m, "bulkhead_tenant_feature_lookups_total", org);
        assert!(n >= 3.0, "{org}: {n} lookups\n{m}");
        let secs = sample(&m, "bulkhead_tenant_feature_lookup_seconds_total", org);
        assert!(secs > 0.0 && secs < 5.0, "{org}: {secs} s\n{m}");
    }
    let log = stack.host_log();
    assert_eq!(
        log.contains("feature lookups go to PostgreSQL"),
        postgres,
        "{log}"
    );
}

#[test]
fn pool_tenants_see_only_their_own_fleet_with_the_sqlite_stores() {
    each_pool_tenant_sees_only_its_own_fleet(false);
}

#[test]
fn pool_tenants_see_only_their_own_fleet_with_postgres() {
    each_pool_tenant_sees_only_its_own_fleet(true);
}
