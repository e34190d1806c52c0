//! The shared token suite: one data table of requests and the verdict the
//! jwt-auth filter must give for each.
//!
//! Every token is minted relative to a caller-supplied `now` (Unix seconds),
//! so the same table drives tests with a frozen clock (exact boundaries) and
//! tests through a real Envoy (real clock). Time-sensitive cases keep at
//! least one second of margin in the direction a real clock moves, provided
//! the request is judged within one second of `now` (see
//! [`time_sensitive`](Case::time_sensitive)).
//!
//! The standard provider ([`filter_config`]) trusts [`jwks`]: the primary
//! test key of each of the nine asymmetric algorithms, with the RS256 key's
//! JWK pinning `"alg": "RS256"` (every other JWK leaves `alg` out).
//!
//! ```
//! use bulkhead_testkit::cases::{self, Native};
//!
//! let table = cases::cases(1_800_000_000);
//! assert!(table.len() >= 35);
//! let ok = table.iter().find(|c| c.name == "valid_es256").unwrap();
//! assert_eq!((ok.expect_status, ok.expect_tenant), (200, Some("org-es256")));
//! assert!(matches!(ok.native, Native::Same));
//! let config = cases::filter_config(cases::inline_jwks());
//! assert_eq!(config["providers"][0]["issuer"], cases::ISSUER);
//! ```

use serde_json::{Map, Value, json};

use crate::forge::{self, b64url};
use crate::keys::{self, Alg, TestKey};

/// `iss` of the standard provider.
pub const ISSUER: &str = "https://issuer.test";
/// Accepted audiences of the standard provider (a token needs any one).
pub const AUDIENCES: [&str; 2] = ["bulkhead", "bulkhead-admin"];
/// The claim carrying the tenant id.
pub const TENANT_CLAIM: &str = "org_id";
/// The header the filter sets to the verified tenant.
pub const TENANT_HEADER: &str = "x-org-id";
/// `clock_skew_seconds` of [`filter_config`] (and of the native comparison).
pub const CLOCK_SKEW: i64 = 60;
/// `max_token_bytes` of [`filter_config`].
pub const MAX_TOKEN_BYTES: usize = 8192;
/// `realm` of the `WWW-Authenticate` challenge.
pub const REALM: &str = "bulkhead";
/// The one key in [`jwks`] whose JWK pins its `alg`.
pub const PINNED: Alg = Alg::RS256;

/// What Envoy's native `jwt_authn` is expected to do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// Same accept/reject verdict as the filter (status codes may differ,
    /// e.g. jwt_authn answers 403 for a wrong audience). The comparison
    /// assumes jwt_authn configured like [`filter_config`]: same issuer,
    /// audiences, [`jwks`] and skew, and `require_expiration: true`.
    Same,
    /// The case exercises a rule jwt_authn does not have; the reason says
    /// which. Its verdict is recorded, not asserted.
    NotApplicable(&'static str),
}

/// One request of the suite and the filter's expected answer.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique, snake_case.
    pub name: &'static str,
    /// The `Authorization` header value, if the request has one.
    pub authorization: Option<String>,
    /// Further request headers (e.g. spoofed identity headers).
    pub headers: Vec<(&'static str, &'static str)>,
    /// 200 (forwarded), 401 or 403.
    pub expect_status: u16,
    /// The `error` member of the JSON reply (`None` for 200).
    pub expect_error: Option<&'static str>,
    /// The `reason` member of the JSON reply, when it is pinned down.
    pub expect_reason: Option<&'static str>,
    /// The tenant the upstream must see in [`TENANT_HEADER`] (200 only).
    pub expect_tenant: Option<&'static str>,
    /// The expected verdict of Envoy's native jwt_authn.
    pub native: Native,
    /// The verdict depends on the clock (skew boundaries): judge it within
    /// one second of the `now` the table was built with.
    pub time_sensitive: bool,
}

impl Case {
    /// Whether the filter must let the request through.
    pub fn expect_allowed(&self) -> bool {
        self.expect_status == 200
    }

