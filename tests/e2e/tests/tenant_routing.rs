//! Tenant routing through a real Envoy: jwt-auth → tenant-router → rate-limit → router
//! (`cluster_header: x-data-plane`), the registry served by `bulkhead control` and edited
//! with `bulkhead tenant …`, one echo upstream per data-plane cluster that says which
//! cluster it is.
//!
//! - Tenants of each tier reach their own cluster with the routing headers; an EU-resident
//!   tenant is refused at the US edge (naming where to go) and served at the EU edge.
//! - A client's own routing headers never reach a decision or the upstream.
//! - `bulkhead tenant set-tier` / `suspend` / `set-plan` take effect within the refresh
//!   interval, with no Envoy restart.
//! - The control plane going down, or a broken registry file, leaves the last good copy
//!   in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bulkhead_e2e::host_bin::bulkhead_binary;
use bulkhead_e2e::{bearer, jwt_auth_filter};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, Envoy, Response, cases, config, http_get};
use serde_json::{Value, json};

/// The router re-fetches every second and every worker follows on its 1 s tick.
const REFRESH_SECONDS: u64 = 1;
/// How long a registry edit may take to reach every request: refresh + tick + slack.
const PROPAGATION: Duration = Duration::from_secs(6);

const CLUSTERS: [&str; 4] = ["dp_pool_us", "dp_bridge_us", "dp_silo_ua", "dp_pool_eu"];

fn router_wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module("tenant-router-filter", &["filters/tenant-router/src"])
            .unwrap()
    })
}

fn rate_limit_wasm() -> &'static PathBuf {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        proxy_wasm_harness::wasm_module("rate-limit-filter", &["filters/rate-limit/src"]).unwrap()
    })
}

