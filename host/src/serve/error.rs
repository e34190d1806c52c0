//! The one error shape of the data plane: a precise status and
//! `{"error", "reason", "request_id"}`, plus the headers HTTP asks for (a Bearer
//! challenge on 401, `Retry-After` on 429/503).
//!
//! `error` is a fixed machine-readable code; `reason` is a short human sentence that
//! never echoes a token or anything the caller could use to probe internals (sandbox
//! details go to the log, tagged with the same request id).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
            retry_after: None,
            challenge: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn challenge(mut self, value: String) -> ApiError {
        self.challenge = Some(value);
        self
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// The response, tagged with the request id (body and `x-request-id` header; the
    /// request-id layer sets the header on every response).
    pub fn into_response_with(self, request_id: &str) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "reason": self.reason,
            "request_id": request_id,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        if let Some(c) = self.challenge
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}
