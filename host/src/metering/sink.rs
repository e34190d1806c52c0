//! The data plane's end of metering: [`Meter`] (the log `bulkhead serve` appends to) and
//! [`record_usage`], which the `POST /v1/eta` and `/v1/forecast/demand` handlers await
//! before they answer.
//! A prediction whose event cannot be made durable is not delivered: the caller gets a
//! 503 and retries with the same key, which yields the same event id (billing never
//! silently drops usage, and never bills a retry twice).

use super::event::{Event, Metric, Prediction, RequestKey};
use super::log::{Log, LogConfig, LogError, LogStats, Position, Recovery};
use crate::serve::App;
use crate::serve::error::ApiError;
use anyhow::Result;
use axum::http::StatusCode;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The meter log of one host, and the CloudEvents `source` it writes as.
#[derive(Debug)]
pub struct Meter {
    log: Log,
    source: String,
}

impl Meter {
    /// Opens `<meter_dir>/log` (recovering a torn tail).
    pub fn open(meter_dir: &Path, source: String) -> Result<(Meter, Recovery)> {
        let (log, rec) = Log::open(
            &super::aggregate::Paths::new(meter_dir).log,
            LogConfig::default(),
        )?;
        Ok((Meter { log, source }, rec))
    }

    pub async fn record(&self, ev: &Event) -> Result<Position, LogError> {
        self.log.append(ev).await
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }
}

/// `//HOSTNAME/bulkhead-serve/ADDR`: which host instance emitted an event.
pub fn source_for(listen: &std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    format!("//{host}/bulkhead-serve/{listen}")
}

/// The request's metering key, or the 400 for a malformed `Idempotency-Key`.
pub fn request_key(
    headers: &axum::http::HeaderMap,
    request_id: &str,
) -> Result<RequestKey, ApiError> {
    RequestKey::of(headers, request_id).map_err(ApiError::bad_request)
}

/// What one answered request used.
pub struct Usage<'a> {
    pub metric: Metric,
    /// Rows (lane-days) the model scored: a row error is not billed.
    pub quantity: u64,
    pub tenant: &'a str,
    pub request_id: &'a str,
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub tier: &'a str,
    /// The tenant's region, from the same registry revision that routed the request.
    pub region: &'a str,
    pub latency: Duration,
}

/// Appends the usage event of a successful request and waits until it is durable; an
/// answer with nothing scored is not an event. Without a meter (`--meter off`) it does
/// nothing.
pub async fn record_usage(app: &App, key: &RequestKey, u: &Usage<'_>) -> Result<(), ApiError> {
    let Some(meter) = &app.meter else {
        return Ok(());
    };
    if u.quantity == 0 {
        return Ok(());
    }
    let ev = Event::prediction(&Prediction {
        metric: u.metric,
        source: meter.source(),
        tenant: u.tenant,
        key,
        rows: u.quantity,
        model_name: u.model_name,
        model_version: u.model_version,
        tier: u.tier,
        region: u.region,
        latency: u.latency,
        at: SystemTime::now(),
    });
    meter.record(&ev).await.map(|_| ()).map_err(|e| {
        tracing::error!(request_id = %u.request_id, tenant = %u.tenant, event_id = %ev.id,
            error = %e, "usage event not durable: the prediction is withheld");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metering_unavailable",
            "the usage event of this prediction could not be written durably, so the \
             prediction was not delivered; retry the same body with the same x-request-id or \
             Idempotency-Key (it will not be billed twice)",
        )
        .retry_after(1)
    })
}
