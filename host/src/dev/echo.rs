//! An upstream that answers with exactly what it received, to see what the edge let
//! through (which headers reached the data plane).

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use std::net::SocketAddr;

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    axum::Json(serde_json::json!({
        "method": method.as_str(),
        "path": uri.to_string(),
        "headers": hs,
        "body_bytes": body.len(),
    }))
}

pub fn router() -> Router {
    Router::new().fallback(echo)
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("echo upstream listening on {}", listener.local_addr()?);
    axum::serve(listener, router()).await?;
    Ok(())
}
