//! JwksServer controls, directly and as Envoy's remote JWKS.

use std::time::{Duration, Instant};

use bulkhead_testkit::config::{self, JwksSource};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, Envoy, JwksServer, forge, http_get};
use serde_json::json;

#[test]
fn controls_work_over_plain_http() {
    let first = keys::jwks(&[keys::key(Alg::ES256)]);
    let jwks = JwksServer::start(first.clone());
    assert_eq!(jwks.fetch_count(), 0);

    let r = http_get(jwks.port(), "/.well-known/jwks.json", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(r.json().unwrap(), first);
    assert_eq!(jwks.fetch_count(), 1);

    jwks.set_cache_control(Some("max-age=42".into()));
    let second = keys::jwks(&[keys::key(Alg::EdDSA), keys::key(Alg::PS256)]);
    jwks.set_jwks(second.clone());
    let r = http_get(jwks.port(), "/any/other/path", &[]).unwrap();
    assert_eq!(r.header("cache-control"), Some("max-age=42"));
    assert_eq!(r.json().unwrap(), second);

    jwks.set_down(true);
    let r = http_get(jwks.port(), "/", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("cache-control"), Some("max-age=42"));
    jwks.set_down(false);
    jwks.set_cache_control(None);
    let r = http_get(jwks.port(), "/", &[]).unwrap();
    assert_eq!((r.status, r.header("cache-control")), (200, None));

    jwks.set_raw_body("{not json");
    assert_eq!(http_get(jwks.port(), "/", &[]).unwrap().text(), "{not json");

    let post = bulkhead_testkit::http_request(jwks.port(), "POST", "/", &[], b"x").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(jwks.fetch_count(), 5, "POST is not counted");

    jwks.set_delay(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(http_get(jwks.port(), "/", &[]).unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn envoy_remote_jwks_fetches_from_the_server() {
    let echo = EchoUpstream::start();
    let key = keys::key(Alg::PS384);
    let jwks = JwksServer::start(keys::jwks(&[key]));
    jwks.set_down(true);
    let filter = config::native_jwt_authn("iss", &["aud"], &JwksSource::remote("jwks"));
    let yaml = config::bootstrap(
        &[config::listener("jwt", &[filter], "echo")],
        &[
            config::echo_cluster("echo", echo.port()),
            config::jwks_cluster("jwks", jwks.port()),
        ],
    );
    let envoy = Envoy::start(&yaml, 1).unwrap();
    let port = envoy.listener_port("jwt");
    let now = forge::now();
    let auth = format!(
        "Bearer {}",
        forge::standard(key, "iss", json!("aud"), "org-r", now, now + 300)
    );

    // Down: the fetch fails and the request is refused.
    let r = http_get(port, "/", &[("authorization", &auth)]).unwrap();
    eprintln!("jwks down -> {} {:?}", r.status, r.text());
    assert_eq!(r.status, 401);
    let after_down = jwks.fetch_count();
    assert!(after_down >= 1);

    // Up again: the next request fetches and succeeds; later ones use the cache.
    jwks.set_down(false);
    let r = http_get(port, "/", &[("authorization", &auth)]).unwrap();
    eprintln!("jwks up   -> {} fetches={}", r.status, jwks.fetch_count());
    assert_eq!(r.status, 200, "{}", r.text());
    let fetched = jwks.fetch_count();
    assert!(fetched > after_down);
    assert_eq!(
        http_get(port, "/", &[("authorization", &auth)])
            .unwrap()
            .status,
        200
    );
    assert_eq!(jwks.fetch_count(), fetched, "cached JWKS is reused");
    assert_eq!(
        echo.last_request().unwrap().header("x-org-id"),
        Some("org-r")
    );
}
