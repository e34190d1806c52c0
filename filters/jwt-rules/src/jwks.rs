//! JWKS documents → the public keys a provider verifies with.

use crate::alg::{Alg, KeyKind};
use crate::rsa_public::RsaPublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{ES256PublicKey, ES384PublicKey, Ed25519PublicKey};
use serde_json::Value;

/// Smallest RSA modulus we trust; NIST has disallowed less since 2013.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus we accept; bounds verification cost per key.
const MAX_RSA_BITS: usize = 8192;
/// Most keys a set may hold; an IdP rarely publishes more than a handful.
const MAX_KEYS: usize = 64;

pub enum PublicKey {
    Rsa(RsaPublicKey),
    P256(ES256PublicKey),
    P384(ES384PublicKey),
    Ed25519(Ed25519PublicKey),
}

impl PublicKey {
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Rsa(_) => KeyKind::Rsa,
            PublicKey::P256(_) => KeyKind::P256,
            PublicKey::P384(_) => KeyKind::P384,
            PublicKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

pub struct Jwk {
    pub kid: Option<String>,
    /// The key's own `alg`, when the JWK pins one: a token must then use exactly it.
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

/// One provider's verification keys. Keys of types or uses we do not verify with
/// (`oct`, `use: enc`, RSA-OAEP, …) are skipped, not fatal: IdPs mix them in.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
    skipped: usize,
}

impl KeySet {
    /// Parses a JWKS document. Fails when it is not a JWKS or holds no usable key.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        Self::from_value(&doc)
    }

    pub fn from_value(doc: &Value) -> Result<KeySet, String> {
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("JWKS has no `keys` array".into());
        };
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "JWKS has {} keys, more than {MAX_KEYS}",
                keys.len()
            ));
        }
        let mut set = KeySet::default();
        for k in keys {
            match parse_jwk(k) {
                Ok(Some(jwk)) => set.keys.push(jwk),
                Ok(None) => set.skipped += 1,
                Err(e) => {
                    let kid = k.get("kid").and_then(Value::as_str).unwrap_or("?");
                    return Err(format!("JWKS key `{kid}`: {e}"));
                }
            }
        }
        if set.keys.is_empty() {
            return Err("JWKS holds no usable signing key".into());
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The key with this `kid`, if any.
    pub fn by_kid(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that could verify `alg` (for tokens without a `kid`).
    pub fn candidates(&self, alg: Alg) -> impl Iterator<Item = &Jwk> {
        self.keys
            .iter()
            .filter(move |k| k.key.kind() == alg.key_kind() && k.alg.is_none_or(|a| a == alg))
    }
}

fn b64(v: &Value, member: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing `{member}`"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("`{member}` is not base64url"))
}

/// `Ok(None)` for a well-formed key we do not verify with.
fn parse_jwk(v: &Value) -> Result<Option<Jwk>, String> {
    if v.get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Ok(None);
    }
    let alg = match v.get("alg").and_then(Value::as_str) {
        None => None,
        Some(a) => match Alg::parse(a) {
            Ok(a) => Some(a),
            Err(_) => return Ok(None),
        },
    };
    let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
    let kty = v.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = v.get("crv").and_then(Value::as_str).unwrap_or("");
    let key = match (kty, crv) {
        ("RSA", _) => {
            let n = b64(v, "n")?;
            let e = b64(v, "e")?;
            let n = strip_leading_zeros(&n);
            let bits = n.len() * 8;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
                ));
            }
            PublicKey::Rsa(RsaPublicKey::new(n, &e).map_err(|e| format!("bad RSA key: {e}"))?)
        }
        ("EC", "P-256") => PublicKey::P256(
            ES256PublicKey::from_jwk(&v.to_string()).map_err(|e| format!("bad P-256 key: {e}"))?,
        ),
        ("EC", "P-384") => PublicKey::P384(
            ES384PublicKey::from_jwk(&v.to_string()).map_err(|e| format!("bad P-384 key: {e}"))?,
        ),
        ("OKP", "Ed25519") => PublicKey::Ed25519(
            Ed25519PublicKey::from_jwk(&v.to_string())
                .map_err(|e| format!("bad Ed25519 key: {e}"))?,
        ),
        _ => return Ok(None),
    };
    if let Some(a) = alg
        && a.key_kind() != key.kind()
    {
        return Err(format!("`alg` {a} does not fit a {kty} {crv} key"));
    }
    Ok(Some(Jwk { kid, alg, key }))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}
