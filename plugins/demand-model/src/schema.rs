//! The small shared vocabulary: airport codes, feature kinds, input errors.
//!
//! `Code` has the same shape and rules as the ETA model's (`bulkhead_eta_model::schema::Code`):
//! 1-4 ASCII letters/digits, upper-cased, zero-padded into 4 bytes. It is a copy rather
//! than a dependency so this crate stays std-only and builds apart from the ETA model.

use std::fmt;

/// An airport code: 1-4 ASCII letters or digits, upper-cased, zero-padded. Fixed size so
/// the artifact's lane table is a flat sorted array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(pub [u8; 4]);

impl Code {
    pub fn parse(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut out = [0u8; 4];
        for (o, c) in out.iter_mut().zip(b) {
            *o = c.to_ascii_uppercase();
        }
        Some(Code(out))
    }

    /// Whether raw bytes (from an artifact) are a code as [`Code::parse`] would make it.
    pub fn is_valid(raw: [u8; 4]) -> bool {
        let len = raw.iter().position(|&c| c == 0).unwrap_or(4);
        len > 0
            && raw[..len]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && raw[len..].iter().all(|&c| c == 0)
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(4);
        std::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Numeric,
    Categorical,
}

/// Why a row was refused (maps to the WIT `bad-input`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}
