//! One frame of `bulkhead top`: per-tenant rates between two scrapes.

use super::parse::Sample;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

pub const REQUESTS: &str = "bulkhead_requests_total";
pub const LATENCY_BUCKET: &str = "bulkhead_request_duration_seconds_bucket";
pub const IN_FLIGHT: &str = "bulkhead_requests_in_flight";
pub const GUEST: &str = "bulkhead_tenant_guest_seconds_total";
pub const BATCH_ROWS: &str = "bulkhead_batch_rows_total";

/// One tenant's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub tenant: String,
    pub requests_per_s: f64,
    /// The upper bound of the histogram bucket holding the 95th percentile of the
    /// interval's requests (seconds); `None` without requests.
    pub p95: Option<f64>,
    pub in_flight: f64,
    pub too_many_per_s: f64,
    /// Guest CPU seconds per second (interactive sandbox).
    pub guest_per_s: f64,
    /// The tenant's share of all tenants' guest time in the interval (0–1).
    pub share: Option<f64>,
    pub batch_rows_per_s: f64,
}

fn sum_by_tenant<'a>(
    s: &'a [Sample],
    name: &str,
    filter: impl Fn(&Sample) -> bool,
) -> BTreeMap<&'a str, f64> {
    let mut m = BTreeMap::new();
    for x in s.iter().filter(|x| x.name == name && filter(x)) {
        if let Some(t) = x.label("tenant") {
            *m.entry(t).or_insert(0.0) += x.value;
        }
    }
    m
}

/// Counter increase (a reset — the host restarted — counts from zero).
fn delta(cur: f64, prev: Option<f64>) -> f64 {
    match prev {
        Some(p) if cur >= p => cur - p,
        _ => cur,
    }
}

/// The rows for the interval `prev` → `cur` of `seconds`, busiest share first.
pub fn rows(prev: &[Sample], cur: &[Sample], seconds: f64) -> Vec<Row> {
    let dt = seconds.max(1e-3);
    let rate = |name: &str, filter: &dyn Fn(&Sample) -> bool| -> BTreeMap<String, f64> {
        let p = sum_by_tenant(prev, name, filter);
        sum_by_tenant(cur, name, filter)
            .into_iter()
            .map(|(t, v)| (t.to_string(), delta(v, p.get(t).copied()) / dt))
            .collect()
    };
    let req = rate(REQUESTS, &|_| true);
    let too_many = rate(REQUESTS, &|s| s.label("status") == Some("429"));
    let guest = rate(GUEST, &|_| true);
    let batch = rate(BATCH_ROWS, &|_| true);
    let in_flight: BTreeMap<String, f64> = sum_by_tenant(cur, IN_FLIGHT, |_| true)
        .into_iter()
        .map(|(t, v)| (t.to_string(), v))
        .collect();
    let guest_total: f64 = guest.values().sum();

    let tenants: BTreeSet<&String> = req
        .keys()
        .chain(guest.keys())
        .chain(batch.keys())
        .chain(in_flight.keys())
        .collect();
    let mut out: Vec<Row> = tenants
        .into_iter()
        .map(|t| {
            let g = guest.get(t).copied().unwrap_or(0.0);
            Row {
                tenant: t.clone(),
                requests_per_s: req.get(t).copied().unwrap_or(0.0),
                p95: p95(prev, cur, t),
                in_flight: in_flight.get(t).copied().unwrap_or(0.0),
                too_many_per_s: too_many.get(t).copied().unwrap_or(0.0),
                guest_per_s: g,
                share: (guest_total > 0.0).then(|| g / guest_total),
                batch_rows_per_s: batch.get(t).copied().unwrap_or(0.0),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.share
            .unwrap_or(0.0)
            .total_cmp(&a.share.unwrap_or(0.0))
            .then(b.requests_per_s.total_cmp(&a.requests_per_s))
            .then(a.tenant.cmp(&b.tenant))
    });
    out
}

/// The 95th percentile of the interval from the cumulative buckets' increases.
fn p95(prev: &[Sample], cur: &[Sample], tenant: &str) -> Option<f64> {
    let buckets = |s: &[Sample]| -> BTreeMap<u64, (f64, f64)> {
        s.iter()
            .filter(|x| x.name == LATENCY_BUCKET && x.label("tenant") == Some(tenant))
            .filter_map(|x| {
                let le: f64 = match x.label("le")? {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le.to_bits(), (le, x.value)))
            })
            .collect()
    };
    let p = buckets(prev);
    let mut inc: Vec<(f64, f64)> = buckets(cur)
        .into_iter()
        .map(|(k, (le, v))| (le, delta(v, p.get(&k).map(|x| x.1))))
        .collect();
    inc.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = inc.last()?.1;
    if total <= 0.0 {
        return None;
    }
    inc.into_iter()
        .find(|(_, c)| *c >= 0.95 * total)
        .map(|(le, _)| le)
}

