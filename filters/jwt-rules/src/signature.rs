//! Signature verification, one path per key type.
//!
//! Only the signature over the exact signing input is judged here; every claim rule is
//! claims.rs's, so all algorithms share the same rules and reasons. (jwt-simple's
//! `verify_token` also decodes claims into its own types and refused, e.g., a numeric
//! `sub` for EC keys only.) jwt-simple still parses the EC and Ed25519 JWKs (jwks.rs);
//! the keys it yields wrap the RustCrypto / ed25519-compact keys verified with here.
//! RSA uses rsa_public.rs, a variable-time public operation written for Wasm: in V8 it
//! verifies RS256 in ~120 µs where `rsa` 0.10 took ~370–450 µs and jwt-simple's `rsa` 0.9
//! path ~1,078 µs (numbers in rsa_public.rs and PITFALLS).

use crate::alg::Alg;
use crate::jwks::PublicKey;
use crate::rsa_public::Hash;
use jwt_simple::prelude::{ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, EdDSAPublicKeyLike};
use p256::ecdsa::signature::Verifier as _;

/// Checks `signature` over `signing_input` with `key` under `alg`.
pub fn verify(alg: Alg, key: &PublicKey, signing_input: &[u8], signature: &[u8]) -> bool {
    match (alg, key) {
        (Alg::RS256, PublicKey::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha256, signing_input, signature)
        }
        (Alg::RS384, PublicKey::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha384, signing_input, signature)
        }
        (Alg::RS512, PublicKey::Rsa(k)) => {
            k.verify_pkcs1v15(Hash::Sha512, signing_input, signature)
        }
        (Alg::PS256, PublicKey::Rsa(k)) => k.verify_pss(Hash::Sha256, signing_input, signature),
        (Alg::PS384, PublicKey::Rsa(k)) => k.verify_pss(Hash::Sha384, signing_input, signature),
        (Alg::PS512, PublicKey::Rsa(k)) => k.verify_pss(Hash::Sha512, signing_input, signature),
        (Alg::ES256, PublicKey::P256(k)) => {
            let vk: &p256::ecdsa::VerifyingKey = k.public_key().as_ref();
            p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(signing_input, &sig).is_ok())
        }
        (Alg::ES384, PublicKey::P384(k)) => {
            let vk: &p384::ecdsa::VerifyingKey = k.public_key().as_ref();
            p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(signing_input, &sig).is_ok())
        }
        (Alg::EdDSA, PublicKey::Ed25519(k)) => {
            let pk: &ed25519_compact::PublicKey = k.public_key().as_ref();
            ed25519_compact::Signature::from_slice(signature)
                .is_ok_and(|sig| pk.verify(signing_input, &sig).is_ok())
        }
        _ => false,
    }
}