    /// The request headers: `authorization` (when present) then
    /// [`Case::headers`].
    pub fn request_headers(&self) -> Vec<(&str, &str)> {
        self.authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .chain(self.headers.iter().copied())
            .collect()
    }

    /// Whether native jwt_authn must accept (`Some`), or `None` when its
    /// verdict is not comparable.
    pub fn native_expect_allowed(&self) -> Option<bool> {
        match self.native {
            Native::Same => Some(self.expect_allowed()),
            Native::NotApplicable(_) => None,
        }
    }

    fn headers(mut self, headers: &[(&'static str, &'static str)]) -> Case {
        self.headers.extend_from_slice(headers);
        self
    }

    fn native_na(mut self, reason: &'static str) -> Case {
        self.native = Native::NotApplicable(reason);
        self
    }

    fn clock(mut self) -> Case {
        self.time_sensitive = true;
        self
    }
}

/// The standard JWKS document: the primary key of every asymmetric
/// algorithm; only the [`PINNED`] key's JWK carries `alg`.
pub fn jwks() -> Value {
    let keys: Vec<Value> = Alg::ASYMMETRIC
        .iter()
        .map(|a| keys::key(*a).public_jwk_with_alg(*a == PINNED))
        .collect();
    json!({ "keys": keys })
}

/// The filter's `jwks` member for [`jwks`] inline.
pub fn inline_jwks() -> Value {
    json!({ "inline": jwks() })
}

/// The filter's `jwks` member for a remote JWKS fetched through Envoy
/// cluster `cluster` at `path` (authority = cluster name). Add tuning
/// members (`unknown_kid_cooldown_seconds`, …) to `["remote"]` as needed.
pub fn remote_jwks(cluster: &str, path: &str) -> Value {
    json!({ "remote": { "cluster": cluster, "path": path, "authority": cluster } })
}

/// Extra header names the standard configuration strips (`strip_headers`).
pub const STRIP_HEADERS: [&str; 1] = ["x-user-id"];
/// Extra prefixes the standard configuration strips (`strip_header_prefixes`).
pub const STRIP_PREFIXES: [&str; 1] = ["x-internal-"];

/// Whether the filter (standard configuration) must remove inbound header
/// `name`: the built-in identity/routing set plus [`STRIP_HEADERS`] and
/// [`STRIP_PREFIXES`]. None of these may reach an upstream from a caller
/// (the filter itself sets only [`TENANT_HEADER`]).
pub fn is_reserved_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["x-org-id", "x-data-plane", TENANT_HEADER]
        .iter()
        .chain(&STRIP_HEADERS)
        .any(|h| n == *h)
        || ["x-tenant-", "x-model-", "x-bulkhead-"]
            .iter()
            .chain(&STRIP_PREFIXES)
            .any(|p| n.starts_with(p))
}

/// The filter configuration of the standard test provider with the given
/// `jwks` member ([`inline_jwks`] or [`remote_jwks`]).
pub fn filter_config(jwks: Value) -> Value {
    json!({
        "providers": [{
            "name": "test",
            "issuer": ISSUER,
            "audiences": AUDIENCES,
            "tenant_claim": TENANT_CLAIM,
            "jwks": jwks,
        }],
        "clock_skew_seconds": CLOCK_SKEW,
        "max_token_bytes": MAX_TOKEN_BYTES,
        "tenant_header": TENANT_HEADER,
        "strip_headers": STRIP_HEADERS,
        "strip_header_prefixes": STRIP_PREFIXES,
        "realm": REALM,
    })
}

/// A 64-character tenant id: the longest allowed.
pub const TENANT_64: &str = "t234567890123456789012345678901234567890123456789012345678901234";
/// A 65-character tenant id: one too long.
pub const TENANT_65: &str = "t2345678901234567890123456789012345678901234567890123456789012345";

