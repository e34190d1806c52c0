//! The HTTP surface: `POST /v1/eta`, `POST /v1/forecast/demand`, `GET /healthz`,
//! `GET /readyz`, `GET /metrics`; JSON errors everywhere (404/405 included), each tagged
//! with the request id.
//!
//! A prediction goes: identity (401/403) → tenant in the registry (403/421) → body
//! (413/400) → admission (429) → the tenant's model in its sandbox (5xx/422 when the
//! model fails, naming the kind; details in the log under the request id).

use super::App;
use super::admission;
use super::api::{self, EtaResponse, ModelInfo};
use super::backend::{BackendError, Batch, Call, FailureKind, Outcome};
use super::demand_api;
use super::error::ApiError;
use super::metrics::NO_TENANT;
use super::request_id::{self, RequestId};
use super::tenants::TenantRoute;
use crate::metering::event::{Metric, RequestKey};
use crate::metering::sink as meter_sink;
use crate::models::store::PRODUCTION;
use crate::sandbox::ErrorKind;
use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_registry::ModelRef;
use std::sync::Arc;
use std::time::Instant;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/eta", post(eta))
        .route("/v1/forecast/demand", post(demand))
        .route("/v1/batch/eta", post(crate::batch::http::submit))
        .route("/v1/batch/{id}", get(crate::batch::http::status))
        .route("/v1/batch/{id}/results", get(crate::batch::http::results))
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
    answer(&app, &rid, req, Metric::Predictions, EtaEndpoint).await
}

