//! Envoy + echo upstream basics, and config-rejection handling.

use std::time::Duration;

use bulkhead_testkit::config::{self, JwksSource};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, EchoedRequest, Envoy, http_get};

#[test]
fn plain_listener_reaches_echo() {
    let echo = EchoUpstream::start();
    let yaml = config::bootstrap(
        &[config::listener("plain", &[], "echo")],
        &[config::echo_cluster("echo", echo.port())],
    );
    let envoy = Envoy::start(&yaml, 1).unwrap();
    let port = envoy.listener_port("plain");
    assert_ne!(port, 0);

    let resp = http_get(
        port,
        "/hello/world?q=1",
        &[("x-testkit", "abc"), ("x-dup", "1"), ("x-dup", "2")],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/hello/world?q=1");
    assert_eq!(seen.header("x-testkit"), Some("abc"));
    assert_eq!(seen.header_all("x-dup"), vec!["1", "2"]);
    assert_eq!(echo.request_count(), 1);
    assert_eq!(
        echo.last_request().unwrap().header("x-testkit"),
        Some("abc")
    );

    // Stats and logs are reachable.
    assert!(envoy.stats().contains("http.plain.downstream_rq_total"));
    assert_eq!(envoy.stat("http.plain.downstream_rq_2xx"), Some(1));
    // Envoy's log file is written asynchronously: the line may land after `/ready`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !envoy.logs().contains("starting main dispatch loop")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        envoy.logs().contains("starting main dispatch loop"),
        "{}",
        envoy.logs()
    );
}

#[test]
fn bad_config_is_an_error_with_the_log() {
    let jwt = config::native_jwt_authn(
        "iss",
        &["aud"],
        &JwksSource::Inline(keys::jwks(&[keys::key(Alg::RS256)])),
    )
    .replace(
        "forward: true",
        "forward: true\n      bogus_testkit_field: 1",
    );
    let yaml = config::bootstrap(
        &[config::listener("main", &[jwt], "echo")],
        &[config::echo_cluster("echo", 9)],
    );
    let log = Envoy::start_expect_failure(&yaml, Duration::from_secs(20));
    assert!(log.contains("bogus_testkit_field"), "{log}");

    let err = Envoy::start(&yaml, 1).unwrap_err().to_string();
    assert!(err.contains("exited during startup"), "{err}");
    assert!(err.contains("bogus_testkit_field"), "{err}");
}

#[test]
fn wasm_filter_yaml_is_accepted_by_envoy_proto_parser() {
    // A missing module: Envoy must get past config parsing (so the YAML
    // shape is right) and fail on loading the file.
    let missing = std::path::Path::new("/nonexistent/bulkhead-testkit/missing.wasm");
    let wasm = config::wasm_filter("bulkhead", "bulkhead_root", missing, r#"{"a":1}"#, "vm1");
    let yaml = config::bootstrap(
        &[config::listener("main", &[wasm], "echo")],
        &[config::echo_cluster("echo", 9)],
    );
    let log = Envoy::start_expect_failure(&yaml, Duration::from_secs(20));
    assert!(log.contains("missing.wasm"), "{log}");
}
