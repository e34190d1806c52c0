//! The shipped Envoy configs and the Istio `WasmPlugin` set, checked the way they are used.
//!
//! - Every `envoy/*.yaml` template is rendered as `make run` renders it (the host's own
//!   renderer with the dev issuer's JWKS, the built filter modules, a certificate made by
//!   `scripts/dev-tls.sh`) and must pass `envoy --mode validate`, which also loads each
//!   filter and runs its `on_configure`. Broken configs must fail it.
//! - The edge's shape: every HTTP chain is jwt-auth → tenant-router → rate-limit → router,
//!   routed on `x-data-plane`, fail closed, with tenant-router and rate-limit in one VM
//!   group; its clusters cover the data planes of the dev registry, and each reaches its
//!   host over mTLS with the certificates `scripts/dev-tls.sh` makes (Envoy's client
//!   certificate, the mesh CA, the hosts' name checked and sent as SNI).
//! - `scripts/istio.sh` renders `envoy/istio/*.yaml` with the modules' real sha256; the
//!   output parses as YAML, orders the filters AUTHN → AUTHZ by priority, fails closed, and
//!   each `pluginConfig` is accepted by its filter (validated in an Envoy config built the
//!   way Istio builds one from a `WasmPlugin`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead::dev::{envoy_config, issuer::DevIssuer};
use bulkhead_e2e::{EDGE_MODULES, edge_module};
use bulkhead_testkit::config;
use bulkhead_testkit::envoy::envoy_binary;
use proxy_wasm_harness::workspace_root;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The expected HTTP filter order on every chain of the edge.
const CHAIN: [&str; 4] = [
    "bulkhead.jwt_auth",
    "bulkhead.tenant_router",
    "bulkhead.rate_limit",
    "envoy.filters.http.router",
];

fn module(stem: &str) -> PathBuf {
    edge_module(stem)
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `{{NAME}}` placeholders a template uses.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let end = after
            .find("}}")
            .unwrap_or_else(|| panic!("unterminated placeholder near {:?}", &rest[i..]));
        out.insert(after[..end].to_string());
        rest = &after[end + 2..];
    }
    out
}

/// The names `scripts/run.sh` passes to `bulkhead envoy-config` (`--set "NAME=…"`).
fn run_sh_names() -> BTreeSet<String> {
    let script = std::fs::read_to_string(workspace_root().join("scripts/run.sh")).unwrap();
    script
        .split("--set \"")
        .skip(1)
        .map(|s| s.split('=').next().unwrap().to_string())
        .collect()
}

/// Runs `scripts/dev-tls.sh` into `dir`; returns `(ca.pem, server.pem, server-key.pem)`.
fn dev_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = workspace_root().join("scripts/dev-tls.sh");
    let out = Command::new("bash").arg(&script).arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "dev-tls.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    )
}

/// The values `make run` gives the templates (ports as scripts/run.sh defaults them: in
/// validate mode nothing binds); the mTLS files beside `tls_cert`, as dev-tls.sh writes them.
fn run_vars(tls_cert: &Path, tls_key: &Path) -> Vec<(&'static str, String)> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let beside = |name: &str| path(&tls_cert.with_file_name(name));
    vec![
        ("JWT_AUTH_WASM", path(&module("jwt_auth_filter"))),
        ("TENANT_ROUTER_WASM", path(&module("tenant_router_filter"))),
        ("RATE_LIMIT_WASM", path(&module("rate_limit_filter"))),
        ("TLS_CERT", path(tls_cert)),
        ("TLS_KEY", path(tls_key)),
        ("UPSTREAM_CLIENT_CERT", beside("envoy-client.pem")),
        ("UPSTREAM_CLIENT_KEY", beside("envoy-client-key.pem")),
        ("UPSTREAM_CA", beside("mesh-ca.pem")),
        ("LISTEN_PORT", "10000".into()),
        ("TLS_PORT", "10443".into()),
        ("ADMIN_PORT", "9901".into()),
        ("CONTROL_PORT", "9090".into()),
        ("POOL_US_PORT", "18081".into()),
        ("SILO_UA_PORT", "18082".into()),
        ("POOL_EU_PORT", "18083".into()),
    ]
}

