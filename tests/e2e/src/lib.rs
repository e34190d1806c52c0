//! End-to-end tests through a real Envoy live in tests/; this library holds
//! what they share: locating the filter module, Envoy building blocks for
//! our filter and for native `jwt_authn`, running a [`Case`] and checking
//! the answer, and counting verdicts to compare with Envoy's stats.
//!
//! The filter module is looked up at
//! `$CARGO_TARGET_DIR/wasm32-wasip1/release/jwt_auth_filter.wasm`, else
//! under `<workspace>/target`; build it with `make wasm`.

pub mod host_bin;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bulkhead_testkit::cases::{self, Case};
use bulkhead_testkit::{EchoUpstream, EchoedRequest, Envoy, Response, config, forge, http_get};
use serde_json::{Value, json};

/// Counter names the filter defines (Envoy prefixes them with `wasmcustom.`).
pub const COUNTERS: [&str; 8] = [
    "allowed",
    "cache_hits",
    "denied_missing",
    "denied_invalid",
    "denied_tenant",
    "unavailable",
    "jwks_fetch_ok",
    "jwks_fetch_failed",
];

/// Path of the built filter module, rebuilt first when its sources are newer.
///
/// # Panics
/// When it cannot be built (the message says to run `make wasm`).
#[allow(clippy::panic)] // a precondition failure of the whole test run
pub fn wasm_path() -> PathBuf {
    proxy_wasm_harness::wasm_module(
        "jwt-auth-filter",
        &["filters/jwt-auth/src", "filters/jwt-rules/src"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Our filter as an HTTP filter entry. `name` is the plugin name and the
/// VM id, so every listener gets its own VMs, shared data and caches.
pub fn jwt_auth_filter(name: &str, filter_config: &Value) -> String {
    config::wasm_filter(
        name,
        "jwt_auth",
        &wasm_path(),
        &filter_config.to_string(),
        name,
    )
}

/// Envoy's native `jwt_authn` set up like [`cases::filter_config`]: same
/// issuer, audiences, keys ([`cases::jwks`]) and skew, `require_expiration`
/// (our filter requires `exp`), the Authorization header forwarded and
/// `org_id` copied to `x-org-id`.
pub fn native_jwt_authn_filter() -> String {
    let provider = json!({
        "issuer": cases::ISSUER,
        "audiences": cases::AUDIENCES,
        "forward": true,
        "clock_skew_seconds": cases::CLOCK_SKEW,
        "require_expiration": true,
        "claim_to_headers": [{ "header_name": cases::TENANT_HEADER, "claim_name": cases::TENANT_CLAIM }],
        "local_jwks": { "inline_string": cases::jwks().to_string() },
    });
    config::to_yaml(&json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "bulkhead": provider },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bulkhead" } }]
        }
    }))
}

/// The filter's `jwks` member for a remote JWKS through `cluster`, with
/// the given tuning members merged into `remote`.
pub fn remote_jwks(cluster: &str, tuning: Value) -> Value {
    let mut jwks = cases::remote_jwks(cluster, "/.well-known/jwks.json");
    if let (Some(remote), Value::Object(extra)) = (jwks["remote"].as_object_mut(), tuning) {
        remote.extend(extra);
    }
    jwks
}

/// The case table minted for the current second, re-minted on demand so a
/// time-sensitive case is always sent within the second it was minted for
/// (its verdict then holds until one second later: see
/// [`Case::time_sensitive`]).
pub struct FreshCases {
    now: i64,
    cases: Vec<Case>,
    /// How often the table was re-minted.
    pub remints: usize,
}

impl Default for FreshCases {
    fn default() -> Self {
        Self::new()
    }
}

