//! The local replies the filter sends when it refuses a request.

use bulkhead_jwt::Rejection;

pub use bulkhead_filter_kit::Reply;

/// RFC 6750 §3: a bare challenge when no token came, `error="invalid_token"` when a
/// token failed. Bodies are small JSON, `{"error":…,"reason":…}`.
pub fn rejection(r: &Rejection, realm: &str) -> Reply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    match r {
        Rejection::Missing(_) => {
            headers.push((
                "www-authenticate".into(),
                format!("Bearer realm=\"{realm}\""),
            ));
        }
        Rejection::Invalid(_) | Rejection::UnknownKey { .. } => {
            headers.push((
                "www-authenticate".into(),
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                    r.reason()
                ),
            ));
        }
        Rejection::NoKeys { .. } => headers.push(("retry-after".into(), "1".into())),
        Rejection::Tenant(_) => {}
    }
    let body = serde_json::json!({"error": r.error_code(), "reason": r.reason()}).to_string();
    Reply {
        status: u32::from(r.status()),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc6750() {
        let m = rejection(&Rejection::Missing("no bearer token"), "bulkhead");
        assert_eq!(m.status, 401);
        assert!(m.headers.contains(&(
            "www-authenticate".into(),
            "Bearer realm=\"bulkhead\"".into()
        )));
        let i = rejection(&Rejection::Invalid("token expired"), "bulkhead");
        assert!(
            i.headers
                .iter()
                .any(|(k, v)| k == "www-authenticate" && v.contains("error=\"invalid_token\""))
        );
        assert_eq!(
            i.body,
            r#"{"error":"invalid_token","reason":"token expired"}"#
        );
        assert_eq!(
            rejection(&Rejection::Tenant("tenant claim missing"), "b").status,
            403
        );
        assert_eq!(
            rejection(&Rejection::NoKeys { provider: 0 }, "b").status,
            503
        );
    }
}
