//! The whole rule set, in order: size → shape → alg → issuer → key → signature →
//! time → audience → tenant.

use crate::alg::{Alg, AlgError};
use crate::claims;
use crate::config::{JwksSource, Rules};
use crate::jwks::{Jwk, KeySet};
use crate::rejection::Rejection;
use crate::signature;
use crate::token::Unverified;
use serde_json::Value;

/// Gives the verifier the current key set of a provider (remote sets change at run time).
pub trait KeySource {
    fn keys(&self, provider: usize) -> Option<&KeySet>;
}

/// Only inline key sets (no remote providers, or not fetched yet).
pub struct InlineOnly;

impl KeySource for InlineOnly {
    fn keys(&self, _: usize) -> Option<&KeySet> {
        None
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub tenant: String,
    pub provider: usize,
    /// `exp`, whole seconds (rounded down), for cache lifetimes.
    pub exp: u64,
}

pub struct Verifier {
    rules: Rules,
}

impl Verifier {
    pub fn new(rules: Rules) -> Self {
        Verifier { rules }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Verifies a bearer token at time `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        now: u64,
        remote: &dyn KeySource,
    ) -> Result<Verified, Rejection> {
        let t = Unverified::parse(token, self.rules.max_token_bytes)?;
        let alg = Alg::parse(&t.alg).map_err(|e| match e {
            AlgError::None => Rejection::Invalid("alg none is not accepted"),
            AlgError::Symmetric => Rejection::Invalid("symmetric algorithms are not accepted"),
            AlgError::Unsupported => Rejection::Invalid("unsupported alg"),
        })?;
        let Some(Value::String(iss)) = t.claims.get("iss") else {
            return Err(Rejection::Invalid("missing iss"));
        };
        let Some(pi) = self.rules.providers.iter().position(|p| p.issuer == *iss) else {
            return Err(Rejection::Invalid("unknown issuer"));
        };
        let p = &self.rules.providers[pi];
        if !p.algorithms.contains(&alg) {
            return Err(Rejection::Invalid("alg not allowed for this issuer"));
        }
        let keys = match &p.jwks {
            JwksSource::Inline(k) => Some(k.as_ref()),
            JwksSource::Remote(_) => remote.keys(pi),
        };
        let keys = keys.ok_or(Rejection::NoKeys { provider: pi })?;
        let jwk = select_key(keys, alg, t.kid.as_deref(), pi)?;
        let skew = self.rules.clock_skew_seconds;
        if !signature::verify(alg, &jwk.key, t.signing_input, &t.signature) {
            return Err(Rejection::Invalid("signature verification failed"));
        }
        claims::check_time(&t.claims, now, skew)?;
        claims::check_audience(&t.claims, &p.audiences)?;
        let tenant = claims::tenant(&t.claims, &p.tenant_claim)?;
        let exp = t
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .max(0.0) as u64;
        Ok(Verified {
            tenant,
            provider: pi,
            exp,
        })
    }
}

/// The key is chosen only from the configured set: by `kid`, or — without a `kid` —
/// the single key that fits the algorithm. Its type and its own `alg` must fit.
fn select_key<'k>(
    keys: &'k KeySet,
    alg: Alg,
    kid: Option<&str>,
    pi: usize,
) -> Result<&'k Jwk, Rejection> {
    let jwk = match kid {
        Some(kid) => keys
            .by_kid(kid)
            .ok_or(Rejection::UnknownKey { provider: pi })?,
        None => {
            let mut c = keys.candidates(alg);
            match (c.next(), c.next()) {
                (Some(k), None) => k,
                (None, _) => return Err(Rejection::Invalid("no key fits the token's alg")),
                (Some(_), Some(_)) => {
                    return Err(Rejection::Invalid("token has no kid and several keys fit"));
                }
            }
        }
    };
    if jwk.key.kind() != alg.key_kind() {
        return Err(Rejection::Invalid("alg does not match the key type"));
    }
    if jwk.alg.is_some_and(|a| a != alg) {
        return Err(Rejection::Invalid("alg does not match the key's alg"));
    }
    Ok(jwk)
}
