//! Registered-claim and tenant-claim checks on an already signature-checked payload.

use crate::rejection::Rejection;
use bulkhead_filter_kit::ids::valid_tenant_id;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Time checks, with Envoy jwt_authn's boundaries: a token is expired when
/// `now > exp + skew` and not yet valid when `now + skew < nbf`.
pub fn check_time(claims: &Map<String, Value>, now: u64, skew: u64) -> Result<(), Rejection> {
    let exp = match claims.get("exp") {
        None => return Err(Rejection::Invalid("missing exp")),
        Some(v) => numeric(v).ok_or(Rejection::Invalid("malformed exp"))?,
    };
    let now = now as f64;
    let skew = skew as f64;
    if now > exp + skew {
        return Err(Rejection::Invalid("token expired"));
    }
    if let Some(v) = claims.get("nbf") {
        let nbf = numeric(v).ok_or(Rejection::Invalid("malformed nbf"))?;
        if now + skew < nbf {
            return Err(Rejection::Invalid("token not yet valid"));
        }
    }
    if let Some(v) = claims.get("iat") {
        let iat = numeric(v).ok_or(Rejection::Invalid("malformed iat"))?;
        if iat > now + skew {
            return Err(Rejection::Invalid("token issued in the future"));
        }
    }
    Ok(())
}

/// `aud` may be one string or an array of strings; any one allowed audience suffices.
pub fn check_audience(
    claims: &Map<String, Value>,
    allowed: &HashSet<String>,
) -> Result<(), Rejection> {
    let ok = match claims.get("aud") {
        None => return Err(Rejection::Invalid("missing aud")),
        Some(Value::String(s)) => allowed.contains(s),
        Some(Value::Array(a)) => {
            if a.iter().any(|v| !v.is_string()) {
                return Err(Rejection::Invalid("malformed aud"));
            }
            a.iter()
                .filter_map(Value::as_str)
                .any(|s| allowed.contains(s))
        }
        Some(_) => return Err(Rejection::Invalid("malformed aud")),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::Invalid("audience not allowed"))
    }
}

/// The tenant id: a string of 1–64 characters from `[A-Za-z0-9._-]`, so it is safe
/// in a header, a metric label, a file name and a SQL identifier alike.
pub fn tenant(claims: &Map<String, Value>, claim: &str) -> Result<String, Rejection> {
    match claims.get(claim) {
        None => Err(Rejection::Tenant("tenant claim missing")),
        Some(Value::String(s)) if s.is_empty() => Err(Rejection::Tenant("tenant claim empty")),
        Some(Value::String(s)) if valid_tenant_id(s) => Ok(s.clone()),
        Some(Value::String(_)) => Err(Rejection::Tenant("tenant claim has invalid characters")),
        Some(_) => Err(Rejection::Tenant("tenant claim is not a string")),
    }
}

fn numeric(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn exp_and_nbf_boundaries_follow_envoy() {
        let c = m(json!({"exp": 1000, "nbf": 900}));
        assert!(check_time(&c, 1060, 60).is_ok());
        assert_eq!(
            check_time(&c, 1061, 60),
            Err(Rejection::Invalid("token expired"))
        );
        assert!(check_time(&c, 840, 60).is_ok());
        assert_eq!(
            check_time(&c, 839, 60),
            Err(Rejection::Invalid("token not yet valid"))
        );
        assert_eq!(
            check_time(&m(json!({})), 0, 60),
            Err(Rejection::Invalid("missing exp"))
        );
    }

    #[test]
    fn audience_string_or_array() {
        let allowed: HashSet<String> = ["api".to_string()].into();
        assert!(check_audience(&m(json!({"aud": "api"})), &allowed).is_ok());
        assert!(check_audience(&m(json!({"aud": ["x", "api"]})), &allowed).is_ok());
        assert!(check_audience(&m(json!({"aud": ["x"]})), &allowed).is_err());
        assert!(check_audience(&m(json!({"aud": 5})), &allowed).is_err());
    }

    #[test]
    fn tenant_ids() {
        assert_eq!(tenant(&m(json!({"org_id": "UA"})), "org_id").unwrap(), "UA");
        for bad in [
            json!(""),
            json!("a b"),
            json!("x".repeat(65)),
            json!(7),
            json!(["UA"]),
        ] {
            assert!(tenant(&m(json!({ "org_id": bad })), "org_id").is_err());
        }
        assert!(tenant(&m(json!({})), "org_id").is_err());
    }
}
