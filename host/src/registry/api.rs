//! The control API: the registry for the edge (`GET /v1/registry`, conditional with
//! `ETag` / `If-None-Match`), its status for people, and a health check.
//!
//! Every answer outside those routes is a small JSON error: 404 for an unknown path,
//! 405 (with `Allow`) for a wrong method.

use super::watch::Watcher;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the file is checked for changes between requests.
pub const POLL_PERIOD: Duration = Duration::from_millis(250);

pub fn router(watcher: Arc<Watcher>) -> Router {
    Router::new()
        .route("/v1/registry", get(registry))
        .route("/v1/registry/status", get(status))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(watcher)
}

/// Serves the control API on `listener` (and watches the file) until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    watcher: Arc<Watcher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let poller = tokio::spawn(Arc::clone(&watcher).run(POLL_PERIOD));
    let result = axum::serve(listener, router(watcher))
        .with_graceful_shutdown(shutdown)
        .await;
    poller.abort();
    Ok(result?)
}

/// Does an `If-None-Match` header value match `etag`? (`*`, or a list of entity tags;
/// weak comparison, as RFC 9110 prescribes for `If-None-Match`.)
pub fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn header(value: &str) -> HeaderValue {
    // ETags are hex and quotes; any other value here is a constant.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn registry(State(w): State<Arc<Watcher>>, headers: HeaderMap) -> Response {
    let snap = w.refresh();
    let etag = header(&snap.etag);
    let no_cache = HeaderValue::from_static("no-cache");
    let matched = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| none_match(v, &snap.etag));
    if matched {
        return (
            StatusCode::NOT_MODIFIED,
            [(ETAG, etag), (CACHE_CONTROL, no_cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (ETAG, etag),
            (CACHE_CONTROL, no_cache),
        ],
        snap.body.clone(),
    )
        .into_response()
}

async fn status(State(w): State<Arc<Watcher>>) -> Response {
    w.refresh();
    let s = w.status();
    let body = serde_json::json!({
        "etag": s.current.etag,
        "revision": s.current.revision,
        "tenants": s.current.tenants,
        "loaded_at_unix_ms": s.current.loaded_at_unix_ms,
        "last_error": s.last_error,
        "path": s.path.display().to_string(),
    });
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        axum::Json(body),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

fn error_body(status: StatusCode, error: &str, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({ "error": error });
    if let (Some(b), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "not_found",
        serde_json::json!({
            "path": uri.path(),
            "routes": ["/v1/registry", "/v1/registry/status", "/healthz"],
        }),
    )
}

async fn method_not_allowed(method: Method) -> Response {
    error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        serde_json::json!({ "method": method.as_str(), "allowed": ["GET", "HEAD"] }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let e = "\"abc\"";
        assert!(none_match("\"abc\"", e));
        assert!(none_match("W/\"abc\"", e));
        assert!(none_match("\"x\", \"abc\"", e));
        assert!(none_match("*", e));
        assert!(!none_match("\"abd\"", e));
        assert!(!none_match("abc", e));
        assert!(!none_match("", e));
    }
}
