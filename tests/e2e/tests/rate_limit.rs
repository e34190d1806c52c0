//! The rate-limit filter inside a real Envoy.
//!
//! - With `--concurrency 4` and 16 keep-alive connections spread over the workers, one
//!   tenant's allowed requests over a fixed interval stay within ±2% of
//!   `burst + rate × seconds`: one limit for the process, not one per worker (which
//!   would allow about 4×).
//! - A tenant flooded at 10× its plan does not take anything from another tenant.
//! - Behind jwt-auth, the filter keys on the verified tenant: a caller's own
//!   `x-org-id` is stripped and never chooses whose limit applies.
//!
//! Load goes to 127.0.0.1 only, bounded in time (a few seconds per test). The load
//! tests take a lock so that they never compete with each other for the two cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Barrier, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bulkhead_e2e::{bearer, jwt_auth_filter};
use bulkhead_testkit::cases;
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, EchoedRequest, Envoy, config, http_get};
use serde_json::{Value, json};

fn rate_limit_wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module("rate-limit-filter", &["filters/rate-limit/src"]).unwrap()
    })
}

/// Builds jwt-auth's module if missing or stale (then `bulkhead_e2e` finds it).
fn ensure_jwt_auth_wasm() {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module(
            "jwt-auth-filter",
            &["filters/jwt-auth/src", "filters/jwt-rules/src"],
        )
        .unwrap()
    });
}

/// Load tests one at a time: two of them at once on two cores would measure nothing.
fn load_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rate_limit_filter(name: &str, cfg: &Value) -> String {
    config::wasm_filter(
        name,
        "rate_limit",
        rate_limit_wasm(),
        &cfg.to_string(),
        name,
    )
}

/// One keep-alive HTTP/1.1 connection (the testkit client closes after each request).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(5),
        )
        .unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn get(&mut self, tenant: &str) -> Answer {
        let req = format!("GET /v1/eta HTTP/1.1\r\nhost: edge\r\nx-org-id: {tenant}\r\n\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((answer, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return answer;
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "Envoy closed a keep-alive connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A complete response at the start of `buf` (content-length framing: Envoy's local
/// replies and direct responses have it), and how many bytes it took.
fn parse(buf: &[u8]) -> Option<(Answer, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    (buf.len() >= end + len).then_some((Answer { status, headers }, end + len))
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    allowed: u64,
    limited: u64,
    other: u64,
}

impl Tally {
    fn record(&mut self, a: &Answer) {
        match a.status {
            200 => self.allowed += 1,
            429 => self.limited += 1,
            _ => self.other += 1,
        }
    }
    fn add(&mut self, o: Tally) {
        self.allowed += o.allowed;
        self.limited += o.limited;
        self.other += o.other;
    }
    fn total(&self) -> u64 {
        self.allowed + self.limited + self.other
    }
}

/// A group of client threads for one tenant: `conns` keep-alive connections, each
/// sending either as fast as it can (`rate` None) or on a fixed schedule adding up to
/// `rate` requests/s (late requests are sent at once, never skipped).
struct Load {
    tenant: &'static str,
    conns: usize,
    rate: Option<f64>,
}

/// Runs every group for `secs` from one common start; returns each group's tally.
fn run(port: u16, groups: &[Load], secs: f64) -> Vec<Tally> {
    let total: usize = groups.iter().map(|g| g.conns).sum();
    let barrier = Barrier::new(total);
    let duration = Duration::from_secs_f64(secs);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for k in 0..g.conns {
                let barrier = &barrier;
                let mut conn = Conn::open(port);
                handles.push((
                    gi,
                    scope.spawn(move || {
                        let mut t = Tally::default();
                        barrier.wait();
                        let start = Instant::now();
                        let mut i = 0u64;
                        loop {
                            if let Some(rate) = g.rate {
                                // Request i of this thread: the (i·n + k)-th of the group.
                                let at = (i as f64 * g.conns as f64 + k as f64) / rate;
                                if at >= secs {
                                    break;
                                }
                                let due = start + Duration::from_secs_f64(at);
                                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                    std::thread::sleep(wait);
                                }
                            } else if start.elapsed() >= duration {
                                break;
                            }
                            t.record(&conn.get(g.tenant));
                            i += 1;
                        }
                        t
                    }),
                ));
            }
        }
        let mut out = vec![Tally::default(); groups.len()];
        for (gi, h) in handles {
            out[gi].add(h.join().unwrap());
        }
        out
    })
}

