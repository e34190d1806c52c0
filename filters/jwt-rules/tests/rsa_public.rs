//! rsa_public.rs against the `rsa` 0.10 crate it replaced: signatures `rsa` makes must
//! verify, anything altered (signature, message, encoded message, scheme, hash) must not,
//! and keys are accepted on the same terms.

// Helpers outside #[test] fns are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead_jwt::rsa_public::{Hash, KeyError, RsaPublicKey};
use rand::{Rng as _, RngExt as _};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::sha2::{Sha256, Sha384, Sha512};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{BoxedUint, pkcs1v15, pss};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Pkcs1,
    Pss,
}

const ALGS: [(Scheme, Hash); 6] = [
    (Scheme::Pkcs1, Hash::Sha256),
    (Scheme::Pkcs1, Hash::Sha384),
    (Scheme::Pkcs1, Hash::Sha512),
    (Scheme::Pss, Hash::Sha256),
    (Scheme::Pss, Hash::Sha384),
    (Scheme::Pss, Hash::Sha512),
];

struct Key {
    sk: rsa::PrivateKey,
    ours: RsaPublicKey,
}

impl Key {
    fn new(sk: rsa::PrivateKey) -> Key {
        let ours = RsaPublicKey::new(&sk.n_bytes(), &sk.e_bytes()).unwrap();
        Key { sk, ours }
    }

    fn label(&self) -> String {
        format!("RSA-{} e={}", self.ours.bits(), self.ours.exponent())
    }

    fn sign(&self, scheme: Scheme, hash: Hash, msg: &[u8]) -> Vec<u8> {
        let k = self.sk.clone();
        match (scheme, hash) {
            (Scheme::Pkcs1, Hash::Sha256) => {
                pkcs1v15::SigningKey::<Sha256>::new(k).sign(msg).to_vec()
            }
            (Scheme::Pkcs1, Hash::Sha384) => {
                pkcs1v15::SigningKey::<Sha384>::new(k).sign(msg).to_vec()
            }
            (Scheme::Pkcs1, Hash::Sha512) => {
                pkcs1v15::SigningKey::<Sha512>::new(k).sign(msg).to_vec()
            }
            (Scheme::Pss, Hash::Sha256) => pss::SigningKey::<Sha256>::new(k).sign(msg).to_vec(),
            (Scheme::Pss, Hash::Sha384) => pss::SigningKey::<Sha384>::new(k).sign(msg).to_vec(),
            (Scheme::Pss, Hash::Sha512) => pss::SigningKey::<Sha512>::new(k).sign(msg).to_vec(),
        }
    }

    /// PSS with another salt length than the hash's (JWA requires the hash's).
    fn sign_pss_salt(&self, hash: Hash, salt_len: usize, msg: &[u8]) -> Vec<u8> {
        let k = self.sk.clone();
        match hash {
            Hash::Sha256 => pss::SigningKey::<Sha256>::new_with_salt_len(k, salt_len).sign(msg),
            Hash::Sha384 => pss::SigningKey::<Sha384>::new_with_salt_len(k, salt_len).sign(msg),
            Hash::Sha512 => pss::SigningKey::<Sha512>::new_with_salt_len(k, salt_len).sign(msg),
        }
        .to_vec()
    }

    fn ours(&self, scheme: Scheme, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        match scheme {
            Scheme::Pkcs1 => self.ours.verify_pkcs1v15(hash, msg, sig),
            Scheme::Pss => self.ours.verify_pss(hash, msg, sig),
        }
    }

    /// What signature.rs did before: `rsa` 0.10's verifying keys.
    fn reference(&self, scheme: Scheme, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let pk = rsa::PublicKey::from(&self.sk);
        macro_rules! check {
            ($m:ident, $d:ty) => {
                $m::Signature::try_from(sig)
                    .is_ok_and(|s| $m::VerifyingKey::<$d>::new(pk).verify(msg, &s).is_ok())
            };
        }
        match (scheme, hash) {
            (Scheme::Pkcs1, Hash::Sha256) => check!(pkcs1v15, Sha256),
            (Scheme::Pkcs1, Hash::Sha384) => check!(pkcs1v15, Sha384),
            (Scheme::Pkcs1, Hash::Sha512) => check!(pkcs1v15, Sha512),
            (Scheme::Pss, Hash::Sha256) => check!(pss, Sha256),
            (Scheme::Pss, Hash::Sha384) => check!(pss, Sha384),
            (Scheme::Pss, Hash::Sha512) => check!(pss, Sha512),
        }
    }

