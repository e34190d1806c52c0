//! Test signing keys for every JWS algorithm Bulkhead accepts.
//!
//! Keys are loaded from committed, test-only PKCS#8 fixtures under
//! `tests/testkit/fixtures/` (so no slow RSA key generation happens at test
//! time) and parsed once per process.
//!
//! ```
//! use bulkhead_testkit::keys::{self, Alg};
//!
//! let key = keys::key(Alg::ES256);
//! let jwks = keys::jwks(&[key, keys::key(Alg::RS256)]);
//! assert_eq!(jwks["keys"][0]["kid"], key.kid.as_str());
//! let sig = key.sign(b"header.payload");
//! assert_eq!(sig.len(), 64); // fixed-size r || s
//! ```

use std::fmt;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use crate::forge::b64url;

/// A JWS `alg` value the test kit can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA 2048).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (RSA 2048).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (RSA 2048).
    RS512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt = 32 bytes (RSA 2048).
    PS256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, salt = 48 bytes (RSA 2048).
    PS384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, salt = 64 bytes (RSA 2048).
    PS512,
    /// ECDSA P-256 with SHA-256, signature is 64-byte `r || s`.
    ES256,
    /// ECDSA P-384 with SHA-384, signature is 96-byte `r || s`.
    ES384,
    /// Ed25519 (`crv: "Ed25519"`, `kty: "OKP"`).
    EdDSA,
    /// HMAC-SHA-256 with a shared secret; only for negative tests.
    HS256,
}

impl Alg {
    /// Every asymmetric algorithm we accept (everything except [`Alg::HS256`]).
    pub const ASYMMETRIC: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Every algorithm the test kit knows, including [`Alg::HS256`].
    pub const ALL: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::HS256,
    ];

    /// The JOSE name, e.g. `"RS256"` or `"EdDSA"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
        }
    }

    /// The JWK `kty` for keys of this algorithm (`RSA`, `EC`, `OKP`, `oct`).
    pub fn kty(self) -> &'static str {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => "RSA",
            Alg::ES256 | Alg::ES384 => "EC",
            Alg::EdDSA => "OKP",
            Alg::HS256 => "oct",
        }
    }

    fn fixture_stem(self) -> &'static str {
        match self {
            Alg::RS256 => "rs256",
            Alg::RS384 => "rs384",
            Alg::RS512 => "rs512",
            Alg::PS256 => "ps256",
            Alg::PS384 => "ps384",
            Alg::PS512 => "ps512",
            Alg::ES256 => "es256",
            Alg::ES384 => "es384",
            Alg::EdDSA => "eddsa",
            Alg::HS256 => "hs256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Private key material, one variant per key family.
#[derive(Clone)]
enum Material {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_compact::KeyPair),
    Hmac(Vec<u8>),
}

/// A signing key with its JOSE algorithm and key id.
///
/// Obtain one with [`key`] / [`alternate`], or re-label one with
/// [`TestKey::with_kid`].
#[derive(Clone)]
pub struct TestKey {
    /// The algorithm this key signs with (goes in the JWS header and, on
    /// request, the JWK).
    pub alg: Alg,
    /// The key id (`kid`) used in the JWK and in [`crate::forge::standard`].
    pub kid: String,
    material: Material,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// The public JWK without an `alg` member: `kid`, `kty`, `use: "sig"`
    /// and the key parameters (`n`/`e`, `crv`/`x`/`y`, `crv`/`x`; for HS256
    /// the secret itself as `k`, since a symmetric key has no public half).
    pub fn public_jwk(&self) -> Value {
        self.public_jwk_with_alg(false)
    }

