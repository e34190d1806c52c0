//! A bounded cache of verified tokens.
//!
//! A client reuses its access token for its whole lifetime, so the second and later
//! requests skip the signature check. Entries are keyed by the token itself: a hit is
//! an exact string match, so no hash collision can ever pass a forged token, and no
//! cryptographic digest has to be computed on the hot path of every cached request.
//! Only tokens up to [`MAX_CACHED_TOKEN_BYTES`] are cached, which bounds memory to
//! about `capacity × 2 KiB`. Entries never outlive the token's `exp`, and are dropped
//! whenever a provider's key set changes (a revoked key revokes its tokens).

use crate::verifier::Verified;
use lru::LruCache;
use std::num::NonZeroUsize;

/// Larger tokens are verified every time instead of cached (typical access tokens are
/// 0.5–1.5 KiB).
pub const MAX_CACHED_TOKEN_BYTES: usize = 2048;

struct Entry {
    verified: Verified,
    key_generation: u64,
}

pub struct VerifiedCache {
    lru: Option<LruCache<Box<str>, Entry>>,
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

    /// A cached verdict, valid while `now <= exp` and the provider's keys are unchanged.
    pub fn get(
        &mut self,
        token: &str,
        now: u64,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Verified> {
        let lru = self.lru.as_mut()?;
        let hit = lru.get(token).and_then(|e| {
            let fresh =
                now <= e.verified.exp && e.key_generation == generation(e.verified.provider);
            fresh.then(|| e.verified.clone())
        });
        match hit {
            Some(v) => {
                self.hits += 1;
                Some(v)
            }
            None => {
                lru.pop(token);
                self.misses += 1;
                None
            }
        }
    }

    pub fn put(&mut self, token: &str, verified: Verified, key_generation: u64) {
        if token.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        if let Some(lru) = self.lru.as_mut() {
            lru.put(
                token.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(exp: u64) -> Verified {
        Verified {
            tenant: "UA".into(),
            provider: 0,
            exp,
        }
    }

    #[test]
    fn hits_until_exp_and_until_keys_change() {
        let mut c = VerifiedCache::new(2);
        c.put("t1", v(100), 1);
        assert_eq!(c.get("t1", 100, |_| 1), Some(v(100)));
        assert_eq!(c.get("t1", 100, |_| 2), None, "new key generation drops it");
        c.put("t1", v(100), 1);
        assert_eq!(c.get("t1", 101, |_| 1), None, "never past exp");
        assert_eq!(c.get("t2", 0, |_| 1), None);
        assert_eq!((c.hits(), c.misses()), (1, 3));
    }

    #[test]
    fn bounded_in_entries_and_token_size() {
        let mut c = VerifiedCache::new(2);
        for t in ["a", "b", "c"] {
            c.put(t, v(100), 0);
        }
        assert_eq!(c.len(), 2);
        assert!(
            c.get("a", 0, |_| 0).is_none(),
            "least recently used went first"
        );
        c.put(&"x".repeat(MAX_CACHED_TOKEN_BYTES + 1), v(100), 0);
        assert_eq!(c.len(), 2);
        let mut off = VerifiedCache::new(0);
        off.put("a", v(100), 0);
        assert!(off.is_empty());
    }
}
