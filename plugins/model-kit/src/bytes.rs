//! Reading an artifact: little-endian fields with every bound checked, so a truncated or
//! hostile artifact is an error, never a panic.

use crate::code::Code;
use std::fmt;

/// Why bytes could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError(pub String);

/// Why bytes are not an artifact (maps to the WIT `bad-artifact`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactError(pub String);

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArtifactError {}

impl From<ReadError> for ArtifactError {
    fn from(e: ReadError) -> Self {
        ArtifactError(e.0)
    }
}

/// A bounds-checked little-endian reader.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, at: 0 }
    }

    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let truncated = || ReadError("truncated".into());
        let end = self.at.checked_add(N).ok_or_else(truncated)?;
        let s = self.b.get(self.at..end).ok_or_else(truncated)?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// The header every artifact starts with: `magic` (8 bytes), the format version (u16,
    /// which must be `version`) and the flags (u16, none outside `known_flags`), returned.
    /// `kind` names the artifact in the errors ("not an eta-forecaster artifact").
    pub fn header(
        &mut self,
        magic: [u8; 8],
        version: u16,
        known_flags: u16,
        kind: &str,
    ) -> Result<u16, ArtifactError> {
        if self.take::<8>().ok() != Some(magic) {
            return Err(ArtifactError(format!("not {kind} artifact (bad magic)")));
        }
        let found = self.u16()?;
        if found != version {
            return Err(ArtifactError(format!(
                "artifact format version {found}, this plugin reads {version}"
            )));
        }
        let flags = self.u16()?;
        if flags & !known_flags != 0 {
            return Err(ArtifactError("unknown flags".into()));
        }
        Ok(flags)
    }

    /// A lane's (origin, destination) airport codes, each checked as [`Code::parse`]
    /// would make it.
    pub fn lane(&mut self) -> Result<(Code, Code), ArtifactError> {
        let (origin, dest) = (self.take::<4>()?, self.take::<4>()?);
        if !Code::is_valid(origin) || !Code::is_valid(dest) {
            return Err(ArtifactError("lane with an invalid airport code".into()));
        }
        Ok((Code(origin), Code(dest)))
    }

    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub fn i32(&mut self) -> Result<i32, ReadError> {
        Ok(i32::from_le_bytes(self.take()?))
    }

    /// A finite `f32` (`what` names it in the error otherwise).
    pub fn f32(&mut self, what: &str) -> Result<f32, ReadError> {
        let x = f32::from_le_bytes(self.take()?);
        if x.is_finite() {
            Ok(x)
        } else {
            Err(ReadError(format!("{what} is not finite")))
        }
    }

    pub fn floats<const N: usize>(&mut self, what: &str) -> Result<[f32; N], ReadError> {
        let mut out = [0f32; N];
        for x in &mut out {
            *x = self.f32(what)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reads_little_endian_and_refuses_what_is_not_there() {
        let mut b = 7u16.to_le_bytes().to_vec();
        b.extend_from_slice(&f32::NAN.to_le_bytes());
        b.push(1);
        let mut r = Reader::new(&b);
        assert_eq!(r.u16().unwrap(), 7);
        assert_eq!(r.f32("x").unwrap_err().0, "x is not finite");
        assert_eq!(r.u32().unwrap_err().0, "truncated");
    }
}