    /// Asserts ours and `rsa` agree on `sig`, and returns the verdict.
    fn judge(&self, scheme: Scheme, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let ours = self.ours(scheme, hash, msg, sig);
        let reference = self.reference(scheme, hash, msg, sig);
        assert_eq!(
            ours,
            reference,
            "{} {scheme:?} {hash:?}: ours {ours}, rsa {reference} (msg {} bytes, sig {} bytes)",
            self.label(),
            msg.len(),
            sig.len()
        );
        ours
    }

    /// The encoded message inside a signature: `s^e mod n` as k octets.
    fn open(&self, sig: &[u8]) -> Vec<u8> {
        self.ours.public_op(sig).unwrap()
    }

    /// A valid RSA signature of any `em < n` (raw private operation), `None` if `em ≥ n`.
    fn seal(&self, em: &[u8]) -> Option<Vec<u8>> {
        let n = self.sk.n();
        let m = BoxedUint::from_be_slice(em, n.bits_precision()).ok()?;
        if m >= *n.as_ref() {
            return None;
        }
        let s = rsa::hazmat::rsa_decrypt(Some(&mut rand::rng()), &self.sk, &m).unwrap();
        let mut out = s.to_be_bytes().to_vec();
        let k = self.ours.size();
        out.drain(..out.len() - k);
        Some(out)
    }
}

fn fixture(pem: &str) -> Key {
    Key::new(rsa::PrivateKey::from_pkcs8_pem(pem).unwrap())
}

fn generated(bits: usize, e: u64) -> Key {
    let sk = rsa::PrivateKey::new_with_exp(&mut rand::rng(), bits, BoxedUint::from(e)).unwrap();
    Key::new(sk)
}

/// The test kit's fixtures (RSA-2048, e = 65537) and fresh keys of other sizes and
/// exponents, including sizes that are not whole octets (for PSS, 2049 bits makes
/// emLen = k − 1).
fn keys() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let fixtures = [
            include_str!("../../../tests/testkit/fixtures/TEST-ONLY-rs256-1.pem"),
            include_str!("../../../tests/testkit/fixtures/TEST-ONLY-ps384-2.pem"),
        ];
        let mut keys: Vec<Key> = fixtures.iter().map(|p| fixture(p)).collect();
        for (bits, e) in [
            (2048, 3),
            (2049, 65537),
            (2052, 3),
            (3072, 65537),
            (4096, 65537),
            (2048, (1 << 33) - 1),
        ] {
            keys.push(generated(bits, e));
        }
        keys
    })
}

fn random_message(rng: &mut impl rand::Rng) -> Vec<u8> {
    let len = rng.random_range(0..300);
    let mut m = vec![0u8; len];
    rng.fill_bytes(&mut m);
    m
}

#[test]
fn keys_cover_the_intended_shapes() {
    let shapes: Vec<(usize, u64)> = keys()
        .iter()
        .map(|k| (k.ours.bits(), k.ours.exponent()))
        .collect();
    for want in [
        (2048, 3),
        (2049, 65537),
        (3072, 65537),
        (4096, 65537),
        (2048, 65537),
    ] {
        assert!(shapes.contains(&want), "{want:?} missing from {shapes:?}");
    }
    assert!(shapes.iter().any(|(b, _)| b % 8 == 4));
}

#[test]
fn signatures_from_rsa_verify() {
    let mut rng = rand::rng();
    for key in keys() {
        for (scheme, hash) in ALGS {
            for _ in 0..4 {
                let msg = random_message(&mut rng);
                let sig = key.sign(scheme, hash, &msg);
                assert!(
                    key.judge(scheme, hash, &msg, &sig),
                    "{} {scheme:?} {hash:?} rejected a good signature",
                    key.label()
                );
            }
        }
    }
}

