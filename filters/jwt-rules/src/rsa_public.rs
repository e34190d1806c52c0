//! RSA signature verification for RS256…PS512: RSASSA-PKCS1-v1_5 and RSASSA-PSS
//! (RFC 8017 §8.2.2 and §8.1.2) over a variable-time public operation `s^e mod n`.
//!
//! Why by hand (project rule: say why): `rsa` 0.10 took ~370–460 µs per RS256 verify
//! inside V8, most of the new-token budget. It does keep per-key Montgomery parameters,
//! but its public operation is crypto-bigint's constant-time 4-bit fixed-window `pow`
//! over e's 17 bits: 14 multiplications to build the table, 16 squarings, 5 more
//! multiplications and constant-time table scans, about twice the 18 operations
//! square-and-multiply needs for e = 65537. crypto-bigint's `pow_vartime` exists only
//! for fixed-size (const-generic) forms and still builds the 16-entry table; driving its
//! public `BoxedMontyForm` multiplier by square-and-multiply by hand got only ~2.2×.
//!
//! Measured with examples/rsa_verify_bench.rs (Node 20's V8, wasm32-wasip1, RSA-2048,
//! e = 65537, best of 40 rounds on a loaded 2-vCPU machine): RS256 verify ~120 µs here
//! against ~420–460 µs with `rsa` 0.10 in the same runs (PS256 alike); the public
//! operation alone ~105–118 µs against ~425–460 µs (crypto-bigint by hand: ~185–197 µs).
//! Per key, `new` costs ~65 µs (`rsa::PublicKey::new` ~30 µs), once per JWKS parse.
//! Natively (x86_64) this is slower than `rsa` (~90 µs against ~70 µs per verify): it
//! keeps 32-bit limbs on every target, so the native tests run the arithmetic the filter
//! runs.
//!
//! Verification only handles public data (key, signature, message), so nothing here
//! needs to be constant-time. The arithmetic is Montgomery multiplication (CIOS) on
//! 32-bit limbs with 64-bit products: Wasm has no 64×64→128-bit multiply, so `u128`
//! would call a slow helper. Per key, once (when the JWKS is parsed): the limbs of `n`,
//! `n0' = -n⁻¹ mod 2³²` and `R² mod n`. Per signature: one multiplication into
//! Montgomery form, then left-to-right square-and-multiply over `e` (e = 65537: 16
//! squarings, done by a dedicated squaring, and one multiplication by `s` that also
//! leaves Montgomery form).
//!
//! The encodings are checked here too, as RFC 8017 spells them: PKCS#1 v1.5 builds
//! the whole expected `EM` and compares it byte for byte; PSS runs EMSA-PSS-VERIFY with
//! MGF1 over the same hash and a salt as long as the hash (RFC 7518 §3.5), which is
//! also what `rsa` 0.10's `pss::VerifyingKey::new` accepted (it does not guess the salt
//! length either). The tests check both against `rsa` 0.10.

use sha2::digest::Digest;
use sha2::{Sha256, Sha384, Sha512};
use std::cmp::Ordering;
use std::fmt;

/// Modulus lengths accepted, in whole octets: 2048..=8192 bits as jwks.rs counts them
/// (its octet length × 8).
pub const MIN_MODULUS_BYTES: usize = 256;
pub const MAX_MODULUS_BYTES: usize = 1024;
/// Public exponents accepted: odd, 3..=2³³−1, the same range `rsa` 0.10 accepts.
const MIN_EXPONENT: u64 = 3;
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// The SHA-2 function of an RS*/PS* algorithm (also MGF1's, for PSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// DER of `DigestInfo` up to the digest itself (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }
}

/// Why a JWK's `n`/`e` do not make an RSA key we verify with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Modulus octets (leading zeros stripped) outside the accepted range.
    ModulusSize(usize),
    EvenModulus,
    ExponentTooSmall,
    ExponentTooLarge,
    EvenExponent,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::ModulusSize(bytes) => write!(
                f,
                "modulus of {bytes} octets is outside {MIN_MODULUS_BYTES}..={MAX_MODULUS_BYTES}"
            ),
            KeyError::EvenModulus => f.write_str("modulus is even"),
            KeyError::ExponentTooSmall => write!(f, "public exponent is below {MIN_EXPONENT}"),
            KeyError::ExponentTooLarge => write!(f, "public exponent is above {MAX_EXPONENT}"),
            KeyError::EvenExponent => f.write_str("public exponent is even"),
        }
    }
}

/// An RSA public key with its Montgomery constants. Limbs are little-endian `u32`s.
#[derive(Clone, Debug)]
pub struct RsaPublicKey {
    /// `n`, exactly `ceil(k / 4)` limbs.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0_inv: u32,
    /// `R² mod n`, `R = 2^(32 · limbs)`.
    rr: Vec<u32>,
    e: u64,
    /// Modulus length in octets, `k` of RFC 8017.
    k: usize,
    /// Modulus length in bits.
    bits: usize,
}