async fn demand(
    State(app): State<Arc<App>>,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Response {
    answer(&app, &rid, req, Metric::ForecastDays, DemandEndpoint).await
}

/// What an endpoint makes of a request: the rows and the model to run them on, then the
/// answer (and how much of it is billable) from what the model said.
trait Endpoint: Send {
    type Query: Send;
    type Body: serde::Serialize;
    fn parse(
        &self,
        body: &[u8],
        route: &TenantRoute,
        b: &api::Bounds,
    ) -> Result<(Self::Query, Batch, ModelRef, Option<f64>), ApiError>;
    fn answer(
        &self,
        q: Self::Query,
        outcome: Outcome,
        model: ModelInfo,
        route: &TenantRoute,
        rid: &str,
    ) -> (Self::Body, u64);
    /// The model an answer names (what its usage event records).
    fn model(body: &Self::Body) -> &ModelInfo;
}

/// `POST /v1/eta`: the rows, the tenant's model, its alert threshold.
struct EtaEndpoint;

impl Endpoint for EtaEndpoint {
    type Query = ();
    type Body = EtaResponse;
    fn parse(
        &self,
        body: &[u8],
        route: &TenantRoute,
        b: &api::Bounds,
    ) -> Result<((), Batch, ModelRef, Option<f64>), ApiError> {
        let rows = api::parse_rows(body, b)?;
        let alert_after = Some(f64::from(route.alert_after_minutes));
        Ok(((), rows, route.model.clone(), alert_after))
    }
    fn answer(
        &self,
        _: (),
        outcome: Outcome,
        model: ModelInfo,
        route: &TenantRoute,
        rid: &str,
    ) -> (EtaResponse, u64) {
        let predictions = api::rows_out(&outcome.predictions, &outcome.errors);
        let scored = predictions.iter().filter(|r| r.is_predicted()).count() as u64;
        let body = EtaResponse {
            predictions,
            alerts: outcome.alerts.iter().map(api::AlertOut::from).collect(),
            model,
            tenant: route.org_id.clone(),
            request_id: rid.to_string(),
        };
        (body, scored)
    }
    fn model(body: &EtaResponse) -> &ModelInfo {
        &body.model
    }
}

/// `POST /v1/forecast/demand`: lane-days for the tenant's demand model, `demand-<org>`.
struct DemandEndpoint;

impl Endpoint for DemandEndpoint {
    type Query = demand_api::DemandQuery;
    type Body = demand_api::DemandResponse;
    fn parse(
        &self,
        body: &[u8],
        route: &TenantRoute,
        b: &api::Bounds,
    ) -> Result<(Self::Query, Batch, ModelRef, Option<f64>), ApiError> {
        let (q, rows) = demand_api::parse(body, b)?;
        let model = ModelRef {
            name: crate::models::demand::model_name(&route.org_id),
            version: PRODUCTION.to_string(),
        };
        Ok((q, rows, model, None))
    }
    fn answer(
        &self,
        q: Self::Query,
        outcome: Outcome,
        model: ModelInfo,
        route: &TenantRoute,
        rid: &str,
    ) -> (Self::Body, u64) {
        let (forecasts, n) = demand_api::lanes_out(&q, &outcome.predictions, &outcome.errors);
        let body = demand_api::DemandResponse {
            forecasts,
            model,
            tenant: route.org_id.clone(),
            request_id: rid.to_string(),
        };
        (body, n)
    }
    fn model(body: &Self::Body) -> &ModelInfo {
        &body.model
    }
}

/// Runs a model endpoint: the model call, then metering (the answer goes out only once
/// its usage event is durable, else 503 and nothing delivered), then the metrics.
async fn answer<E: Endpoint>(
    app: &Arc<App>,
    rid: &RequestId,
    req: Request,
    metric: Metric,
    endpoint: E,
) -> Response {
    let start = Instant::now();
    let mut tenant = NO_TENANT.to_string();
    // The key the usage event's id derives from, checked before any work.
    let mut key = match meter_sink::request_key(req.headers(), rid.as_str()) {
        Ok(k) => k,
        Err(e) => return e.into_response_with(rid.as_str()),
    };
    let resp = match call_model(app, rid, req, &mut tenant, &mut key, &endpoint).await {
        Ok((q, outcome, model, route)) => {
            let (body, quantity) = endpoint.answer(q, outcome, model, &route, rid.as_str());
            let served = E::model(&body);
            let usage = meter_sink::Usage {
                metric,
                quantity,
                tenant: &route.org_id,
                request_id: rid.as_str(),
                model_name: &served.name,
                model_version: &served.version,
                tier: route.tier.as_str(),
                region: &route.region,
                latency: start.elapsed(),
            };
            match meter_sink::record_usage(app, &key, &usage).await {
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

/// Identity, route, body, admission, then the model in its sandbox. `tenant` is set as
/// soon as the request is known to come from a registered tenant (the metrics label);
/// `key` is bound to the body once it is read.
async fn call_model<E: Endpoint>(
    app: &Arc<App>,
    rid: &RequestId,
    req: Request,
    tenant: &mut String,
    key: &mut RequestKey,
    endpoint: &E,
) -> Result<(E::Query, Outcome, ModelInfo, TenantRoute), ApiError> {
    let (parts, body) = req.into_parts();
    let route = tenant_route(app, &parts.headers, tenant)?;

    let body = read_body(&parts.headers, body, app.limits.max_body_bytes).await?;
    key.bind_body(&body);
    let (query, rows, model_ref, alert_after_minutes) =
        endpoint.parse(&body, &route, &app.limits.bounds)?;
    let n = rows.rows as usize;

    let slot = app
        .admission
        .admit_queued(
            &route.org_id,
            route.max_concurrency,
            route.max_queue,
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
        model: model_ref.clone(),
        rows,
        alert_after_minutes,
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
            let model = format!("{}@{}", model_ref.name, model_ref.version);
            let detail = e.detail.as_deref().unwrap_or("");
            if e.kind == FailureKind::Sandbox(ErrorKind::BadInput) {
                // The caller's rows, not a fault of the host or the model.
                tracing::info!(request_id = %rid.as_str(), tenant = %route.org_id, %model,
                    kind = e.kind.as_str(), "model refused the rows: {}", e.message);
            } else {
                tracing::error!(request_id = %rid.as_str(), tenant = %route.org_id, %model,
                    kind = e.kind.as_str(), detail, "model call failed: {}", e.message);
            }
            return Err(failure(&e, &model_ref));
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
    // Served by another model than the one asked for: the tenant's own fell back to the
    // pooled one (the gate refused it).
    let model = ModelInfo {
        name: outcome.model.name.clone(),
        version: outcome.model.version.clone(),
        tier: route.tier.as_str().to_string(),
        fallback: outcome.model.name != model_ref.name,
    };
    Ok((query, outcome, model, route))
}

/// The caller's verified tenant and its registry route: the identity re-check, then the
/// registry (unknown, suspended, other plane). The same for every tenant endpoint.
/// `tenant` is set as soon as the caller is known to be a registered tenant.
pub(crate) fn tenant_route(
    app: &App,
    headers: &axum::http::HeaderMap,
    tenant: &mut String,
) -> Result<TenantRoute, ApiError> {
    let org = app.identity.check(headers).inspect_err(|e| {
        app.metrics.identity_refused(e.error);
    })?;
    let route = app.tenants.route(&org).inspect_err(|e| {
        // Suspended or on another plane: still a registered tenant, so a bounded label.
        if e.error != "unknown_tenant" {
            tenant.clone_from(&org);
        }
    })?;
    tenant.clone_from(&route.org_id);
    Ok(route)
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
