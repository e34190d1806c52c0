//! The HTTP surface: `POST /v1/eta`, `GET /healthz`, `GET /readyz`, `GET /metrics`;
//! JSON errors everywhere (404/405 included), each tagged with the request id.
//!
//! A prediction goes: identity (401/403) → tenant in the registry (403/421) → body
//! (413/400) → admission (429) → the tenant's model in its sandbox (5xx/422 when the
//! model fails, naming the kind; details in the log under the request id).

use super::App;
use super::admission;
use super::api::{self, EtaPrediction, EtaResponse, ModelInfo};
use super::backend::{BackendError, Call, FailureKind, Outcome};
use super::error::ApiError;
use super::metrics::NO_TENANT;
use super::request_id::{self, RequestId};
use crate::metering::sink as meter_sink;
use crate::sandbox::ErrorKind;
use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Instant;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/eta", post(eta))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let report = app.readiness.report(&app.tenants);
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn not_found(Extension(rid): Extension<RequestId>) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        .into_response_with(rid.as_str())
}

async fn method_not_allowed(Extension(rid): Extension<RequestId>) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
    .into_response_with(rid.as_str())
}

async fn eta(
    State(app): State<Arc<App>>,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Response {
    let start = Instant::now();
    let mut tenant = NO_TENANT.to_string();
    // Metering: the key the usage event's id derives from, checked before any work; the
    // answer goes out only once its event is durable (else 503, nothing delivered).
    let key = match meter_sink::request_key(req.headers(), rid.as_str()) {
        Ok(k) => k,
        Err(e) => return e.into_response_with(rid.as_str()),
    };
    let resp = match predict(&app, &rid, req, &mut tenant).await {
        Ok((body, region)) => {
            match meter_sink::record_prediction(&app, &key, &body, &region, start.elapsed()).await {
                Ok(()) => (StatusCode::OK, axum::Json(body)).into_response(),
                Err(e) => e.into_response_with(rid.as_str()),
            }
        }
        Err(e) => e.into_response_with(rid.as_str()),
    };
    app.metrics
        .request(&tenant, resp.status().as_u16(), start.elapsed());
    resp
}

/// `tenant` is set as soon as the request is known to come from a registered tenant
/// (the metrics label). The answer comes with the tenant's region, for its usage event.
async fn predict(
    app: &Arc<App>,
    rid: &RequestId,
    req: Request,
    tenant: &mut String,
) -> Result<(EtaResponse, String), ApiError> {
    let (parts, body) = req.into_parts();
    let org = app.identity.check(&parts.headers).inspect_err(|e| {
        app.metrics.identity_refused(e.error);
    })?;
    let route = app.tenants.route(&org).inspect_err(|e| {
        // Suspended or on another plane: still a registered tenant, so a bounded label.
        if e.error != "unknown_tenant" {
            tenant.clone_from(&org);
        }
    })?;
    tenant.clone_from(&route.org_id);

    let body = read_body(&parts.headers, body, app.limits.max_body_bytes).await?;
    let rows = api::parse_rows(&body, &app.limits.bounds)?;
    let n = rows.rows as usize;

    let slot = app
        .admission
        .admit(
            &route.org_id,
            route.max_concurrency,
            admission::Class::of(route.tier),
        )
        .await
        .map_err(|(scope, e)| {
            app.metrics.admission_refused(&route.org_id, scope.as_str());
            e
        })?;
    let call = Call {
        tenant: route.org_id.clone(),
        request_id: rid.as_str().to_string(),
        tier: route.tier,
        model: route.model.clone(),
        rows,
    };
    // The call runs in its own task holding the slot: a client that hangs up does not
    // free the slot while its model is still running.
    let backend = Arc::clone(&app.backend);
    let in_flight = app.metrics.in_flight(&route.org_id);
    let result = tokio::spawn(async move {
        let _slot = slot;
        let _in_flight = in_flight;
        backend.predict(call).await
    })
    .await
    .unwrap_or_else(|e| {
        Err(BackendError::new(
            FailureKind::Internal,
            format!("call task: {e}"),
        ))
    });

    let outcome: Outcome = match result {
        Ok(o) => o,
        Err(e) => {
            app.metrics.failure(&route.org_id, e.kind);
            let model = format!("{}@{}", route.model.name, route.model.version);
            let detail = e.detail.as_deref().unwrap_or("");
            if e.kind == FailureKind::Sandbox(ErrorKind::BadInput) {
                // The caller's rows, not a fault of the host or the model.
                tracing::info!(request_id = %rid.as_str(), tenant = %route.org_id, %model,
                    kind = e.kind.as_str(), "model refused the rows: {}", e.message);
            } else {
                tracing::error!(request_id = %rid.as_str(), tenant = %route.org_id, %model,
                    kind = e.kind.as_str(), detail, "model call failed: {}", e.message);
            }
            return Err(failure(&e, &route.model));
        }
    };
    app.metrics.call(&route.org_id, &outcome.stats);
    if outcome.predictions.len() != n {
        tracing::error!(
            request_id = %rid.as_str(),
            tenant = %route.org_id,
            "model returned {} predictions for {n} rows",
            outcome.predictions.len()
        );
        app.metrics.failure(&route.org_id, FailureKind::Internal);
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model_failed",
            "internal: the model returned a wrong number of predictions",
        ));
    }
    let body = EtaResponse {
        predictions: outcome
            .predictions
            .iter()
            .map(EtaPrediction::from)
            .collect(),
        model: ModelInfo {
            name: outcome.model.name,
            version: outcome.model.version,
            tier: route.tier.as_str().to_string(),
        },
        tenant: route.org_id,
        request_id: rid.as_str().to_string(),
    };
    Ok((body, route.region))
}

