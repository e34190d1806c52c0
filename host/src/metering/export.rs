//! `bulkhead meter export --format stripe --period 2026-11 --out FILE`: the period's
//! events, each counted once (the aggregate's rules: first occurrence of an id, in the
//! period of its `time`), in the shape of Stripe's billing meter events, one JSON object
//! a line, for a billing job to send. Nothing here talks to the network.
//!
//! ```json
//! {"event_name":"bulkhead_predictions","identifier":"<event id>","timestamp":1795957465,
//!  "payload":{"stripe_customer_id":"cus_123","value":"3"}}
//! ```
//!
//! `identifier` is the event id, so Stripe's own dedupe on `identifier` makes re-sending
//! the file harmless. `payload.value` is a string, as Stripe wants. The customer comes
//! from `--customers FILE` (`{"DL": "cus_123", …}`; a tenant missing from it is an
//! error); without the file, `stripe_customer_id` is the `org_id` itself.

use super::aggregate::{Paths, State, write_atomic};
use super::event::{Event, check_period};
use super::log;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Stripe billing meter events (`POST /v1/billing/meter_events` bodies), NDJSON.
    Stripe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StripeMeterEvent {
    pub event_name: String,
    pub identifier: String,
    pub timestamp: i64,
    pub payload: BTreeMap<String, String>,
}

/// The Stripe meter event of one usage event.
pub fn stripe_event(ev: &Event, customer: &str) -> Result<StripeMeterEvent> {
    let timestamp = ev
        .unix_seconds()
        .ok_or_else(|| anyhow!("event {} has no valid time", ev.id))?;
    let mut payload = BTreeMap::new();
    payload.insert("stripe_customer_id".to_string(), customer.to_string());
    payload.insert("value".to_string(), ev.data.quantity.to_string());
    Ok(StripeMeterEvent {
        event_name: format!("bulkhead_{}", ev.data.metric.as_str()),
        identifier: ev.id.clone(),
        timestamp,
        payload,
    })
}

/// The events that count in `period`, deduplicated like the aggregate, in log order.
pub fn counted_events(meter_dir: &Path, period: &str) -> Result<Vec<Event>> {
    let scan = log::read(&Paths::new(meter_dir).log, None)?;
    let mut state = State::default();
    let mut out = Vec::new();
    for (_, ev) in scan.events {
        let before = state.seen.len();
        state.fold([&ev])?;
        if state.seen.len() > before && ev.period().as_deref() == Some(period) {
            out.push(ev);
        }
    }
    Ok(out)
}

/// Writes the period's Stripe meter events to `out` (atomically); returns how many.
pub fn run(
    meter_dir: &Path,
    period: &str,
    format: Format,
    customers: Option<&Path>,
    out: &Path,
) -> Result<usize> {
    check_period(period).map_err(|e| anyhow!(e))?;
    let Format::Stripe = format;
    let map: Option<BTreeMap<String, String>> = match customers {
        Some(p) => {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is not a JSON object of org_id → customer id",
                    p.display()
                )
            })?)
        }
        None => None,
    };
    let events = counted_events(meter_dir, period)?;
    if let Some(m) = &map {
        let missing: BTreeSet<&str> = events
            .iter()
            .map(|e| e.subject.as_str())
            .filter(|t| !m.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            bail!(
                "no Stripe customer for tenant(s) {} in the customers file",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut buf = Vec::new();
    for ev in &events {
        let customer = map
            .as_ref()
            .and_then(|m| m.get(&ev.subject))
            .map_or(ev.subject.as_str(), String::as_str);
        serde_json::to_writer(&mut buf, &stripe_event(ev, customer)?)?;
        buf.push(b'\n');
    }
    write_atomic(out, &buf)?;
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::metering::aggregate::tests::{DEC_1, NOV, ev_at, write_log};

    #[test]
    fn stripe_shape_one_line_per_counted_event() {
        let dir = tempfile::tempdir().unwrap();
        let a = ev_at("DL", "a", 3, NOV);
        let b = ev_at("AA", "b", 1, NOV + 1);
        let dec = ev_at("DL", "c", 9, DEC_1 + 5);
        // A duplicate of `a`, and a December retry of `b`: neither is exported again.
        let b_retry = ev_at("AA", "b", 1, DEC_1 + 9);
        write_log(dir.path(), &[a.clone(), b.clone(), a.clone(), dec, b_retry]);
        let customers = dir.path().join("customers.json");
        std::fs::write(&customers, r#"{"DL":"cus_DL1","AA":"cus_AA9"}"#).unwrap();
        let out = dir.path().join("out/stripe-2026-11.ndjson");
        let n = run(
            dir.path(),
            "2026-11",
            Format::Stripe,
            Some(&customers),
            &out,
        )
        .unwrap();
        assert_eq!(n, 2);
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "event_name": "bulkhead_predictions",
                "identifier": a.id,
                "timestamp": NOV,
                "payload": {"stripe_customer_id": "cus_DL1", "value": "3"},
            })
        );
        assert_eq!(lines[1]["identifier"], b.id.as_str());
        assert_eq!(lines[1]["payload"]["stripe_customer_id"], "cus_AA9");
        // December holds only the new December event.
        let n = run(dir.path(), "2026-12", Format::Stripe, None, &out).unwrap();
        assert_eq!(n, 1);
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
        assert_eq!(line["payload"]["stripe_customer_id"], "DL");
        assert_eq!(line["payload"]["value"], "9");
        // A tenant without a customer is an error, naming it.
        std::fs::write(&customers, r#"{"DL":"cus_DL1"}"#).unwrap();
        let e = run(
            dir.path(),
            "2026-11",
            Format::Stripe,
            Some(&customers),
            &out,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("AA"), "{e:#}");
    }
}
