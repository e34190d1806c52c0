//! Remote JWKS through a real Envoy (two workers): key rotation, unknown-kid
//! storms, IdP outages and Cache-Control bounds. Each test has its own
//! Envoy, echo upstream and [`JwksServer`] (the IdP, reached through the
//! Envoy cluster `idp`), so they run in parallel without sharing state.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_e2e::{bearer, counter, jwt_auth_filter, remote_jwks, wait_until};
use bulkhead_testkit::cases;
use bulkhead_testkit::keys::{self, Alg, TestKey};
use bulkhead_testkit::{
    EchoUpstream, EchoedRequest, Envoy, JwksServer, Response, config, http_get,
};
use serde_json::{Value, json};

/// Envoy with one listener `edge` running our filter against `idp`.
struct Edge {
    echo: EchoUpstream,
    idp: JwksServer,
    envoy: Envoy,
}

#[allow(clippy::unwrap_used)] // test helpers
impl Edge {
    /// `idp` must already be in the state the test starts from (e.g. down).
    fn start(idp: JwksServer, tuning: Value) -> Edge {
        let echo = EchoUpstream::start();
        let cfg = cases::filter_config(remote_jwks("idp", tuning));
        let yaml = config::bootstrap(
            &[config::listener(
                "edge",
                &[jwt_auth_filter("jwt_edge", &cfg)],
                "echo",
            )],
            &[
                config::echo_cluster("echo", echo.port()),
                config::jwks_cluster("idp", idp.port()),
            ],
        );
        let envoy = Envoy::start(&yaml, 2).unwrap();
        Edge { echo, idp, envoy }
    }

    fn get(&self, authorization: &str) -> Response {
        http_get(
            self.envoy.listener_port("edge"),
            "/",
            &[("authorization", authorization)],
        )
        .unwrap()
    }

