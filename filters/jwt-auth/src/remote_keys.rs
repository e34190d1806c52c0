//! Bookkeeping for one provider's remote JWKS, per worker, coordinated across workers.
//!
//! Envoy runs one VM per worker thread; without coordination every worker would fetch
//! on its own and a storm of random `kid`s would cost the IdP one fetch per worker. So a
//! fetch is *claimed* through a timestamp in shared data (compare-and-swap), and the
//! fetched document is published in shared data for the other workers to adopt. The
//! result: at most one fetch per cooldown for the whole Envoy process.

use crate::host::SharedData;
use bulkhead_filter_kit::lease;
use bulkhead_jwt::{KeySet, RemoteJwks};

/// What to do about a token whose key we do not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Newer keys were just adopted from another worker: verify again now.
    Retry,
    /// This worker claimed the fetch: dispatch it and park the request.
    Fetch,
    /// A fetch is under way (here or in another worker): park the request.
    Wait,
    /// Cooldown: no fetch allowed now; refuse.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissKind {
    NoKeys,
    UnknownKid,
}

pub struct RemoteKeys {
    cfg: RemoteJwks,
    doc_key: String,
    claim_key: String,
    keys: Option<KeySet>,
    generation: u64,
    adopted_cas: Option<u32>,
    /// When the keys in force were fetched (by any worker).
    fetched_ms: u64,
    /// When this worker last saw a fetch fail.
    failed_ms: u64,
    next_refresh_ms: u64,
    in_flight_since_ms: Option<u64>,
}

impl RemoteKeys {
    /// `scope` keeps shared-data keys apart per plugin and provider.
    pub fn new(scope: &str, cfg: RemoteJwks) -> Self {
        RemoteKeys {
            doc_key: format!("bulkhead.jwt.{scope}.jwks"),
            claim_key: format!("bulkhead.jwt.{scope}.claim"),
            cfg,
            keys: None,
            generation: 0,
            adopted_cas: None,
            fetched_ms: 0,
            failed_ms: 0,
            next_refresh_ms: 0,
            in_flight_since_ms: None,
        }
    }

