//! The usage event: one CloudEvent (JSON, `specversion` 1.0) per metered unit of work,
//! emitted where the work completed.
//!
//! ```json
//! {"specversion": "1.0", "id": "5b0c…-8…", "source": "//host-1/bulkhead-serve",
//!  "subject": "DL", "type": "com.bulkhead.usage.v1", "time": "2026-11-28T13:04:25.123Z",
//!  "data": {"metric": "predictions", "quantity": 3, "request_key": "2b1e…",
//!           "model_name": "eta-DL", "model_version": "1", "tier": "pool",
//!           "region": "us-east-1", "latency_ms": 4}}
//! ```
//!
//! * `subject` is the verified `org_id`: the value that passed the identity checks and
//!   named the tenant in the registry, never a mapped or caller-chosen name.
//! * `id` is derived from the request's key (a client `Idempotency-Key`, which wins, or
//!   the `x-request-id`) bound to the request body, the tenant and the metric: a retried
//!   request (same key, same body) produces the same id, a key reused for another request
//!   does not, and two tenants that happen to send the same key never share one.
//! * `time` is UTC with milliseconds; the billing period of an event is the month of its
//!   `time` (`2026-11`), and nothing else.

use bulkhead_model_kit::days::{civil_from_days, days_from_civil};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SPEC_VERSION: &str = "1.0";
/// The CloudEvents `type` of every usage event.
pub const TYPE_USAGE: &str = "com.bulkhead.usage.v1";
/// The request header a client sets to make its retries idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What an event counts. Quantities are integers so that sums are exact; training time
/// is metered in seconds and reported in hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Rows predicted by `POST /v1/eta`.
    Predictions,
    /// Days forecast by a forecasting call.
    ForecastDays,
    /// Wall-clock seconds of a training run.
    TrainingSeconds,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Predictions => "predictions",
            Metric::ForecastDays => "forecast_days",
            Metric::TrainingSeconds => "training_seconds",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub specversion: String,
    pub id: String,
    pub source: String,
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    pub metric: Metric,
    pub quantity: u64,
    /// The key the id was derived from (for audits: it is the request id in the logs).
    pub request_key: String,
    pub model_name: String,
    pub model_version: String,
    pub tier: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Where an event's key came from. Part of the id, so an Envoy request id can never
/// collide with a client's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    RequestId,
    IdempotencyKey,
    /// A training run: the model version it published.
    TrainingRun,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::RequestId => "request-id",
            KeyKind::IdempotencyKey => "idempotency-key",
            KeyKind::TrainingRun => "training-run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    pub kind: KeyKind,
    pub key: String,
    /// SHA-256 of the request body the key came with ([`RequestKey::bind_body`]): the key
    /// names one request only together with what was asked, so a client reusing one
    /// `Idempotency-Key` for different requests is billed for each (a retry sends the same
    /// body and still gets the same id).
    pub body: Option<[u8; 32]>,
}

impl RequestKey {
    /// A key not bound to a body (training runs, batch chunks: their keys are unique).
    pub fn new(kind: KeyKind, key: impl Into<String>) -> RequestKey {
        RequestKey {
            kind,
            key: key.into(),
            body: None,
        }
    }

    /// Binds this key to the request's body.
    pub fn bind_body(&mut self, body: &[u8]) {
        self.body = Some(Sha256::digest(body).into());
    }

    /// The `Idempotency-Key` header when present (it must be a sane token: it goes into
    /// the event and the logs), else the request id. `Err` names what is wrong.
    pub fn of(headers: &axum::http::HeaderMap, request_id: &str) -> Result<RequestKey, String> {
        match headers.get(IDEMPOTENCY_KEY) {
            None => Ok(RequestKey::new(KeyKind::RequestId, request_id)),
            Some(v) => match v.to_str() {
                Ok(s) if crate::serve::request_id::valid(s) => {
                    Ok(RequestKey::new(KeyKind::IdempotencyKey, s))
                }
                _ => Err(format!(
                    "the Idempotency-Key header must be 1-{} characters from [A-Za-z0-9._:-]",
                    crate::serve::request_id::MAX_LEN
                )),
            },
        }
    }
}