/// Connections each worker accepted on the (only) listener: the
/// `listener.<address>.worker_<i>.downstream_cx_total` counters (the address is the
/// configured one, port 0).
fn connections_per_worker(envoy: &Envoy, workers: u32) -> Vec<u64> {
    let stats = envoy.stats();
    (0..workers)
        .map(|w| {
            let suffix = format!(".worker_{w}.downstream_cx_total");
            stats
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(n, _)| n.starts_with("listener.") && n.ends_with(&suffix))
                .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
                .sum()
        })
        .collect()
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.rate_limit.{name}"))
        .unwrap_or(0)
}

fn deviation(got: u64, expected: f64) -> f64 {
    (got as f64 - expected) / expected * 100.0
}

#[test]
fn one_limit_across_four_workers() {
    const RATE: f64 = 500.0;
    const BURST: f64 = 250.0;
    const SECS: f64 = 6.0;
    let _serial = load_lock();
    let cfg = json!({
        "plans": {"bulk": {"per_second": RATE as u32, "burst": BURST as u32}},
        "tenants": {"UA": {"plan": "bulk"}}
    });
    let yaml = config::bootstrap(
        &[config::direct_listener(
            "edge",
            &[rate_limit_filter("rl_workers", &cfg)],
        )],
        &[],
    );
    let envoy = Envoy::start(&yaml, 4).unwrap();
    let port = envoy.listener_port("edge");

    let t = run(
        port,
        &[Load {
            tenant: "UA",
            conns: 16,
            rate: None,
        }],
        SECS,
    )[0];
    let expected = BURST + RATE * SECS;
    let dev = deviation(t.allowed, expected);
    let workers = connections_per_worker(&envoy, 4);
    eprintln!(
        "4 workers, 16 connections {workers:?}: {} requests in {SECS} s, {} allowed \
         (expected {expected}: {dev:+.2}%), {} limited, {} CAS retries",
        t.total(),
        t.allowed,
        t.limited,
        counter(&envoy, "cas_retries")
    );
    assert_eq!(t.other, 0, "only 200 and 429 expected");
    assert!(
        t.total() as f64 > 2.0 * expected,
        "the client did not saturate the limit ({} requests): the machine is too busy to tell",
        t.total()
    );
    assert!(
        workers.iter().filter(|&&c| c > 0).count() >= 2,
        "connections all on one worker: {workers:?}"
    );
    assert!(
        dev.abs() <= 2.0,
        "{} allowed, expected {expected} ± 2% ({dev:+.2}%)",
        t.allowed
    );
    assert_eq!(counter(&envoy, "allowed"), t.allowed);
    assert_eq!(counter(&envoy, "limited"), t.limited);
}

#[test]
fn a_flooded_tenant_does_not_starve_another() {
    const RATE: f64 = 100.0;
    const BURST: f64 = 50.0;
    const SECS: f64 = 5.0;
    let _serial = load_lock();
    let cfg = json!({
        "default_plan": "standard",
        "plans": {"standard": {"per_second": RATE as u32, "burst": BURST as u32}},
        "tenants": {"A": {}, "B": {}}
    });
    let yaml = config::bootstrap(
        &[config::direct_listener(
            "edge",
            &[rate_limit_filter("rl_fair", &cfg)],
        )],
        &[],
    );
    let envoy = Envoy::start(&yaml, 4).unwrap();
    let port = envoy.listener_port("edge");

    let groups = [
        Load {
            tenant: "A",
            conns: 8,
            rate: Some(10.0 * RATE),
        },
        Load {
            tenant: "B",
            conns: 4,
            rate: Some(RATE),
        },
    ];
    let [a, b] = run(port, &groups, SECS)[..] else {
        unreachable!()
    };
    let expected_a = BURST + RATE * SECS;
    eprintln!(
        "A at 10x: {} sent, {} allowed (expected {expected_a}: {:+.2}%), {} limited; \
         B at its plan: {} sent, {} allowed, {} limited",
        a.total(),
        a.allowed,
        deviation(a.allowed, expected_a),
        a.limited,
        b.total(),
        b.allowed,
        b.limited
    );
    assert_eq!((a.other, b.other), (0, 0));
    assert_eq!(b.total(), (RATE * SECS) as u64);
    assert_eq!(b.limited, 0, "B lost requests to A's flood");
    assert!(
        a.total() as f64 >= 8.0 * RATE * SECS,
        "A was not flooding: {} requests",
        a.total()
    );
    assert!(
        deviation(a.allowed, expected_a).abs() <= 2.0,
        "A: {} allowed, expected {expected_a}",
        a.allowed
    );
}

