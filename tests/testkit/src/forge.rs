//! Build compact JWS tokens from raw parts, including malformed ones.
//!
//! Everything here encodes the *exact* text it is given, so a header with
//! duplicate members or odd whitespace survives into the token.
//!
//! ```
//! use bulkhead_testkit::{forge, keys::{self, Alg}};
//!
//! let key = keys::key(Alg::RS256);
//! let now = forge::now();
//! let good = forge::standard(key, "https://issuer.test", serde_json::json!("api"), "org-7", now, now + 300);
//! assert_eq!(good.split('.').count(), 3);
//!
//! // Duplicate "alg" members are kept verbatim.
//! let odd = forge::token(key, r#"{"alg":"RS256","alg":"none","kid":"test-rs256-1"}"#, r#"{"sub":"x"}"#);
//! assert!(forge::decode_part(odd.split('.').next().unwrap()).unwrap().contains(r#""alg":"none""#));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::keys::TestKey;

/// base64url without padding (the JOSE encoding).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
///
/// # Errors
/// When `text` is not valid unpadded base64url.
pub fn b64url_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    Ok(URL_SAFE_NO_PAD.decode(text)?)
}

/// Decodes one token segment to (lossy) UTF-8 text, for assertions.
///
/// # Errors
/// When `segment` is not valid unpadded base64url.
pub fn decode_part(segment: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&b64url_decode(segment)?).into_owned())
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `b64url(header_json) + "." + b64url(payload_json) + "." + b64url(sig)`
/// where `sig` is `key`'s signature over the first two segments.
///
/// The header is used verbatim: it is *not* checked against `key.alg`.
pub fn token(key: &TestKey, header_json: &str, payload_json: &str) -> String {
    let signing_input = signing_input(header_json, payload_json);
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig))
}

/// A token with an arbitrary signature (e.g. one from another token).
pub fn token_with_signature(header_json: &str, payload_json: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(header_json, payload_json),
        b64url(signature)
    )
}

/// `b64url(header_json) + "." + b64url(payload_json)`.
pub fn signing_input(header_json: &str, payload_json: &str) -> String {
    format!(
        "{}.{}",
        b64url(header_json.as_bytes()),
        b64url(payload_json.as_bytes())
    )
}