    /// Like [`TestKey::public_jwk`], adding `"alg"` when `with_alg` is true.
    pub fn public_jwk_with_alg(&self, with_alg: bool) -> Value {
        let mut jwk = match &self.material {
            Material::Rsa(k) => json!({
                "kty": "RSA",
                "n": b64url(&k.n_bytes()),
                "e": b64url(&k.e_bytes()),
            }),
            Material::P256(k) => ec_jwk("P-256", k.verifying_key().to_sec1_point(false).as_bytes()),
            Material::P384(k) => ec_jwk("P-384", k.verifying_key().to_sec1_point(false).as_bytes()),
            Material::Ed25519(k) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64url(k.pk.as_ref()),
            }),
            Material::Hmac(secret) => json!({ "kty": "oct", "k": b64url(secret) }),
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        if with_alg {
            jwk["alg"] = json!(self.alg.as_str());
        }
        jwk
    }

    /// Signs `signing_input` (normally `b64(header) + "." + b64(payload)`)
    /// and returns the raw JWS signature bytes: PKCS#1 v1.5 or PSS (salt
    /// length = hash length) with the matching SHA-2 for RSA, fixed-size
    /// `r || s` for ECDSA, 64 bytes for Ed25519, 32-byte MAC for HS256.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        use rsa::sha2::{Sha256, Sha384, Sha512};
        use rsa::{pkcs1v15, pss};
        match (&self.material, self.alg) {
            (Material::Rsa(k), alg) => {
                let k = (**k).clone();
                match alg {
                    Alg::RS256 => encode(pkcs1v15::SigningKey::<Sha256>::new(k), signing_input),
                    Alg::RS384 => encode(pkcs1v15::SigningKey::<Sha384>::new(k), signing_input),
                    Alg::RS512 => encode(pkcs1v15::SigningKey::<Sha512>::new(k), signing_input),
                    Alg::PS256 => encode(pss::SigningKey::<Sha256>::new(k), signing_input),
                    Alg::PS384 => encode(pss::SigningKey::<Sha384>::new(k), signing_input),
                    // Only RSA algorithms are ever paired with RSA material
                    // (see `load` and `with_alg`), so this arm is PS512.
                    _ => encode(pss::SigningKey::<Sha512>::new(k), signing_input),
                }
            }
            (Material::P256(k), _) => {
                let sig: p256::ecdsa::Signature = k.sign(signing_input);
                sig.to_bytes().to_vec()
            }
            (Material::P384(k), _) => {
                let sig: p384::ecdsa::Signature = k.sign(signing_input);
                sig.to_bytes().to_vec()
            }
            (Material::Ed25519(k), _) => k.sk.sign(signing_input, None).to_vec(),
            (Material::Hmac(secret), _) => hmac_sha256::HMAC::mac(signing_input, secret).to_vec(),
        }
    }

    /// The same key material under a different `kid` (e.g. for "unknown
    /// kid" or key-rotation tests).
    pub fn with_kid(&self, kid: impl Into<String>) -> TestKey {
        TestKey {
            kid: kid.into(),
            ..self.clone()
        }
    }

    /// The same key material labelled with another algorithm of the same
    /// family (e.g. an RSA key used as PS256 instead of RS256).
    ///
    /// # Errors
    /// When `alg` needs a different key type (e.g. ES256 on an RSA key).
    pub fn with_alg(&self, alg: Alg) -> anyhow::Result<TestKey> {
        let compatible = match &self.material {
            Material::Rsa(_) => alg.kty() == "RSA",
            Material::P256(_) => alg == Alg::ES256,
            Material::P384(_) => alg == Alg::ES384,
            Material::Ed25519(_) => alg == Alg::EdDSA,
            Material::Hmac(_) => alg == Alg::HS256,
        };
        if !compatible {
            bail!("{} key material cannot sign {alg}", self.alg);
        }
        Ok(TestKey {
            alg,
            ..self.clone()
        })
    }

    /// The shared secret of an HS256 key (`None` for asymmetric keys).
    pub fn hmac_secret(&self) -> Option<&[u8]> {
        match &self.material {
            Material::Hmac(s) => Some(s),
            _ => None,
        }
    }
}

/// Signs `msg` with any RustCrypto signer and returns the raw signature bytes.
fn encode<S, Sig>(signer: S, msg: &[u8]) -> Vec<u8>
where
    S: Signer<Sig>,
    Sig: SignatureEncoding,
{
    signer.sign(msg).to_vec()
}

fn ec_jwk(crv: &str, uncompressed: &[u8]) -> Value {
    // SEC1 uncompressed point: 0x04 || x || y, coordinates of equal size.
    let coords = uncompressed.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    json!({ "kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y) })
}

/// Builds a JWKS document `{"keys": [...]}` from the keys' public JWKs
/// (without `alg`; see [`jwks_with_alg`]).
pub fn jwks(keys: &[&TestKey]) -> Value {
    jwks_with_alg(keys, false)
}

/// Builds a JWKS document, including each key's `alg` when `with_alg`.
pub fn jwks_with_alg(keys: &[&TestKey], with_alg: bool) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk_with_alg(with_alg)).collect::<Vec<_>>() })
}