async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            src = s.source();
        }
        ApiError::bad_request("the body could not be read")
    })
}

/// The answer to a failed model call: precise, but without internals.
fn failure(e: &BackendError, model: &bulkhead_registry::ModelRef) -> ApiError {
    use FailureKind as K;
    let m = format!("{}@{}", model.name, model.version);
    let (status, code, reason) = match e.kind {
        K::ModelNotFound => (
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            format!("the tenant's model {m} is not in the model store"),
        ),
        K::Store => (
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            format!("the model store could not be read for {m}"),
        ),
        K::Integrity => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "model_integrity",
            format!("the stored model {m} failed its integrity check and was not loaded"),
        ),
        K::NotOwned => (
            StatusCode::FORBIDDEN,
            "model_not_permitted",
            format!("the registry names {m}, which is not this tenant's model"),
        ),
        K::Sandbox(k) => sandbox_failure(k, &e.message),
        K::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error".to_string(),
        ),
    };
    let mut err = ApiError::new(status, code, reason);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        err = err.retry_after(1);
    }
    err
}

fn sandbox_failure(k: ErrorKind, detail: &str) -> (StatusCode, &'static str, String) {
    use ErrorKind as S;
    let what = match k {
        S::Timeout => {
            return (
                StatusCode::GATEWAY_TIMEOUT,
                "model_timeout",
                "timeout: the model exceeded its time limit".to_string(),
            );
        }
        S::BadInput => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_input",
                format!("the model refused the rows: {}", clip(detail)),
            );
        }
        S::Memory => "the model exceeded its memory limit",
        S::Trap => "the model trapped",
        S::StackOverflow => "the model overflowed its stack",
        S::OutputTooLarge => "the model's output exceeded its limit",
        S::BadOutput => "the model returned fewer predictions than rows",
        S::HostCallTooLarge => "the model's host calls exceeded their limit",
        S::BadArtifact => "the model could not read its artifact",
        S::PluginError => "the model reported an internal error",
        S::LoadFailed => "the model could not be loaded",
        _ => "the model call failed",
    };
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "model_failed",
        format!("{}: {what}", k.as_str()),
    )
}

/// A plugin's message as it may reach the caller: 200 characters, no control characters.
fn clip(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