#[test]
fn altered_signatures_and_messages_are_rejected() {
    let mut rng = rand::rng();
    for key in keys() {
        for (scheme, hash) in ALGS {
            let msg = random_message(&mut rng);
            let sig = key.sign(scheme, hash, &msg);
            let k = sig.len();
            // Some fixed positions (both ends) and random ones.
            let mut bits: Vec<usize> = vec![0, 1, 7, 8, 8 * k - 1, 8 * k - 8, 8 * k - 9];
            bits.extend((0..12).map(|_| rng.random_range(0..8 * k)));
            for bit in bits {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!key.judge(scheme, hash, &msg, &bad), "signature bit {bit}");
            }
            let mut bad_msg = if msg.is_empty() { vec![0] } else { msg.clone() };
            let bit = rng.random_range(0..8 * bad_msg.len());
            bad_msg[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !key.judge(scheme, hash, &bad_msg, &sig),
                "message bit {bit}"
            );
            let mut longer = msg.clone();
            longer.push(0);
            assert!(!key.judge(scheme, hash, &longer, &sig));
        }
    }
}

#[test]
fn every_bit_of_the_encoded_message_matters() {
    let mut rng = rand::rng();
    for key in keys().iter().take(5) {
        for (scheme, hash) in ALGS {
            let msg = random_message(&mut rng);
            let sig = key.sign(scheme, hash, &msg);
            let em = key.open(&sig);
            // Re-sealing the untouched EM gives a valid signature (the harness works).
            let resealed = key.seal(&em).unwrap();
            assert!(key.judge(scheme, hash, &msg, &resealed));
            let k = em.len();
            let mut bits: Vec<usize> = (0..24).chain(8 * k - 24..8 * k).collect();
            bits.extend((0..24).map(|_| rng.random_range(0..8 * k)));
            for bit in bits {
                let mut bad = em.clone();
                // Bit 0 is the most significant bit of the first octet.
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                let Some(bad_sig) = key.seal(&bad) else {
                    continue; // ≥ n: no signature has this EM.
                };
                assert!(
                    !key.judge(scheme, hash, &msg, &bad_sig),
                    "{} {scheme:?} {hash:?}: EM bit {bit} flipped and still accepted",
                    key.label()
                );
            }
        }
    }
}

/// n + 1 as k octets. n is odd, but its last octet can be 0xff (CI drew such a key), so carry.
fn big_endian_plus_one(n: &[u8]) -> Vec<u8> {
    let mut out = n.to_vec();
    for octet in out.iter_mut().rev() {
        let (sum, carry) = octet.overflowing_add(1);
        *octet = sum;
        if !carry {
            break;
        }
    }
    out
}

#[test]
fn big_endian_plus_one_carries() {
    assert_eq!(big_endian_plus_one(&[0x01, 0xff]), vec![0x02, 0x00]);
    assert_eq!(
        big_endian_plus_one(&[0xc3, 0xfe, 0xff, 0xff]),
        vec![0xc3, 0xff, 0x00, 0x00]
    );
    assert_eq!(big_endian_plus_one(&[0x80, 0x01]), vec![0x80, 0x02]);
}

