//! The JSON of `POST /v1/forecast/demand`: lanes and a horizon in, daily flight counts
//! out. The tenant's demand model (`demand-<org>`) is asked for every (lane, day); a
//! lane-day it cannot forecast (a lane the tenant never flew) is an error in its place.

use super::api::Bounds;
use super::backend::{Batch, BatchBuilder, Prediction, RowError, Value};
use super::error::ApiError;
use bulkhead_demand_model::days;
use serde::{Deserialize, Serialize};

/// The longest horizon a request may ask for (the model forecasts a year out at most).
pub const MAX_HORIZON_DAYS: u32 = 366;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemandRequest {
    lanes: Vec<LaneIn>,
    /// The first day to forecast, `YYYY-MM-DD`.
    start: String,
    horizon_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaneIn {
    origin: String,
    dest: String,
}

/// A checked request: its lanes and days, and the batch (one row per lane-day, lane by
/// lane) the model gets.
#[derive(Debug)]
pub struct DemandQuery {
    pub lanes: Vec<(String, String)>,
    pub first_day: i32,
    pub horizon_days: u32,
}

/// Parses and checks a request body.
pub fn parse(body: &[u8], b: &Bounds) -> Result<(DemandQuery, Batch), ApiError> {
    let req: DemandRequest = bulkhead_filter_kit::parse_json(body)
        .map_err(|e| ApiError::bad_request(format!("body: field `{}`: {}", e.field, e.message)))?;
    if req.lanes.is_empty() {
        return Err(ApiError::bad_request(
            "lanes: at least one lane is required",
        ));
    }
    if !(1..=MAX_HORIZON_DAYS).contains(&req.horizon_days) {
        return Err(ApiError::bad_request(format!(
            "horizon_days: {} is not within 1..={MAX_HORIZON_DAYS}",
            req.horizon_days
        )));
    }
    let cells = req.lanes.len().saturating_mul(req.horizon_days as usize);
    if cells > b.max_rows {
        return Err(ApiError::bad_request(format!(
            "lanes × horizon_days: {cells} lane-days, at most {} per request",
            b.max_rows
        )));
    }
    let first_day = parse_date(&req.start).ok_or_else(|| {
        ApiError::bad_request(format!(
            "start: {:?} is not a date YYYY-MM-DD",
            printable(&req.start)
        ))
    })?;
    let mut batch = BatchBuilder::new();
    let mut lanes = Vec::with_capacity(req.lanes.len());
    for (i, l) in req.lanes.into_iter().enumerate() {
        for (what, v) in [("origin", &l.origin), ("dest", &l.dest)] {
            if v.is_empty() || v.len() > b.max_category_len {
                return Err(ApiError::bad_request(format!(
                    "lanes[{i}].{what}: 1-{} characters",
                    b.max_category_len
                )));
            }
        }
        for d in 0..req.horizon_days {
            let day = first_day.saturating_add(d as i32);
            let add = |batch: &mut BatchBuilder| -> Result<(), super::backend::BatchError> {
                batch.next_row()?;
                batch.set_category("origin", &l.origin)?;
                batch.set_category("dest", &l.dest)?;
                batch.set("day", Value::Number(f64::from(day)))
            };
            add(&mut batch).map_err(|e| ApiError::bad_request(format!("lanes[{i}]: {e}")))?;
        }
        lanes.push((l.origin, l.dest));
    }
    Ok((
        DemandQuery {
            lanes,
            first_day,
            horizon_days: req.horizon_days,
        },
        batch.finish(),
    ))
}

/// `YYYY-MM-DD` as a day number.
fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    days::days_from_civil(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)
}

fn printable(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
}

