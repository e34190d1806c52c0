//! Native checks of the rule set with real keys (jwt-simple signs).

// Helpers outside #[test] fns are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_jwt::config::RulesConfig;
use bulkhead_jwt::verifier::InlineOnly;
use bulkhead_jwt::{Rejection, Rules, Verifier};
use jwt_simple::prelude::*;
use serde_json::json;

const ISS: &str = "https://idp.test";
const NOW: u64 = 1_800_000_000;

fn verifier(jwks: serde_json::Value) -> Verifier {
    let cfg: RulesConfig = serde_json::from_value(json!({
        "providers": [{"issuer": ISS, "audiences": ["bulkhead"], "jwks": {"inline": jwks}}]
    }))
    .unwrap();
    Verifier::new(Rules::from_config(cfg).unwrap())
}

#[derive(Serialize, Deserialize)]
struct Org {
    org_id: serde_json::Value,
}

fn claims(org: serde_json::Value, exp_in: i64) -> JWTClaims<Org> {
    let mut c = Claims::with_custom_claims(Org { org_id: org }, Duration::from_secs(1))
        .with_issuer(ISS)
        .with_audience("bulkhead");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    c.expires_at = Some(UnixTimeStamp::from_secs((NOW as i64 + exp_in) as u64));
    c.invalid_before = None;
    c
}

#[test]
fn es256_and_eddsa_verify_and_map_rejections() {
    let es = ES256KeyPair::generate().with_key_id("es");
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let jwks = json!({"keys": [
        serde_json::from_str::<serde_json::Value>(&es.public_key().to_jwk()).unwrap(),
        serde_json::from_str::<serde_json::Value>(&ed.public_key().to_jwk()).unwrap(),
    ]});
    let v = verifier(jwks);
    let t = es.sign(claims(json!("UA"), 600)).unwrap();
    let ok = v.verify(&t, NOW, &InlineOnly).unwrap();
    assert_eq!(ok.tenant, "UA");
    let t = ed.sign(claims(json!("DL"), 600)).unwrap();
    assert_eq!(v.verify(&t, NOW, &InlineOnly).unwrap().tenant, "DL");

    let expired = es.sign(claims(json!("UA"), -61)).unwrap();
    assert_eq!(
        v.verify(&expired, NOW, &InlineOnly),
        Err(Rejection::Invalid("token expired"))
    );
    let edge = es.sign(claims(json!("UA"), -60)).unwrap();
    assert!(v.verify(&edge, NOW, &InlineOnly).is_ok());

    let bad_tenant = es.sign(claims(json!("a b"), 600)).unwrap();
    assert_eq!(
        v.verify(&bad_tenant, NOW, &InlineOnly)
            .unwrap_err()
            .status(),
        403
    );

    let other = ES256KeyPair::generate().with_key_id("nope");
    let t = other.sign(claims(json!("UA"), 600)).unwrap();
    assert_eq!(
        v.verify(&t, NOW, &InlineOnly),
        Err(Rejection::UnknownKey { provider: 0 })
    );

    let forged = ES256KeyPair::generate().with_key_id("es");
    let t = forged.sign(claims(json!("UA"), 600)).unwrap();
    assert_eq!(
        v.verify(&t, NOW, &InlineOnly),
        Err(Rejection::Invalid("signature verification failed"))
    );
}

#[test]
fn rsa_pkcs1_and_pss_verify() {
    let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("rs");
    let ps = PS384KeyPair::generate(2048).unwrap().with_key_id("ps");
    let jwks = json!({"keys": [
        serde_json::from_str::<serde_json::Value>(&rs.public_key().to_jwk()).unwrap(),
        serde_json::from_str::<serde_json::Value>(&ps.public_key().to_jwk()).unwrap(),
    ]});
    let v = verifier(jwks);
    let t = rs.sign(claims(json!("UA"), 600)).unwrap();
    assert_eq!(v.verify(&t, NOW, &InlineOnly).unwrap().tenant, "UA");
    let t = ps.sign(claims(json!("UA"), 600)).unwrap();
    assert_eq!(v.verify(&t, NOW, &InlineOnly).unwrap().tenant, "UA");
    // A PS384 token presented with the RS256 key's kid is refused by the key's pinned alg
    // (jwt-simple's JWK export pins `alg`) or by the signature.
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let hdr = json!({"alg": "PS384", "kid": "rs", "typ": "JWT"}).to_string();
    parts[0] = Base64UrlSafeNoPadding::encode_to_string(hdr).unwrap();
    assert!(v.verify(&parts.join("."), NOW, &InlineOnly).is_err());
}

#[test]
fn config_errors_name_the_field() {
    let bad =
        json!({"providers": [{"issuer": ISS, "audiences": [], "jwks": {"inline": {"keys": []}}}]});
    let cfg: RulesConfig = serde_json::from_value(bad).unwrap();
    let e = Rules::from_config(cfg).err().unwrap();
    assert_eq!(e.field, "providers[0].audiences");
    let cfg: RulesConfig =
        serde_json::from_value(json!({"providers": [{"issuer": ISS, "audiences": ["a"],
        "algorithms": ["HS256"], "jwks": {"inline": {"keys": []}}}]}))
        .unwrap();
    assert_eq!(
        Rules::from_config(cfg).err().unwrap().field,
        "providers[0].algorithms"
    );
    let cfg: RulesConfig =
        serde_json::from_value(json!({"providers": [{"issuer": ISS, "audiences": ["a"],
        "jwks": {"inline": {"keys": []}}}], "clock_skew_seconds": 301}))
        .unwrap();
    assert_eq!(
        Rules::from_config(cfg).err().unwrap().field,
        "clock_skew_seconds"
    );
}