/// Headers a caller must never be able to set; the filter strips them
/// (see [`is_reserved_header`]).
pub const SPOOFED_HEADERS: [(&str, &str); 8] = [
    ("x-org-id", "org-spoofed"),
    ("X-Org-Id", "org-spoofed-again"),
    ("x-tenant-tier", "platinum"),
    ("x-model-version", "v-spoofed"),
    ("x-data-plane", "dp-spoofed"),
    ("x-bulkhead-debug", "1"),
    ("x-user-id", "admin"),
    ("x-internal-route", "backdoor"),
];

/// `Bearer` + an unsigned (`alg: none`) token claiming tenant `org-evil`.
pub const FORGED_NONE_BEARER: &str = "Bearer eyJhbGciOiJub25lIn0.eyJvcmdfaWQiOiJvcmctZXZpbCJ9.";

const NATIVE_SUB: &str =
    "jwt_authn requires a string sub (RFC 7519 StringOrURI); the filter has no sub rule";

/// The whole suite, minted for time `now`.
pub fn cases(now: i64) -> Vec<Case> {
    let m = Mint { now };
    let skew = CLOCK_SKEW;
    let es256 = keys::key(Alg::ES256);
    let rs256 = keys::key(Alg::RS256);
    let attacker = keys::alternate(Alg::ES256);

    let mut table: Vec<Case> = Alg::ASYMMETRIC
        .iter()
        .map(|alg| {
            let (name, tenant) = valid_name(*alg);
            allow(name, m.bearer(keys::key(*alg), m.claims(tenant)), tenant)
        })
        .collect();

    table.extend([
        // ---- accepted ----------------------------------------------------
        allow(
            "aud_array_one_matching",
            m.bearer(
                keys::key(Alg::ES384),
                m.claims("org-aud-array")
                    .set("aud", json!(["someone-else", AUDIENCES[1]])),
            ),
            "org-aud-array",
        ),
        allow(
            "expired_within_skew",
            m.bearer(
                es256,
                m.claims("org-exp-skew")
                    .set("iat", json!(m.now - 600))
                    .set("exp", json!(m.now - (skew - 1))),
            ),
            "org-exp-skew",
        )
        .clock(),
        allow(
            "nbf_future_within_skew",
            m.bearer(
                es256,
                m.claims("org-nbf-skew").set("nbf", json!(m.now + skew - 1)),
            ),
            "org-nbf-skew",
        ),
        allow(
            "no_kid_single_key_of_type",
            m.bearer_with_header(
                es256,
                json!({"alg": "ES256", "typ": "JWT"}),
                m.claims("org-no-kid"),
            ),
            "org-no-kid",
        ),
        allow(
            // Without `alg` in its JWK, an RSA key verifies any RSA alg.
            "unpinned_rsa_key_other_rsa_alg",
            m.bearer(
                &with_alg(keys::key(Alg::RS384), Alg::PS384),
                m.claims("org-unpinned"),
            ),
            "org-unpinned",
        ),
        allow(
            "bearer_scheme_lowercase",
            Some(format!("bearer {}", m.token(es256, m.claims("org-lower")))),
            "org-lower",
        )
        .native_na("jwt_authn matches the `Bearer ` prefix case-sensitively (RFC 7235: schemes are not)"),
        allow(
            "tenant_64_chars",
            m.bearer(es256, m.claims(TENANT_64)),
            TENANT_64,
        ),
        // The filter has no rule on `sub`, `jti` or `nonce`: a token is judged
        // the same whatever its algorithm.
        allow(
            "sub_numeric_rs256",
            m.bearer(rs256, m.claims("org-sub-rs").set("sub", json!(12345))),
            "org-sub-rs",
        )
        .native_na(NATIVE_SUB),
        allow(
            "sub_numeric_es256",
            m.bearer(es256, m.claims("org-sub-es").set("sub", json!(12345))),
            "org-sub-es",
        )
        .native_na(NATIVE_SUB),
        allow(
            "nonce_numeric_eddsa",
            m.bearer(
                keys::key(Alg::EdDSA),
                m.claims("org-nonce").set("nonce", json!(7)),
            ),
            "org-nonce",
        ),
        allow(
            "spoofed_headers_on_valid_request",
            m.bearer(es256, m.claims("org-verified")),
            "org-verified",
        )
        .headers(&SPOOFED_HEADERS),
        // ---- 401 invalid_token: claims ------------------------------------
        invalid(
            "aud_wrong",
            m.bearer(es256, m.claims("o").set("aud", json!("someone-else"))),
            "audience not allowed",
        ),
        invalid(
            "aud_array_none_matching",
            m.bearer(es256, m.claims("o").set("aud", json!(["x", "y"]))),
            "audience not allowed",
        ),
        invalid(
            "aud_missing",
            m.bearer(es256, m.claims("o").unset("aud")),
            "missing aud",
        ),
        invalid(
            "issuer_wrong",
            m.bearer(
                es256,
                m.claims("o").set("iss", json!("https://evil.test")),
            ),
            "unknown issuer",
        ),
        invalid(
            "expired_beyond_skew",
            m.bearer(
                es256,
                m.claims("o")
                    .set("iat", json!(m.now - 600))
                    .set("exp", json!(m.now - (skew + 1))),
            ),
            "token expired",
        )
        .clock(),
        invalid(
            // +2 s: still not yet valid when judged one second after `now`.
            "nbf_future_beyond_skew",
            m.bearer(es256, m.claims("o").set("nbf", json!(m.now + skew + 2))),
            "token not yet valid",
        )
        .clock(),
        invalid(
            "iat_in_future_beyond_skew",
            m.bearer(es256, m.claims("o").set("iat", json!(m.now + skew + 2))),
            "token issued in the future",
        )
        .clock()
        .native_na("jwt_authn does not check iat"),
        invalid(
            "exp_missing",
            m.bearer(es256, m.claims("o").unset("exp")),
            "missing exp",
        ),
        // ---- 401 invalid_token: algorithms and keys -----------------------
        invalid(
            "alg_none",
            Some(format!("Bearer {}", forge::alg_none(&m.claims("o").text()))),
            "alg none is not accepted",
        ),
        invalid(
            "hs256_shared_secret",
            m.bearer(keys::key(Alg::HS256), m.claims("o")),
            "symmetric algorithms are not accepted",
        ),
        invalid(
            // HMAC keyed with the RSA public key (its modulus bytes), kid of
            // the RSA key: the classic RS/HS confusion.
            "hs256_key_confusion_rsa_public_key",
            Some(format!("Bearer {}", key_confusion(rs256, &m.claims("o")))),
            "symmetric algorithms are not accepted",
        ),
        invalid(
            "crit_header",
            m.bearer_with_header(
                es256,
                json!({"alg": "ES256", "kid": es256.kid, "crit": ["x-bulkhead-ext"], "x-bulkhead-ext": true}),
                m.claims("o"),
            ),
            "unsupported critical header",
        )
        .native_na("jwt_authn ignores crit"),
        invalid(
            "jwe_five_parts",
            Some(format!("Bearer {}", forge::jwe_shaped())),
            "encrypted tokens (JWE) are not accepted",
        ),
        invalid(
            "token_over_max_bytes",
            Some(format!(
                "Bearer {}",
                forge::oversize(
                    es256,
                    &forge::standard_header(es256),
                    &m.claims("o").text(),
                    MAX_TOKEN_BYTES + 1,
                )
            )),
            "token too long",
        )
        .native_na("jwt_authn has no token size limit (only Envoy's 60 KiB header limit)"),
        invalid(
            "signature_tampered",
            m.bearer(es256, m.claims("o"))
                .map(|b| forge::tamper_signature(&b)),
            "signature verification failed",
        ),
        invalid(
            "signature_other_key_known_kid",
            m.bearer(&attacker.with_kid(&es256.kid), m.claims("o")),
            "signature verification failed",
        ),
        invalid(
            "kid_unknown",
            m.bearer(attacker, m.claims("o")),
            "unknown key id",
        ),
        invalid(
            "no_kid_several_keys_of_type",
            m.bearer_with_header(
                keys::key(Alg::RS512),
                json!({"alg": "RS512", "typ": "JWT"}),
                m.claims("o"),
            ),
            "token has no kid and several keys fit",
        )
        .native_na("without a kid jwt_authn tries every key; the filter refuses to guess"),
        invalid(
            "alg_differs_from_pinned_jwk_alg",
            m.bearer(&with_alg(rs256, Alg::PS256), m.claims("o")),
            "alg does not match the key's alg",
        ),
        invalid(
            "header_es256_on_rsa_key",
            m.bearer_with_header(
                rs256,
                json!({"alg": "ES256", "typ": "JWT", "kid": rs256.kid}),
                m.claims("o"),
            ),
            "alg does not match the key type",
        ),
        invalid(
            // The attacker embeds their own public key; it must be ignored
            // (no kid: the one configured P-256 key is used and fails).
            "embedded_jwk_attacker_key",
            m.bearer_with_header(
                attacker,
                json!({"alg": "ES256", "typ": "JWT", "jwk": attacker.public_jwk()}),
                m.claims("o"),
            ),
            "signature verification failed",
        ),
        invalid(
            "jku_x5u_attacker_urls",
            m.bearer_with_header(
                attacker,
                json!({"alg": "ES256", "kid": attacker.kid,
                       "jku": "https://evil.test/jwks.json", "x5u": "https://evil.test/cert.pem"}),
                m.claims("o"),
            ),
            "unknown key id",
        ),
        // ---- 401 invalid_token: encoding ----------------------------------
        invalid(
            "duplicate_org_id_claim",
            Some(format!(
                "Bearer {}",
                forge::token(
                    es256,
                    &forge::standard_header(es256),
                    &m.claims("org-a")
                        .text()
                        .replacen('{', r#"{"org_id":"org-b","#, 1),
                )
            )),
            // jwt_authn's JSON parser refuses duplicate keys as well.
            "duplicate member in token",
        ),
        invalid(
            "duplicate_alg_header",
            Some(format!(
                "Bearer {}",
                forge::token(
                    es256,
                    &format!(
                        r#"{{"alg":"none","kid":"{}","alg":"ES256"}}"#,
                        es256.kid
                    ),
                    &m.claims("o").text(),
                )
            )),
            "duplicate member in token",
        ),
        invalid(
            "malformed_not_a_jwt",
            Some("Bearer not.a.jwt".into()),
            "malformed header",
        ),
        invalid(
            "bearer_empty_token",
            Some("Bearer ".into()),
            "malformed token",
        ),
        invalid(
            "spoofed_headers_on_invalid_request",
            m.bearer(es256, m.claims("org-verified"))
                .map(|b| forge::tamper_signature(&b)),
            "signature verification failed",
        )
        .headers(&SPOOFED_HEADERS),
        invalid(
            // Envoy hands the filter both values joined by a comma.
            "authorization_twice",
            m.bearer(es256, m.claims("org-twice")),
            "malformed token",
        )
        .headers(&[("authorization", FORGED_NONE_BEARER)]),
        invalid(
            "exp_not_a_number",
            m.bearer(rs256, m.claims("o").set("exp", json!("tomorrow"))),
            "malformed exp",
        ),
        invalid(
            "aud_array_with_non_string",
            m.bearer(rs256, m.claims("o").set("aud", json!([AUDIENCES[0], 7]))),
            "malformed aud",
        ),
        // ---- 401 missing_token --------------------------------------------
        missing("authorization_absent", None),
        missing(
            "authorization_basic",
            Some("Basic dXNlcjpwYXNzd29yZA==".into()),
        ),
        // ---- 403 invalid_tenant -------------------------------------------
        tenant(
            "tenant_missing",
            m.bearer(es256, m.claims("o").unset(TENANT_CLAIM)),
            "tenant claim missing",
        ),
        tenant(
            "tenant_empty",
            m.bearer(es256, m.claims("")),
            "tenant claim empty",
        ),
        tenant(
            "tenant_number",
            m.bearer(es256, m.claims("o").set(TENANT_CLAIM, json!(42))),
            "tenant claim is not a string",
        ),
        tenant(
            "tenant_bad_characters",
            m.bearer(es256, m.claims("acme/../globex")),
            "tenant claim has invalid characters",
        ),
        tenant(
            "tenant_65_chars",
            m.bearer(es256, m.claims(TENANT_65)),
            "tenant claim has invalid characters",
        ),
    ]);
    table
}

// ---- table helpers ----------------------------------------------------------

fn base(name: &'static str, authorization: Option<String>, status: u16) -> Case {
    Case {
        name,
        authorization,
        headers: Vec::new(),
        expect_status: status,
        expect_error: None,
        expect_reason: None,
        expect_tenant: None,
        native: Native::Same,
        time_sensitive: false,
    }
}

fn allow(name: &'static str, authorization: Option<String>, tenant: &'static str) -> Case {
    Case {
        expect_tenant: Some(tenant),
        ..base(name, authorization, 200)
    }
}

fn invalid(name: &'static str, authorization: Option<String>, reason: &'static str) -> Case {
    Case {
        expect_error: Some("invalid_token"),
        expect_reason: Some(reason),
        ..base(name, authorization, 401)
    }
}

fn missing(name: &'static str, authorization: Option<String>) -> Case {
    Case {
        expect_error: Some("missing_token"),
        expect_reason: Some("no bearer token"),
        ..base(name, authorization, 401)
    }
}

fn tenant(name: &'static str, authorization: Option<String>, reason: &'static str) -> Case {
    Case {
        expect_error: Some("invalid_tenant"),
        expect_reason: Some(reason),
        native: Native::NotApplicable("jwt_authn has no tenant-claim rule"),
        ..base(name, authorization, 403)
    }
}

fn valid_name(alg: Alg) -> (&'static str, &'static str) {
    match alg {
        Alg::RS256 => ("valid_rs256", "org-rs256"),
        Alg::RS384 => ("valid_rs384", "org-rs384"),
        Alg::RS512 => ("valid_rs512", "org-rs512"),
        Alg::PS256 => ("valid_ps256", "org-ps256"),
        Alg::PS384 => ("valid_ps384", "org-ps384"),
        Alg::PS512 => ("valid_ps512", "org-ps512"),
        Alg::ES256 => ("valid_es256", "org-es256"),
        Alg::ES384 => ("valid_es384", "org-es384"),
        Alg::EdDSA => ("valid_eddsa", "org-eddsa"),
        Alg::HS256 => ("valid_hs256", "org-hs256"),
    }
}

/// `key` relabelled to sign as `alg` (same key family, same kid).
fn with_alg(key: &TestKey, alg: Alg) -> TestKey {
    key.with_alg(alg).unwrap_or_else(|_| key.clone())
}

/// HS256 over the standard header naming `rsa`'s kid, keyed with the RSA
/// modulus bytes.
fn key_confusion(rsa: &TestKey, claims: &Claims) -> String {
    let jwk = rsa.public_jwk();
    let secret = jwk["n"]
        .as_str()
        .and_then(|n| forge::b64url_decode(n).ok())
        .unwrap_or_default();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": rsa.kid}).to_string();
    let input = forge::signing_input(&header, &claims.text());
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), &secret);
    format!("{input}.{}", b64url(&mac))
}

