//! Flights → one daily count series per lane.

use crate::Code;
use std::collections::BTreeMap;

/// One lane's daily flight counts: `counts[i]` is the number of flights on day
/// `Counts::first + i` (0 on a day without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub origin: Code,
    pub dest: Code,
    pub counts: Vec<u32>,
}

impl Series {
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

/// Every lane's series over one common day range `[first, last]`, lanes sorted by
/// (origin, dest). A lane that starts flying late has zeros before its first flight;
/// the fitter starts each lane at its first flight (see [`crate::fit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub first: i32,
    pub last: i32,
    pub lanes: Vec<Series>,
}

impl Counts {
    /// Number of days in the range.
    pub fn days(&self) -> usize {
        usize::try_from(i64::from(self.last) - i64::from(self.first) + 1).unwrap_or(0)
    }

    pub fn lane(&self, origin: Code, dest: Code) -> Option<&Series> {
        self.lanes
            .binary_search_by(|s| (s.origin, s.dest).cmp(&(origin, dest)))
            .ok()
            .and_then(|i| self.lanes.get(i))
    }
}

/// Daily counts per lane over the flights' own range (first to last flight day);
/// `None` when there are no flights.
pub fn daily_counts(flights: impl IntoIterator<Item = (Code, Code, i32)>) -> Option<Counts> {
    let flights: Vec<(Code, Code, i32)> = flights.into_iter().collect();
    let first = flights.iter().map(|f| f.2).min()?;
    let last = flights.iter().map(|f| f.2).max()?;
    Some(daily_counts_between(flights, first, last))
}

/// Daily counts per lane over `[first, last]` (flights outside it are ignored): the
/// training range (its end is the last training day even when the tenant flew nothing
/// that day) or a holdout range. An empty range (`last < first`) gives no lanes.
pub fn daily_counts_between(
    flights: impl IntoIterator<Item = (Code, Code, i32)>,
    first: i32,
    last: i32,
) -> Counts {
    let days = usize::try_from(i64::from(last) - i64::from(first) + 1).unwrap_or(0);
    let mut lanes: BTreeMap<(Code, Code), Vec<u32>> = BTreeMap::new();
    if days > 0 {
        for (origin, dest, day) in flights {
            if day < first || day > last {
                continue;
            }
            let i = (i64::from(day) - i64::from(first)) as usize;
            let counts = lanes.entry((origin, dest)).or_insert_with(|| vec![0; days]);
            if let Some(c) = counts.get_mut(i) {
                *c = c.saturating_add(1);
            }
        }
    }
    Counts {
        first,
        last,
        lanes: lanes
            .into_iter()
            .map(|((origin, dest), counts)| Series {
                origin,
                dest,
                counts,
            })
            .collect(),
    }
}
