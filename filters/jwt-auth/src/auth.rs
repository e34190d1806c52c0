//! The per-request policy: strip, find the token, consult the cache, verify, decide.

use crate::config::Settings;
use crate::host::{HeaderPairs, RequestHeaders, SharedData};
use crate::remote_keys::{Miss, MissKind, RemoteKeys};
use bulkhead_jwt::config::JwksSource;
use bulkhead_jwt::verifier::KeySource;
use bulkhead_jwt::{KeySet, Rejection, VerifiedCache, Verifier};

/// What the glue must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through; the tenant header is already set.
    Allow { tenant: String, cached: bool },
    /// Answer locally.
    Deny(Rejection),
    /// Park the request until `provider`'s keys arrive; `fetch` = dispatch the fetch.
    Park { provider: usize, fetch: bool },
}

/// Per-worker filter state, shared by the root context and every HTTP context.
pub struct Auth {
    pub settings: Settings,
    verifier: Verifier,
    cache: VerifiedCache,
    remote: Vec<Option<RemoteKeys>>,
}

struct Remote<'a>(&'a [Option<RemoteKeys>]);

impl KeySource for Remote<'_> {
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.0.get(provider)?.as_ref()?.keys()
    }
}

impl Auth {
    /// `scope` (plugin name) keeps shared-data keys of different plugins apart.
    pub fn new(settings: Settings, scope: &str) -> Self {
        let remote = settings
            .rules
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| match &p.jwks {
                JwksSource::Remote(r) => Some(RemoteKeys::new(&format!("{scope}.{i}"), r.clone())),
                JwksSource::Inline(_) => None,
            })
            .collect();
        Auth {
            cache: VerifiedCache::new(settings.cache_entries),
            verifier: Verifier::new(settings.rules.clone()),
            remote,
            settings,
        }
    }

    pub fn remote_mut(&mut self, provider: usize) -> Option<&mut RemoteKeys> {
        self.remote.get_mut(provider)?.as_mut()
    }

    pub fn remote_providers(&self) -> impl Iterator<Item = usize> + '_ {
        self.remote
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some())
            .map(|(i, _)| i)
    }

    pub fn cache(&self) -> &VerifiedCache {
        &self.cache
    }

    /// First step of every request, before any verdict: inbound identity and routing
    /// headers go, whatever happens next. `pairs` is the map as read before stripping.
    pub fn strip(&self, pairs: &HeaderPairs, headers: &mut dyn RequestHeaders) {
        let rule = &self.settings.strip;
        for (i, (name, _)) in pairs.iter().enumerate() {
            // One removal takes every value of a name: skip its repeats.
            if rule.matches(name)
                && !pairs
                    .iter()
                    .take(i)
                    .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
            {
                headers.remove(name);
            }
        }
    }

    /// Strips, then decides. `may_fetch` is false when re-deciding a parked request, so
    /// a request never parks twice.
    pub fn on_request(
        &mut self,
        headers: &mut dyn RequestHeaders,
        now_ms: u64,
        shared: &dyn SharedData,
        may_fetch: bool,
    ) -> Decision {
        // One read serves the strip and the token. Without a map nothing can be stripped
        // or verified: refuse (a local reply, so nothing reaches the upstream).
        let Some(pairs) = headers.pairs() else {
            return Decision::Deny(Rejection::Missing("request headers unreadable"));
        };
        self.strip(&pairs, headers);
        let token = match bearer(pairs.get("authorization")) {
            Ok(t) => t,
            Err(r) => return Decision::Deny(r),
        };
        let d = self.decide(token, now_ms, shared, may_fetch);
        if let Decision::Allow { tenant, .. } = &d {
            headers.set(&self.settings.tenant_header, tenant);
        }
        d
    }

    fn decide(
        &mut self,
        token: &str,
        now_ms: u64,
        shared: &dyn SharedData,
        may_fetch: bool,
    ) -> Decision {
        let now = now_ms / 1000;
        let remote = &self.remote;
        let generation = |p: usize| generation_of(remote, p);
        if let Some(v) = self.cache.get(token, now, generation) {
            return Decision::Allow {
                tenant: v.tenant,
                cached: true,
            };
        }
        // At most two passes: the second after adopting keys another worker fetched.
        for _ in 0..2 {
            let result = self.verifier.verify(token, now, &Remote(&self.remote));
            let (provider, kind) = match result {
                Ok(v) => {
                    let g = generation_of(&self.remote, v.provider);
                    let tenant = v.tenant.clone();
                    self.cache.put(token, v, g);
                    return Decision::Allow {
                        tenant,
                        cached: false,
                    };
                }
                Err(Rejection::NoKeys { provider }) => (provider, MissKind::NoKeys),
                Err(Rejection::UnknownKey { provider }) => (provider, MissKind::UnknownKid),
                Err(r) => return Decision::Deny(r),
            };
            let reject = match kind {
                MissKind::NoKeys => Rejection::NoKeys { provider },
                MissKind::UnknownKid => Rejection::UnknownKey { provider },
            };
            let Some(rk) = self.remote_mut(provider) else {
                return Decision::Deny(reject);
            };
            if !may_fetch {
                if rk.adopt_shared(shared) {
                    continue;
                }
                return Decision::Deny(reject);
            }
            match rk.on_miss(kind, now_ms, shared) {
                Miss::Retry => continue,
                Miss::Fetch => {
                    return Decision::Park {
                        provider,
                        fetch: true,
                    };
                }
                Miss::Wait => {
                    return Decision::Park {
                        provider,
                        fetch: false,
                    };
                }
                Miss::Reject => return Decision::Deny(reject),
            }
        }
        Decision::Deny(Rejection::Invalid("unknown key id"))
    }
}

fn generation_of(remote: &[Option<RemoteKeys>], p: usize) -> u64 {
    remote
        .get(p)
        .and_then(Option::as_ref)
        .map_or(0, RemoteKeys::generation)
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
/// The value is raw header bytes: one that is not UTF-8 holds no valid token.
pub fn bearer(value: Option<&[u8]>) -> Result<&str, Rejection> {
    let Some(v) = value else {
        return Err(Rejection::Missing("no bearer token"));
    };
    let Ok(v) = std::str::from_utf8(v) else {
        let v = v.trim_ascii();
        let scheme = v
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"));
        return Err(if scheme && v.get(6).is_none_or(|b| *b == b' ') {
            Rejection::Invalid("malformed token")
        } else {
            Rejection::Missing("no bearer token")
        });
    };
    let v = v.trim();
    match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            let t = rest.trim();
            if t.is_empty() || t.contains(' ') || t.contains(',') {
                Err(Rejection::Invalid("malformed token"))
            } else {
                Ok(t)
            }
        }
        _ if v.eq_ignore_ascii_case("bearer") => Err(Rejection::Invalid("malformed token")),
        _ => Err(Rejection::Missing("no bearer token")),
    }
}