#[test]
fn out_of_range_and_wrong_length_signatures_are_rejected() {
    let mut rng = rand::rng();
    for key in keys() {
        let k = key.ours.size();
        let n = key.sk.n_bytes().to_vec();
        assert_eq!(n.len(), k);
        let n_plus_1 = big_endian_plus_one(&n);
        let mut n_minus_1 = n.clone();
        *n_minus_1.last_mut().unwrap() -= 1;
        assert!(key.ours.public_op(&n).is_none(), "s = n");
        assert!(key.ours.public_op(&n_plus_1).is_none(), "s = n + 1");
        assert!(
            key.ours.public_op(&vec![0xff; k]).is_none(),
            "s = 256^k − 1"
        );
        // n − 1 ≡ −1: (−1)^e = −1 = n − 1 for odd e, in range but no valid encoding.
        assert_eq!(key.ours.public_op(&n_minus_1).unwrap(), n_minus_1);
        assert_eq!(key.ours.public_op(&vec![0; k]).unwrap(), vec![0; k]);
        for (scheme, hash) in ALGS {
            let msg = random_message(&mut rng);
            let sig = key.sign(scheme, hash, &msg);
            for bad in [&n, &n_plus_1, &n_minus_1, &vec![0xff; k], &vec![0; k]] {
                assert!(!key.judge(scheme, hash, &msg, bad));
            }
            // s + n encodes the same residue but is out of range (when it fits k octets).
            let s = BoxedUint::from_be_slice(&sig, 8 * k as u32 + 32).unwrap();
            let n_big = BoxedUint::from_be_slice(&n, 8 * k as u32 + 32).unwrap();
            let sum = s.wrapping_add(&n_big).to_be_bytes().to_vec();
            let (high, low) = sum.split_at(sum.len() - k);
            if high.iter().all(|b| *b == 0) {
                assert!(!key.judge(scheme, hash, &msg, low), "s + n");
            }
            let mut padded = vec![0u8];
            padded.extend_from_slice(&sig);
            assert!(
                !key.judge(scheme, hash, &msg, &padded),
                "leading zero octet"
            );
            assert!(!key.judge(scheme, hash, &msg, &sig[1..]), "one octet short");
            assert!(!key.judge(scheme, hash, &msg, &sig[..k - 1]), "truncated");
            assert!(!key.judge(scheme, hash, &msg, &[]), "empty");
        }
    }
}

#[test]
fn wrong_scheme_or_hash_is_rejected() {
    let mut rng = rand::rng();
    for key in keys() {
        let msg = random_message(&mut rng);
        for (scheme, hash) in ALGS {
            let sig = key.sign(scheme, hash, &msg);
            for (s2, h2) in ALGS {
                if (s2, h2) != (scheme, hash) {
                    assert!(
                        !key.judge(s2, h2, &msg, &sig),
                        "{} {scheme:?} {hash:?} signature accepted as {s2:?} {h2:?}",
                        key.label()
                    );
                }
            }
        }
    }
}

/// RFC 7518 §3.5: the salt is as long as the hash. `rsa` 0.10's `pss::VerifyingKey::new`
/// (what signature.rs used) insists on that too; only its `new_with_auto_salt_len`
/// would take other lengths.
#[test]
fn pss_salt_must_be_the_hash_length() {
    let mut rng = rand::rng();
    for key in keys().iter().take(4) {
        for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let msg = random_message(&mut rng);
            let h_len = match hash {
                Hash::Sha256 => 32,
                Hash::Sha384 => 48,
                Hash::Sha512 => 64,
            };
            assert!(key.judge(
                Scheme::Pss,
                hash,
                &msg,
                &key.sign_pss_salt(hash, h_len, &msg)
            ));
            for salt in [0, 20, h_len - 1, h_len + 1] {
                let sig = key.sign_pss_salt(hash, salt, &msg);
                assert!(!key.judge(Scheme::Pss, hash, &msg, &sig), "salt {salt}");
            }
        }
    }
}

