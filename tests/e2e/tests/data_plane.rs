//! The data plane end to end: the shipped edge (`envoy/edge.yaml`, rendered by `bulkhead
//! envoy-config` as `make run` renders it) in a real Envoy — jwt-auth → tenant-router →
//! rate-limit → router — in front of three real hosts (`bulkhead serve`, one per
//! data-plane cluster, each with its own model store), the registry served by `bulkhead
//! control`. Models are fitted on the committed slice `tests/data/` with `bulkhead model
//! fit`, so the whole stack starts in seconds.
//!
//! - A tenant's token gets a prediction from that tenant's model, and the answer names
//!   the model and its version; the same body with another tenant's token gets the other
//!   model; a promotion in the model store shows up in the answers, with no restart.
//! - A silo tenant's requests land on the silo host only; an EU-resident tenant is served
//!   by the EU host through the EU edge and refused at the US one.
//! - Straight to a host, around Envoy: no token, a token from another key, a forged or
//!   missing `x-org-id`, a tenant of another data plane — all refused.
//! - Envoy reaches the hosts over mTLS as in `make run` (`scripts/dev-tls.sh` certificates,
//!   the hosts with `--tls-cert/--tls-key/--client-ca`, the edge's `UpstreamTlsContext`): the
//!   hosts serve nothing else, so every answer through the edge went over it. Straight to a
//!   host, plain HTTP and TLS without Envoy's client certificate are refused; the test talks
//!   to the hosts itself with Envoy's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_e2e::{
    KillOnDrop, PlanePorts, bulkhead_cli, dev_tls, free_port, spawn_control, spawn_tls_host,
    start_edge,
};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{Envoy, Response, forge, http_get, http_request};
use proxy_wasm_harness::workspace_root;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};

/// One flight: Newark → Chicago O'Hare in January, scheduled 06:00, 719 miles.
const ROW: &str =
    r#"{"rows":[{"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719}]}"#;

/// Models of one host's store: (name, tenant whose flights train it; `*` = every carrier).
type Models = &'static [(&'static str, &'static str)];

/// The hosts: (Envoy cluster = `--plane-name`, the registry's data plane, its models).
const HOSTS: [(&str, &str, Models); 3] = [
    (
        "dp_pool_us",
        "pool-us",
        &[("eta-global", "*"), ("eta-DL", "DL"), ("eta-AA", "AA")],
    ),
    ("dp_silo_ua", "silo-ua", &[("eta-UA", "UA")]),
    ("dp_pool_eu", "pool-eu", &[("eta-B6", "B6")]),
];

/// `bulkhead --state-dir STATE ARGS…`, which must succeed; its stdout.
fn cli(state: &Path, args: &[&str]) -> String {
    bulkhead_cli(state, args).unwrap_or_else(|e| panic!("{e:#}"))
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TLS client config trusting `ca`, presenting `(cert, key)` if given.
fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    bulkhead_testkit::tls::client_config(ca, identity).unwrap()
}

