//! The registry copy of one worker (one Envoy worker = one VM), kept in step with the
//! rest of the process through shared data.
//!
//! - **Fetch**: at most one worker of the process fetches per period. The fetch is
//!   claimed with the shared-data lease `bulkhead.registry.<scope>.lease`
//!   ([`bulkhead_filter_kit::lease`]); the period is `refresh_seconds` once a registry
//!   is in force and one second before that. The request is conditional
//!   (`If-None-Match` = the ETag of the copy in force).
//! - **Publish**: a 200 whose body is a valid registry goes into shared data with
//!   [`bulkhead_registry::shared::publish`]; a 304 keeps the copy; an error status, a
//!   failed call or an invalid body keeps the last good copy.
//! - **Follow**: every worker adopts what was published with a
//!   [`bulkhead_registry::shared::Follower`] (on its tick, and on each request while it
//!   holds no registry at all).

use bulkhead_filter_kit::{SharedData, lease};
use bulkhead_registry::shared::{self, Follower, Poll};
use bulkhead_registry::{ConfigError, Registry};
use std::rc::Rc;

/// Fetch period while no registry is in force: retry quickly, the edge is closed.
pub const NO_REGISTRY_GAP_MS: u64 = 1000;
/// Longest ETag kept; a longer (or non-printable) one is replaced by the revision.
pub const MAX_ETAG_LEN: usize = 200;

/// The fetch lease of `scope`.
pub fn lease_key(scope: &str) -> String {
    format!("bulkhead.registry.{scope}.lease")
}

/// A fetch this worker claimed: dispatch it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The ETag of the copy in force, for `If-None-Match`.
    pub if_none_match: Option<String>,
}

impl Fetch {
    /// The callout's request headers.
    pub fn headers<'a>(&'a self, path: &'a str, authority: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
        ];
        if let Some(etag) = &self.if_none_match {
            h.push(("if-none-match", etag.as_str()));
        }
        h
    }
}

/// The control plane's answer, as the host delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    /// The `etag` response header.
    pub etag: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A valid registry. `changed`: it was published and adopted (false: the same
    /// ETag was already in force).
    Updated {
        etag: String,
        revision: u64,
        tenants: usize,
        changed: bool,
    },
    /// 304: the copy in force is current.
    NotModified,
    /// No response, an error status, or the copy could not be published: the last
    /// good copy stays.
    Failed(String),
    /// A 200 whose body is not a valid registry: the last good copy stays.
    Invalid(ConfigError),
}

pub struct Sync {
    scope: String,
    lease_key: String,
    refresh_ms: u64,
    timeout_ms: u64,
    follower: Follower,
    /// When this worker dispatched the fetch still unanswered.
    in_flight_since_ms: Option<u64>,
}

fn usable_etag(e: &str) -> bool {
    (1..=MAX_ETAG_LEN).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_graphic())
}

impl Sync {
    pub fn new(scope: &str, refresh_seconds: u64, timeout_ms: u64) -> Sync {
        Sync {
            scope: scope.to_string(),
            lease_key: lease_key(scope),
            refresh_ms: refresh_seconds.saturating_mul(1000),
            timeout_ms,
            follower: Follower::new(scope),
            in_flight_since_ms: None,
        }
    }

    pub fn registry(&self) -> Option<&Rc<Registry>> {
        self.follower.registry()
    }

    /// The ETag of the copy in force (or of the last published document refused here).
    pub fn etag(&self) -> Option<&str> {
        self.follower.etag()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight_since_ms.is_some()
    }

    /// The lease period: `refresh_seconds` with a registry, one second without.
    pub fn gap_ms(&self) -> u64 {
        if self.registry().is_some() {
            self.refresh_ms
        } else {
            NO_REGISTRY_GAP_MS.min(self.refresh_ms)
        }
    }

    /// Adopts what another worker published, if it changed.
    pub fn follow(&mut self, shared: &dyn SharedData) -> Poll {
        self.follower.poll(shared)
    }

    /// The periodic tick: follow, then claim the fetch if it is due and no other
    /// worker has claimed it within the period.
    pub fn on_tick(&mut self, now_ms: u64, shared: &dyn SharedData) -> (Poll, Option<Fetch>) {
        let poll = self.follow(shared);
        self.expire_in_flight(now_ms);
        if self.in_flight() || !lease::take(shared, &self.lease_key, now_ms, self.gap_ms()) {
            return (poll, None);
        }
        self.in_flight_since_ms = Some(now_ms);
        let fetch = Fetch {
            if_none_match: self.etag().map(str::to_string),
        };
        (poll, Some(fetch))
    }

    /// Would a tick claim a fetch now? (No fetch in flight here, and none claimed by
    /// any worker within the period.) Used by requests that find no registry, to wake
    /// the root context instead of waiting for its next tick.
    pub fn fetch_due(&mut self, now_ms: u64, shared: &dyn SharedData) -> bool {
        self.expire_in_flight(now_ms);
        !self.in_flight()
            && lease::last_taken(shared, &self.lease_key)
                .is_none_or(|t| now_ms.saturating_sub(t) >= self.gap_ms())
    }

    /// The dispatch itself failed (e.g. unknown cluster): the lease stays taken, so the
    /// next attempt comes one period later.
    pub fn on_dispatch_failed(&mut self) {
        self.in_flight_since_ms = None;
    }

    /// The fetch was answered (`None`: reset or timed out).
    pub fn on_response(
        &mut self,
        response: Option<Response<'_>>,
        shared: &dyn SharedData,
    ) -> Outcome {
        self.in_flight_since_ms = None;
        let Some(r) = response else {
            return Outcome::Failed("no response (reset or timeout)".into());
        };
        match r.status {
            304 => Outcome::NotModified,
            200 => self.adopt_fetched(r.etag, r.body, shared),
            s => Outcome::Failed(format!("HTTP {s}")),
        }
    }

    fn adopt_fetched(
        &mut self,
        etag: Option<&str>,
        body: &[u8],
        shared: &dyn SharedData,
    ) -> Outcome {
        let registry = match Registry::parse(body) {
            Ok(r) => r,
            Err(e) => return Outcome::Invalid(e),
        };
        let revision = registry.document().revision;
        let tenants = registry.document().tenants.len();
        let etag = etag
            .map(str::trim)
            .filter(|e| usable_etag(e))
            .map(str::to_string)
            .unwrap_or_else(|| format!("\"r{revision}\""));
        if self.registry().is_some() && self.etag() == Some(etag.as_str()) {
            return Outcome::Updated {
                etag,
                revision,
                tenants,
                changed: false,
            };
        }
        if shared::publish(shared, &self.scope, &etag, body).is_err() {
            return Outcome::Failed("the registry could not be written to shared data".into());
        }
        let changed = self.follow(shared) == Poll::Updated;
        Outcome::Updated {
            etag,
            revision,
            tenants,
            changed,
        }
    }

    fn expire_in_flight(&mut self, now_ms: u64) {
        // Envoy answers every callout by its timeout; an answer lost anyway (its
        // context destroyed first) must not stop refreshes for good.
        if let Some(t) = self.in_flight_since_ms
            && now_ms.saturating_sub(t) > self.timeout_ms.saturating_add(1000)
        {
            self.in_flight_since_ms = None;
        }
    }
}