/// Hand-made PKCS#1 v1.5 encodings that are close to right but not right.
#[test]
fn pkcs1_lookalike_encodings_are_rejected() {
    let key = &keys()[0];
    let k = key.ours.size();
    let msg = b"header.payload";
    let sig = key.sign(Scheme::Pkcs1, Hash::Sha256, msg);
    let em = key.open(&sig);
    let t_len = 19 + 32;
    let digest_info = em[k - t_len..].to_vec();
    let digest = &digest_info[19..];
    let build = |ps: &[u8], sep: u8, t: &[u8], tail: &[u8]| -> Vec<u8> {
        let mut em = vec![0x00, 0x01];
        em.extend_from_slice(ps);
        em.push(sep);
        em.extend_from_slice(t);
        em.extend_from_slice(tail);
        em
    };
    // The exact encoding round-trips.
    let exact = build(&vec![0xff; k - t_len - 3], 0x00, &digest_info, &[]);
    assert_eq!(exact, em);
    // DigestInfo without the NULL parameters (a DER variant some signers emit).
    let mut no_null = vec![0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09];
    no_null.extend_from_slice(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]);
    no_null.extend_from_slice(&[0x04, 0x20]);
    no_null.extend_from_slice(digest);
    let mut one_ps_off = exact.clone();
    one_ps_off[7] = 0xfe;
    let mut block_type_2 = exact.clone();
    block_type_2[1] = 0x02;
    let mut bad_separator = exact.clone();
    bad_separator[k - t_len - 1] = 0x01;
    let mut first_octet = exact.clone();
    first_octet[0] = 0x01; // m ≥ 256^(k−1): I2OSP cannot give it k octets with a leading 00
    let lookalikes = [
        (
            "no NULL parameters",
            build(&vec![0xff; k - no_null.len() - 3], 0x00, &no_null, &[]),
        ),
        // Digest moved left, garbage after it (Bleichenbacher 2006).
        (
            "trailing garbage",
            build(&vec![0xff; k - t_len - 11], 0x00, &digest_info, &[0xab; 8]),
        ),
        ("padding octet FE", one_ps_off),
        ("block type 2", block_type_2),
        ("separator 01", bad_separator),
        ("first octet 01", first_octet),
    ];
    for (what, bad) in lookalikes {
        assert_eq!(bad.len(), k, "{what}");
        let Some(bad_sig) = key.seal(&bad) else {
            continue; // ≥ n
        };
        assert!(
            !key.judge(Scheme::Pkcs1, Hash::Sha256, msg, &bad_sig),
            "{what}"
        );
    }
}

#[test]
fn keys_are_accepted_on_rsa_0_10_terms() {
    let key = &keys()[0];
    let n = key.sk.n_bytes().to_vec();
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let e = |v: u64| v.to_be_bytes().to_vec();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (n.clone(), e(65537)),
        (n.clone(), vec![0x01, 0x00, 0x01]),
        (n.clone(), vec![0, 0, 0x01, 0x00, 0x01]),
        (n.clone(), e(3)),
        (n.clone(), e((1 << 33) - 1)),
        (n.clone(), e(0)),
        (n.clone(), vec![]),
        (n.clone(), e(1)),
        (n.clone(), e(2)),
        (n.clone(), e(65536)),
        (n.clone(), e((1 << 33) + 1)),
        (n.clone(), e(u64::MAX)),
        (n.clone(), vec![1; 9]),
        (even, e(65537)),
    ];
    for (n, e) in cases {
        let ours = RsaPublicKey::new(&n, &e);
        let reference = rsa::PublicKey::new(
            BoxedUint::from_be_slice_vartime(&n),
            BoxedUint::from_be_slice_vartime(&e),
        );
        assert_eq!(
            ours.is_ok(),
            reference.is_ok(),
            "e = {e:02x?}: ours {:?}, rsa {:?}",
            ours.as_ref().err(),
            reference.as_ref().err()
        );
    }
    assert_eq!(
        RsaPublicKey::new(&[0xff; 255], &e(65537)).err(),
        Some(KeyError::ModulusSize(255))
    );
    assert_eq!(
        RsaPublicKey::new(&[0xff; 1025], &e(65537)).err(),
        Some(KeyError::ModulusSize(1025))
    );
    let mut padded = vec![0, 0];
    padded.extend_from_slice(&[0xff; 1024]);
    assert!(RsaPublicKey::new(&padded, &e(65537)).is_ok());
}

/// The public operation itself against `rsa`'s, for random `s < n`.
#[test]
fn public_op_matches_rsa() {
    let mut rng = rand::rng();
    for key in keys() {
        let pk = rsa::PublicKey::from(&key.sk);
        let k = key.ours.size();
        for _ in 0..16 {
            let mut s = vec![0u8; k];
            rng.fill_bytes(&mut s);
            s[0] = 0;
            let ours = key.ours.public_op(&s).unwrap();
            let m = BoxedUint::from_be_slice(&s, pk.n_bits_precision()).unwrap();
            let reference = rsa::hazmat::rsa_encrypt(&pk, &m).unwrap().to_be_bytes();
            assert_eq!(
                ours[..],
                reference[reference.len() - k..],
                "{}",
                key.label()
            );
        }
    }
}
