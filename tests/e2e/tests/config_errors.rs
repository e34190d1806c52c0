//! A bad filter configuration must stop Envoy from starting, and the log
//! must name the offending field (the filter logs
//! ``jwt-auth: invalid configuration: field `…`: …`` at critical level).

use std::time::Duration;

use bulkhead_e2e::jwt_auth_filter;
use bulkhead_testkit::cases;
use bulkhead_testkit::{EchoUpstream, Envoy, config};
use serde_json::{Value, json};

/// `(what is wrong, the field the log must name, the broken configuration)`.
fn broken_configs() -> Vec<(&'static str, &'static str, Value)> {
    let standard = || cases::filter_config(cases::inline_jwks());
    let mut out = Vec::new();

    let mut c = standard();
    c["providers"][0]["audiences"] = json!([]);
    out.push(("empty audiences", "providers[0].audiences", c));

    let mut c = standard();
    c["providers"][0]["tenant_clam"] = json!("org_id");
    out.push(("unknown provider field", "providers[0].tenant_clam", c));

    let mut c = standard();
    c["clock_skew"] = json!(60);
    out.push(("unknown top-level field", "clock_skew", c));

    let mut c = standard();
    c["clock_skew_seconds"] = json!(301);
    out.push(("skew above the cap", "clock_skew_seconds", c));

    let mut c = standard();
    c["providers"][0]["algorithms"] = json!(["RS256", "HS256"]);
    out.push(("HS256 allowed", "providers[0].algorithms", c));

    let mut c = standard();
    c["tenant_header"] = json!("X-Org-Id");
    out.push(("upper-case tenant header", "tenant_header", c));

    let mut c = standard();
    c["realm"] = json!("bulk\"head");
    out.push(("quote in realm", "realm", c));

    let mut c = standard();
    c["max_token_bytes"] = json!(100);
    out.push(("tiny max_token_bytes", "max_token_bytes", c));

    let c = cases::filter_config(cases::remote_jwks("idp", "jwks.json"));
    out.push(("relative JWKS path", "providers[0].jwks.remote.path", c));
    out
}

fn yaml_for(cfg: &Value, upstream_port: u16) -> String {
    config::bootstrap(
        &[config::listener(
            "edge",
            &[jwt_auth_filter("jwt_bad", cfg)],
            "echo",
        )],
        &[
            config::echo_cluster("echo", upstream_port),
            config::jwks_cluster("idp", upstream_port),
        ],
    )
}

/// The critical log line naming `field`; panics with what the filter said
/// instead.
#[allow(clippy::panic)] // an assertion
fn line_naming(log: &str, field: &str, what: &str) -> String {
    let needle = format!("jwt-auth: invalid configuration: field `{field}`");
    match log.lines().find(|l| l.contains(&needle)) {
        Some(line) => {
            assert!(line.contains("[critical]"), "{what}: not critical: {line}");
            line.to_string()
        }
        None => {
            let said: Vec<&str> = log.lines().filter(|l| l.contains("jwt-auth:")).collect();
            panic!("{what}: no log line with {needle:?}; the filter logged {said:#?}")
        }
    }
}

#[test]
fn envoy_refuses_to_start_and_the_log_names_the_field() {
    let echo = EchoUpstream::start();
    let configs = broken_configs();
    let logs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|(_, _, cfg)| {
                let yaml = yaml_for(cfg, echo.port());
                s.spawn(move || Envoy::start_expect_failure(&yaml, Duration::from_secs(30)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((what, field, _), log) in configs.iter().zip(&logs) {
        let line = line_naming(log, field, what);
        let message = line.split("jwt-auth: ").nth(1).unwrap_or(&line);
        println!("{what:24} → {message}");
    }

    // The control: the standard configuration, same YAML shape, starts.
    let good = cases::filter_config(cases::inline_jwks());
    let envoy = Envoy::start(&yaml_for(&good, echo.port()), 1);
    assert!(envoy.is_ok(), "{:#}", envoy.err().unwrap());
}

#[test]
fn a_bad_strip_header_prefix_is_reported_under_its_own_field() {
    // Both `strip_headers` entries are fine; the second *prefix* is not a
    // valid header name, so the log must name `strip_header_prefixes[1]`.
    let echo = EchoUpstream::start();
    let mut c = cases::filter_config(cases::inline_jwks());
    c["strip_headers"] = json!(["x-user-id", "x-session"]);
    c["strip_header_prefixes"] = json!(["x-internal-", "X Bad-"]);
    let log = Envoy::start_expect_failure(&yaml_for(&c, echo.port()), Duration::from_secs(30));
    line_naming(
        &log,
        "strip_header_prefixes[1]",
        "bad strip_header_prefixes entry",
    );
}