/// The primary test key for `alg` (kid `test-<alg>-1`, e.g. `test-rs256-1`).
pub fn key(alg: Alg) -> &'static TestKey {
    &all_keys()[index(alg)].0
}

/// A second, unrelated key for `alg` (kid `test-<alg>-2`), for "signed by
/// a key that is not in the JWKS" tests.
pub fn alternate(alg: Alg) -> &'static TestKey {
    &all_keys()[index(alg)].1
}

/// The primary keys of every asymmetric algorithm, in [`Alg::ASYMMETRIC`] order.
pub fn all_asymmetric() -> Vec<&'static TestKey> {
    Alg::ASYMMETRIC.iter().map(|a| key(*a)).collect()
}

fn index(alg: Alg) -> usize {
    Alg::ALL.iter().position(|a| *a == alg).unwrap_or_default()
}

const HS256_SECRETS: [&[u8]; 2] = [
    b"bulkhead-TEST-ONLY-hs256-secret-number-one-0123456789",
    b"bulkhead-TEST-ONLY-hs256-secret-number-two-9876543210",
];

macro_rules! fixture_pair {
    ($stem:literal) => {
        [
            include_str!(concat!("../fixtures/TEST-ONLY-", $stem, "-1.pem")),
            include_str!(concat!("../fixtures/TEST-ONLY-", $stem, "-2.pem")),
        ]
    };
}

fn fixture_pems(alg: Alg) -> [&'static str; 2] {
    match alg {
        Alg::RS256 => fixture_pair!("rs256"),
        Alg::RS384 => fixture_pair!("rs384"),
        Alg::RS512 => fixture_pair!("rs512"),
        Alg::PS256 => fixture_pair!("ps256"),
        Alg::PS384 => fixture_pair!("ps384"),
        Alg::PS512 => fixture_pair!("ps512"),
        Alg::ES256 => fixture_pair!("es256"),
        Alg::ES384 => fixture_pair!("es384"),
        Alg::EdDSA => fixture_pair!("eddsa"),
        Alg::HS256 => ["", ""],
    }
}

fn load(alg: Alg, n: usize) -> anyhow::Result<TestKey> {
    let pem = fixture_pems(alg)[n - 1];
    let ctx = || format!("parsing fixture TEST-ONLY-{}-{n}.pem", alg.fixture_stem());
    let material = match alg.kty() {
        "RSA" => Material::Rsa(Box::new(
            rsa::PrivateKey::from_pkcs8_pem(pem).with_context(ctx)?,
        )),
        "OKP" => Material::Ed25519(ed25519_compact::KeyPair::from_pem(pem).with_context(ctx)?),
        "oct" => Material::Hmac(HS256_SECRETS[n - 1].to_vec()),
        _ if alg == Alg::ES256 => {
            Material::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(pem).with_context(ctx)?)
        }
        _ => Material::P384(p384::ecdsa::SigningKey::from_pkcs8_pem(pem).with_context(ctx)?),
    };
    Ok(TestKey {
        alg,
        kid: format!("test-{}-{n}", alg.fixture_stem()),
        material,
    })
}

