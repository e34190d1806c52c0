//! The request id: taken from Envoy's `x-request-id` when it is a sane token, generated
//! otherwise, put in the request's extensions for the handlers, and echoed on every
//! response (header) and in every error body, so a caller's report, Envoy's access log
//! and the host's log line up.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest inbound id accepted (Envoy's are 36-character UUIDs).
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An inbound id is kept only if it is 1–128 characters from `[A-Za-z0-9._:-]`: it goes
/// into logs and JSON, so nothing that could forge a log line or need escaping.
pub fn valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The id of a request with these headers (the first `x-request-id` if valid).
pub fn of(headers: &axum::http::HeaderMap) -> RequestId {
    let inbound = headers
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| valid(s));
    RequestId(match inbound {
        Some(s) => Arc::from(s),
        None => Arc::from(generate()),
    })
}

/// 32 hex characters: a per-process counter through SipHash with random keys, so ids
/// are unique within the process and not guessable across processes, without pulling
/// in a random number generator.
pub fn generate() -> String {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        keys.hash_one((n, 0u8)),
        keys.hash_one((n, 1u8))
    )
}

/// Middleware: resolves the id, hands it to the handler, echoes it on the response.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = of(req.headers());
    req.extensions_mut().insert(id.clone());
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            HEADER,
            HeaderValue::from_static("2b1e0a3c-7d1f-4f6a-9e0b-1a2b3c4d5e6f"),
        );
        assert_eq!(of(&h).as_str(), "2b1e0a3c-7d1f-4f6a-9e0b-1a2b3c4d5e6f");
        for bad in ["", "a b", "x\"y", &"a".repeat(MAX_LEN + 1)] {
            assert!(!valid(bad), "{bad:?}");
        }
        h.insert(HEADER, HeaderValue::from_static("bad id"));
        let g = of(&h);
        assert_eq!(g.as_str().len(), 32);
        assert_ne!(g, of(&h), "generated ids are unique");
    }
}