/// Renders `template` like `bulkhead envoy-config` does: JWKS_JSON from the dev issuer in
/// `state`, then the given values — only those the template uses (the renderer refuses
/// unused ones); a placeholder with no value is a test failure naming it.
fn render(template: &Path, state: &Path, vars: &[(&'static str, String)]) -> String {
    let text = std::fs::read_to_string(template).unwrap();
    let jwks = DevIssuer::open(&state.join("dev"))
        .unwrap()
        .jwks()
        .unwrap()
        .to_string();
    let mut all: Vec<(&str, String)> = vec![("JWKS_JSON", jwks)];
    for name in placeholders(&text) {
        if name == "JWKS_JSON" {
            continue;
        }
        let (key, value) = vars.iter().find(|(k, _)| *k == name).unwrap_or_else(|| {
            panic!(
                "{} needs {{{{{name}}}}}: give it a value in scripts/run.sh and in this test",
                template.display()
            )
        });
        all.push((key, value.clone()));
    }
    envoy_config::render(&text, &all)
        .unwrap_or_else(|e| panic!("rendering {}: {e:#}", template.display()))
}

/// `envoy --mode validate -c <file>`: whether it passed, and everything it printed.
fn validate(config_file: &Path) -> (bool, String) {
    let out = Command::new(envoy_binary().unwrap())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(config_file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn shipped_templates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("envoy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no Envoy templates in envoy/");
    out
}

/// The JSON a wasm filter entry passes its plugin (`configuration.value`).
fn plugin_config(filter: &Value) -> Value {
    let text = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no StringValue configuration in {filter}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every HTTP connection manager of the config, `(stat_prefix, its typed_config, the
/// chain's transport socket)`.
fn connection_managers(cfg: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for listener in cfg["static_resources"]["listeners"].as_array().unwrap() {
        for chain in listener["filter_chains"].as_array().unwrap() {
            for filter in chain["filters"].as_array().unwrap() {
                if filter["name"] == "envoy.filters.network.http_connection_manager" {
                    let hcm = filter["typed_config"].clone();
                    out.push((
                        hcm["stat_prefix"].as_str().unwrap().to_string(),
                        hcm,
                        chain["transport_socket"].clone(),
                    ));
                }
            }
        }
    }
    out
}

/// The data-plane clusters of the bundled dev registry.
fn registry_clusters() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join("host/registry.dev.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["data_planes"]
        .as_object()
        .unwrap()
        .values()
        .map(|dp| dp["cluster"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dev_tls_makes_a_cert_for_localhost_once_with_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (ca, cert, key) = dev_tls(&tls);
    for k in [
        "server-key.pem",
        "ca-key.pem",
        "mesh-ca-key.pem",
        "host-key.pem",
        "envoy-client-key.pem",
    ] {
        let mode = std::fs::metadata(tls.join(k)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{k} has mode {mode:o}");
    }
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&cert)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&text.stdout);
    for name in [
        "DNS:localhost",
        "DNS:*.bulkhead.localhost",
        "IP Address:127.0.0.1",
    ] {
        assert!(sans.contains(name), "{name} missing from {sans}");
    }
    // A second run keeps what exists (clients may trust the CA already).
    let files: Vec<PathBuf> = [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "mesh-ca.pem",
        "host.pem",
        "host-key.pem",
        "envoy-client.pem",
        "envoy-client-key.pem",
    ]
    .iter()
    .map(|f| tls.join(f))
    .collect();
    assert_eq!((&files[0], &files[1], &files[2]), (&ca, &cert, &key));
    let read_all = || -> Vec<Vec<u8>> { files.iter().map(|p| std::fs::read(p).unwrap()).collect() };
    let before = read_all();
    dev_tls(&tls);
    assert_eq!(before, read_all(), "dev-tls.sh regenerated existing files");
    // One missing leaf is issued again; the rest (the CAs above all) stay.
    std::fs::remove_file(tls.join("host.pem")).unwrap();
    dev_tls(&tls);
    let after = read_all();
    for (i, f) in files.iter().enumerate() {
        let same = before[i] == after[i];
        let reissued = f.ends_with("host.pem") || f.ends_with("host-key.pem");
        assert_eq!(same, !reissued, "{}", f.display());
    }
}

/// `openssl ARGS…`: whether it succeeded, and its stdout.
fn openssl(args: &[&str], files: &[&Path]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn dev_tls_makes_the_mesh_certificates_for_envoy_and_the_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    dev_tls(&tls);
    let f = |name: &str| tls.join(name);
    let (mesh_ca, dev_ca) = (f("mesh-ca.pem"), f("ca.pem"));
    // The hosts' certificate: server auth, the names the edge checks and sends.
    let ext = [
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
    ];
    let (_, host) = openssl(&ext, &[&f("host.pem")]);
    for want in [
        "DNS:host.bulkhead.localhost",
        "DNS:localhost",
        "TLS Web Server Authentication",
    ] {
        assert!(host.contains(want), "host.pem lacks {want}: {host}");
    }
    // No IP address: Envoy (BoringSSL) refuses a leaf IP under the CA's IP constraints.
    assert!(!host.contains("IP Address"), "{host}");
    assert!(!host.contains("Client Authentication"), "{host}");
    // Envoy's client certificate: client auth only.
    let (_, envoy) = openssl(&ext, &[&f("envoy-client.pem")]);
    assert!(envoy.contains("TLS Web Client Authentication"), "{envoy}");
    assert!(!envoy.contains("Server Authentication"), "{envoy}");
    // Both from the mesh CA, and not from the dev CA (which signs the edge's public
    // certificate); the edge's certificate is not from the mesh CA.
    for leaf in ["host.pem", "envoy-client.pem"] {
        let (ok, _) = openssl(&["verify", "-CAfile"], &[&mesh_ca, &f(leaf)]);
        assert!(ok, "{leaf} does not verify against mesh-ca.pem");
        let (ok, _) = openssl(&["verify", "-CAfile"], &[&dev_ca, &f(leaf)]);
        assert!(!ok, "{leaf} verifies against the dev CA");
    }
    let (ok, _) = openssl(&["verify", "-CAfile"], &[&mesh_ca, &f("server.pem")]);
    assert!(!ok, "the edge's certificate verifies against the mesh CA");
    // The mesh CA is name-constrained like the dev CA.
    let (_, ca) = openssl(
        &["x509", "-noout", "-ext", "nameConstraints", "-in"],
        &[&mesh_ca],
    );
    assert!(ca.contains("DNS:bulkhead.localhost"), "{ca}");
}

#[test]
fn run_sh_fills_every_placeholder_of_the_edge() {
    let text = std::fs::read_to_string(workspace_root().join("envoy/edge.yaml")).unwrap();
    let mut needed = placeholders(&text);
    needed.remove("JWKS_JSON"); // filled by `bulkhead envoy-config` itself
    assert_eq!(
        run_sh_names(),
        needed,
        "scripts/run.sh --set vs envoy/edge.yaml"
    );
}

/// `NAME=(…)` / `declare -A NAME=(…)` on one line of scripts/run.sh: its items.
fn run_sh_array(name: &str) -> Vec<String> {
    let script = std::fs::read_to_string(workspace_root().join("scripts/run.sh")).unwrap();
    let line = script
        .lines()
        .find(|l| {
            l.trim_start_matches("declare -A ")
                .starts_with(&format!("{name}=("))
        })
        .unwrap_or_else(|| panic!("scripts/run.sh has no {name}=(…) line"));
    let inner = line.split_once('(').unwrap().1.rsplit_once(')').unwrap().0;
    inner.split_whitespace().map(str::to_string).collect()
}

#[test]
fn run_sh_starts_one_host_per_data_plane_of_the_registry() {
    // The clusters Envoy routes to must each have a `bulkhead serve --plane-name <cluster>`,
    // seeded from its own data plane's tenants.
    let hosts: BTreeSet<String> = run_sh_array("HOSTS").into_iter().collect();
    assert_eq!(hosts, registry_clusters(), "scripts/run.sh HOSTS");
    let text = std::fs::read_to_string(workspace_root().join("host/registry.dev.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let planes: BTreeSet<(String, String)> = doc["data_planes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, dp)| (dp["cluster"].as_str().unwrap().to_string(), id.clone()))
        .collect();
    let in_script: BTreeSet<(String, String)> = run_sh_array("PLANE")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.trim_matches(['[', ']']).to_string(), v.to_string())
        })
        .collect();
    assert_eq!(
        in_script, planes,
        "scripts/run.sh PLANE: cluster → data plane"
    );
}

#[test]
fn every_shipped_envoy_template_passes_envoy_validate() {
    let state = tempfile::tempdir().unwrap();
    let (_, cert, key) = dev_tls(&state.path().join("tls"));
    let vars = run_vars(&cert, &key);
    for template in shipped_templates() {
        let yaml = render(&template, state.path(), &vars);
        let out = state
            .path()
            .join(template.file_name().expect("a file name"));
        std::fs::write(&out, &yaml).unwrap();
        let (ok, log) = validate(&out);
        assert!(
            ok,
            "{} failed envoy --mode validate:\n{log}",
            template.display()
        );
    }
}

#[test]
fn the_edge_chain_is_jwt_auth_tenant_router_rate_limit_router_everywhere() {
    let state = tempfile::tempdir().unwrap();
    let (_, cert, key) = dev_tls(&state.path().join("tls"));
    let yaml = render(
        &workspace_root().join("envoy/edge.yaml"),
        state.path(),
        &run_vars(&cert, &key),
    );
    let cfg: Value = serde_norway::from_str(&yaml).unwrap();

    let listeners: Vec<(String, u64)> = cfg["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let addr = &l["address"]["socket_address"];
            assert_eq!(addr["address"], "127.0.0.1", "{} binds {addr}", l["name"]);
            (
                l["name"].as_str().unwrap().to_string(),
                addr["port_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listeners,
        [("edge".to_string(), 10000), ("edge_tls".to_string(), 10443)]
    );
    assert_eq!(
        cfg["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );

    let hcms = connection_managers(&cfg);
    let prefixes: Vec<&str> = hcms.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(prefixes, ["edge", "edge_tls_us", "edge_tls_eu"]);
    for (prefix, hcm, tls) in &hcms {
        let filters = hcm["http_filters"].as_array().unwrap();
        let names: Vec<&str> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, CHAIN, "{prefix}: filter order");
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        // Batch uploads first (no 15 s route timeout), then everything else; both route
        // on x-data-plane.
        assert_eq!(routes.as_array().unwrap().len(), 2, "{prefix}: two routes");
        assert_eq!(routes[0]["match"], json!({"prefix": "/v1/batch/"}));
        assert_eq!(
            routes[0]["route"],
            json!({"cluster_header": "x-data-plane", "timeout": "300s"}),
            "{prefix}: batch routes on x-data-plane"
        );
        assert_eq!(
            routes[1]["route"],
            json!({"cluster_header": "x-data-plane"}),
            "{prefix}: routes on x-data-plane"
        );
        assert_eq!(hcm["use_remote_address"], true, "{prefix}: an edge");

        let wasm = |i: usize| &filters[i]["typed_config"]["config"];
        for (i, name) in names.iter().enumerate().take(3) {
            assert_eq!(wasm(i)["fail_open"], false, "{prefix}: {name} fails closed");
        }
        let vm = |i: usize| wasm(i)["vm_config"]["vm_id"].as_str().unwrap();
        assert_eq!(vm(1), "bulkhead", "{prefix}: tenant-router's vm_id");
        assert_eq!(
            vm(2),
            "bulkhead",
            "{prefix}: rate-limit shares tenant-router's vm_id"
        );
        assert_ne!(
            vm(0),
            "bulkhead",
            "{prefix}: jwt-auth keeps a VM of its own"
        );

        let jwt = plugin_config(&filters[0]);
        let stripped: BTreeSet<&str> = jwt["strip_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        for h in ["x-data-plane", "x-model-name", "x-model-version"] {
            assert!(stripped.contains(h), "{prefix}: jwt-auth must strip {h}");
        }
        let router = plugin_config(&filters[1]);
        assert_eq!(router["registry"]["cluster"], "bulkhead_control");
        assert_eq!(router["registry"]["path"], "/v1/registry");
        assert_eq!(router["registry"]["refresh_seconds"], 2);
        let region = if *prefix == "edge_tls_eu" {
            "eu-west-1"
        } else {
            "us-east-1"
        };
        assert_eq!(router["edge_region"], region, "{prefix}: edge region");
        assert_eq!(
            plugin_config(&filters[2]),
            json!({"tenant_header": "x-org-id", "registry_scope": "default",
                   "emit_ratelimit_headers": true})
        );
        let cert_file = &tls["typed_config"]["common_tls_context"]["tls_certificates"][0]["certificate_chain"]
            ["filename"];
        if *prefix == "edge" {
            assert!(tls.is_null(), "the plaintext listener has no TLS");
        } else {
            assert_eq!(cert_file.as_str(), Some(cert.to_str().unwrap()), "{prefix}");
        }
    }

    let clusters: BTreeSet<String> = cfg["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let mut expected = registry_clusters();
    expected.insert("bulkhead_control".into());
    assert_eq!(
        clusters, expected,
        "clusters = the registry's data planes + control"
    );
}

#[test]
fn the_edge_reaches_every_data_plane_host_over_mtls() {
    let state = tempfile::tempdir().unwrap();
    let tls = state.path().join("tls");
    let (_, cert, key) = dev_tls(&tls);
    let yaml = render(
        &workspace_root().join("envoy/edge.yaml"),
        state.path(),
        &run_vars(&cert, &key),
    );
    let cfg: Value = serde_norway::from_str(&yaml).unwrap();
    let file = |name: &str| json!({ "filename": tls.join(name).to_str().unwrap() });
    let planes = registry_clusters();
    for cluster in cfg["static_resources"]["clusters"].as_array().unwrap() {
        let name = cluster["name"].as_str().unwrap();
        let socket = &cluster["transport_socket"];
        if !planes.contains(name) {
            assert!(socket.is_null(), "{name}: {socket}");
            continue;
        }
        let ctx = &socket["typed_config"];
        assert_eq!(socket["name"], "envoy.transport_sockets.tls", "{name}");
        assert_eq!(
            ctx["@type"],
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "{name}"
        );
        assert_eq!(ctx["sni"], "host.bulkhead.localhost", "{name}");
        let common = &ctx["common_tls_context"];
        assert_eq!(
            common["tls_certificates"],
            json!([{
                "certificate_chain": file("envoy-client.pem"),
                "private_key": file("envoy-client-key.pem"),
            }]),
            "{name}: Envoy's client certificate"
        );
        assert_eq!(
            common["validation_context"],
            json!({
                "trusted_ca": file("mesh-ca.pem"),
                "match_typed_subject_alt_names": [
                    {"san_type": "DNS", "matcher": {"exact": "host.bulkhead.localhost"}}
                ],
            }),
            "{name}: the host's certificate is checked"
        );
    }
}

#[test]
fn broken_edge_configs_fail_envoy_validate() {
    let state = tempfile::tempdir().unwrap();
    let (_, cert, key) = dev_tls(&state.path().join("tls"));
    let good = render(
        &workspace_root().join("envoy/edge.yaml"),
        state.path(),
        &run_vars(&cert, &key),
    );
    let missing_key = state.path().join("no-such-key.pem");
    let client_key = cert.with_file_name("envoy-client-key.pem");
    let missing_client_key = state.path().join("no-such-client-key.pem");
    let cases: [(&str, String, &str); 4] = [
        (
            "a misspelt route field",
            good.replacen(
                "cluster_header: x-data-plane",
                "cluster_headr: x-data-plane",
                1,
            ),
            "cluster_headr",
        ),
        (
            "an unknown tenant-router field",
            good.replacen(
                "\"edge_region\": \"us-east-1\"",
                "\"edge_regoin\": \"us-east-1\"",
                1,
            ),
            "edge_regoin",
        ),
        (
            "a missing TLS key",
            good.replace(key.to_str().unwrap(), missing_key.to_str().unwrap()),
            "no-such-key.pem",
        ),
        (
            "a missing upstream client key",
            good.replace(
                client_key.to_str().unwrap(),
                missing_client_key.to_str().unwrap(),
            ),
            "no-such-client-key.pem",
        ),
    ];
    for (what, yaml, named) in cases {
        assert_ne!(yaml, good, "{what}: the edit did not apply");
        let file = state.path().join("broken.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let (ok, log) = validate(&file);
        assert!(!ok, "{what}: envoy --mode validate accepted it:\n{log}");
        assert!(
            log.contains(named),
            "{what}: the error does not name {named:?}:\n{log}"
        );
    }
}

/// The `WasmPlugin` documents of the rendered Istio files, plus every document by kind.
fn rendered_istio(out: &Path) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("{{"), "{}: placeholder left", file.display());
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            docs.push(value);
        }
    }
    docs
}

#[test]
fn istio_plugins_pin_the_modules_sha256_and_their_filters_accept_the_config() {
    let wasm_dir = module("jwt_auth_filter").parent().unwrap().to_path_buf();
    for (_, stem, _) in EDGE_MODULES {
        module(stem);
    }
    let out = tempfile::tempdir().unwrap();
    let base = "https://wasm.test/bulkhead";
    let run = Command::new("bash")
        .arg(workspace_root().join("scripts/istio.sh"))
        .arg(out.path())
        .env("WASM_DIR", &wasm_dir)
        .env("WASM_BASE_URL", format!("{base}/"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "istio.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let docs = rendered_istio(out.path());
    let mut plugins: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "WasmPlugin").collect();
    assert_eq!(plugins.len(), 3, "one WasmPlugin per filter");

    // Istio runs AUTHN before AUTHZ, and within a phase the higher priority first.
    let phase_rank = |p: &Value| match p["spec"]["phase"].as_str() {
        Some("AUTHN") => 0,
        Some("AUTHZ") => 1,
        Some("STATS") => 2,
        other => panic!("phase {other:?}"),
    };
    plugins.sort_by_key(|p| (phase_rank(p), -p["spec"]["priority"].as_i64().unwrap_or(0)));
    let order: Vec<&str> = plugins
        .iter()
        .map(|p| p["spec"]["pluginName"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["jwt_auth", "tenant_router", "rate_limit"]);
    assert_eq!(plugins[0]["spec"]["phase"], "AUTHN");

    let mut filters = Vec::new();
    let mut clusters = BTreeSet::new();
    for p in &plugins {
        assert_eq!(p["apiVersion"], "extensions.istio.io/v1alpha1");
        let spec = &p["spec"];
        let root_id = spec["pluginName"].as_str().unwrap();
        let file = format!("{root_id}_filter.wasm");
        assert_eq!(spec["url"], format!("{base}/{file}"), "{root_id}: url");
        let local = wasm_dir.join(&file);
        assert_eq!(
            spec["sha256"].as_str(),
            Some(sha256_hex(&local).as_str()),
            "{root_id}: sha256 of {}",
            local.display()
        );
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{root_id}");
        let cfg = &spec["pluginConfig"];
        for cluster in [
            &cfg["registry"]["cluster"],
            &cfg["providers"][0]["jwks"]["remote"]["cluster"],
        ] {
            if let Some(c) = cluster.as_str() {
                clusters.insert(c.to_string());
            }
        }
        // What Istio makes of a WasmPlugin: plugin name <namespace>.<name>, root_id =
        // pluginName, no vm_id, the pluginConfig as JSON in a StringValue.
        let name = format!(
            "{}.{}",
            p["metadata"]["namespace"].as_str().unwrap(),
            p["metadata"]["name"].as_str().unwrap()
        );
        filters.push(config::wasm_filter(
            &name,
            root_id,
            &local,
            &cfg.to_string(),
            "",
        ));
    }
    assert!(
        clusters.iter().any(|c| c.starts_with("outbound|")),
        "clusters named as Istio names them: {clusters:?}"
    );
    let cluster_yaml: Vec<String> = clusters
        .iter()
        .map(|c| config::static_cluster(c, 9))
        .collect();
    let yaml = config::bootstrap(
        &[config::header_routed_listener(
            "gateway",
            &filters,
            "x-data-plane",
        )],
        &cluster_yaml,
    );
    let file = out.path().join("istio-equivalent-envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (ok, log) = validate(&file);
    assert!(
        ok,
        "the WasmPlugins' pluginConfig, as Istio hands it over, was refused:\n{log}"
    );

    // The VirtualService routes exactly the registry's data planes on x-data-plane.
    let vs = docs
        .iter()
        .find(|d| d["kind"] == "VirtualService")
        .expect("a VirtualService routing on x-data-plane");
    let routed: BTreeSet<String> = vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["match"][0]["headers"]["x-data-plane"]["exact"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(routed, registry_clusters());
}

#[test]
fn istio_refuses_an_oci_url_the_module_hash_cannot_pin() {
    let wasm_dir = module("jwt_auth_filter").parent().unwrap().to_path_buf();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(workspace_root().join("scripts/istio.sh"))
        .arg(out.path())
        .env("WASM_DIR", &wasm_dir)
        .env("WASM_BASE_URL", "oci://registry.test/bulkhead")
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("digest"));
}
