//! Envoy's native jwt_authn filter against tokens and keys from the testkit:
//! proves the keys/forge modules produce tokens a standard JOSE verifier
//! (Envoy's jwt_verify_lib on BoringSSL) accepts, and records how Envoy
//! answers the failure cases.

use bulkhead_testkit::config::{self, JwksSource};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, EchoedRequest, Envoy, Response, forge, http_get};
use serde_json::json;

const ISSUER: &str = "https://issuer.bulkhead.test";
const AUDIENCE: &str = "bulkhead-api";

/// Echo upstream + Envoy with a native jwt_authn listener "jwt" trusting
/// every asymmetric test key.
#[allow(clippy::unwrap_used)] // test helper
fn setup() -> (EchoUpstream, Envoy) {
    let echo = EchoUpstream::start();
    let jwks = keys::jwks(&keys::all_asymmetric());
    let filter = config::native_jwt_authn(ISSUER, &[AUDIENCE], &JwksSource::Inline(jwks));
    let yaml = config::bootstrap(
        &[config::listener("jwt", &[filter], "echo")],
        &[config::echo_cluster("echo", echo.port())],
    );
    let envoy = Envoy::start(&yaml, 1).unwrap();
    (echo, envoy)
}

#[allow(clippy::unwrap_used)] // test helper
fn get_with_token(envoy: &Envoy, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    http_get(
        envoy.listener_port("jwt"),
        "/api",
        &[("authorization", &auth)],
    )
    .unwrap()
}

#[test]
fn every_supported_alg_is_accepted_and_org_id_forwarded() {
    let (echo, envoy) = setup();
    let now = forge::now();
    for alg in Alg::ASYMMETRIC {
        let key = keys::key(alg);
        let org = format!("org-{alg}");
        let token = forge::standard(key, ISSUER, json!(AUDIENCE), &org, now, now + 300);
        let resp = get_with_token(&envoy, &token);
        assert_eq!(resp.status, 200, "{alg}: {}", resp.text());
        let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
        assert_eq!(seen.header_all("x-org-id"), vec![org.as_str()], "{alg}");
        // forward: true keeps the credential for the upstream.
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {token}").as_str()),
            "{alg}"
        );
    }
    // An audience array containing ours is fine too.
    let key = keys::key(Alg::ES256);
    let token = forge::standard(key, ISSUER, json!(["other", AUDIENCE]), "o", now, now + 300);
    assert_eq!(get_with_token(&envoy, &token).status, 200);
    assert_eq!(echo.request_count(), Alg::ASYMMETRIC.len() + 1);
}

#[test]
fn failures_are_rejected_before_the_upstream() {
    let (echo, envoy) = setup();
    let port = envoy.listener_port("jwt");
    let now = forge::now();
    let key = keys::key(Alg::RS256);
    let good = |aud: serde_json::Value, iat: i64, exp: i64| {
        forge::standard(key, ISSUER, aud, "org-1", iat, exp)
    };

    let missing = http_get(port, "/api", &[]).unwrap();
    let expired = get_with_token(&envoy, &good(json!(AUDIENCE), now - 3600, now - 120));
    let wrong_aud = get_with_token(&envoy, &good(json!("someone-else"), now, now + 300));
    let bad_sig = get_with_token(
        &envoy,
        &forge::tamper_signature(&good(json!(AUDIENCE), now, now + 300)),
    );
    let unknown_key = get_with_token(
        &envoy,
        &forge::standard(
            keys::alternate(Alg::RS256),
            ISSUER,
            json!(AUDIENCE),
            "o",
            now,
            now + 300,
        ),
    );
    let alg_none = get_with_token(
        &envoy,
        &forge::alg_none(&forge::standard_payload(
            ISSUER,
            json!(AUDIENCE),
            "o",
            now,
            now + 300,
        )),
    );
    let hs256 = get_with_token(
        &envoy,
        &forge::standard(
            keys::key(Alg::HS256),
            ISSUER,
            json!(AUDIENCE),
            "o",
            now,
            now + 300,
        ),
    );
    let jwe = get_with_token(&envoy, &forge::jwe_shaped());
    let garbage = http_get(port, "/api", &[("authorization", "Bearer not.a.jwt")]).unwrap();
    // Within clock_skew_seconds (60): still accepted.
    let skewed = get_with_token(&envoy, &good(json!(AUDIENCE), now - 600, now - 30));

    for (name, resp) in [
        ("missing", &missing),
        ("expired", &expired),
        ("wrong_aud", &wrong_aud),
        ("bad_sig", &bad_sig),
        ("unknown_key", &unknown_key),
        ("alg_none", &alg_none),
        ("hs256", &hs256),
        ("jwe", &jwe),
        ("garbage", &garbage),
        ("skewed", &skewed),
    ] {
        eprintln!(
            "{name:12} -> {} {:?} www-authenticate={:?}",
            resp.status,
            resp.text(),
            resp.header("www-authenticate")
        );
    }
    assert_eq!(missing.status, 401);
    assert_eq!(expired.status, 401);
    assert_eq!(bad_sig.status, 401);
    assert_eq!(unknown_key.status, 401);
    assert_eq!(alg_none.status, 401);
    assert_eq!(hs256.status, 401);
    assert_eq!(jwe.status, 401);
    assert_eq!(garbage.status, 401);
    assert_eq!(wrong_aud.status, 403);
    assert_eq!(skewed.status, 200);
    assert_eq!(
        echo.request_count(),
        1,
        "only the skewed-but-valid request may reach the upstream"
    );
}

#[test]
fn client_supplied_org_header_and_oversize_tokens() {
    let (echo, envoy) = setup();
    let now = forge::now();
    let key = keys::key(Alg::EdDSA);
    let token = forge::standard(key, ISSUER, json!(AUDIENCE), "org-real", now, now + 300);
    let auth = format!("Bearer {token}");
    let resp = http_get(
        envoy.listener_port("jwt"),
        "/",
        &[("x-org-id", "org-spoofed"), ("authorization", &auth)],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
    // claim_to_headers replaces a client-supplied header of the same name.
    assert_eq!(seen.header_all("x-org-id"), ["org-real"]);

    // A token *without* the claim: Envoy still strips the client's header.
    let no_claim = forge::token(
        key,
        &forge::standard_header(key),
        &json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}).to_string(),
    );
    let auth = format!("Bearer {no_claim}");
    let resp = http_get(
        envoy.listener_port("jwt"),
        "/",
        &[("x-org-id", "org-spoofed"), ("authorization", &auth)],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = EchoedRequest::from_json(&resp.json().unwrap()).unwrap();
    assert_eq!(seen.header_all("x-org-id"), Vec::<&str>::new());

    // Envoy's default max_request_headers_kb is 60.
    let big = forge::oversize(
        key,
        &forge::standard_header(key),
        &forge::standard_payload(ISSUER, json!(AUDIENCE), "o", now, now + 300),
        70_000,
    );
    let resp = get_with_token(&envoy, &big);
    eprintln!("70 kB token -> {} {:?}", resp.status, resp.text());
    assert_eq!(resp.status, 431, "{}", resp.text());
    let small_big = forge::oversize(
        key,
        &forge::standard_header(key),
        &forge::standard_payload(ISSUER, json!(AUDIENCE), "o", now, now + 300),
        20_000,
    );
    assert_eq!(get_with_token(&envoy, &small_big).status, 200);
    assert_eq!(echo.request_count(), 3);
}
