//! Splitting and decoding a compact JWS without trusting any of it yet.

use crate::rejection::Rejection;
use crate::strict_json;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// A decoded but unverified token. Borrowed from the input so the signing input is the
/// exact bytes that were signed.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

impl<'a> Unverified<'a> {
    /// Parses `token`, applying every check that needs no key: size (before any
    /// decoding or cryptography), compact form, JWE shape, strict JSON, `crit`.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Unverified<'a>, Rejection> {
        if token.len() > max_bytes {
            return Err(Rejection::Invalid("token too long"));
        }
        let dots = token.bytes().filter(|b| *b == b'.').count();
        if dots == 4 {
            return Err(Rejection::Invalid(
                "encrypted tokens (JWE) are not accepted",
            ));
        }
        if dots != 2 {
            return Err(Rejection::Invalid("malformed token"));
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h64), Some(p64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Rejection::Invalid("malformed token"));
        };
        let header = decode_object(h64, "malformed header")?;
        let claims = decode_object(p64, "malformed claims")?;
        let signature = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| Rejection::Invalid("malformed signature"))?;

        // We implement no JWS extension, so any `crit` (even an empty one, which
        // RFC 7515 §4.1.11 forbids) makes the token unacceptable.
        if header.contains_key("crit") {
            return Err(Rejection::Invalid("unsupported critical header"));
        }
        let alg = match header.get("alg") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(Rejection::Invalid("missing alg")),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Rejection::Invalid("malformed kid")),
        };
        // `jwk`, `jku`, `x5u`, `x5c` are deliberately never read: keys come only from
        // the configured JWKS.
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        Ok(Unverified {
            alg,
            kid,
            claims,
            signing_input,
            signature,
        })
    }
}

fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Invalid(what))?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Rejection::Invalid(what)),
        Err(e) if e.to_string().contains("duplicate member") => {
            Err(Rejection::Invalid("duplicate member in token"))
        }
        Err(_) => Err(Rejection::Invalid(what)),
    }
}
