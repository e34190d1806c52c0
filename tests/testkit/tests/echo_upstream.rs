//! The echo upstream reports requests exactly as they arrived.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bulkhead_testkit::{EchoUpstream, EchoedRequest, Envoy, config, http_get, http_request};

#[test]
fn order_duplicates_and_case_are_reported_exactly() {
    let echo = EchoUpstream::start();
    let resp = http_get(
        echo.port(),
        "/p?q=%20",
        &[("X-B", "1"), ("x-a", "2"), ("x-b", "3"), ("Host", "h.test")],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-b", "x-a", "x-b", "host", "connection"]);
    assert_eq!(seen.header_all("x-b"), ["1", "3"]);
    assert_eq!(seen.path, "/p?q=%20");
    assert_eq!(echo.requests(), vec![seen]);
}

#[test]
fn keep_alive_and_chunked_bodies() {
    let echo = EchoUpstream::start();
    let mut s = TcpStream::connect(("127.0.0.1", echo.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    let reqs = echo.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].body.as_slice()),
        ("POST", &b"abc"[..])
    );
    assert_eq!(reqs[1].path, "/b");
}

#[test]
fn body_through_envoy_and_two_envoys_side_by_side() {
    let echo = EchoUpstream::start();
    let yaml = config::bootstrap(
        &[
            config::listener("a", &[], "echo"),
            config::listener("b", &[], "echo"),
        ],
        &[config::echo_cluster("echo", echo.port())],
    );
    // Two Envoys at once (distinct base ids / ports), one with 2 workers.
    let one = Envoy::start(&yaml, 1).unwrap();
    let two = Envoy::start(&yaml, 2).unwrap();
    assert_ne!(one.listener_port("a"), one.listener_port("b"));
    assert_ne!(one.admin_port(), two.admin_port());
    for port in [one.listener_port("a"), two.listener_port("b")] {
        let r = http_request(
            port,
            "PUT",
            "/up",
            &[("content-type", "text/plain")],
            b"payload",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let seen = EchoedRequest::from_json(&r.json().unwrap()).unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.body.as_slice()),
            ("PUT", &b"payload"[..])
        );
    }
    assert_eq!(echo.request_count(), 2);
}