impl RsaPublicKey {
    /// From the big-endian octets of `n` and `e` (a JWK's decoded `n` and `e`; leading
    /// zero octets are ignored).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaPublicKey, KeyError> {
        let n = strip_leading_zeros(n);
        let k = n.len();
        if !(MIN_MODULUS_BYTES..=MAX_MODULUS_BYTES).contains(&k) {
            return Err(KeyError::ModulusSize(k));
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyError::EvenModulus);
        }
        let e = strip_leading_zeros(e);
        if e.len() > 8 {
            return Err(KeyError::ExponentTooLarge);
        }
        let e = e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        if e < MIN_EXPONENT {
            return Err(KeyError::ExponentTooSmall);
        }
        if e > MAX_EXPONENT {
            return Err(KeyError::ExponentTooLarge);
        }
        if e & 1 == 0 {
            return Err(KeyError::EvenExponent);
        }
        // e < 2³³ < n for every accepted modulus, as RSA requires.

        let n = limbs_from_be(n, k.div_ceil(4));
        let top_bits = n.last().map_or(0, |l| 32 - l.leading_zeros() as usize);
        let bits = (n.len() - 1) * 32 + top_bits;
        let n0_inv = neg_inv_u32(n.first().copied().unwrap_or(1));
        let mut key = RsaPublicKey {
            rr: Vec::new(),
            n,
            n0_inv,
            e,
            k,
            bits,
        };
        key.rr = key.r_squared();
        Ok(key)
    }

    /// Modulus length in octets.
    pub fn size(&self) -> usize {
        self.k
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// RSAVP1 with the octet conversions of RFC 8017 §8.2.2 step 2: `s^e mod n` as `k`
    /// octets. `None` unless the signature is exactly `k` octets and `s < n`.
    pub fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = limbs_from_be(signature, self.n.len());
        if cmp(&s, &self.n) != Ordering::Less {
            return None;
        }
        let m = self.pow_e(&s);
        Some(be_from_limbs(&m, self.k))
    }

    /// RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2).
    pub fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        // EMSA-PKCS1-v1_5-ENCODE (§9.2): EM = 00 01 FF…FF 00 || DigestInfo || H, with at
        // least 8 octets of FF.
        let prefix = hash.digest_info_prefix();
        let h = hash.digest(msg);
        let t_len = prefix.len() + h.len();
        let Some(ps_len) = self.k.checked_sub(t_len + 3).filter(|l| *l >= 8) else {
            return false;
        };
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps_len, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&h);
        em == expected
    }

    /// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2), MGF1 with `hash`, salt length = hash length.
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], signature: &[u8]) -> bool {
        let Some(mut m) = self.public_op(signature) else {
            return false;
        };
        // Step 2c: EM = I2OSP(m, emLen), emLen = ceil((modBits − 1) / 8), which is k − 1
        // when modBits ≡ 1 (mod 8); m must then fit in emLen octets.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let Some(extra) = self.k.checked_sub(em_len) else {
            return false;
        };
        if m.iter().take(extra).any(|b| *b != 0) {
            return false;
        }
        let Some(em) = m.get_mut(extra..) else {
            return false;
        };
        let h = hash.digest(msg);
        match hash {
            Hash::Sha256 => emsa_pss_verify::<Sha256>(&h, em, em_bits),
            Hash::Sha384 => emsa_pss_verify::<Sha384>(&h, em, em_bits),
            Hash::Sha512 => emsa_pss_verify::<Sha512>(&h, em, em_bits),
        }
    }

    /// `s^e mod n` for `s < n`, by left-to-right square-and-multiply over `e`.
    fn pow_e(&self, s: &[u32]) -> Vec<u32> {
        let len = self.n.len();
        let mut t = vec![0u32; len];
        let mut wide = vec![0u32; 2 * len];
        // x = s·R mod n (Montgomery form of s).
        let mut x = vec![0u32; len];
        self.mont_mul(s, &self.rr, &mut x);
        let mut acc = x.clone();
        // e is odd and ≥ 3: its top bit is taken by starting from x; bit 0 is the last
        // step, a multiplication by s itself, which also leaves Montgomery form
        // ((s^(e−1)·R) · s · R⁻¹ = s^e).
        let top = 63 - self.e.leading_zeros();
        for i in (1..top).rev() {
            self.mont_sqr(&acc, &mut t, &mut wide);
            std::mem::swap(&mut acc, &mut t);
            if (self.e >> i) & 1 == 1 {
                self.mont_mul(&acc, &x, &mut t);
                std::mem::swap(&mut acc, &mut t);
            }
        }
        self.mont_sqr(&acc, &mut t, &mut wide);
        self.mont_mul(&t, s, &mut acc);
        acc
    }

    /// `out = a·b·R⁻¹ mod n` for `a, b < n` (CIOS; Koç, Acar, Kaliski 1996), fully
    /// reduced. All slices are `n.len()` limbs long.
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut [u32]) {
        out.fill(0);
        // out plus two limbs above it (hi, hi2) hold the running sum, which stays < 2n.
        let mut hi: u32 = 0;
        for &ai in a {
            let ai = u64::from(ai);
            // out += ai · b
            let mut c = 0u64;
            for (o, &bj) in out.iter_mut().zip(b) {
                let v = u64::from(*o) + ai * u64::from(bj) + c;
                *o = v as u32;
                c = v >> 32;
            }
            let v = u64::from(hi) + c;
            hi = v as u32;
            let hi2 = (v >> 32) as u32;
            // out = (out + m·n) / 2³², m chosen to clear the low limb.
            let mut limbs = out.iter_mut().zip(&self.n);
            let Some((o0, &n0)) = limbs.next() else {
                return;
            };
            let m = u64::from(o0.wrapping_mul(self.n0_inv));
            let mut c = (u64::from(*o0) + m * u64::from(n0)) >> 32;
            let mut prev = o0;
            for (o, &nj) in limbs {
                let v = u64::from(*o) + m * u64::from(nj) + c;
                *prev = v as u32;
                c = v >> 32;
                prev = o;
            }
            let v = u64::from(hi) + c;
            *prev = v as u32;
            hi = hi2 + (v >> 32) as u32;
        }
        if hi != 0 || cmp(out, &self.n) != Ordering::Less {
            sub_assign(out, &self.n);
        }
    }

    /// `out = a²·R⁻¹ mod n` for `a < n`, fully reduced: the square first (each cross
    /// product once, then doubled), then Montgomery reduction (SOS). A quarter fewer
    /// multiplications than `mont_mul(a, a)`; squarings are 16 of e = 65537's 18
    /// operations. `wide` is scratch of `2·n.len()` limbs.
    fn mont_sqr(&self, a: &[u32], out: &mut [u32], wide: &mut [u32]) {
        let len = self.n.len();
        wide.fill(0);
        // Cross products a_i·a_j, i < j, into wide[i + j].
        for (i, &ai) in a.iter().enumerate() {
            let (Some(row), Some(rest)) = (wide.get_mut(2 * i + 1..=i + len), a.get(i + 1..))
            else {
                break;
            };
            let Some((end, row)) = row.split_last_mut() else {
                break;
            };
            let ai = u64::from(ai);
            let mut c = 0u64;
            for (w, &aj) in row.iter_mut().zip(rest) {
                let v = u64::from(*w) + ai * u64::from(aj) + c;
                *w = v as u32;
                c = v >> 32;
            }
            *end = c as u32;
        }
        // Double them and add the squares a_i² at wide[2i].
        let mut c = 0u64;
        let mut shifted_out = 0u32;
        for (pair, &ai) in wide.chunks_exact_mut(2).zip(a) {
            let [lo, hi] = pair else {
                break;
            };
            let dlo = *lo << 1 | shifted_out;
            let dhi = *hi << 1 | *lo >> 31;
            shifted_out = *hi >> 31;
            let sq = u64::from(ai) * u64::from(ai);
            let v = u64::from(dlo) + (sq & 0xffff_ffff) + c;
            *lo = v as u32;
            let v = u64::from(dhi) + (sq >> 32) + (v >> 32);
            *hi = v as u32;
            c = v >> 32;
        }
        // Reduce: for each low limb, add m·n·2^(32i) to clear it; the carry out of each
        // row's top limb goes into the next row's.
        let mut carry_hi = 0u64;
        for i in 0..len {
            let Some((end, row)) = wide.get_mut(i..=i + len).and_then(<[u32]>::split_last_mut)
            else {
                break;
            };
            let m = u64::from(row.first().map_or(0, |w| w.wrapping_mul(self.n0_inv)));
            let mut c = 0u64;
            for (w, &nj) in row.iter_mut().zip(&self.n) {
                let v = u64::from(*w) + m * u64::from(nj) + c;
                *w = v as u32;
                c = v >> 32;
            }
            let v = u64::from(*end) + c + carry_hi;
            *end = v as u32;
            carry_hi = v >> 32;
        }
        for (o, w) in out.iter_mut().zip(wide.iter().skip(len)) {
            *o = *w;
        }
        if carry_hi != 0 || cmp(out, &self.n) != Ordering::Less {
            sub_assign(out, &self.n);
        }
    }

    /// `R² mod n`. Starts from 2^(bits−1) < n, doubles mod n up to `R·2^a mod n` (the
    /// Montgomery form of 2^a, where `log2 R = a·2^t` with `a` odd), then squares that
    /// `t` times in Montgomery form: `R·2^(a·2^t) = R·R`.
    fn r_squared(&self) -> Vec<u32> {
        let len = self.n.len();
        let r_bits = 32 * len;
        let t = r_bits.trailing_zeros();
        let a = r_bits >> t;
        let mut x = vec![0u32; len];
        let top = self.bits - 1;
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in 0..(r_bits + a - top) {
            self.double_mod(&mut x);
        }
        let mut y = vec![0u32; len];
        let mut wide = vec![0u32; 2 * len];
        for _ in 0..t {
            self.mont_sqr(&x, &mut y, &mut wide);
            std::mem::swap(&mut x, &mut y);
        }
        x
    }

    /// `x = 2x mod n` for `x < n`.
    fn double_mod(&self, x: &mut [u32]) {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let next = *l >> 31;
            *l = *l << 1 | carry;
            carry = next;
        }
        if carry != 0 || cmp(x, &self.n) != Ordering::Less {
            sub_assign(x, &self.n);
        }
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1(`D`) and sLen = hLen; `em` is `emLen`
/// octets and is unmasked in place.
fn emsa_pss_verify<D: Digest>(m_hash: &[u8], em: &mut [u8], em_bits: usize) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_len = em.len();
    // Step 3.
    if em_len < h_len + s_len + 2 {
        return false;
    }
    // Step 4: the trailer.
    let Some((trailer, rest)) = em.split_last_mut() else {
        return false;
    };
    if *trailer != 0xbc {
        return false;
    }
    // Step 5: maskedDB || H.
    let Some((db, h)) = rest.split_at_mut_checked(em_len - h_len - 1) else {
        return false;
    };
    // Step 6: the 8·emLen − emBits leftmost bits must be zero.
    let top_mask = 0xffu8 >> (8 * em_len - em_bits);
    if db.first().is_none_or(|b| b & !top_mask != 0) {
        return false;
    }
    // Steps 7–9.
    mgf1_xor::<D>(db, h);
    if let Some(b) = db.first_mut() {
        *b &= top_mask;
    }
    // Step 10: DB = PS (zeros) || 0x01 || salt.
    let Some((ps, rest)) = db.split_at_checked(em_len - h_len - s_len - 2) else {
        return false;
    };
    if ps.iter().any(|b| *b != 0) {
        return false;
    }
    let Some((&0x01, salt)) = rest.split_first() else {
        return false;
    };
    // Steps 11–14: H = Hash(00×8 || mHash || salt).
    let h2 = D::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    h2.as_slice() == h
}

