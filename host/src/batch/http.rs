//! `POST /v1/batch/eta`, `GET /v1/batch/{id}`, `GET /v1/batch/{id}/results`.
//!
//! Identity and tenant exactly as `POST /v1/eta` (the identity re-check, then the
//! tenant's registry route, which names the model). A job is only ever visible to its
//! tenant: another tenant's job id is the same 404 as an unknown one.

use super::BatchPlane;
use super::input::{Ingest, UploadLimits};
use super::job::{self, Format, State, Status};
use super::sched;
use crate::serve::App;
use crate::serve::error::ApiError;
use crate::serve::http::tenant_route;
use crate::serve::metrics::NO_TENANT;
use crate::serve::request_id::RequestId;
use axum::extract::{Extension, Path, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::io::BufWriter;
use std::sync::Arc;

fn plane(app: &App) -> Result<&Arc<BatchPlane>, ApiError> {
    app.batch.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this host has no batch plane",
        )
    })
}

fn no_such_job() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such batch job")
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-ndjson");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" => Ok(Format::Csv),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/json"
        | "text/plain"
        | "" => Ok(Format::Ndjson),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body is NDJSON (application/x-ndjson) or CSV (text/csv)",
        )),
    }
}

pub async fn submit(
    AxState(app): AxState<Arc<App>>,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Response {
    // Not counted in the request metrics: an upload's seconds are not interactive latency.
    let mut tenant = NO_TENANT.to_string();
    match submit_inner(&app, req, &mut tenant).await {
        Ok((status, location)) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, location)],
            axum::Json(serde_json::json!({
                "job_id": status.job_id,
                "status": status.status,
                "rows": status.rows,
                "request_id": rid.as_str(),
            })),
        )
            .into_response(),
        Err(e) => e.into_response_with(rid.as_str()),
    }
}

async fn submit_inner(
    app: &Arc<App>,
    req: Request,
    tenant: &mut String,
) -> Result<(Status, String), ApiError> {
    let plane = plane(app)?;
    let (parts, mut body) = req.into_parts();
    let route = tenant_route(app, &parts.headers, tenant)?;
    let format = format_of(&parts.headers)?;
    let cfg = plane.config().clone();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_bytes) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the upload exceeds {} bytes", cfg.max_bytes),
        ));
    }
    if plane.unfinished(&route.org_id) >= cfg.max_jobs_per_tenant {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_jobs",
            format!(
                "the tenant has {} unfinished batch jobs, the most it may have",
                cfg.max_jobs_per_tenant
            ),
        )
        .retry_after(30));
    }
    let id = job::new_id().map_err(internal)?;
    let dir = cfg.dir.join(&route.org_id).join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| internal(e.into()))?;
    let file = std::fs::File::create(dir.join(job::INPUT)).map_err(|e| internal(e.into()))?;

    // Parsing and writing run on a batch-class thread of their own: an upload's CPU is
    // batch work too. The body is handed over in bounded steps.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(16);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let limits = UploadLimits {
        max_bytes: cfg.max_bytes,
        max_rows: cfg.max_rows,
        chunk_rows: cfg.chunk_rows,
    };
    let (bounds, mode) = (cfg.bounds, cfg.sched);
    let spawned = std::thread::Builder::new()
        .name("batch-ingest".into())
        .spawn(move || {
            sched::lower_current_thread(mode);
            let mut ingest = Ingest::new(BufWriter::new(file), format, bounds, limits);
            let mut result = Ok(());
            while let Some(data) = rx.blocking_recv() {
                if let Err(e) = ingest.feed(&data) {
                    result = Err(e);
                    break;
                }
            }
            drop(rx);
            let r = result.and_then(|()| ingest.finish()).and_then(|(w, rows)| {
                let f = w
                    .into_inner()
                    .map_err(|e| internal(e.into_error().into()))?;
                f.sync_all().map_err(|e| internal(e.into()))?;
                Ok(rows)
            });
            let _ = done_tx.send(r);
        });
    if let Err(e) = spawned {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(internal(e.into()));
    }
    let mut read_error = None;
    let mut read: u64 = 0;
    let mut refused = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                let Ok(data) = f.into_data() else { continue };
                read += data.len() as u64;
                if refused {
                    // The rest of a refused upload is read and dropped (up to the byte
                    // limit): a proxy in front (Envoy) only relays the 400 if the
                    // connection is not reset under a body still being sent.
                    if read > cfg.max_bytes {
                        break;
                    }
                } else if tx.send(data).await.is_err() {
                    refused = true; // the ingest thread stopped on a bad line
                }
            }
            Err(_) => {
                read_error = Some(ApiError::bad_request("the body could not be read"));
                break;
            }
        }
    }
    drop(tx);
    let rows = match (done_rx.await, read_error) {
        (Ok(Err(e)), _) | (_, Some(e)) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        (Ok(Ok(rows)), None) => rows,
        (Err(_), None) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(internal(anyhow::anyhow!("the ingest thread died")));
        }
    };
    let chunk_rows = cfg.chunk_rows.max(1);
    let status = Status {
        job_id: id.clone(),
        tenant: route.org_id.clone(),
        status: State::Queued,
        format,
        rows,
        rows_done: 0,
        rows_failed: 0,
        chunk_rows,
        chunks: rows.div_ceil(chunk_rows),
        model_name: route.model.name.clone(),
        model_selector: route.model.version.clone(),
        model_version: None,
        tier: route.tier.as_str().to_string(),
        region: route.region.clone(),
        created: crate::metering::event::rfc3339(std::time::SystemTime::now()),
        finished: None,
        error: None,
    };
    // The job exists once its status is durable (a restart before this drops the upload).
    let d = dir.clone();
    let s = status.clone();
    tokio::task::spawn_blocking(move || {
        job::sync_dir(&d)?;
        job::write_status(&d, &s)
    })
    .await
    .map_err(|e| internal(e.into()))?
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        internal(e)
    })?;
    plane.enqueue(dir, status.clone());
    tracing::info!(job = %id, tenant = %route.org_id, rows, ?format, "batch job queued");
    Ok((status, format!("/v1/batch/{id}")))
}

fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!("batch upload: {e:#}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
}

/// The caller's job `id`, or the 404 that an unknown id gets.
fn lookup(app: &App, headers: &HeaderMap, id: &str) -> Result<Arc<super::job::Job>, ApiError> {
    let plane = plane(app)?;
    let mut tenant = NO_TENANT.to_string();
    let route = tenant_route(app, headers, &mut tenant)?;
    if !job::valid_id(id) {
        return Err(no_such_job());
    }
    plane.job(&route.org_id, id).ok_or_else(no_such_job)
}

pub async fn status(
    AxState(app): AxState<Arc<App>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match lookup(&app, &headers, &id) {
        Ok(j) => axum::Json(j.snapshot().view()).into_response(),
        Err(e) => e.into_response_with(rid.as_str()),
    }
}

pub async fn results(
    AxState(app): AxState<Arc<App>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let j = match lookup(&app, &headers, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response_with(rid.as_str()),
    };
    let s = j.snapshot();
    if s.status != State::Done {
        return ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "the job is {}: results are served once it is done",
                serde_json::to_value(s.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        )
        .into_response_with(rid.as_str());
    }
    // The chunks' files in order, one at a time.
    let dir = j.dir.clone();
    let chunks = s.chunks;
    let stream = futures_util::stream::unfold(0u64, move |i| {
        let dir = dir.clone();
        async move {
            if i >= chunks {
                return None;
            }
            let r = tokio::fs::read(job::chunk_path(&dir, i))
                .await
                .map(axum::body::Bytes::from);
            Some((r, i + 1))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
