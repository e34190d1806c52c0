//! Calendar days as `i32` days since 1970-01-01 (day 0, a Thursday).
//!
//! By hand (Howard Hinnant's `days_from_civil` / `civil_from_days`, proleptic Gregorian)
//! rather than with `chrono` or `time`: the plugins run in a sandbox where every crate
//! is code size and load time, they have no clock or time zone to consult anyway, and
//! they only need day counts and weekdays — a dozen lines of integer arithmetic.

/// Days since 1970-01-01 of a civil date; `None` for a date that does not exist
/// (month outside 1-12, day past the month's end) or a year outside ±1,000,000.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if !(-1_000_000..=1_000_000).contains(&year) {
        return None;
    }
    let (m, d) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// The civil date (year, month 1-12, day 1-31) of a day number.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // |days| < 2^31 keeps y within ±5.9 million years: the casts are exact.
    (y as i32, m as u32, d as u32)
}

/// Day of the week, 0 = Monday … 6 = Sunday (ISO order).
pub fn weekday(days: i32) -> usize {
    // Day 0 was a Thursday (3).
    (i64::from(days) + 3).rem_euclid(7) as usize
}

pub fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD`, for messages.
pub fn format(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}
