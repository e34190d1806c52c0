//! Airport codes.

use std::fmt;

/// An airport code: 1-4 ASCII letters or digits, upper-cased, zero-padded. Fixed size so
/// an artifact's lane table is a flat sorted array.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn codes_round_trip() {
        let c = Code::parse("jfk").unwrap();
        assert_eq!(c.as_str(), "JFK");
        assert!(Code::is_valid(c.0));
        assert!(!Code::is_valid(*b"A\0B\0"));
        assert!(!Code::is_valid([0; 4]));
        assert!(Code::parse("").is_none() && Code::parse("ABCDE").is_none());
    }
}
