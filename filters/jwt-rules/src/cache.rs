//! A bounded cache of verified tokens.
//!
//! A client reuses its access token for its whole lifetime, so the second and later
//! requests skip the signature check. Entries are keyed by a SHA-256 of the token (a
//! fixed 32 bytes whatever the token size), never outlive the token's `exp`, and are
//! dropped whenever a provider's key set changes (a revoked key revokes its tokens).

use crate::verifier::Verified;
use lru::LruCache;
use rsa::sha2::{Digest, Sha256};
use std::num::NonZeroUsize;

struct Entry {
    verified: Verified,
    key_generation: u64,
}

pub struct VerifiedCache {
    lru: Option<LruCache<[u8; 32], Entry>>,
    hits: u64,
    misses: u64,
}

impl VerifiedCache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        VerifiedCache {
            lru: NonZeroUsize::new(capacity).map(LruCache::new),
            hits: 0,
            misses: 0,
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A cached verdict, valid while `now <= exp` and the provider's keys are unchanged.
    pub fn get(
        &mut self,
        key: &[u8; 32],
        now: u64,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Verified> {
        let lru = self.lru.as_mut()?;
        let fresh = match lru.get(key) {
            Some(e) => now <= e.verified.exp && e.key_generation == generation(e.verified.provider),
            None => {
                self.misses += 1;
                return None;
            }
        };
        if fresh {
            self.hits += 1;
            lru.get(key).map(|e| e.verified.clone())
        } else {
            lru.pop(key);
            self.misses += 1;
            None
        }
    }

    pub fn put(&mut self, key: [u8; 32], verified: Verified, key_generation: u64) {
        if let Some(lru) = self.lru.as_mut() {
            lru.put(
                key,
                Entry {
                    verified,
                    key_generation,
                },
            );
        }
    }

    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }
}