/// A claims object being edited.
struct Claims(Map<String, Value>);

impl Claims {
    fn set(mut self, k: &str, v: Value) -> Claims {
        self.0.insert(k.to_string(), v);
        self
    }

    fn unset(mut self, k: &str) -> Claims {
        self.0.remove(k);
        self
    }

    fn text(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

/// Mints tokens for one `now`.
struct Mint {
    now: i64,
}

impl Mint {
    /// The standard claims: our issuer, first audience, `iat = now`,
    /// `exp = now + 300`, `org_id = tenant`.
    fn claims(&self, tenant: &str) -> Claims {
        let mut c = Map::new();
        c.insert("iss".into(), json!(ISSUER));
        c.insert("aud".into(), json!(AUDIENCES[0]));
        c.insert(TENANT_CLAIM.into(), json!(tenant));
        c.insert("iat".into(), json!(self.now));
        c.insert("exp".into(), json!(self.now + 300));
        Claims(c)
    }

    fn token(&self, key: &TestKey, claims: Claims) -> String {
        forge::token(key, &forge::standard_header(key), &claims.text())
    }

    /// `Some("Bearer <token>")` with the standard header of `key`.
    fn bearer(&self, key: &TestKey, claims: Claims) -> Option<String> {
        Some(format!("Bearer {}", self.token(key, claims)))
    }

    fn bearer_with_header(&self, key: &TestKey, header: Value, claims: Claims) -> Option<String> {
        Some(format!(
            "Bearer {}",
            forge::token(key, &header.to_string(), &claims.text())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn tenant_ok(t: &str) -> bool {
        (1..=64).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    #[test]
    fn table_is_consistent() {
        let table = cases(1_800_000_000);
        assert!(table.len() >= 35, "{}", table.len());
        let names: HashSet<&str> = table.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), table.len(), "case names must be unique");
        for c in &table {
            match c.expect_status {
                200 => {
                    assert!(c.expect_error.is_none(), "{}", c.name);
                    let t = c.expect_tenant.unwrap_or_default();
                    assert!(tenant_ok(t), "{}: {t}", c.name);
                }
                401 | 403 => {
                    assert!(
                        c.expect_error.is_some() && c.expect_tenant.is_none(),
                        "{}",
                        c.name
                    )
                }
                s => panic!("{}: unexpected status {s}", c.name),
            }
        }
        for alg in Alg::ASYMMETRIC {
            assert!(names.contains(valid_name(alg).0), "{alg}");
        }
        let tokens: HashSet<&str> = table
            .iter()
            .filter_map(|c| c.authorization.as_deref())
            .collect();
        let with_auth = table.iter().filter(|c| c.authorization.is_some()).count();
        assert_eq!(tokens.len(), with_auth, "every token is distinct");
    }

    #[test]
    fn tokens_have_the_intended_shape() {
        let now = 1_800_000_000;
        let table = cases(now);
        let get = |n: &str| {
            let c = table.iter().find(|c| c.name == n).unwrap();
            let auth = c.authorization.clone().unwrap();
            auth.split_once(' ').unwrap().1.to_string()
        };
        let part = |t: &str, i: usize| forge::decode_part(t.split('.').nth(i).unwrap()).unwrap();
        assert!(get("token_over_max_bytes").len() > MAX_TOKEN_BYTES);
        assert!(
            part(&get("duplicate_org_id_claim"), 1)
                .matches("\"org_id\"")
                .count()
                == 2
        );
        assert!(
            part(&get("duplicate_alg_header"), 0)
                .matches("\"alg\"")
                .count()
                == 2
        );
        assert!(!part(&get("no_kid_single_key_of_type"), 0).contains("kid"));
        let exp: Value = serde_json::from_str(&part(&get("expired_within_skew"), 1)).unwrap();
        assert_eq!(exp["exp"], now - CLOCK_SKEW + 1);
        assert_eq!(get("jwe_five_parts").split('.').count(), 5);
        assert!(TENANT_64.len() == 64 && TENANT_65.len() == 65);
        let forged = forge::decode_part(FORGED_NONE_BEARER.split('.').nth(1).unwrap()).unwrap();
        assert_eq!(forged, r#"{"org_id":"org-evil"}"#);
        for (h, _) in SPOOFED_HEADERS {
            assert!(is_reserved_header(h), "{h}");
        }
        for h in ["authorization", "x-request-id", "x-tenantless", "x-user"] {
            assert!(!is_reserved_header(h), "{h}");
        }
        let doc = jwks();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 9);
        assert_eq!(doc["keys"][0]["alg"], "RS256");
        assert!(doc["keys"][1].get("alg").is_none());
    }
}