    pub fn config(&self) -> &RemoteJwks {
        &self.cfg
    }

    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// Bumped on every key-set change; verified-token cache entries of an older
    /// generation are dropped.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight_since_ms.is_some()
    }

    /// Adopts the document another worker published, if it is newer than ours.
    pub fn adopt_shared(&mut self, shared: &dyn SharedData) -> bool {
        let Some((bytes, cas)) = shared.get(&self.doc_key) else {
            return false;
        };
        if self.adopted_cas == Some(cas) {
            return false;
        }
        self.adopted_cas = Some(cas);
        let Some((fetched_ms, ttl_s, body)) = decode_doc(&bytes) else {
            return false;
        };
        match KeySet::from_json(body) {
            Ok(set) => {
                self.install(set, fetched_ms);
                self.next_refresh_ms = fetched_ms.saturating_add(ttl_s * 1000);
                true
            }
            Err(_) => false,
        }
    }

    /// The periodic timer. `true` = this worker claimed a scheduled refresh: dispatch it.
    pub fn on_tick(&mut self, now_ms: u64, shared: &dyn SharedData) -> bool {
        self.adopt_shared(shared);
        self.expire_in_flight(now_ms);
        if self.in_flight() || now_ms < self.next_refresh_ms {
            return false;
        }
        // A short gap: enough that workers ticking in the same second don't all fetch.
        let gap = if self.keys.is_some() {
            self.cfg.retry_seconds
        } else {
            1
        } * 1000;
        if self.claim(now_ms, gap, shared) {
            self.in_flight_since_ms = Some(now_ms);
            true
        } else {
            false
        }
    }

    /// A request needs a key we don't have.
    pub fn on_miss(&mut self, kind: MissKind, now_ms: u64, shared: &dyn SharedData) -> Miss {
        if self.adopt_shared(shared) {
            return Miss::Retry;
        }
        self.expire_in_flight(now_ms);
        if self.in_flight() {
            return Miss::Wait;
        }
        let gap = match kind {
            // Without any keys nothing can pass: retry quickly.
            MissKind::NoKeys => self
                .cfg
                .retry_seconds
                .min(self.cfg.unknown_kid_cooldown_seconds),
            MissKind::UnknownKid => self.cfg.unknown_kid_cooldown_seconds,
        } * 1000;
        if self.claim(now_ms, gap, shared) {
            self.in_flight_since_ms = Some(now_ms);
            return Miss::Fetch;
        }
        // Another worker claimed a fetch after our keys were fetched (and after the last
        // failure we saw) and it is still within its timeout: its result will be
        // published, so wait for it. Otherwise answer now.
        match self.last_claim(shared) {
            Some(t)
                if (self.keys.is_none() || t > self.fetched_ms)
                    && t > self.failed_ms
                    && now_ms.saturating_sub(t) <= self.cfg.timeout_ms =>
            {
                Miss::Wait
            }
            _ => Miss::Reject,
        }
    }

    /// The dispatch itself failed (e.g. unknown cluster): retry on the next period.
    pub fn on_dispatch_failed(&mut self, now_ms: u64) {
        self.in_flight_since_ms = None;
        self.next_refresh_ms = now_ms + self.cfg.retry_seconds * 1000;
    }

    /// The fetch answered (or failed: `status` None). On any failure the last good keys
    /// stay in force and a retry is scheduled.
    pub fn on_response(
        &mut self,
        now_ms: u64,
        status: Option<u16>,
        cache_control: Option<&str>,
        body: &[u8],
        shared: &dyn SharedData,
    ) -> Result<usize, String> {
        self.in_flight_since_ms = None;
        let result = match status {
            None => Err("JWKS fetch failed (no response)".to_string()),
            Some(200) => KeySet::from_json(body),
            Some(s) => Err(format!("JWKS fetch returned HTTP {s}")),
        };
        match result {
            Ok(set) => {
                let n = set.len();
                let ttl = self.ttl_seconds(cache_control);
                self.install(set, now_ms);
                self.next_refresh_ms = now_ms + ttl * 1000;
                let doc = encode_doc(now_ms, ttl, body);
                if shared.set(&self.doc_key, &doc, None).is_ok() {
                    self.adopted_cas = shared
                        .get(&self.doc_key)
                        .filter(|(b, _)| *b == doc)
                        .map(|(_, c)| c);
                }
                Ok(n)
            }
            Err(e) => {
                self.failed_ms = now_ms;
                self.next_refresh_ms = now_ms + self.cfg.retry_seconds * 1000;
                Err(e)
            }
        }
    }

    /// `Cache-Control: max-age`, bounded by the configured min/max; the configured
    /// refresh period otherwise.
    pub fn ttl_seconds(&self, cache_control: Option<&str>) -> u64 {
        let max_age = cache_control.and_then(|cc| {
            cc.split(',').find_map(|d| {
                // Directive names are case-insensitive (RFC 9111 §5.2).
                let (name, value) = d.split_once('=')?;
                if !name.trim().eq_ignore_ascii_case("max-age") {
                    return None;
                }
                value.trim().trim_matches('"').parse::<u64>().ok()
            })
        });
        match max_age {
            Some(a) => a.clamp(self.cfg.min_refresh_seconds, self.cfg.max_refresh_seconds),
            None => self.cfg.refresh_seconds,
        }
    }

    fn install(&mut self, set: KeySet, fetched_ms: u64) {
        self.keys = Some(set);
        self.fetched_ms = fetched_ms;
        self.generation += 1;
    }

    fn expire_in_flight(&mut self, now_ms: u64) {
        // Envoy answers every callout by its timeout; a lost answer (its context was
        // destroyed first) must not block refreshes forever.
        if let Some(t) = self.in_flight_since_ms
            && now_ms.saturating_sub(t) > self.cfg.timeout_ms + 1000
        {
            self.in_flight_since_ms = None;
        }
    }

    fn last_claim(&self, shared: &dyn SharedData) -> Option<u64> {
        lease::last_taken(shared, &self.claim_key)
    }

    fn claim(&self, now_ms: u64, gap_ms: u64, shared: &dyn SharedData) -> bool {
        lease::take(shared, &self.claim_key, now_ms, gap_ms)
    }
}

fn encode_doc(fetched_ms: u64, ttl_s: u64, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{fetched_ms}\n{ttl_s}\n").into_bytes();
    v.extend_from_slice(body);
    v
}

fn decode_doc(b: &[u8]) -> Option<(u64, u64, &[u8])> {
    let mut it = b.splitn(3, |c| *c == b'\n');
    let f = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
    let t = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
    Some((f, t, it.next()?))
}