/// The event id: SHA-256 over (tenant, metric, key kind, key[, body digest]), the first
/// 16 bytes laid out as an RFC 9562 UUID of version 8 (custom, name-based). Fields are
/// separated by NUL, which none of them can contain (tenant ids and keys are validated
/// tokens); the body digest, fixed-length, comes last.
pub fn event_id(tenant: &str, metric: Metric, key: &RequestKey) -> String {
    let mut h = Sha256::new();
    for part in [
        "bulkhead.meter.v1",
        tenant,
        metric.as_str(),
        key.kind.as_str(),
        &key.key,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    if let Some(body) = &key.body {
        h.update(body);
    }
    uuid_v8(&h.finalize().into())
}

/// The first 16 bytes of a SHA-256 digest as an RFC 9562 version-8 UUID (custom,
/// name-based): `xxxxxxxx-xxxx-8xxx-[89ab]xxx-xxxxxxxxxxxx`.
pub fn uuid_v8(digest: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The facts of one successful prediction call.
#[derive(Debug, Clone)]
pub struct Prediction<'a> {
    /// `predictions` (ETA rows) or `forecast_days` (demand lane-days).
    pub metric: Metric,
    pub source: &'a str,
    pub tenant: &'a str,
    pub key: &'a RequestKey,
    pub rows: u64,
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub tier: &'a str,
    pub region: &'a str,
    pub latency: Duration,
    pub at: SystemTime,
}

/// The facts of one tenant's training run.
#[derive(Debug, Clone)]
pub struct Training<'a> {
    pub source: &'a str,
    pub tenant: &'a str,
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub tier: &'a str,
    pub region: &'a str,
    pub elapsed: Duration,
    pub at: SystemTime,
}

impl Event {
    pub fn prediction(p: &Prediction<'_>) -> Event {
        Event {
            specversion: SPEC_VERSION.to_string(),
            id: event_id(p.tenant, p.metric, p.key),
            source: p.source.to_string(),
            subject: p.tenant.to_string(),
            kind: TYPE_USAGE.to_string(),
            time: rfc3339(p.at),
            data: Data {
                metric: p.metric,
                quantity: p.rows,
                request_key: p.key.key.clone(),
                model_name: p.model_name.to_string(),
                model_version: p.model_version.to_string(),
                tier: p.tier.to_string(),
                region: p.region.to_string(),
                latency_ms: Some(u64::try_from(p.latency.as_millis()).unwrap_or(u64::MAX)),
            },
        }
    }

    /// A tenant's training run: `seconds` of wall-clock time (rounded up) to fit and
    /// score `model_name@model_version`. The id derives from the version it published,
    /// so recording a run twice bills it once.
    pub fn training(t: &Training<'_>) -> Event {
        let key = RequestKey::new(
            KeyKind::TrainingRun,
            format!("{}@{}", t.model_name, t.model_version),
        );
        let seconds = t.elapsed.as_secs() + u64::from(t.elapsed.subsec_nanos() > 0);
        Event {
            specversion: SPEC_VERSION.to_string(),
            id: event_id(t.tenant, Metric::TrainingSeconds, &key),
            source: t.source.to_string(),
            subject: t.tenant.to_string(),
            kind: TYPE_USAGE.to_string(),
            time: rfc3339(t.at),
            data: Data {
                metric: Metric::TrainingSeconds,
                quantity: seconds,
                request_key: key.key,
                model_name: t.model_name.to_string(),
                model_version: t.model_version.to_string(),
                tier: t.tier.to_string(),
                region: t.region.to_string(),
                latency_ms: None,
            },
        }
    }

    /// The billing period (`YYYY-MM`) of the event's `time`, `None` if `time` is not
    /// an RFC 3339 UTC timestamp.
    pub fn period(&self) -> Option<String> {
        period_of(&self.time)
    }

    /// `time` as seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> Option<i64> {
        parse_rfc3339(&self.time).map(|ms| ms.div_euclid(1000))
    }
}

// ------------------------------------------------------------------------ time

/// `2026-11-28T13:04:25.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    format_ms(ms)
}

fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(i32::try_from(secs.div_euclid(86_400)).unwrap_or(i32::MAX));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (UTC only: every
/// event is written in UTC, and a period must not depend on an offset).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = 0;
    match &b[19..b.len() - 1] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
            for (i, c) in frac.iter().take(3).enumerate() {
                ms += i64::from(c - b'0') * [100, 10, 1][i];
            }
        }
        _ => return None,
    }
    let mo = u32::try_from(mo).ok()?;
    let d = u32::try_from(d).ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // `None` for a day the month does not have (2026-02-30).
    let days = i64::from(days_from_civil(i32::try_from(y).ok()?, mo, d)?);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms)
}

/// The period (`YYYY-MM`) of an RFC 3339 UTC timestamp.
pub fn period_of(time: &str) -> Option<String> {
    parse_rfc3339(time)?;
    time.get(..7).map(str::to_string)
}

/// Checks a `--period` argument: `YYYY-MM`.
pub fn check_period(p: &str) -> Result<(), String> {
    let ok = p.len() == 7
        && p.as_bytes()[4] == b'-'
        && p[..4].bytes().all(|c| c.is_ascii_digit())
        && p[5..].bytes().all(|c| c.is_ascii_digit())
        && p[5..].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m));
    if ok {
        Ok(())
    } else {
        Err(format!("a period is YYYY-MM (e.g. 2026-11), not {p:?}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key(k: &str) -> RequestKey {
        RequestKey::new(KeyKind::RequestId, k)
    }

    #[test]
    fn ids_are_deterministic_per_tenant_and_key() {
        let a = event_id("DL", Metric::Predictions, &key("r-1"));
        assert_eq!(
            a,
            event_id("DL", Metric::Predictions, &key("r-1")),
            "a retry"
        );
        assert_ne!(
            a,
            event_id("AA", Metric::Predictions, &key("r-1")),
            "tenants"
        );
        assert_ne!(a, event_id("DL", Metric::Predictions, &key("r-2")));
        assert_ne!(a, event_id("DL", Metric::ForecastDays, &key("r-1")));
        let idem = RequestKey::new(KeyKind::IdempotencyKey, "r-1");
        assert_ne!(a, event_id("DL", Metric::Predictions, &idem), "key kinds");
        // Bound to the body: the same body is the same event, another body another one.
        let bound = |body: &[u8]| {
            let mut k = key("r-1");
            k.bind_body(body);
            event_id("DL", Metric::Predictions, &k)
        };
        assert_eq!(bound(b"{\"rows\":[1]}"), bound(b"{\"rows\":[1]}"));
        assert_ne!(bound(b"{\"rows\":[1]}"), bound(b"{\"rows\":[2]}"));
        assert_ne!(bound(b""), a, "an empty body is still bound");
        // RFC 9562 layout: 8-4-4-4-12, version 8, variant 10.
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn idempotency_key_wins_and_is_checked() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(RequestKey::of(&h, "rid").unwrap(), key("rid"));
        h.insert(IDEMPOTENCY_KEY, "order-7".parse().unwrap());
        let k = RequestKey::of(&h, "rid").unwrap();
        assert_eq!(
            (k.kind, k.key.as_str()),
            (KeyKind::IdempotencyKey, "order-7")
        );
        h.insert(IDEMPOTENCY_KEY, "has space".parse().unwrap());
        assert!(RequestKey::of(&h, "rid").is_err());
    }

    #[test]
    fn time_round_trips_and_periods() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_957_465_123);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-29T13:04:25.123Z");
        assert_eq!(parse_rfc3339(&s), Some(1_795_957_465_123));
        assert_eq!(period_of(&s).as_deref(), Some("2026-11"));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-28T09:04:25+01:00",
            "2026-13-01T00:00:00Z",
            "2026-11-28 09:04:25Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // The last millisecond of November and the first of December.
        assert_eq!(
            period_of("2026-11-30T23:59:59.999Z").as_deref(),
            Some("2026-11")
        );
        assert_eq!(
            period_of("2026-12-01T00:00:00.000Z").as_deref(),
            Some("2026-12")
        );
        assert!(check_period("2026-11").is_ok());
        assert!(check_period("2026-13").is_err());
        assert!(check_period("26-11").is_err());
    }
}