/// One day of a lane: the forecast, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DayOut {
    Forecast {
        date: String,
        flights: f64,
        lower: Option<f64>,
        upper: Option<f64>,
    },
    Refused {
        date: String,
        error: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaneOut {
    pub origin: String,
    pub dest: String,
    pub days: Vec<DayOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DemandResponse {
    pub forecasts: Vec<LaneOut>,
    pub model: super::api::ModelInfo,
    pub tenant: String,
    pub request_id: String,
}

/// The model's rows (lane by lane, day by day) as lanes of days; also the number of
/// lane-days forecast (what is billed).
pub fn lanes_out(
    q: &DemandQuery,
    predictions: &[Prediction],
    errors: &[RowError],
) -> (Vec<LaneOut>, u64) {
    let mut errors = errors.iter().peekable();
    let mut rows = (0u32..).zip(predictions);
    let mut forecast = 0;
    let lanes = q
        .lanes
        .iter()
        .map(|(origin, dest)| LaneOut {
            origin: origin.clone(),
            dest: dest.clone(),
            days: (0..q.horizon_days)
                .filter_map(|d| {
                    let (i, p) = rows.next()?;
                    let date = days::format(q.first_day.saturating_add(d as i32));
                    Some(match errors.next_if(|e| e.row == i) {
                        Some(e) => DayOut::Refused {
                            date,
                            error: e.message.clone(),
                        },
                        None => {
                            forecast += 1;
                            DayOut::Forecast {
                                date,
                                flights: hundredths(p.value),
                                lower: p.lower.map(hundredths),
                                upper: p.upper.map(hundredths),
                            }
                        }
                    })
                })
                .collect(),
        })
        .collect();
    (lanes, forecast)
}

/// A daily count to two decimals: the model computes in `f32`, whose widening shows as
/// noise digits (`23.700000762939453`) that mean nothing to a reader.
fn hundredths(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_lanes_and_days_and_refuses_precisely() {
        let b = Bounds::default();
        let (q, batch) = parse(
            br#"{"lanes":[{"origin":"EWR","dest":"ORD"},{"origin":"JFK","dest":"LAX"}],"start":"2013-11-01","horizon_days":3}"#,
            &b,
        )
        .unwrap();
        assert_eq!(batch.rows, 6);
        assert_eq!(q.first_day, days::days_from_civil(2013, 11, 1).unwrap());
        let e = |body: &str| parse(body.as_bytes(), &b).unwrap_err().reason;
        assert!(
            e(r#"{"lanes":[],"start":"2013-11-01","horizon_days":3}"#)
                .contains("at least one lane")
        );
        assert!(
            e(r#"{"lanes":[{"origin":"EWR","dest":"ORD"}],"start":"2013-11-31","horizon_days":3}"#)
                .contains("start")
        );
        assert!(
            e(r#"{"lanes":[{"origin":"EWR","dest":"ORD"}],"start":"2013-11-01","horizon_days":0}"#)
                .contains("horizon_days")
        );
        assert!(e(r#"{"lanes":[{"origin":"EWR","dest":"ORD"}],"start":"2013-11-01","horizon_days":3,"x":1}"#).contains("x"));
        assert!(
            e(r#"{"lanes":[{"origin":"EWR"}],"start":"2013-11-01","horizon_days":3}"#)
                .contains("dest")
        );
        let many = format!(
            r#"{{"lanes":[{}],"start":"2013-11-01","horizon_days":366}}"#,
            vec![r#"{"origin":"EWR","dest":"ORD"}"#; 30].join(",")
        );
        assert!(e(&many).contains("lane-days"));
    }

    #[test]
    fn rows_go_back_to_their_lane_and_day() {
        let q = DemandQuery {
            lanes: vec![("EWR".into(), "ORD".into()), ("XXX".into(), "ORD".into())],
            first_day: days::days_from_civil(2013, 11, 1).unwrap(),
            horizon_days: 2,
        };
        let p = |v: f64| Prediction {
            value: v,
            lower: Some(v - 1.0),
            upper: Some(v + 1.0),
        };
        // The second day as the model sends it: an f32 widened (11.7 → 11.699999809…).
        let preds = [p(10.0), p(f64::from(11.7f32)), p(f64::NAN), p(f64::NAN)];
        let errors = [2u32, 3].map(|row| RowError {
            row,
            message: "lane XXX-ORD is not in this model".into(),
        });
        let (lanes, n) = lanes_out(&q, &preds, &errors);
        assert_eq!(n, 2);
        assert_eq!(
            lanes[0].days[1],
            DayOut::Forecast {
                date: "2013-11-02".into(),
                flights: 11.7,
                lower: Some(10.7),
                upper: Some(12.7)
            }
        );
        assert_eq!(
            lanes[1].days[0],
            DayOut::Refused {
                date: "2013-11-01".into(),
                error: "lane XXX-ORD is not in this model".into()
            }
        );
    }
}