/// The test's registry: a pool and a bridge data plane in the US (so a promotion changes
/// the cluster), a silo, an EU data plane; MQ on a tiny plan.
fn test_registry() -> Value {
    let t = |name: &str, tier: &str, dp: &str| json!({"name": name, "tier": tier, "region": "us-east-1", "data_plane": dp});
    json!({
        "revision": 1,
        "regions": {
            "us-east-1": {"residency": "us", "edge_url": "https://us.edge.test"},
            "eu-west-1": {"residency": "eu", "edge_url": "https://eu.edge.test"}
        },
        "data_planes": {
            "pool-us": {"region": "us-east-1", "cluster": "dp_pool_us"},
            "bridge-us": {"region": "us-east-1", "cluster": "dp_bridge_us"},
            "silo-ua": {"region": "us-east-1", "cluster": "dp_silo_ua"},
            "pool-eu": {"region": "eu-west-1", "cluster": "dp_pool_eu"}
        },
        "plans": {
            "standard": {"per_second": 1000, "burst": 1000},
            "tiny": {"per_minute": 1, "burst": 2}
        },
        "defaults": {"plan": "standard", "model": {"name": "eta-global", "version": "production"},
                     "max_concurrency": 8},
        "tenants": {
            "EV": t("ExpressJet", "pool", "pool-us"),
            "DL": {"name": "Delta", "tier": "bridge", "region": "us-east-1",
                   "data_plane": "bridge-us", "model": {"name": "eta-DL", "version": "4"}},
            "UA": t("United", "silo", "silo-ua"),
            "MQ": {"name": "Envoy Air", "tier": "pool", "region": "us-east-1",
                   "data_plane": "pool-us", "plan": "tiny"},
            "XS": {"name": "Suspended Co", "tier": "pool", "region": "us-east-1",
                   "data_plane": "pool-us", "status": "suspended",
                   "status_reason": "invoice overdue"},
            "B6": {"name": "JetBlue EU", "tier": "bridge", "region": "eu-west-1",
                   "residency": "eu", "data_plane": "pool-eu"}
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bulkhead(registry: &Path, args: &[&str]) -> Output {
    Command::new(bulkhead_binary().unwrap())
        .arg("--registry")
        .arg(registry)
        .args(args)
        .output()
        .unwrap()
}

struct Edge {
    _dir: tempfile::TempDir,
    registry: PathBuf,
    control: Option<Child>,
    control_port: u16,
    envoy: Envoy,
    upstreams: BTreeMap<&'static str, EchoUpstream>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop_control();
    }
}

impl Edge {
    fn start() -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("registry.json");
        std::fs::write(
            &registry,
            serde_json::to_string_pretty(&test_registry()).unwrap(),
        )
        .unwrap();
        let control_port = free_port();
        let control = Command::new(bulkhead_binary().unwrap())
            .arg("--registry")
            .arg(&registry)
            .args(["control", "--listen", &format!("127.0.0.1:{control_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(control_port, "/healthz", &[])
            .map(|r| r.status)
            .ok()
            != Some(200)
        {
            assert!(Instant::now() < deadline, "control API did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }

        let upstreams: BTreeMap<&'static str, EchoUpstream> = CLUSTERS
            .iter()
            .map(|c| (*c, EchoUpstream::named(c)))
            .collect();
        let mut clusters: Vec<String> = upstreams
            .iter()
            .map(|(name, u)| config::echo_cluster(name, u.port()))
            .collect();
        clusters.push(config::static_cluster("bulkhead_control", control_port));

        let mut jwt = cases::filter_config(cases::inline_jwks());
        jwt["strip_header_prefixes"]
            .as_array_mut()
            .unwrap()
            .push(json!("x-model-"));
        let chain = |edge: &str, region: &str| {
            let router_cfg = json!({
                "tenant_header": "x-org-id",
                "edge_region": region,
                "registry": {"cluster": "bulkhead_control", "path": "/v1/registry",
                             "refresh_seconds": REFRESH_SECONDS, "timeout_ms": 1000},
                "scope": "default"
            });
            let rl_cfg = json!({"tenant_header": "x-org-id", "registry_scope": "default"});
            vec![
                jwt_auth_filter(&format!("jwt_{edge}"), &jwt),
                config::wasm_filter(
                    &format!("router_{edge}"),
                    "tenant_router",
                    router_wasm(),
                    &router_cfg.to_string(),
                    "bulkhead",
                ),
                config::wasm_filter(
                    &format!("ratelimit_{edge}"),
                    "rate_limit",
                    rate_limit_wasm(),
                    &rl_cfg.to_string(),
                    "bulkhead",
                ),
            ]
        };
        let listeners = [
            config::header_routed_listener("edge_us", &chain("us", "us-east-1"), "x-data-plane"),
            config::header_routed_listener("edge_eu", &chain("eu", "eu-west-1"), "x-data-plane"),
        ];
        let envoy = Envoy::start(&config::bootstrap(&listeners, &clusters), 2).unwrap();
        let edge = Edge {
            _dir: dir,
            registry,
            control: Some(control),
            control_port,
            envoy,
            upstreams,
        };
        // The first fetch happens at start; wait until a known tenant is routed.
        edge.wait_for("the first registry fetch", |e| {
            e.get("us", "EV").status == 200
        });
        edge
    }

    fn port(&self, edge: &str) -> u16 {
        self.envoy.listener_port(&format!("edge_{edge}"))
    }

    fn get_with(&self, edge: &str, org: &str, extra: &[(&str, &str)]) -> Response {
        let auth = bearer(keys::key(Alg::ES256), org);
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        http_get(self.port(edge), "/v1/eta", &headers).unwrap()
    }

    fn get(&self, edge: &str, org: &str) -> Response {
        self.get_with(edge, org, &[])
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Edge) -> bool) -> Duration {
        let start = Instant::now();
        while !ok(self) {
            assert!(
                start.elapsed() < PROPAGATION * 3,
                "timed out waiting for {what}; Envoy log:\n{}",
                bulkhead_testkit::envoy::tail(&self.envoy.logs(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    }

    /// Waits until `ok` holds for ten requests of `org` in a row at the US edge: the
    /// change has reached every worker, not just the one that fetched it.
    fn wait_everywhere(&self, what: &str, org: &str, ok: impl Fn(&Response) -> bool) -> Duration {
        self.wait_for(what, |e| (0..10).all(|_| ok(&e.get("us", org))))
    }

    fn tenant(&self, args: &[&str]) -> String {
        let out = bulkhead(&self.registry, &[&["tenant"], args].concat());
        assert!(
            out.status.success(),
            "bulkhead tenant {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stop_control(&mut self) {
        if let Some(mut c) = self.control.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn json_of(r: &Response) -> Value {
    r.json()
        .unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.text()))
}

/// (upstream that answered, routing headers it received) of a routed request.
fn routed(r: &Response) -> (String, BTreeMap<String, String>) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json_of(r);
    let mut seen = BTreeMap::new();
    for h in v["headers"].as_array().unwrap() {
        let (n, val) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        if n.starts_with("x-tenant-")
            || n.starts_with("x-model-")
            || n == "x-data-plane"
            || n == "x-org-id"
        {
            assert!(
                seen.insert(n.to_string(), val.to_string()).is_none(),
                "{n} reached the upstream twice"
            );
        }
    }
    (v["upstream"].as_str().unwrap().to_string(), seen)
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn each_tier_reaches_its_data_plane_and_residency_holds() {
    let edge = Edge::start();

    let (up, h) = routed(&edge.get("us", "EV"));
    assert_eq!(up, "dp_pool_us");
    assert_eq!(
        h,
        expect(&[
            ("x-org-id", "EV"),
            ("x-tenant-tier", "pool"),
            ("x-tenant-region", "us-east-1"),
            ("x-model-name", "eta-global"),
            ("x-model-version", "production"),
            ("x-data-plane", "dp_pool_us"),
        ])
    );
    let (up, h) = routed(&edge.get("us", "DL"));
    assert_eq!(up, "dp_bridge_us");
    assert_eq!(
        (
            h["x-tenant-tier"].as_str(),
            h["x-model-name"].as_str(),
            h["x-model-version"].as_str()
        ),
        ("bridge", "eta-DL", "4")
    );
    let (up, h) = routed(&edge.get("us", "UA"));
    assert_eq!(
        (up.as_str(), h["x-tenant-tier"].as_str()),
        ("dp_silo_ua", "silo")
    );

    // The EU-resident tenant: refused at the US edge with where to go; served in the EU.
    let before = edge.upstreams["dp_pool_eu"].request_count();
    let r = edge.get("us", "B6");
    assert_eq!(r.status, 403, "{}", r.text());
    let body = json_of(&r);
    assert_eq!(body["error"], "wrong_region");
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(body["edge_url"], "https://eu.edge.test");
    assert_eq!(edge.upstreams["dp_pool_eu"].request_count(), before);
    let (up, h) = routed(&edge.get("eu", "B6"));
    assert_eq!(
        (up.as_str(), h["x-tenant-region"].as_str()),
        ("dp_pool_eu", "eu-west-1")
    );
    // Unlocked tenants are served at either edge.
    assert_eq!(routed(&edge.get("eu", "EV")).0, "dp_pool_us");

    // Unknown and suspended tenants: 403 before any upstream or rate-limit state.
    let total = |e: &Edge| {
        e.upstreams
            .values()
            .map(EchoUpstream::request_count)
            .sum::<usize>()
    };
    let seen = total(&edge);
    let r = edge.get("us", "ZZ");
    assert_eq!(
        (r.status, json_of(&r)["error"].as_str()),
        (403, Some("unknown_tenant"))
    );
    let r = edge.get("us", "XS");
    let body = json_of(&r);
    assert_eq!(
        (r.status, body["error"].as_str()),
        (403, Some("tenant_suspended"))
    );
    assert_eq!(body["reason"], "invoice overdue");
    assert_eq!(total(&edge), seen);

    // Plans come from the registry: MQ is on `tiny` (burst 2 per minute).
    let codes: Vec<u16> = (0..3).map(|_| edge.get("us", "MQ").status).collect();
    assert_eq!(codes, [200, 200, 429]);
}

#[test]
fn a_clients_routing_headers_never_reach_a_decision() {
    let edge = Edge::start();
    let spoof = [
        ("x-data-plane", "dp_silo_ua"),
        ("x-tenant-tier", "silo"),
        ("x-tenant-region", "eu-west-1"),
        ("x-model-name", "eta-UA"),
        ("x-model-version", "666"),
        ("x-org-id", "UA"),
    ];
    let silo_before = edge.upstreams["dp_silo_ua"].request_count();
    let (up, h) = routed(&edge.get_with("us", "EV", &spoof));
    assert_eq!(up, "dp_pool_us");
    assert_eq!(
        (
            h["x-org-id"].as_str(),
            h["x-data-plane"].as_str(),
            h["x-tenant-tier"].as_str()
        ),
        ("EV", "dp_pool_us", "pool")
    );
    assert_eq!(h["x-model-version"], "production");
    // Without a token the spoofed data plane gets nowhere either.
    let r = http_get(edge.port("us"), "/v1/eta", &spoof).unwrap();
    assert_eq!(r.status, 401);
    // Nor with a token whose tenant is unknown.
    assert_eq!(edge.get_with("us", "ZZ", &spoof).status, 403);
    assert_eq!(edge.upstreams["dp_silo_ua"].request_count(), silo_before);
}

#[test]
fn registry_edits_take_effect_without_an_envoy_restart() {
    let edge = Edge::start();
    let envoy_pid = edge.envoy.pid();
    assert_eq!(routed(&edge.get("us", "EV")).0, "dp_pool_us");

    // Promotion pool → bridge (onto the bridge data plane): one command.
    edge.tenant(&["set-tier", "EV", "bridge", "--data-plane", "bridge-us"]);
    // Done when every worker has it: ten requests in a row (spread over both workers)
    // all reach the bridge data plane.
    let took = edge.wait_everywhere("EV on dp_bridge_us", "EV", |r| {
        r.status == 200 && routed(r).0 == "dp_bridge_us"
    });
    assert!(took <= PROPAGATION, "took {took:?}");
    for _ in 0..20 {
        let (up, h) = routed(&edge.get("us", "EV"));
        assert_eq!(
            (up.as_str(), h["x-tenant-tier"].as_str()),
            ("dp_bridge_us", "bridge")
        );
    }
    eprintln!("set-tier reached the edge in {took:?}");

    // Suspension and resumption, the same way.
    edge.tenant(&["suspend", "EV", "--reason", "security review"]);
    edge.wait_everywhere("EV suspended", "EV", |r| r.status == 403);
    let r = edge.get("us", "EV");
    assert_eq!(json_of(&r)["reason"], "security review");
    edge.tenant(&["resume", "EV"]);
    edge.wait_everywhere("EV resumed", "EV", |r| r.status == 200);

    // A plan change reaches the rate-limit filter through the same copy.
    edge.tenant(&["set-plan", "EV", "tiny"]);
    edge.wait_everywhere("EV on the tiny plan", "EV", |r| {
        r.header("ratelimit-policy")
            .is_some_and(|p| p.starts_with("\"tiny\""))
            || r.status == 429
    });

    // A refused edit (a silo on a shared data plane) changes nothing anywhere.
    let out = bulkhead(&edge.registry, &["tenant", "set-tier", "DL", "silo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenants.DL.data_plane"));
    assert_eq!(routed(&edge.get("us", "DL")).1["x-tenant-tier"], "bridge");

    assert_eq!(edge.envoy.pid(), envoy_pid);
    assert!(
        edge.envoy
            .stat("wasmcustom.tenant_router.registry_fetch_ok")
            .unwrap_or(0)
            >= 4,
        "one fetch per change at least"
    );
}

#[test]
fn the_last_good_registry_stays_when_the_control_plane_fails() {
    let mut edge = Edge::start();
    // A broken file: the control API keeps serving the last valid document.
    std::fs::write(&edge.registry, r#"{"regions": {}}"#).unwrap();
    std::thread::sleep(Duration::from_secs(REFRESH_SECONDS * 2 + 1));
    let status = http_get(edge.control_port, "/v1/registry/status", &[]).unwrap();
    let s = json_of(&status);
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("missing field `data_planes`")),
        "{s}"
    );
    assert_eq!(routed(&edge.get("us", "UA")).0, "dp_silo_ua");

    // The control plane down: the edge keeps routing with the copy it has.
    edge.stop_control();
    std::thread::sleep(Duration::from_secs(REFRESH_SECONDS * 3 + 1));
    assert_eq!(routed(&edge.get("us", "UA")).0, "dp_silo_ua");
    assert_eq!(routed(&edge.get("us", "EV")).0, "dp_pool_us");
    assert!(
        edge.envoy
            .stat("wasmcustom.tenant_router.registry_fetch_failed")
            .unwrap_or(0)
            >= 1
    );
}