impl FreshCases {
    pub fn new() -> FreshCases {
        let now = forge::now();
        FreshCases {
            now,
            cases: cases::cases(now),
            remints: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.cases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Case `i`, re-minted first if it is time-sensitive and the clock has
    /// moved to another second.
    pub fn get(&mut self, i: usize) -> &Case {
        if self.cases[i].time_sensitive {
            while forge::now() != self.now {
                self.now = forge::now();
                self.cases = cases::cases(self.now);
                self.remints += 1;
            }
        }
        &self.cases[i]
    }
}

/// Sends `case` to the listener on `port` (`GET /case/<name>`).
///
/// # Panics
/// On transport failure.
#[allow(clippy::panic)]
pub fn send(port: u16, case: &Case) -> Response {
    match http_get(
        port,
        &format!("/case/{}", case.name),
        &case.request_headers(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("{}: request to port {port} failed: {e:#}", case.name),
    }
}

/// Checks our filter's answer to `case`: status, JSON `error`/`reason`,
/// the challenge, and what the upstream saw — for 200 exactly one
/// `x-org-id` equal to the tenant, the Authorization header as sent and no
/// `x-tenant-*` (or any other [`cases::is_reserved_header`]); for a
/// rejection, nothing at all
/// (`echo_before` = the echo's request count before sending).
pub fn check_filter_answer(
    case: &Case,
    resp: &Response,
    echo: &EchoUpstream,
    echo_before: usize,
) -> Result<(), String> {
    let fail = |what: String| Err(format!("{}: {what}; body {:?}", case.name, resp.text()));
    if resp.status != case.expect_status {
        return fail(format!(
            "status {} (expected {})",
            resp.status, case.expect_status
        ));
    }
    let forwarded = echo.request_count() - echo_before;
    if !case.expect_allowed() {
        if forwarded != 0 {
            return fail(format!(
                "a rejected request reached the upstream ({forwarded}×)"
            ));
        }
        let body = match resp.json() {
            Ok(b) => b,
            Err(e) => return fail(format!("{e:#}")),
        };
        if body["error"].as_str() != case.expect_error {
            return fail(format!(
                "error {} (expected {:?})",
                body["error"], case.expect_error
            ));
        }
        if let Some(reason) = case.expect_reason
            && body["reason"].as_str() != Some(reason)
        {
            return fail(format!("reason {} (expected {reason:?})", body["reason"]));
        }
        if resp.header("content-type") != Some("application/json") {
            return fail(format!("content-type {:?}", resp.header("content-type")));
        }
        let challenge = resp.header_all("www-authenticate");
        let realm = format!("Bearer realm=\"{}\"", cases::REALM);
        let ok = match case.expect_error {
            Some("missing_token") => challenge == [realm.as_str()],
            Some("invalid_token") => {
                challenge.len() == 1
                    && challenge[0].starts_with(&format!("{realm}, error=\"invalid_token\""))
            }
            _ => challenge.is_empty(),
        };
        if !ok {
            return fail(format!("www-authenticate {challenge:?}"));
        }
        return Ok(());
    }
    if forwarded != 1 {
        return fail(format!("upstream saw {forwarded} requests (expected 1)"));
    }
    let seen = match resp.json().and_then(|v| EchoedRequest::from_json(&v)) {
        Ok(s) => s,
        Err(e) => return fail(format!("not an echo answer: {e:#}")),
    };
    let tenant = seen.header_all(cases::TENANT_HEADER);
    if tenant != case.expect_tenant.into_iter().collect::<Vec<_>>() {
        return fail(format!(
            "upstream saw {} {tenant:?} (expected exactly {:?})",
            cases::TENANT_HEADER,
            case.expect_tenant
        ));
    }
    if seen.header_all("authorization")
        != case
            .authorization
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    {
        return fail(format!(
            "upstream saw authorization {:?}",
            seen.header_all("authorization")
        ));
    }
    let leaked: Vec<&(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| cases::is_reserved_header(n) && n != cases::TENANT_HEADER)
        .collect();
    if !leaked.is_empty() {
        return fail(format!("reserved headers reached the upstream: {leaked:?}"));
    }
    Ok(())
}

/// Verdicts counted from answers of our filter, in the shape of its stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub allowed: u64,
    pub denied_missing: u64,
    pub denied_invalid: u64,
    pub denied_tenant: u64,
    pub unavailable: u64,
}

impl Tally {
    /// Counts one answer of our filter by status and JSON `error`.
    pub fn record(&mut self, resp: &Response) {
        let error = resp
            .json()
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        match (resp.status, error.as_deref()) {
            (200, _) => self.allowed += 1,
            (401, Some("missing_token")) => self.denied_missing += 1,
            (401, _) => self.denied_invalid += 1,
            (403, _) => self.denied_tenant += 1,
            (503, _) => self.unavailable += 1,
            _ => {}
        }
    }

    /// The counter name → value pairs this tally predicts.
    pub fn as_counters(&self) -> [(&'static str, u64); 5] {
        [
            ("allowed", self.allowed),
            ("denied_missing", self.denied_missing),
            ("denied_invalid", self.denied_invalid),
            ("denied_tenant", self.denied_tenant),
            ("unavailable", self.unavailable),
        ]
    }
}

/// The filter's counter `wasmcustom.jwt_auth.<name>` (0 when not defined yet).
pub fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.jwt_auth.{name}"))
        .unwrap_or(0)
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `Authorization: Bearer …` for a standard token of `key` with `tenant`,
/// valid for five minutes from now.
pub fn bearer(key: &bulkhead_testkit::TestKey, tenant: &str) -> String {
    let now = forge::now();
    format!(
        "Bearer {}",
        forge::standard(
            key,
            cases::ISSUER,
            json!(cases::AUDIENCES[0]),
            tenant,
            now,
            now + 300
        )
    )
}

/// The edge chain's filter modules, `(package, file stem, its own source dir)`; the
/// shared crates are watched by the harness's builder for every module.
pub const EDGE_MODULES: [(&str, &str, &str); 3] = [
    ("jwt-auth-filter", "jwt_auth_filter", "filters/jwt-auth/src"),
    (
        "tenant-router-filter",
        "tenant_router_filter",
        "filters/tenant-router/src",
    ),
    (
        "rate-limit-filter",
        "rate_limit_filter",
        "filters/rate-limit/src",
    ),
];

/// Path of the edge module with file stem `stem`, built when missing or stale.
///
/// # Panics
/// For an unknown stem, or when the module cannot be built.
#[allow(clippy::panic)] // a precondition failure of the whole test run
pub fn edge_module(stem: &str) -> PathBuf {
    let (package, _, source) = EDGE_MODULES
        .iter()
        .find(|(_, s, _)| *s == stem)
        .unwrap_or_else(|| panic!("no edge module {stem}"));
    proxy_wasm_harness::wasm_module(package, &[source]).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for a test's
/// children).
///
/// # Panics
/// When no port can be bound at all.
#[allow(clippy::expect_used)] // a precondition failure of the whole test run
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A child process, killed and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bulkhead --state-dir STATE ARGS…`; its stdout, or an error with its stderr.
pub fn bulkhead_cli(state: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(host_bin::bulkhead_binary()?)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "bulkhead {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `POST /v1/eta` with `body` through the shipped edge's plain listener (`edge`), with a
/// fresh dev-issuer token of `org`.
pub fn edge_eta(
    state: &std::path::Path,
    envoy: &Envoy,
    org: &str,
    body: &[u8],
) -> anyhow::Result<Response> {
    let token = bulkhead_cli(state, &["token", "--org", org])?;
    let auth = format!("Bearer {}", token.trim());
    let h = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    bulkhead_testkit::http_request(envoy.listener_port("edge"), "POST", "/v1/eta", &h, body)
}

/// The host ports of the data planes the shipped edge routes to.
#[derive(Debug, Clone, Copy)]
pub struct PlanePorts {
    pub pool_us: u16,
    pub silo_ua: u16,
    pub pool_eu: u16,
}

impl PlanePorts {
    /// Every plane served by one host.
    pub fn all(port: u16) -> PlanePorts {
        PlanePorts {
            pool_us: port,
            silo_ua: port,
            pool_eu: port,
        }
    }
}

/// The shipped edge (`envoy/edge.yaml`, rendered by `bulkhead envoy-config` the way
/// `scripts/run.sh` renders it, every filter on) with the dev TLS material of
/// `scripts/dev-tls.sh` in `tls`, in front of the control API on `control_port` and the
/// planes' hosts (over mTLS); Envoy with 2 workers. Returns Envoy and its TLS port.
pub fn start_edge(
    state: &std::path::Path,
    tls: &std::path::Path,
    control_port: u16,
    planes: PlanePorts,
) -> anyhow::Result<(Envoy, u16)> {
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let wasm = |stem: &str| s(&edge_module(stem));
    let (listen, tls_port, admin) = (free_port(), free_port(), free_port());
    let vars = [
        ("JWT_AUTH_WASM", wasm("jwt_auth_filter")),
        ("TENANT_ROUTER_WASM", wasm("tenant_router_filter")),
        ("RATE_LIMIT_WASM", wasm("rate_limit_filter")),
        ("TLS_CERT", s(&tls.join("server.pem"))),
        ("TLS_KEY", s(&tls.join("server-key.pem"))),
        ("UPSTREAM_CLIENT_CERT", s(&tls.join("envoy-client.pem"))),
        ("UPSTREAM_CLIENT_KEY", s(&tls.join("envoy-client-key.pem"))),
        ("UPSTREAM_CA", s(&tls.join("mesh-ca.pem"))),
        ("LISTEN_PORT", listen.to_string()),
        ("TLS_PORT", tls_port.to_string()),
        ("ADMIN_PORT", admin.to_string()),
        ("CONTROL_PORT", control_port.to_string()),
        ("POOL_US_PORT", planes.pool_us.to_string()),
        ("SILO_UA_PORT", planes.silo_ua.to_string()),
        ("POOL_EU_PORT", planes.pool_eu.to_string()),
    ];
    let rendered = state.join("envoy.yaml");
    let mut args = vec![
        "envoy-config".to_string(),
        "--template".into(),
        s(&proxy_wasm_harness::workspace_root().join("envoy/edge.yaml")),
        "--out".into(),
        s(&rendered),
    ];
    for (k, v) in &vars {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bulkhead_cli(state, &args)?;
    let envoy = Envoy::start(&std::fs::read_to_string(&rendered)?, 2)?;
    Ok((envoy, tls_port))
}

/// The dev TLS material (`scripts/dev-tls.sh`, as `make run` makes it: the edge's, the
/// hosts', Envoy's client certificate) in `<state>/tls`, which it returns.
pub fn dev_tls(state: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let tls = state.join("tls");
    let out = std::process::Command::new("bash")
        .arg(proxy_wasm_harness::workspace_root().join("scripts/dev-tls.sh"))
        .arg(&tls)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "dev-tls.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(tls)
}

/// `bulkhead control` (the registry API the edge polls) on a free port: the process and
/// its port.
pub fn spawn_control(state: &std::path::Path) -> anyhow::Result<(KillOnDrop, u16)> {
    let port = free_port();
    let child = std::process::Command::new(host_bin::bulkhead_binary()?)
        .arg("--state-dir")
        .arg(state)
        .args(["control", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok((KillOnDrop(child), port))
}

/// `bulkhead serve` for data plane `plane` on `port` over mTLS (the dev TLS material in
/// `tls`), its model store in `data_dir`, `extra` flags added; stderr to
/// `<state>/<plane>.log`.
pub fn spawn_tls_host(
    state: &std::path::Path,
    data_dir: &std::path::Path,
    tls: &std::path::Path,
    (plane, port): (&str, u16),
    extra: &[String],
) -> anyhow::Result<KillOnDrop> {
    let log = std::fs::File::create(state.join(format!("{plane}.log")))?;
    let child = std::process::Command::new(host_bin::bulkhead_binary()?)
        .arg("--state-dir")
        .arg(state)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--plane-name", plane])
        .args(extra)
        .arg("--tls-cert")
        .arg(tls.join("host.pem"))
        .arg("--tls-key")
        .arg(tls.join("host-key.pem"))
        .arg("--client-ca")
        .arg(tls.join("mesh-ca.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(KillOnDrop(child))
}