/// The standard header `{"alg":..,"typ":"JWT","kid":..}` for `key`.
pub fn standard_header(key: &TestKey) -> String {
    json!({ "alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid }).to_string()
}

/// The standard payload `{"iss","aud","org_id","iat","exp"}`.
/// `audience` may be a string or an array of strings (or anything else,
/// for negative tests).
pub fn standard_payload(issuer: &str, audience: Value, org_id: &str, iat: i64, exp: i64) -> String {
    json!({ "iss": issuer, "aud": audience, "org_id": org_id, "iat": iat, "exp": exp }).to_string()
}

/// A well-formed signed token with [`standard_header`] and
/// [`standard_payload`].
pub fn standard(
    key: &TestKey,
    issuer: &str,
    audience: Value,
    org_id: &str,
    iat: i64,
    exp: i64,
) -> String {
    token(
        key,
        &standard_header(key),
        &standard_payload(issuer, audience, org_id, iat, exp),
    )
}

/// An `alg: none` token: header `{"alg":"none","typ":"JWT"}`, the given
/// payload and an empty signature (the token ends with `.`).
pub fn alg_none(payload_json: &str) -> String {
    unsigned(r#"{"alg":"none","typ":"JWT"}"#, payload_json)
}

/// `b64url(header_json) + "." + b64url(payload_json) + "."` — any header,
/// empty signature.
pub fn unsigned(header_json: &str, payload_json: &str) -> String {
    format!("{}.", signing_input(header_json, payload_json))
}

/// A 5-part JWE-compact-shaped string (`RSA-OAEP` / `A256GCM` header,
/// random-looking key, IV, ciphertext and tag). It decrypts to nothing.
pub fn jwe_shaped() -> String {
    let header = r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"test-rs256-1"}"#;
    let parts = [
        b64url(header.as_bytes()),
        b64url(&[0x5a; 256]),
        b64url(&[0x11; 12]),
        b64url(b"not really ciphertext"),
        b64url(&[0x22; 16]),
    ];
    parts.join(".")
}

/// A validly signed token whose payload is `payload_json` with an extra
/// leading `"pad":"xxx…"` member, sized so the whole token is at least
/// `min_len` bytes (and at most a few bytes more).
///
/// `payload_json` must be a JSON object text (starting with `{`).
pub fn oversize(key: &TestKey, header_json: &str, payload_json: &str, min_len: usize) -> String {
    let body = payload_json
        .trim_start()
        .strip_prefix('{')
        .unwrap_or(payload_json);
    let sep = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let build = |pad: usize| format!(r#"{{"pad":"{}"{sep}{body}"#, "x".repeat(pad));
    // Every payload byte costs 4/3 of a token byte; start below and grow.
    let base_len = token(key, header_json, &build(0)).len();
    let mut pad = min_len.saturating_sub(base_len) * 3 / 4;
    loop {
        let t = token(key, header_json, &build(pad));
        if t.len() >= min_len {
            return t;
        }
        pad += (min_len - t.len()).div_ceil(2).max(1);
    }
}

/// Flips one bit in the signature segment so it no longer verifies (the
/// token stays syntactically valid). Tokens with an empty signature are
/// returned unchanged.
pub fn tamper_signature(token: &str) -> String {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return token.to_string();
    };
    match b64url_decode(sig) {
        Ok(mut bytes) if !bytes.is_empty() => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            format!("{input}.{}", b64url(&bytes))
        }
        _ => token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Alg, key};

    #[test]
    fn token_keeps_exact_text() {
        let k = key(Alg::HS256);
        let header = r#"{"alg":"HS256", "alg":"HS256"}"#;
        let t = token(k, header, "{}");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode_part(parts[0]).unwrap(), header);
        assert_eq!(decode_part(parts[1]).unwrap(), "{}");
        assert!(!t.contains('='));
    }

    #[test]
    fn standard_shape() {
        let k = key(Alg::ES256);
        let t = standard(k, "iss", json!(["a", "b"]), "org", 10, 20);
        let parts: Vec<&str> = t.split('.').collect();
        let h: Value = serde_json::from_str(&decode_part(parts[0]).unwrap()).unwrap();
        assert_eq!(h, json!({"alg":"ES256","typ":"JWT","kid":"test-es256-1"}));
        let p: Value = serde_json::from_str(&decode_part(parts[1]).unwrap()).unwrap();
        assert_eq!(
            p,
            json!({"iss":"iss","aud":["a","b"],"org_id":"org","iat":10,"exp":20})
        );
    }

    #[test]
    fn none_jwe_oversize_tamper() {
        let n = alg_none("{}");
        assert!(n.ends_with('.'));
        assert_eq!(n.split('.').count(), 3);
        assert_eq!(jwe_shaped().split('.').count(), 5);

        let k = key(Alg::RS256);
        for min in [1_000, 8_000, 65_537] {
            let t = oversize(k, &standard_header(k), r#"{"sub":"a"}"#, min);
            assert!(t.len() >= min && t.len() < min + 8, "{min} -> {}", t.len());
            let payload = decode_part(t.split('.').nth(1).unwrap()).unwrap();
            let v: Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(v["sub"], "a");
        }
        // Already longer than asked: just the padded-by-nothing token.
        let t = oversize(k, &standard_header(k), "{}", 10);
        assert!(t.len() < 500);
        assert!(
            serde_json::from_str::<Value>(&decode_part(t.split('.').nth(1).unwrap()).unwrap())
                .is_ok()
        );

        let good = standard(k, "i", json!("a"), "o", 1, 2);
        let bad = tamper_signature(&good);
        assert_ne!(good, bad);
        assert_eq!(good.len(), bad.len());
        assert_eq!(tamper_signature(&n), n);
    }
}