/// `out ^= MGF1(seed, out.len())` (RFC 8017 §B.2.1).
fn mgf1_xor<D: Digest>(out: &mut [u8], seed: &[u8]) {
    let h_len = <D as Digest>::output_size();
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(h_len)) {
        let mask = D::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(i..).unwrap_or_default()
}

/// Big-endian octets → `len` little-endian limbs (octets beyond `4·len` are dropped;
/// callers pass at most that many).
fn limbs_from_be(bytes: &[u8], len: usize) -> Vec<u32> {
    let mut limbs: Vec<u32> = bytes
        .rchunks(4)
        .map(|c| c.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
        .take(len)
        .collect();
    limbs.resize(len, 0);
    limbs
}

/// Little-endian limbs → `k` big-endian octets (the limbs hold a value below 256^k).
fn be_from_limbs(limbs: &[u32], k: usize) -> Vec<u8> {
    let mut out: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).take(k).collect();
    out.resize(k, 0);
    out.reverse();
    out
}

/// Compares equal-length limb slices as numbers.
fn cmp(a: &[u32], b: &[u32]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// `a -= b` (mod 2^(32·len)), equal lengths.
fn sub_assign(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = v as u32;
        borrow = (v >> 63) & 1;
    }
}

/// `-n0⁻¹ mod 2³²` for odd `n0`, by Newton's iteration (each step doubles the bits
/// that are right; `n0·n0 ≡ 1 mod 8` gives the first three).
fn neg_inv_u32(n0: u32) -> u32 {
    let mut inv = n0;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neg_inv() {
        for n0 in [1u32, 3, 0xffff_ffff, 0x8000_0001, 0x1234_5677] {
            assert_eq!(n0.wrapping_mul(neg_inv_u32(n0)), u32::MAX);
        }
    }

    #[test]
    fn limb_round_trip() {
        let bytes: Vec<u8> = (1..=10).collect();
        let limbs = limbs_from_be(&bytes, 3);
        assert_eq!(limbs, vec![0x0708_090a, 0x0304_0506, 0x0000_0102]);
        assert_eq!(be_from_limbs(&limbs, 10), bytes);
    }
}