#[test]
fn standalone_headers_and_refusals() {
    let cfg = json!({
        "default_plan": "standard",
        "plans": {"standard": {"per_minute": 60, "burst": 3}},
        "tenants": {"UA": {}}
    });
    let yaml = config::bootstrap(
        &[config::direct_listener(
            "edge",
            &[rate_limit_filter("rl_basic", &cfg)],
        )],
        &[],
    );
    let envoy = Envoy::start(&yaml, 2).unwrap();
    let port = envoy.listener_port("edge");

    let missing = http_get(port, "/", &[]).unwrap();
    assert_eq!(missing.status, 403);
    assert_eq!(missing.json().unwrap()["error"], "missing_tenant");
    let unknown = http_get(port, "/", &[("x-org-id", "EVIL")]).unwrap();
    assert_eq!(
        (unknown.status, unknown.json().unwrap()["error"].clone()),
        (403, json!("unknown_tenant"))
    );

    let mut conn = Conn::open(port);
    for r in [2, 1, 0] {
        let a = conn.get("UA");
        assert_eq!(a.status, 200);
        assert_eq!(a.header("ratelimit-policy"), Some("\"standard\";q=3;w=3"));
        assert_eq!(
            a.header("ratelimit"),
            Some(format!("\"standard\";r={r};t={}", 3 - r).as_str())
        );
    }
    let limited = http_get(port, "/", &[("x-org-id", "UA")]).unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("ratelimit"), Some("\"standard\";r=0;t=3"));
    assert_eq!(limited.header("content-type"), Some("application/json"));
    let body = limited.json().unwrap();
    assert_eq!(
        (body["error"].as_str(), body["plan"].as_str()),
        (Some("rate_limited"), Some("standard"))
    );
    assert_eq!(
        [
            counter(&envoy, "allowed"),
            counter(&envoy, "limited"),
            counter(&envoy, "refused")
        ],
        [3, 1, 2]
    );
}

#[test]
fn behind_jwt_auth_the_limit_follows_the_verified_tenant() {
    ensure_jwt_auth_wasm();
    let echo = EchoUpstream::start();
    let rl = json!({
        "default_plan": "standard",
        "plans": {"tiny": {"per_minute": 60, "burst": 3}, "standard": {"per_second": 50, "burst": 100}},
        "tenants": {"UA": {"plan": "tiny"}, "DL": {}}
    });
    let yaml = config::bootstrap(
        &[config::listener(
            "chain",
            &[
                jwt_auth_filter("jwt_chain", &cases::filter_config(cases::inline_jwks())),
                rate_limit_filter("rl_chain", &rl),
            ],
            "echo",
        )],
        &[config::echo_cluster("echo", echo.port())],
    );
    let envoy = Envoy::start(&yaml, 2).unwrap();
    let port = envoy.listener_port("chain");
    let key = keys::key(Alg::ES256);
    let ua = bearer(key, "UA");
    let dl = bearer(key, "DL");

    // UA's token with a forged `x-org-id: DL`: jwt-auth strips it, UA's plan applies.
    for r in [2, 1, 0] {
        let resp = http_get(port, "/", &[("authorization", &ua), ("x-org-id", "DL")]).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.header("ratelimit"),
            Some(format!("\"tiny\";r={r};t={}", 3 - r).as_str())
        );
        let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
        assert_eq!(seen.header_all("x-org-id"), ["UA"]);
    }
    let resp = http_get(port, "/", &[("authorization", &ua), ("x-org-id", "DL")]).unwrap();
    assert_eq!(resp.status, 429);
    let body = resp.json().unwrap();
    assert_eq!(
        (body["tenant"].as_str(), body["plan"].as_str()),
        (Some("UA"), Some("tiny"))
    );
    assert_eq!(echo.request_count(), 3);

    // DL's own allowance is untouched by UA's requests that claimed to be DL.
    let resp = http_get(port, "/", &[("authorization", &dl)]).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("ratelimit"), Some("\"standard\";r=99;t=1"));

    // A valid token of an unregistered org: refused by the rate limit, no upstream.
    let evil = bearer(key, "EVIL");
    let resp = http_get(port, "/", &[("authorization", &evil)]).unwrap();
    assert_eq!(
        (resp.status, resp.json().unwrap()["error"].clone()),
        (403, json!("unknown_tenant"))
    );
    // No token: jwt-auth answers first; the header alone gets nobody anywhere.
    let resp = http_get(port, "/", &[("x-org-id", "DL")]).unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(echo.request_count(), 4);
    assert_eq!(
        [
            counter(&envoy, "allowed"),
            counter(&envoy, "limited"),
            counter(&envoy, "refused_unknown_tenant")
        ],
        [4, 1, 1]
    );
}