/// One HTTP/1.1 exchange over TLS with `127.0.0.1:port` (SNI and certificate name
/// `host.bulkhead.localhost`, as Envoy connects); `Err` when the TLS session fails.
fn https_request(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let name = ServerName::try_from("host.bulkhead.localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: host.bulkhead.localhost\r\nconnection: close\r\n\
         content-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw)?;
    // `connection: close`: the whole answer up to the close.
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "chunked answers are not decoded here: {head}"
    );
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

struct Stack {
    state: PathBuf,
    /// Envoy's client certificate, trusting the mesh CA: how Envoy talks to the hosts.
    as_envoy: Arc<rustls::ClientConfig>,
    envoy: Envoy,
    tls_port: u16,
    /// cluster → its host's port
    hosts: BTreeMap<&'static str, u16>,
    _procs: Vec<KillOnDrop>,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let s = |p: &Path| p.to_str().unwrap().to_string();

        // The dev registry with a plan generous enough for a test's bursts.
        let mut reg: Value = serde_json::from_str(bulkhead::registry::DEV_REGISTRY).unwrap();
        reg["plans"]["standard"] = json!({"per_second": 10_000, "burst": 10_000});
        let registry = state.join("registry.json");
        std::fs::write(&registry, serde_json::to_string_pretty(&reg).unwrap()).unwrap();
        // Creates the dev issuer key once, before several processes read it.
        cli(&state, &["token", "--org", "EV"]);

        let plugin = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
        let flights = workspace_root().join("tests/data/flights.csv");
        for (_, plane, models) in HOSTS {
            let data_dir = state.join("hosts").join(plane);
            for (name, tenant) in models {
                cli(
                    &state,
                    &[
                        "model",
                        "--data-dir",
                        &s(&data_dir),
                        "fit",
                        "--name",
                        name,
                        "--tenant",
                        tenant,
                        "--data",
                        &s(&flights),
                        "--plugin",
                        &s(&plugin),
                        "--promote",
                    ],
                );
            }
        }

        // The certificates, as scripts/run.sh makes them: the edge's, the hosts', Envoy's.
        let tls = dev_tls(&state).unwrap();
        let as_envoy = tls_client(
            &tls.join("mesh-ca.pem"),
            Some((
                &tls.join("envoy-client.pem"),
                &tls.join("envoy-client-key.pem"),
            )),
        );

        let (control, control_port) = spawn_control(&state).unwrap();
        let mut procs = vec![control];
        let mut hosts = BTreeMap::new();
        for (cluster, plane, _) in HOSTS {
            let port = free_port();
            let data_dir = state.join("hosts").join(plane);
            procs.push(spawn_tls_host(&state, &data_dir, &tls, (cluster, port), &[]).unwrap());
            hosts.insert(cluster, port);
        }
        for (cluster, port) in &hosts {
            let log = state.join(format!("{cluster}.log"));
            wait_until(
                &format!("{cluster} /readyz"),
                Duration::from_secs(60),
                || {
                    https_request(&as_envoy, *port, "GET", "/readyz", &[], b"")
                        .is_ok_and(|r| r.status == 200)
                },
            );
            assert!(log.exists());
        }

        // The shipped edge, rendered the way scripts/run.sh renders it.
        let planes = PlanePorts {
            pool_us: hosts["dp_pool_us"],
            silo_ua: hosts["dp_silo_ua"],
            pool_eu: hosts["dp_pool_eu"],
        };
        let (envoy, tls_port) = start_edge(&state, &tls, control_port, planes).unwrap();

        let stack = Stack {
            state,
            as_envoy,
            envoy,
            tls_port,
            hosts,
            _procs: procs,
            _dir: dir,
        };
        // Until tenant-router has fetched the registry it answers 503 (a failing hop to the
        // hosts, e.g. mTLS, shows as 503 too: the last answer and Envoy's log then say which).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = stack.eta("EV", &[]);
            if r.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the first registry fetch: last {} {}\nEnvoy:\n{}",
                r.status,
                r.text(),
                bulkhead_testkit::envoy::tail(&stack.envoy.logs(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stack
    }

    fn token(&self, org: &str) -> String {
        cli(&self.state, &["token", "--org", org])
            .trim()
            .to_string()
    }

    /// `POST /v1/eta` with ROW on port `port`, with `headers`.
    fn post(port: u16, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        http_request(port, "POST", "/v1/eta", &h, ROW.as_bytes()).unwrap()
    }

    /// ROW through the US edge (plaintext listener) with `org`'s token.
    fn eta(&self, org: &str, extra: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {}", self.token(org));
        let mut h = vec![("authorization", auth.as_str())];
        h.extend_from_slice(extra);
        Stack::post(self.envoy.listener_port("edge"), &h)
    }

    /// ROW straight to a host, around Envoy (with Envoy's client certificate).
    fn direct(&self, cluster: &str, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        https_request(
            &self.as_envoy,
            self.hosts[cluster],
            "POST",
            "/v1/eta",
            &h,
            ROW.as_bytes(),
        )
        .unwrap()
    }

    /// `GET path` straight to a host (with Envoy's client certificate).
    fn host_get(&self, cluster: &str, path: &str) -> Response {
        https_request(&self.as_envoy, self.hosts[cluster], "GET", path, &[], b"").unwrap()
    }

    /// `bulkhead_requests_total{tenant,status}` on one host (0 when absent).
    fn host_requests(&self, cluster: &str, tenant: &str, status: u16) -> u64 {
        let text = self.host_get(cluster, "/metrics").text();
        let want = format!("bulkhead_requests_total{{tenant=\"{tenant}\",status=\"{status}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn host_log(&self, cluster: &str) -> String {
        std::fs::read_to_string(self.state.join(format!("{cluster}.log"))).unwrap_or_default()
    }
}

fn json_of(r: &Response) -> Value {
    r.json()
        .unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.text()))
}

/// A 200 answer's (tenant, model name, version, tier, the one prediction), checked for shape.
fn prediction(r: &Response) -> (String, String, String, String, f64) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json_of(r);
    let p = &v["predictions"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{v}");
    let (eta, lo, hi) = (
        p[0]["eta_minutes"].as_f64().unwrap(),
        p[0]["lower"].as_f64().unwrap(),
        p[0]["upper"].as_f64().unwrap(),
    );
    assert!(eta.is_finite() && lo <= eta && eta <= hi, "{v}");
    // EWR → ORD is scheduled at about 2 h 20 min gate to gate.
    assert!((60.0..300.0).contains(&eta), "{v}");
    // The request id is Envoy's (a UUID), the same in the body and the header.
    let rid = v["request_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "{v}");
    assert_eq!(r.header("x-request-id"), Some(rid));
    let s = |k: &Value| k.as_str().unwrap().to_string();
    (
        s(&v["tenant"]),
        s(&v["model"]["name"]),
        s(&v["model"]["version"]),
        s(&v["model"]["tier"]),
        eta,
    )
}

fn error_of(r: &Response) -> (u16, String) {
    (r.status, json_of(r)["error"].as_str().unwrap().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn each_tenant_is_served_its_own_model_through_the_edge() {
    let stack = Stack::start();

    // Bridge tenants on the pool host: each its own model, named with its version.
    let (t, name, version, tier, dl) = prediction(&stack.eta("DL", &[]));
    assert_eq!(
        (t.as_str(), name.as_str(), version.as_str(), tier.as_str()),
        ("DL", "eta-DL", "1", "bridge")
    );
    let (t, name, _, tier, aa) = prediction(&stack.eta("AA", &[]));
    assert_eq!(
        (t.as_str(), name.as_str(), tier.as_str()),
        ("AA", "eta-AA", "bridge")
    );
    assert_ne!(dl, aa, "two tenants' models, two answers");
    // A pool tenant gets the pooled model; a client's x-org-id / routing headers change nothing.
    let spoof = [("x-org-id", "DL"), ("x-data-plane", "dp_silo_ua")];
    let (t, name, _, tier, _) = prediction(&stack.eta("EV", &spoof));
    assert_eq!(
        (t.as_str(), name.as_str(), tier.as_str()),
        ("EV", "eta-global", "pool")
    );

    // The silo tenant lands on the silo host, and only there.
    let n = 5;
    for _ in 0..n {
        let (t, name, _, tier, _) = prediction(&stack.eta("UA", &[]));
        assert_eq!(
            (t.as_str(), name.as_str(), tier.as_str()),
            ("UA", "eta-UA", "silo")
        );
    }
    assert_eq!(stack.host_requests("dp_silo_ua", "UA", 200), n);
    for other in ["dp_pool_us", "dp_pool_eu"] {
        let m = stack.host_get(other, "/metrics").text();
        assert!(
            !m.lines().any(|l| l.contains("tenant=\"UA\"")),
            "UA reached {other}:\n{m}"
        );
    }
    assert_eq!(stack.host_requests("dp_silo_ua", "DL", 200), 0);
    assert!(stack.host_requests("dp_pool_us", "DL", 200) >= 1);
    // Envoy reached each host over TLS (the hosts serve nothing else).
    for cluster in ["dp_pool_us", "dp_silo_ua"] {
        let handshakes = stack
            .envoy
            .stat(&format!("cluster.{cluster}.ssl.handshake"));
        assert!(
            handshakes.is_some_and(|n| n >= 1),
            "{cluster}: {handshakes:?}"
        );
    }

    // The EU-resident tenant: refused at the US edge, served by the EU host at the EU edge.
    let r = stack.eta("B6", &[]);
    assert_eq!(error_of(&r), (403, "wrong_region".into()));
    let ca = stack.state.join("tls/ca.pem");
    let url = format!("https://eu.bulkhead.localhost:{}/v1/eta", stack.tls_port);
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("eu.bulkhead.localhost:{}:127.0.0.1", stack.tls_port),
            "-H",
            &format!("authorization: Bearer {}", stack.token("B6")),
            "-H",
            "content-type: application/json",
            "-d",
            ROW,
            &url,
        ])
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        (&body["tenant"], &body["model"]["name"]),
        (&json!("B6"), &json!("eta-B6")),
        "{body}"
    );
    assert_eq!(stack.host_requests("dp_pool_eu", "B6", 200), 1);

    // A new version of DL's model, then its promotion: the answers follow, no restart.
    let pool_dir = stack.state.join("hosts/pool-us");
    let plugin = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
    let flights = workspace_root().join("tests/data/flights.csv");
    cli(
        &stack.state,
        &[
            "model",
            "--data-dir",
            pool_dir.to_str().unwrap(),
            "fit",
            "--name",
            "eta-DL",
            "--tenant",
            "DL",
            "--data",
            flights.to_str().unwrap(),
            "--plugin",
            plugin.to_str().unwrap(),
        ],
    );
    assert_eq!(prediction(&stack.eta("DL", &[])).2, "1", "not promoted yet");
    cli(
        &stack.state,
        &[
            "model",
            "--data-dir",
            pool_dir.to_str().unwrap(),
            "promote",
            "eta-DL",
            "2",
        ],
    );
    wait_until("eta-DL@2 in the answers", Duration::from_secs(10), || {
        prediction(&stack.eta("DL", &[])).2 == "2"
    });

    // Latency through the whole edge (new connection per request), warm model.
    let auth = format!("Bearer {}", stack.token("DL"));
    let edge = stack.envoy.listener_port("edge");
    let mut took: Vec<Duration> = (0..200)
        .map(|_| {
            let t0 = Instant::now();
            let r = Stack::post(edge, &[("authorization", auth.as_str())]);
            assert_eq!(r.status, 200, "{}", r.text());
            t0.elapsed()
        })
        .collect();
    took.sort();
    let direct_headers = [("authorization", auth.as_str()), ("x-org-id", "DL")];
    let mut direct: Vec<Duration> = (0..200)
        .map(|_| {
            let t0 = Instant::now();
            assert_eq!(stack.direct("dp_pool_us", &direct_headers).status, 200);
            t0.elapsed()
        })
        .collect();
    direct.sort();
    eprintln!(
        "POST /v1/eta (1 row), 200 requests: through Envoy p50 {:?} p99 {:?}; straight to the host p50 {:?} p99 {:?}",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&direct, 0.5),
        percentile(&direct, 0.99)
    );
    // Generous: a debug host on a shared CI machine.
    assert!(percentile(&took, 0.5) < Duration::from_millis(100));
}

