//! Why a request was not let through, and what status that maps to.

/// The outcome of a failed verification. `reason` strings are short, fixed and safe to
/// return to the caller: they never echo token content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No bearer token at all → 401 with a bare `WWW-Authenticate` challenge.
    Missing(&'static str),
    /// A token that fails any rule → 401 `invalid_token`.
    Invalid(&'static str),
    /// A valid token without a usable tenant claim → 403.
    Tenant(&'static str),
    /// The token names a key id the provider's key set does not (yet) hold. Callers
    /// with a remote JWKS may refresh once and retry; otherwise it is `Invalid`.
    UnknownKey { provider: usize },
    /// The provider has no keys yet (remote JWKS not fetched) → fail closed, 503.
    NoKeys { provider: usize },
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Missing(_) | Rejection::Invalid(_) | Rejection::UnknownKey { .. } => 401,
            Rejection::Tenant(_) => 403,
            Rejection::NoKeys { .. } => 503,
        }
    }

    /// The `error` member of the JSON body (and of the OAuth challenge where it has one).
    pub fn error_code(&self) -> &'static str {
        match self {
            Rejection::Missing(_) => "missing_token",
            Rejection::Invalid(_) | Rejection::UnknownKey { .. } => "invalid_token",
            Rejection::Tenant(_) => "invalid_tenant",
            Rejection::NoKeys { .. } => "jwks_unavailable",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing(r) | Rejection::Invalid(r) | Rejection::Tenant(r) => r,
            Rejection::UnknownKey { .. } => "unknown key id",
            Rejection::NoKeys { .. } => "signing keys not available yet",
        }
    }
}