/// Writes `listener_yaml` as the LDS resource file, atomically (Envoy watches for the
/// file being moved into place).
fn write_lds(path: &std::path::Path, listener_yaml: &str) {
    let resource = format!(
        "\"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n{listener_yaml}"
    );
    let doc = format!("resources:\n{}", config::list_item(&resource, 0));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn plan_change_through_lds_takes_effect_without_restart() {
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-rl-lds-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.yaml");
    let cfg = |ua_plan: &str| {
        json!({
            "default_plan": "standard",
            "plans": {"standard": {"per_hour": 60, "burst": 5}, "big": {"per_hour": 60, "burst": 10},
                      "small": {"per_hour": 60, "burst": 2}},
            "tenants": {"UA": {"plan": ua_plan}, "DL": {}}
        })
    };
    let listener = |ua_plan: &str| {
        config::direct_listener("edge", &[rate_limit_filter("rl_lds", &cfg(ua_plan))])
    };
    write_lds(&lds, &listener("big"));
    let yaml = format!(
        "node: {{id: bulkhead-rl-test, cluster: bulkhead}}\n\
         dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    \
         path_config_source: {{path: {:?}}}\n{}",
        lds.to_string_lossy(),
        config::bootstrap(&[], &[])
    );
    let envoy = Envoy::start(&yaml, 2).unwrap();
    let port = envoy.listener_port("edge");
    let get = |tenant: &str| http_get(port, "/", &[("x-org-id", tenant)]).unwrap();

    // One request a minute (hourly plans), so that the seconds this test takes do not
    // matter. UA (big: burst 10) spends it all; DL (standard: burst 5) spends 2.
    for _ in 0..10 {
        assert_eq!(get("UA").status, 200);
    }
    assert_eq!(get("UA").json().unwrap()["plan"], "big");
    assert_eq!(get("DL").header("ratelimit"), Some("\"standard\";r=4;t=60"));
    assert_eq!(
        get("DL").header("ratelimit"),
        Some("\"standard\";r=3;t=120")
    );

    // UA is moved to "small" (burst 2) by a listener update: no restart.
    let before = envoy
        .stat("listener_manager.lds.update_success")
        .unwrap_or(0);
    write_lds(&lds, &listener("small"));
    let updated = bulkhead_e2e::wait_until(Duration::from_secs(10), || {
        envoy
            .stat("listener_manager.lds.update_success")
            .unwrap_or(0)
            > before
            && envoy.stat("listener_manager.total_listeners_warming") == Some(0)
            && get("UA").header("ratelimit-policy") == Some("\"small\";q=2;w=120")
    });
    assert!(
        updated,
        "the new plan did not take effect: UA answers {:?}; listeners {}; stats {}; log tail {}",
        get("UA").headers,
        envoy
            .admin_get("/listeners")
            .map(|r| r.text())
            .unwrap_or_default(),
        envoy
            .admin_get("/stats?filter=listener_manager")
            .map(|r| r.text())
            .unwrap_or_default(),
        bulkhead_testkit::envoy::tail(&envoy.logs(), 8)
    );
    assert_eq!(envoy.listener_port("edge"), port);
    // UA's state carried over, clamped to the smaller plan: still out of requests,
    // now under "small", with at most one emission interval (60 s) to wait, not the
    // 9 minutes its old state would impose.
    let r = get("UA");
    assert_eq!(r.status, 429);
    assert_eq!(r.json().unwrap()["plan"], "small");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // DL's state survived the update: 2 of 5 spent before, so 2 remain after this one.
    let dl = get("DL");
    let rl = dl.header("ratelimit").unwrap();
    assert!(rl.starts_with("\"standard\";r=2;t="), "{rl}");
    let _ = std::fs::remove_dir_all(&dir);
}