#[test]
fn a_host_refuses_what_did_not_come_through_the_edge() {
    let stack = Stack::start();
    let dl = format!("Bearer {}", stack.token("DL"));
    let ev = format!("Bearer {}", stack.token("EV"));
    let ua = format!("Bearer {}", stack.token("UA"));

    // The hosts speak TLS only and let in only Envoy's client certificate: plain HTTP, TLS
    // without a client certificate and TLS with the edge's own certificate (the dev CA that
    // curl users trust) are refused at the handshake, before any HTTP.
    let port = stack.hosts["dp_pool_us"];
    let plain = http_get(port, "/healthz", &[]);
    assert!(
        plain.is_err(),
        "plain HTTP was answered: {:?}",
        plain.map(|r| (r.status, r.text()))
    );
    let tls = stack.state.join("tls");
    let mesh_ca = tls.join("mesh-ca.pem");
    let (server_cert, server_key) = (tls.join("server.pem"), tls.join("server-key.pem"));
    for (what, config) in [
        ("no client certificate", tls_client(&mesh_ca, None)),
        (
            "the edge's server certificate",
            tls_client(&mesh_ca, Some((&server_cert, &server_key))),
        ),
    ] {
        let r = https_request(&config, port, "GET", "/healthz", &[], b"");
        assert!(
            r.is_err(),
            "{what}: answered {:?}",
            r.map(|r| (r.status, r.text()))
        );
    }
    assert!(
        stack
            .host_log("dp_pool_us")
            .contains("TLS handshake refused")
    );
    assert_eq!(stack.host_get("dp_pool_us", "/healthz").status, 200);

    // No token through the edge: jwt-auth answers, no host sees it.
    let before = stack.host_requests("dp_pool_us", "-", 401);
    let r = Stack::post(stack.envoy.listener_port("edge"), &[]);
    assert_eq!(error_of(&r), (401, "missing_token".into()));

    // Straight to the host: no token, with the tenant header a client could forge.
    let r = stack.direct("dp_pool_us", &[("x-org-id", "DL")]);
    assert_eq!(error_of(&r), (401, "missing_token".into()));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer"))
    );
    assert_eq!(stack.host_requests("dp_pool_us", "-", 401), before + 1);
    // A token from another key claiming DL.
    let now = forge::now();
    let forged = format!(
        "Bearer {}",
        forge::standard(
            keys::key(Alg::ES256),
            "https://issuer.bulkhead.dev",
            json!("bulkhead"),
            "DL",
            now,
            now + 300
        )
    );
    let r = stack.direct(
        "dp_pool_us",
        &[("authorization", forged.as_str()), ("x-org-id", "DL")],
    );
    assert_eq!(error_of(&r), (401, "invalid_token".into()));
    // A valid token of EV with a forged x-org-id: DL.
    let r = stack.direct(
        "dp_pool_us",
        &[("authorization", ev.as_str()), ("x-org-id", "DL")],
    );
    assert_eq!(error_of(&r), (403, "tenant_mismatch".into()));
    // A valid token but no x-org-id: the request did not pass the edge.
    let r = stack.direct("dp_pool_us", &[("authorization", dl.as_str())]);
    assert_eq!(error_of(&r), (403, "missing_tenant_header".into()));
    // Right token and header, wrong host: a pool host never serves the silo tenant, the
    // silo host serves nobody else.
    let r = stack.direct(
        "dp_pool_us",
        &[("authorization", ua.as_str()), ("x-org-id", "UA")],
    );
    assert_eq!(error_of(&r), (421, "wrong_data_plane".into()));
    let r = stack.direct(
        "dp_silo_ua",
        &[("authorization", dl.as_str()), ("x-org-id", "DL")],
    );
    assert_eq!(error_of(&r), (421, "wrong_data_plane".into()));
    // None of it ran a model (EV's requests at start-up went through the edge).
    for cluster in ["dp_pool_us", "dp_silo_ua"] {
        for tenant in ["DL", "UA"] {
            assert_eq!(stack.host_requests(cluster, tenant, 200), 0, "{cluster}");
        }
    }
    // The same request as the edge would send it is served.
    let r = stack.direct(
        "dp_pool_us",
        &[("authorization", dl.as_str()), ("x-org-id", "DL")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !stack.host_log("dp_pool_us").contains(&dl[7..]),
        "a token reached the host's log"
    );
}
