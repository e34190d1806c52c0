//! `bulkhead top --once` against the real `bulkhead serve`: one frame after two scrapes,
//! with the tenant that sent traffic in between, its rate and its share of guest CPU.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bulkhead_testkit::client::http_request;
use common::{bulkhead, ok, seeded, serve_ready};
use std::time::{Duration, Instant};

#[test]
fn top_once_prints_the_busy_tenant_with_its_share() {
    let (dir, reg) = seeded();
    let state = dir.path().to_str().unwrap();
    let srv = serve_ready(&reg, state, &[]);
    let port = srv.addr.port();
    let tok = ok(&reg, &["--state-dir", state, "token", "--org", "DL"]);
    let auth = format!("Bearer {}", tok.trim());
    let body = br#"{"rows":[{"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null}]}"#;
    let send = || {
        let r = http_request(
            port,
            "POST",
            "/v1/eta",
            &[("authorization", &auth), ("x-org-id", "DL")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    send(); // DL's model loaded before the frame

    let url = format!("http://{}/metrics", srv.addr);
    let top = bulkhead(&reg)
        .args(["top", "--url", &url, "--interval", "1.5", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Traffic between the two scrapes.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1200) {
        send();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = top.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains('\x1b'), "--once does not clear the screen");
    assert!(text.contains("TENANT") && text.contains("SHARE"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("DL "))
        .unwrap_or_else(|| panic!("no DL line: {text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    let rps: f64 = cols[1].parse().unwrap();
    assert!(rps > 5.0, "{line}");
    // The only tenant with guest time in the interval: all of the pool.
    assert_eq!(cols[6], "100%", "{line}");
}
