//! An upstream that answers with exactly what it received, to see what the edge let
//! through (which headers reached the data plane). Named (`--name`), it also says which
//! upstream it is, in the JSON (`"upstream"`) and in an `x-upstream` header, so a test
//! can tell which cluster a request was routed to.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

pub const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-upstream");

#[derive(Clone)]
struct Name(Option<Arc<(String, HeaderValue)>>);

async fn echo(
    State(Name(name)): State<Name>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut json = serde_json::json!({
        "method": method.as_str(),
        "path": uri.to_string(),
        "headers": hs,
        "body_bytes": body.len(),
    });
    match name.as_deref() {
        Some((name, value)) => {
            if let Some(obj) = json.as_object_mut() {
                obj.insert("upstream".into(), name.clone().into());
            }
            ([(UPSTREAM_HEADER, value.clone())], axum::Json(json)).into_response()
        }
        None => axum::Json(json).into_response(),
    }
}

/// The echo service; `name`, when given, must be a valid header value.
pub fn router(name: Option<&str>) -> anyhow::Result<Router> {
    let name = match name {
        Some(n) => {
            let value = HeaderValue::from_str(n)
                .map_err(|_| anyhow::anyhow!("--name {n:?}: not a valid header value"))?;
            Some(Arc::new((n.to_string(), value)))
        }
        None => None,
    };
    Ok(Router::new().fallback(echo).with_state(Name(name)))
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, name: Option<&str>) -> anyhow::Result<()> {
    let app = router(name)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let local = listener.local_addr()?;
    match name {
        Some(n) => tracing::info!("echo upstream {n:?} listening on http://{local}"),
        None => tracing::info!("echo upstream listening on http://{local}"),
    }
    axum::serve(listener, app).await?;
    Ok(())
}
