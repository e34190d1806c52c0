//! The signature algorithms we accept, and what kind of key each needs.

use std::fmt;

/// Asymmetric JWS algorithms accepted at the edge. `none` and `HS*` are not here on
/// purpose: they can never be selected, whatever a token or a config says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The key type an algorithm verifies with (JWK `kty` + curve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// Why an `alg` string is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgError {
    None,
    Symmetric,
    Unsupported,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn parse(name: &str) -> Result<Alg, AlgError> {
        match name {
            "RS256" => Ok(Alg::RS256),
            "RS384" => Ok(Alg::RS384),
            "RS512" => Ok(Alg::RS512),
            "PS256" => Ok(Alg::PS256),
            "PS384" => Ok(Alg::PS384),
            "PS512" => Ok(Alg::PS512),
            "ES256" => Ok(Alg::ES256),
            "ES384" => Ok(Alg::ES384),
            "EdDSA" => Ok(Alg::EdDSA),
            n if n.eq_ignore_ascii_case("none") => Err(AlgError::None),
            n if n.starts_with("HS") => Err(AlgError::Symmetric),
            _ => Err(AlgError::Unsupported),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyKind::Rsa
            }
            Alg::ES256 => KeyKind::P256,
            Alg::ES384 => KeyKind::P384,
            Alg::EdDSA => KeyKind::Ed25519,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_never_algorithms() {
        assert_eq!(Alg::parse("none"), Err(AlgError::None));
        assert_eq!(Alg::parse("NONE"), Err(AlgError::None));
        assert_eq!(Alg::parse("HS256"), Err(AlgError::Symmetric));
        assert_eq!(Alg::parse("ES512"), Err(AlgError::Unsupported));
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.name()), Ok(a));
        }
    }
}