    /// Waits for the first fetch, then for a valid token to pass; returns
    /// once no start-up fetch can still be under way.
    fn settle_initial_keys(&self) {
        assert!(
            wait_until(Duration::from_secs(5), || self.idp.fetch_count() >= 1),
            "no JWKS fetch within 5 s of start-up"
        );
        let resp = self.get(&bearer(keys::key(Alg::ES256), "org-initial"));
        assert_eq!(resp.status, 200, "{}", resp.text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn error_of(resp: &Response) -> String {
    resp.json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[allow(clippy::unwrap_used)] // test helper
fn tenant_seen(resp: &Response) -> Vec<String> {
    let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
    seen.header_all(cases::TENANT_HEADER)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn rotation_to_a_new_kid_fetches_once_and_lets_the_parked_request_through() {
    let key_a = keys::key(Alg::ES256);
    let key_b: TestKey = keys::alternate(Alg::ES256).with_kid("rotated-key-b");
    let edge = Edge::start(
        JwksServer::start(keys::jwks(&[key_a])),
        json!({ "unknown_kid_cooldown_seconds": 2 }),
    );
    edge.settle_initial_keys();
    // The start-up fetch was a claim too: let the unknown-kid cooldown pass.
    std::thread::sleep(Duration::from_millis(2_300));

    let before = edge.idp.fetch_count();
    edge.idp.set_jwks(keys::jwks(&[key_a, &key_b]));
    let resp = edge.get(&bearer(&key_b, "org-rotated"));
    assert_eq!(resp.status, 200, "token of the new key: {}", resp.text());
    assert_eq!(tenant_seen(&resp), ["org-rotated"]);
    assert_eq!(
        edge.idp.fetch_count(),
        before + 1,
        "an unknown kid must cause exactly one fetch"
    );

    // Both workers now know key B (the other one adopts the fetched set
    // from shared data instead of fetching itself).
    for i in 0..8 {
        let resp = edge.get(&bearer(&key_b, &format!("org-rotated-{i}")));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(edge.idp.fetch_count(), before + 1, "no further fetches");
    assert!(counter(&edge.envoy, "jwks_fetch_ok") >= 2);
}

/// A small xorshift generator for kids no one has seen.
fn random_kids(n: usize) -> Vec<String> {
    let mut x = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("storm-{x:016x}")
        })
        .collect()
}

#[test]
fn unknown_kid_storm_causes_at_most_one_fetch_per_cooldown() {
    const COOLDOWN: Duration = Duration::from_secs(4);
    let edge = Edge::start(
        JwksServer::start(cases::jwks()),
        json!({ "unknown_kid_cooldown_seconds": COOLDOWN.as_secs() }),
    );
    edge.settle_initial_keys();
    // Past the cooldown of the start-up fetch, so the storm's first unknown
    // kid may legitimately refresh — once.
    std::thread::sleep(COOLDOWN + Duration::from_millis(300));

    let attacker = keys::alternate(Alg::ES256);
    let tokens: Vec<String> = random_kids(50)
        .into_iter()
        .map(|kid| bearer(&attacker.with_kid(kid), "org-storm"))
        .collect();
    let before = edge.idp.fetch_count();
    let echo_before = edge.echo.request_count();
    let started = Instant::now();
    // All at once: one thread per request.
    let answers: Vec<(u16, String, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let edge = &edge;
                s.spawn(move || {
                    let sent = Instant::now();
                    let r = edge.get(t);
                    (r.status, error_of(&r), sent.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    let fetches = edge.idp.fetch_count() - before;
    let slowest = answers.iter().map(|a| a.2).max().unwrap_or_default();
    println!(
        "storm of {} unknown kids: {took:?} (slowest answer {slowest:?}), {fetches} fetch(es)",
        answers.len()
    );
    assert!(
        took < COOLDOWN,
        "the storm took {took:?}, longer than the cooldown: inconclusive"
    );
    assert_eq!(answers.len(), 50);
    for (status, error, _) in &answers {
        assert_eq!((*status, error.as_str()), (401, "invalid_token"));
    }
    assert!(fetches <= 1, "{fetches} fetches for one cooldown");
    assert_eq!(
        fetches, 1,
        "the first unknown kid after the cooldown refreshes"
    );
    assert_eq!(edge.echo.request_count(), echo_before);
    // Known keys still work.
    let resp = edge.get(&bearer(keys::key(Alg::EdDSA), "org-after-storm"));
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn idp_down_after_keys_are_known_keeps_the_last_good_keys() {
    let edge = Edge::start(
        JwksServer::start(cases::jwks()),
        json!({ "refresh_seconds": 1, "min_refresh_seconds": 1, "retry_seconds": 1 }),
    );
    edge.settle_initial_keys();
    edge.idp.set_down(true);
    let down_at = edge.idp.fetch_count();
    assert!(
        wait_until(Duration::from_secs(6), || {
            edge.idp.fetch_count() >= down_at + 2 && counter(&edge.envoy, "jwks_fetch_failed") >= 2
        }),
        "expected failing refreshes while the IdP is down (fetches {} → {}, failed {})",
        down_at,
        edge.idp.fetch_count(),
        counter(&edge.envoy, "jwks_fetch_failed")
    );
    for (i, alg) in [
        Alg::RS256,
        Alg::PS512,
        Alg::ES384,
        Alg::EdDSA,
        Alg::ES256,
        Alg::RS384,
    ]
    .into_iter()
    .enumerate()
    {
        let tenant = format!("org-during-outage-{i}");
        let resp = edge.get(&bearer(keys::key(alg), &tenant));
        assert_eq!(resp.status, 200, "{alg} during the outage: {}", resp.text());
        assert_eq!(tenant_seen(&resp), [tenant]);
    }
    let unknown = edge.get(&bearer(keys::alternate(Alg::ES256), "org-x"));
    assert_eq!(
        (unknown.status, error_of(&unknown).as_str()),
        (401, "invalid_token")
    );
    assert!(
        edge.envoy.logs().contains("keeping the last good keys"),
        "the failed refresh is logged"
    );
}

#[test]
fn idp_down_from_the_start_is_503_until_it_comes_up() {
    let idp = JwksServer::start(cases::jwks());
    idp.set_down(true);
    let edge = Edge::start(idp, json!({ "retry_seconds": 1 }));
    let key = keys::key(Alg::ES256);
    for i in 0..2 {
        let sent = Instant::now();
        let resp = edge.get(&bearer(key, &format!("org-early-{i}")));
        println!(
            "IdP down: answer {} after {:?}",
            resp.status,
            sent.elapsed()
        );
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(error_of(&resp), "jwks_unavailable");
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
    assert_eq!(edge.echo.request_count(), 0);
    assert!(counter(&edge.envoy, "unavailable") >= 2);
    assert!(counter(&edge.envoy, "jwks_fetch_failed") >= 1);

    edge.idp.set_down(false);
    let up = Instant::now();
    let mut last = 0;
    let recovered = wait_until(Duration::from_secs(8), || {
        last = edge.get(&bearer(key, "org-recovered")).status;
        last == 200
    });
    assert!(recovered, "still {last} 8 s after the IdP came back");
    println!("recovered {:?} after the IdP came back", up.elapsed());
    assert_eq!(edge.echo.request_count(), 1);
}

#[test]
fn cache_control_max_age_is_clamped_to_the_configured_bounds() {
    const WINDOW: Duration = Duration::from_secs(6);
    // `low`: max-age=1 under min_refresh_seconds=4 → every 4 s (not 1 s,
    // and not the 300 s default). `high`: max-age=3600 over
    // max_refresh_seconds=3 → every 3 s (not 3600 s, and not the 1 s
    // refresh_seconds used without the header).
    let echo = EchoUpstream::start();
    let low = JwksServer::start(cases::jwks());
    low.set_cache_control(Some("public, max-age=1".into()));
    let high = JwksServer::start(cases::jwks());
    high.set_cache_control(Some("max-age=3600".into()));
    let low_cfg = cases::filter_config(remote_jwks(
        "idp_low",
        json!({ "min_refresh_seconds": 4, "retry_seconds": 1 }),
    ));
    let high_cfg = cases::filter_config(remote_jwks(
        "idp_high",
        json!({ "refresh_seconds": 1, "min_refresh_seconds": 1, "max_refresh_seconds": 3, "retry_seconds": 1 }),
    ));
    let yaml = config::bootstrap(
        &[
            config::listener("low", &[jwt_auth_filter("jwt_low", &low_cfg)], "echo"),
            config::listener("high", &[jwt_auth_filter("jwt_high", &high_cfg)], "echo"),
        ],
        &[
            config::echo_cluster("echo", echo.port()),
            config::jwks_cluster("idp_low", low.port()),
            config::jwks_cluster("idp_high", high.port()),
        ],
    );
    let envoy = Envoy::start(&yaml, 2).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        low.fetch_count() >= 1 && high.fetch_count() >= 1
    }));
    std::thread::sleep(Duration::from_millis(300));
    let (low0, high0) = (low.fetch_count(), high.fetch_count());
    std::thread::sleep(WINDOW);
    let (low_n, high_n) = (low.fetch_count() - low0, high.fetch_count() - high0);
    println!("fetches in {WINDOW:?}: low {low_n}, high {high_n}");
    assert!(
        (1..=2).contains(&low_n),
        "max-age=1 clamped up to 4 s: expected 1–2 refreshes in {WINDOW:?}, got {low_n}"
    );
    assert!(
        (1..=2).contains(&high_n),
        "max-age=3600 clamped down to 3 s: expected 1–2 refreshes in {WINDOW:?}, got {high_n}"
    );
    for listener in ["low", "high"] {
        let auth = bearer(keys::key(Alg::RS512), "org-cc");
        let resp = http_get(
            envoy.listener_port(listener),
            "/",
            &[("authorization", &auth)],
        )
        .unwrap();
        assert_eq!(resp.status, 200, "{listener}: {}", resp.text());
    }
    assert_eq!(counter(&envoy, "jwks_fetch_failed"), 0);
}
