//! Header values that are not UTF-8 (HTTP allows obs-text bytes) must neither crash the
//! jwt-auth filter nor get through it. The proxy-wasm SDK's string header calls panic on
//! such bytes, which used to kill the worker's VM: every later request on that worker got
//! 503 until Envoy restarted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bulkhead_e2e::{bearer, jwt_auth_filter};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, Envoy, cases, config, http_get};

/// One raw HTTP/1.1 request with `extra` header bytes; the response status.
fn raw_status(port: u16, extra: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = b"GET /v1/eta HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n".to_vec();
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn non_utf8_header_values_are_refused_or_passed_and_the_worker_survives() {
    let echo = EchoUpstream::start();
    let cfg = config::bootstrap(
        &[config::listener(
            "edge",
            &[jwt_auth_filter(
                "jwt_binary",
                &cases::filter_config(cases::inline_jwks()),
            )],
            "echo",
        )],
        &[config::echo_cluster("echo", echo.port())],
    );
    // One worker: a crashed VM would show on the very next request.
    let envoy = Envoy::start(&cfg, 1).unwrap();
    let port = envoy.listener_port("edge");
    let token = bearer(keys::key(Alg::ES256), "UA");

    // A binary Authorization value: 401, not a crash.
    assert_eq!(
        raw_status(port, b"authorization: Bearer \xff\xfe\xfd\r\n"),
        401
    );
    // A valid token next to an unrelated binary header: allowed through.
    let mut extra = format!("authorization: {token}\r\n").into_bytes();
    extra.extend_from_slice(b"x-note: caf\xe9\r\n");
    assert_eq!(raw_status(port, &extra), 200);
    // A binary value under a reserved prefix is stripped, not forwarded.
    let mut extra = format!("authorization: {token}\r\n").into_bytes();
    extra.extend_from_slice(b"x-tenant-tier: s\xeflo\r\n");
    assert_eq!(raw_status(port, &extra), 200);
    assert!(
        echo.last_request()
            .unwrap()
            .header("x-tenant-tier")
            .is_none()
    );

    // The worker still serves.
    for _ in 0..10 {
        let r = http_get(port, "/v1/eta", &[("authorization", token.as_str())]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