#[allow(clippy::panic)] // the fixtures are compiled in; failing to parse them is a testkit bug
fn all_keys() -> &'static [(TestKey, TestKey)] {
    static KEYS: OnceLock<Vec<(TestKey, TestKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Alg::ALL
            .iter()
            .map(|alg| match (load(*alg, 1), load(*alg, 2)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => panic!("bulkhead-testkit: {e:#}"),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge;
    use jwt_simple::prelude::*;

    fn rsa_components(k: &TestKey) -> (Vec<u8>, Vec<u8>) {
        let jwk = k.public_jwk();
        let n = forge::b64url_decode(jwk["n"].as_str().unwrap()).unwrap();
        let e = forge::b64url_decode(jwk["e"].as_str().unwrap()).unwrap();
        (n, e)
    }

    fn ec_point(k: &TestKey) -> Vec<u8> {
        let jwk = k.public_jwk();
        let mut p = vec![4u8];
        p.extend(forge::b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
        p.extend(forge::b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
        p
    }

    /// Verifies `token` with jwt-simple using only the public JWK.
    fn verify_with_jwt_simple(
        k: &TestKey,
        token: &str,
    ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
        let opts = VerificationOptions {
            time_tolerance: Some(Duration::from_secs(0)),
            ..Default::default()
        };
        match k.alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                let (n, e) = rsa_components(k);
                match k.alg {
                    Alg::RS256 => {
                        RS256PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts))
                    }
                    Alg::RS384 => {
                        RS384PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts))
                    }
                    Alg::RS512 => {
                        RS512PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts))
                    }
                    Alg::PS256 => {
                        PS256PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts))
                    }
                    Alg::PS384 => {
                        PS384PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts))
                    }
                    _ => PS512PublicKey::from_components(&n, &e)?.verify_token(token, Some(opts)),
                }
            }
            Alg::ES256 => ES256PublicKey::from_bytes(&ec_point(k))?.verify_token(token, Some(opts)),
            Alg::ES384 => ES384PublicKey::from_bytes(&ec_point(k))?.verify_token(token, Some(opts)),
            Alg::EdDSA => {
                let x = forge::b64url_decode(k.public_jwk()["x"].as_str().unwrap()).unwrap();
                Ed25519PublicKey::from_bytes(&x)?.verify_token(token, Some(opts))
            }
            Alg::HS256 => {
                HS256Key::from_bytes(k.hmac_secret().unwrap()).verify_token(token, Some(opts))
            }
        }
    }

    #[test]
    fn every_signature_verifies_under_jwt_simple() {
        let now = forge::now();
        for alg in Alg::ALL {
            let k = key(alg);
            let token = forge::standard(
                k,
                "https://issuer.test",
                json!("api"),
                "org-1",
                now,
                now + 600,
            );
            let claims = verify_with_jwt_simple(k, &token)
                .unwrap_or_else(|e| panic!("{alg}: jwt-simple rejected our token: {e}"));
            assert_eq!(
                claims.issuer.as_deref(),
                Some("https://issuer.test"),
                "{alg}"
            );
        }
    }

    #[test]
    fn wrong_key_and_tampering_are_rejected() {
        let now = forge::now();
        for alg in Alg::ALL {
            let other = alternate(alg);
            let token = forge::standard(other, "iss", json!("aud"), "org", now, now + 600);
            assert!(
                verify_with_jwt_simple(key(alg), &token).is_err(),
                "{alg}: alternate key verified"
            );
            let good = forge::standard(key(alg), "iss", json!("aud"), "org", now, now + 600);
            let bad = forge::tamper_signature(&good);
            assert!(
                verify_with_jwt_simple(key(alg), &bad).is_err(),
                "{alg}: tampered token verified"
            );
        }
    }

    #[test]
    fn jwk_shapes() {
        for alg in Alg::ALL {
            let k = key(alg);
            let jwk = k.public_jwk();
            assert_eq!(jwk["kid"], k.kid.as_str());
            assert_eq!(jwk["kty"], alg.kty());
            assert_eq!(jwk["use"], "sig");
            assert!(jwk.get("alg").is_none());
            assert!(jwk.get("d").is_none());
            assert_eq!(k.public_jwk_with_alg(true)["alg"], alg.as_str());
            assert_ne!(k.kid, alternate(alg).kid);
            assert_ne!(k.public_jwk()["kty"], Value::Null);
        }
        let rsa = key(Alg::RS256).public_jwk();
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(
            forge::b64url_decode(rsa["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        assert_eq!(key(Alg::ES256).sign(b"x").len(), 64);
        assert_eq!(key(Alg::ES384).sign(b"x").len(), 96);
        assert_eq!(key(Alg::EdDSA).sign(b"x").len(), 64);
        assert_eq!(key(Alg::PS256).sign(b"x").len(), 256);
        assert_eq!(key(Alg::ES384).public_jwk()["crv"], "P-384");
        let set = jwks(&[key(Alg::RS256), key(Alg::EdDSA)]);
        assert_eq!(set["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn with_alg_checks_family() {
        assert!(key(Alg::RS256).with_alg(Alg::PS384).is_ok());
        assert!(key(Alg::RS256).with_alg(Alg::ES256).is_err());
        assert_eq!(key(Alg::ES256).with_kid("other").kid, "other");
    }
}
