//! Identity, checked again on the host: a request that reached the data plane without
//! passing Envoy must not get anything.
//!
//! The rules are the edge's own (`bulkhead-jwt`: same parsing, keys, signature and claim
//! checks; the same `jwt-auth` configuration JSON), with a verified-token cache. On top
//! of a valid token the host requires the tenant header Envoy sets (`x-org-id`, or the
//! configuration's `tenant_header`) and requires it to name the token's tenant: a
//! missing header means the request did not come through the edge, a different one is a
//! forgery.

use super::error::ApiError;
use anyhow::{Context, Result, bail};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use bulkhead_jwt::config::JwksSource;
use bulkhead_jwt::verifier::InlineOnly;
use bulkhead_jwt::{Rejection, VerifiedCache, Verifier};
use jwt_auth_filter::config::Settings;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Identity {
    verifier: Verifier,
    cache: Mutex<VerifiedCache>,
    tenant_header: HeaderName,
    realm: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("tenant_header", &self.tenant_header)
            .field("providers", &self.verifier.rules().providers.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From a `jwt-auth` filter configuration document (the same JSON the edge loads).
    /// Providers must carry their keys inline: a remote JWKS is fetched by the edge
    /// through an Envoy cluster, which the host does not have.
    pub fn from_filter_config(json: &[u8]) -> Result<Identity> {
        let s = Settings::parse(json).map_err(|e| {
            anyhow::anyhow!(
                "invalid jwt-auth configuration: field `{}`: {}",
                e.field,
                e.message
            )
        })?;
        for (i, p) in s.rules.providers.iter().enumerate() {
            if let JwksSource::Remote(_) = p.jwks {
                bail!(
                    "invalid jwt-auth configuration: field `providers[{i}].jwks.remote`: \
                     the host verifies with inline keys only (give it the JWKS inline)"
                );
            }
        }
        let tenant_header = HeaderName::from_bytes(s.tenant_header.as_bytes())
            .context("tenant_header is not a header name")?;
        Ok(Identity {
            verifier: Verifier::new(s.rules),
            cache: Mutex::new(VerifiedCache::new(s.cache_entries)),
            tenant_header,
            realm: s.realm,
        })
    }

    /// One provider from a JWKS document (e.g. the dev issuer's), with the edge's
    /// defaults for everything else.
    pub fn from_jwks(
        jwks: &serde_json::Value,
        issuer: &str,
        audience: &str,
        tenant_claim: &str,
    ) -> Result<Identity> {
        let config = serde_json::json!({
            "providers": [{
                "issuer": issuer,
                "audiences": [audience],
                "tenant_claim": tenant_claim,
                "jwks": {"inline": jwks},
            }],
        });
        Identity::from_filter_config(config.to_string().as_bytes())
    }

    pub fn tenant_header(&self) -> &HeaderName {
        &self.tenant_header
    }

    /// Verified-token cache (hits, misses).
    pub fn cache_stats(&self) -> (u64, u64) {
        let c = self.lock();
        (c.hits(), c.misses())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerifiedCache> {
        // The cache is only ever updated by whole operations: a poisoned lock still
        // holds a usable cache.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verified tenant of a request, or the refusal: 401 without a token or with an
    /// invalid one (with the edge's RFC 6750 challenge), 403 when the tenant header is
    /// missing, repeated or names another tenant.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        self.check_at(headers, now_unix())
    }

    pub fn check_at(&self, headers: &HeaderMap, now: u64) -> Result<String, ApiError> {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let (first, second) = (auth.next(), auth.next());
        if second.is_some() {
            // Two credentials: which one would the edge have checked? Refuse both.
            return Err(self.refuse(&Rejection::Invalid("more than one authorization header")));
        }
        let token = jwt_auth_filter::auth::bearer(first.map(|v| v.as_bytes()))
            .map_err(|r| self.refuse(&r))?;
        let tenant = self.verify(token, now).map_err(|r| self.refuse(&r))?;
        let mut claimed = headers.get_all(&self.tenant_header).iter();
        match (claimed.next(), claimed.next()) {
            (None, _) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_tenant_header",
                format!(
                    "no {} header: requests reach the data plane through the edge",
                    self.tenant_header
                ),
            )),
            (Some(v), None) if v.as_bytes() == tenant.as_bytes() => Ok(tenant),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                format!("{} does not match the token's tenant", self.tenant_header),
            )),
        }
    }

    fn verify(&self, token: &str, now: u64) -> Result<String, Rejection> {
        // Inline keys never change while the process runs: one key generation.
        if let Some(v) = self.lock().get(token, now, |_| 0) {
            return Ok(v.tenant);
        }
        // Verify outside the lock: a signature check takes tens of microseconds.
        let v = self.verifier.verify(token, now, &InlineOnly)?;
        let tenant = v.tenant.clone();
        self.lock().put(token, v, 0);
        Ok(tenant)
    }

    fn refuse(&self, r: &Rejection) -> ApiError {
        // The edge's own reply: same status, code, reason and challenge.
        let reply = jwt_auth_filter::reply::rejection(r, &self.realm);
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut e = ApiError::new(status, r.error_code(), r.reason());
        for (k, v) in reply.headers {
            if k == "www-authenticate" {
                e = e.challenge(v);
            } else if k == "retry-after" {
                e = e.retry_after(v.parse().unwrap_or(1));
            }
        }
        e
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::dev::issuer::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>, org: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        for o in org {
            h.append("x-org-id", HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn refuses_missing_invalid_and_forged() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::open(dir.path()).unwrap();
        let id = Identity::from_jwks(&issuer.jwks().unwrap(), DEV_ISSUER, DEV_AUDIENCE, "org_id")
            .unwrap();
        let tok = issuer.token("UA", 60).unwrap();
        let bearer = format!("Bearer {tok}");

        let e = id.check(&headers(None, &["UA"])).unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (401, "missing_token"));
        assert_eq!(e.challenge.as_deref(), Some("Bearer realm=\"bulkhead\""));

        let e = id
            .check(&headers(Some("Bearer a.b.c"), &["UA"]))
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (401, "invalid_token"));
        assert!(e.challenge.unwrap().contains("error=\"invalid_token\""));

        let e = id.check(&headers(Some(&bearer), &[])).unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (403, "missing_tenant_header"));
        let e = id.check(&headers(Some(&bearer), &["DL"])).unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (403, "tenant_mismatch"));
        let e = id
            .check(&headers(Some(&bearer), &["UA", "UA"]))
            .unwrap_err();
        assert_eq!(e.error, "tenant_mismatch");

        let (hits, misses) = id.cache_stats();
        assert_eq!(id.check(&headers(Some(&bearer), &["UA"])).unwrap(), "UA");
        assert_eq!(id.check(&headers(Some(&bearer), &["UA"])).unwrap(), "UA");
        assert_eq!(
            id.cache_stats(),
            (hits + 2, misses),
            "a verified token is cached"
        );

        // Expired: the cache never outlives `exp` either.
        let e = id
            .check_at(&headers(Some(&bearer), &["UA"]), now_unix() + 3600)
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.error), (401, "invalid_token"));
    }

    #[test]
    fn refuses_remote_jwks_and_bad_config() {
        let remote = br#"{"providers":[{"issuer":"i","audiences":["a"],
            "jwks":{"remote":{"cluster":"idp","path":"/jwks"}}}]}"#;
        let e = Identity::from_filter_config(remote)
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers[0].jwks.remote"), "{e}");
        let e = Identity::from_filter_config(br#"{"providers":[],"typo":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `typo`"), "{e}");
    }
}
