//! Post-processing: exception alerts. A flight whose predicted arrival is later than its
//! scheduled arrival by more than the caller's threshold gets an alert, with the reason:
//! the model's largest contributions to that lateness (departure delay, weather, hour,
//! weekday, month, aircraft, lane), in minutes.

use crate::artifact::{Artifact, Eta, TERMS, Term, mode};
use crate::features::{AIRCRAFT_CLASSES, WEATHER_CLASSES};
use crate::schema::EtaInput;

/// An alert on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Predicted minutes later than the scheduled arrival.
    pub late_minutes: f64,
    pub reason: String,
}

/// How many contributions a reason names at most.
const REASONS: usize = 3;
/// Contributions smaller than this (minutes) are not worth naming.
const MIN_CONTRIBUTION: f64 = 1.0;

/// The alert for a scored row, if its predicted arrival is more than `after_minutes` past
/// the scheduled one. Needs the row's scheduled block time (without it there is no
/// scheduled arrival to be late against).
pub fn alert(model: &Artifact, row: &EtaInput, eta: &Eta, after_minutes: f64) -> Option<Alert> {
    let block = row.sched_block?;
    let late = eta.value - block;
    if late <= after_minutes {
        return None;
    }
    let mut parts = contributions(model, row);
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let named: Vec<String> = parts
        .iter()
        .filter(|(_, m)| *m >= MIN_CONTRIBUTION)
        .take(REASONS)
        .map(|(what, m)| format!("{what} (+{m:.0} min)"))
        .collect();
    let why = if named.is_empty() {
        "no single factor stands out".to_string()
    } else {
        named.join(", ")
    };
    Some(Alert {
        late_minutes: late,
        reason: format!(
            "predicted {late:.0} min after the scheduled arrival (threshold {after_minutes:.0}): {why}"
        ),
    })
}

/// Each named term's contribution (minutes) to the row's prediction, in its mode.
fn contributions(model: &Artifact, row: &EtaInput) -> Vec<(String, f64)> {
    let block = row.sched_block.filter(|_| model.schedule);
    let m = mode(row.dep_delay.is_some(), block.is_some());
    let Some(p) = model.params.get(m) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(d) = row.dep_delay {
        out.push((
            format!("departure delay {d:.0} min"),
            f64::from(p.dep_delay_slope) * d,
        ));
    }
    if let Some(e) = model
        .lane(row.origin, row.dest)
        .and_then(|l| l.effect.get(m))
    {
        out.push((format!("lane {}-{}", row.origin, row.dest), f64::from(*e)));
    }
    for t in TERMS {
        let Some(i) = t.index(row) else { continue };
        let Some(&e) = p.effects(t).get(i) else {
            continue;
        };
        if let Some(what) = describe(t, i, row) {
            out.push((what, f64::from(e)));
        }
    }
    out
}

/// A term's value in words; `None` for an unknown class (not a reason).
fn describe(t: Term, i: usize, row: &EtaInput) -> Option<String> {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const AIRCRAFT: [&str; AIRCRAFT_CLASSES] = [
        "",
        "regional aircraft",
        "narrow-body aircraft",
        "wide-body aircraft",
    ];
    Some(match t {
        Term::Hour => format!("{:02}:00 departures", i),
        Term::Month => format!("{} flights", MONTHS.get(i)?),
        Term::Weekday => format!("{} flights", DAYS.get(i)?),
        Term::Aircraft if i > 0 => AIRCRAFT.get(i)?.to_string(),
        Term::Weather if i > 1 && i < WEATHER_CLASSES => {
            let bits = i - 1;
            let mut w = Vec::new();
            if bits & 1 != 0 {
                w.push("precipitation");
            }
            if bits & 2 != 0 {
                w.push("low visibility");
            }
            if bits & 4 != 0 {
                w.push("strong wind");
            }
            format!("weather at {}: {}", row.origin, w.join(", "))
        }
        Term::Weather if i == 1 => format!("clear weather at {}", row.origin),
        Term::Aircraft | Term::Weather => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::fit::{Example, FitConfig, fit};
    use crate::schema::{Code, Conditions};

    fn model() -> Artifact {
        let code = |s| Code::parse(s).unwrap();
        let rows: Vec<Example> = (0..3000u32)
            .map(|i| {
                let weather = [1u8, 1, 1, 3][(i / 7 % 4) as usize];
                Example {
                    origin: code("EWR"),
                    dest: code("ORD"),
                    month: (1 + i % 12) as u8,
                    sched_dep_hour: (6 + i % 12) as u8,
                    distance: 719.0,
                    dep_delay: None,
                    sched_block: Some(140.0),
                    conditions: Conditions {
                        weekday: Some((i % 7) as u8),
                        aircraft: 2,
                        weather,
                    },
                    // Low visibility: 40 minutes late.
                    eta: 140.0 + if weather == 3 { 40.0 } else { 0.0 },
                }
            })
            .collect();
        fit(&rows, &FitConfig::default()).unwrap()
    }

    fn row(weather: u8) -> EtaInput {
        EtaInput {
            origin: Code::parse("EWR").unwrap(),
            dest: Code::parse("ORD").unwrap(),
            month: 11,
            sched_dep_hour: 8,
            distance: None,
            dep_delay: None,
            sched_block: Some(140.0),
            conditions: Conditions {
                weekday: Some(3),
                aircraft: 2,
                weather,
            },
        }
    }

    #[test]
    fn alerts_name_the_reason_and_respect_the_threshold() {
        let a = model();
        let bad = row(3);
        let eta = a.predict(&bad).unwrap();
        let al = alert(&a, &bad, &eta, 15.0).unwrap();
        assert!(al.late_minutes > 25.0, "{al:?}");
        assert!(
            al.reason.contains("weather at EWR: low visibility (+"),
            "{}",
            al.reason
        );
        assert!(alert(&a, &bad, &eta, 60.0).is_none());
        let clear = row(1);
        let eta = a.predict(&clear).unwrap();
        assert!(alert(&a, &clear, &eta, 15.0).is_none());
        // Without a scheduled block time there is nothing to be late against.
        let mut unscheduled = bad;
        unscheduled.sched_block = None;
        let eta = a.predict(&unscheduled).unwrap();
        assert!(alert(&a, &unscheduled, &eta, 0.0).is_none());
    }
}