fn duration(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.is_infinite() => ">max".into(),
        Some(s) if s < 1e-3 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

/// The frame as text.
pub fn render(url: &str, seconds: f64, rows: &[Row]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "bulkhead top  {url}  interval {seconds:.1}s  (p95: bucket upper bound; SHARE: of all tenants' guest CPU)"
    );
    let _ = writeln!(
        o,
        "{:<10} {:>9} {:>9} {:>9} {:>8} {:>10} {:>6} {:>12}",
        "TENANT", "REQ/S", "P95", "INFLIGHT", "429/S", "GUEST s/s", "SHARE", "BATCH ROWS/S"
    );
    for r in rows {
        let share = r
            .share
            .map_or_else(|| "-".to_string(), |s| format!("{:.0}%", s * 100.0));
        let _ = writeln!(
            o,
            "{:<10} {:>9.1} {:>9} {:>9.0} {:>8.1} {:>10.4} {:>6} {:>12.0}",
            r.tenant,
            r.requests_per_s,
            duration(r.p95),
            r.in_flight,
            r.too_many_per_s,
            r.guest_per_s,
            share,
            r.batch_rows_per_s
        );
    }
    if rows.is_empty() {
        let _ = writeln!(o, "(no tenant traffic yet)");
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::super::parse::parse;
    use super::*;

    const A: &str = r#"
bulkhead_requests_total{tenant="UA",status="200"} 100
bulkhead_requests_total{tenant="UA",status="429"} 0
bulkhead_requests_total{tenant="DL",status="200"} 50
bulkhead_request_duration_seconds_bucket{tenant="UA",le="0.001"} 90
bulkhead_request_duration_seconds_bucket{tenant="UA",le="0.002"} 100
bulkhead_request_duration_seconds_bucket{tenant="UA",le="+Inf"} 100
bulkhead_tenant_guest_seconds_total{tenant="UA"} 1.0
bulkhead_tenant_guest_seconds_total{tenant="DL"} 1.0
bulkhead_batch_rows_total{tenant="DL"} 0
"#;
    const B: &str = r#"
bulkhead_requests_total{tenant="UA",status="200"} 290
bulkhead_requests_total{tenant="UA",status="429"} 10
bulkhead_requests_total{tenant="DL",status="200"} 60
bulkhead_request_duration_seconds_bucket{tenant="UA",le="0.001"} 100
bulkhead_request_duration_seconds_bucket{tenant="UA",le="0.002"} 280
bulkhead_request_duration_seconds_bucket{tenant="UA",le="+Inf"} 300
bulkhead_requests_in_flight{tenant="UA"} 3
bulkhead_tenant_guest_seconds_total{tenant="UA"} 1.6
bulkhead_tenant_guest_seconds_total{tenant="DL"} 1.4
bulkhead_batch_rows_total{tenant="DL"} 4000
"#;

    #[test]
    fn rates_percentile_and_share_over_the_interval() {
        let rows = rows(&parse(A), &parse(B), 2.0);
        assert_eq!(rows.len(), 2);
        let ua = &rows[0];
        assert_eq!(ua.tenant, "UA");
        assert_eq!(ua.requests_per_s, 100.0);
        assert_eq!(ua.too_many_per_s, 5.0);
        assert_eq!(ua.in_flight, 3.0);
        // 200 requests in the interval: 10 ≤ 1 ms, 180 ≤ 2 ms, 10 above: p95 is > 2 ms.
        assert_eq!(ua.p95, Some(f64::INFINITY));
        assert!((ua.share.unwrap() - 0.6).abs() < 1e-9);
        let dl = &rows[1];
        assert_eq!(dl.requests_per_s, 5.0);
        assert_eq!(dl.p95, None);
        assert_eq!(dl.batch_rows_per_s, 2000.0);
        let text = render("http://x/metrics", 2.0, &rows);
        assert!(text.contains("UA"), "{text}");
        assert!(text.contains("60%"), "{text}");
        assert!(text.contains("40%"), "{text}");
    }
}
