//! The 768-bit Diffie-Hellman exchange of MSE: the prime below, generator 2, a 160-bit
//! private exponent; public keys and the shared secret travel as 96 big-endian bytes.
//!
//! Why arithmetic of our own: every connection (made or accepted, and each attempt of
//! a dialler under `prefer`) costs two exponentiations, and with num-bigint's `modpow`
//! (heap numbers of any width, ~130 µs each here) they were ~1% of the 20-leecher swarm
//! benchmark's CPU. Fixed 12-limb Montgomery multiplication on the stack takes the public
//! key (base 2: a doubling instead of a multiplication) in ~53 µs and the shared secret
//! in ~60 µs. Not constant-time, as num-bigint was not: MSE hides a stream from
//! pattern matching, it is not authentication. Tested against num-bigint (a
//! dev-dependency) on random bases and exponents.

/// Limbs (64-bit, least significant first) of a 768-bit number.
const LIMBS: usize = 12;

/// Bytes of a public key or shared secret.
pub const KEY_LEN: usize = 96;

const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B57\
6625E7EC6F44C42E9A63A36210000000000090563";

type Num = [u64; LIMBS];

/// P as limbs, read from its hex digits at compile time.
const P: Num = {
    let mut n = [0u64; LIMBS];
    let mut i = 0;
    while i < PRIME_HEX.len() {
        let c = PRIME_HEX[PRIME_HEX.len() - 1 - i];
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit"),
        };
        n[i / 16] |= (d as u64) << (4 * (i % 16));
        i += 1;
    }
    n
};

/// -P^-1 mod 2^64, for Montgomery reduction (P is odd). Newton's iteration doubles the
/// correct low bits each step: 1 -> 64 in six.
const P_INV_NEG: u64 = {
    let mut inv: u64 = 1;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(P[0].wrapping_mul(inv)));
        i += 1;
    }
    inv.wrapping_neg()
};

/// R mod P with R = 2^768: the Montgomery form of 1 (P > 2^767, so R - P).
const R_MOD_P: Num = sub(&[0; LIMBS], &P).0;

/// R^2 mod P, to take numbers into Montgomery form: R doubled 768 times mod P.
const R2_MOD_P: Num = {
    let mut x = R_MOD_P;
    let mut i = 0;
    while i < 64 * LIMBS {
        x = double_mod(&x);
        i += 1;
    }
    x
};

/// a - b and whether it borrowed.
const fn sub(a: &Num, b: &Num) -> (Num, bool) {
    let mut out = [0u64; LIMBS];
    let mut borrow = false;
    let mut i = 0;
    while i < LIMBS {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow as u64);
        out[i] = d;
        borrow = b1 || b2;
        i += 1;
    }
    (out, borrow)
}

/// Whether a >= b.
const fn at_least(a: &Num, b: &Num) -> bool {
    let mut i = LIMBS;
    while i > 0 {
        i -= 1;
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

/// 2x mod P, for x < P.
const fn double_mod(x: &Num) -> Num {
    let mut out = [0u64; LIMBS];
    let mut carry = 0;
    let mut i = 0;
    while i < LIMBS {
        out[i] = (x[i] << 1) | carry;
        carry = x[i] >> 63;
        i += 1;
    }
    if carry != 0 || at_least(&out, &P) {
        out = sub(&out, &P).0;
    }
    out
}

/// a * b / R mod P (Montgomery multiplication, CIOS), for a, b < P.
fn mont_mul(a: &Num, b: &Num) -> Num {
    let mut t = [0u64; LIMBS + 2];
    for &bi in b {
        let mut carry: u64 = 0;
        for j in 0..LIMBS {
            let s = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(carry);
            t[j] = s as u64;
            carry = (s >> 64) as u64;
        }
        let s = u128::from(t[LIMBS]) + u128::from(carry);
        t[LIMBS] = s as u64;
        t[LIMBS + 1] = (s >> 64) as u64;
        let m = t[0].wrapping_mul(P_INV_NEG);
        let s = u128::from(t[0]) + u128::from(m) * u128::from(P[0]);
        let mut carry = (s >> 64) as u64;
        for j in 1..LIMBS {
            let s = u128::from(t[j]) + u128::from(m) * u128::from(P[j]) + u128::from(carry);
            t[j - 1] = s as u64;
            carry = (s >> 64) as u64;
        }
        let s = u128::from(t[LIMBS]) + u128::from(carry);
        t[LIMBS - 1] = s as u64;
        t[LIMBS] = t[LIMBS + 1] + (s >> 64) as u64;
    }
    let mut out = [0u64; LIMBS];
    out.copy_from_slice(&t[..LIMBS]);
    if t[LIMBS] != 0 || at_least(&out, &P) {
        out = sub(&out, &P).0;
    }
    out
}

/// base^exp mod P, `exp` big-endian; `base` < P. Base 2 (a public key) doubles instead of
/// multiplying.
fn pow_mod(base: &Num, exp: &[u8]) -> Num {
    let two = {
        let mut t = [0u64; LIMBS];
        t[0] = 2;
        t
    };
    let by_two = *base == two;
    let b = mont_mul(base, &R2_MOD_P);
    let mut x = R_MOD_P;
    for byte in exp {
        for bit in (0..8).rev() {
            x = mont_mul(&x, &x);
            if byte >> bit & 1 == 1 {
                x = if by_two {
                    double_mod(&x)
                } else {
                    mont_mul(&x, &b)
                };
            }
        }
    }
    let one = {
        let mut t = [0u64; LIMBS];
        t[0] = 1;
        t
    };
    mont_mul(&x, &one)
}

fn from_bytes(b: &[u8; KEY_LEN]) -> Num {
    let mut n = [0u64; LIMBS];
    for (i, chunk) in b.rchunks_exact(8).enumerate() {
        n[i] = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
    }
    n
}

fn to_bytes(n: &Num) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for (i, chunk) in out.rchunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&n[i].to_be_bytes());
    }
    out
}

/// Our side of the exchange.
#[derive(Clone)]
pub struct KeyPair {
    secret: [u8; 20],
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPair(..)")
    }
}

impl KeyPair {
    /// From a 160-bit private exponent (big-endian).
    pub fn from_secret(secret: [u8; 20]) -> KeyPair {
        let mut two = [0u64; LIMBS];
        two[0] = 2;
        let public = to_bytes(&pow_mod(&two, &secret));
        KeyPair { secret, public }
    }

    /// Our public key, `2^x mod P`.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The shared secret with the peer's public key; `None` for a degenerate key
    /// (0, 1, P-1 or not below P), which would give a secret an observer can guess.
    pub fn shared(&self, theirs: &[u8; KEY_LEN]) -> Option<[u8; KEY_LEN]> {
        let y = from_bytes(theirs);
        let mut one = [0u64; LIMBS];
        one[0] = 1;
        let p_minus_one = sub(&P, &one).0;
        if at_least(&one, &y) || at_least(&y, &p_minus_one) {
            return None;
        }
        Some(to_bytes(&pow_mod(&y, &self.secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn big(n: &Num) -> BigUint {
        BigUint::from_bytes_be(&to_bytes(n))
    }

    fn prime() -> BigUint {
        BigUint::parse_bytes(PRIME_HEX, 16).unwrap()
    }

    #[test]
    fn the_constants_are_what_they_say() {
        let p = prime();
        assert_eq!(p.bits(), 768);
        assert_eq!(big(&P), p);
        assert_eq!(
            P[0].wrapping_mul(P_INV_NEG),
            u64::MAX,
            "P * -P^-1 = -1 mod 2^64"
        );
        let r = BigUint::from(1u32) << 768;
        assert_eq!(big(&R_MOD_P), &r % &p);
        assert_eq!(big(&R2_MOD_P), (&r * &r) % &p);
    }

    proptest! {
        /// The same numbers as num-bigint's modpow, for any exponent and any base below
        /// P (and for base 2, the public key's).
        #[test]
        fn pow_mod_is_num_bigints_modpow(
            exp in any::<[u8; 20]>(),
            base in any::<[u8; KEY_LEN]>(),
            two in any::<bool>(),
        ) {
            let p = prime();
            let b = if two { BigUint::from(2u32) } else { BigUint::from_bytes_be(&base) % &p };
            let mut bytes = [0u8; KEY_LEN];
            let be = b.to_bytes_be();
            bytes[KEY_LEN - be.len()..].copy_from_slice(&be);
            let ours = pow_mod(&from_bytes(&bytes), &exp);
            prop_assert_eq!(big(&ours), b.modpow(&BigUint::from_bytes_be(&exp), &p));
        }
    }

    #[test]
    fn numbers_near_p_reduce() {
        // P-1 squared is 1; (P-1)^x alternates between 1 and P-1.
        let mut one = [0u64; LIMBS];
        one[0] = 1;
        let pm1 = sub(&P, &one).0;
        let mut odd = [0u8; 20];
        odd[19] = 3;
        assert_eq!(pow_mod(&pm1, &odd), pm1);
        odd[19] = 4;
        assert_eq!(pow_mod(&pm1, &odd), one);
        assert_eq!(pow_mod(&pm1, &[0; 20]), one);
    }

    #[test]
    fn doubling_wraps_past_p_and_past_2_768() {
        let mut one = [0u64; LIMBS];
        one[0] = 1;
        let pm1 = sub(&P, &one).0;
        let pm2 = sub(&pm1, &one).0;
        // 2(P-1) = 2P-2 does not fit 768 bits: the carry branch.
        assert_eq!(double_mod(&pm1), pm2);
        // 2((P+1)/2) = P+1 fits, and is at least P: the comparison branch.
        let mut half = [0u64; LIMBS];
        for i in 0..LIMBS {
            half[i] = (P[i] >> 1) | P.get(i + 1).map_or(0, |n| n << 63);
        }
        let half = sub(&half, &[u64::MAX; LIMBS]).0; // + 1, as -(2^768 - 1)
        assert_eq!(double_mod(&half), one);
    }

    #[test]
    fn both_sides_get_the_same_secret() {
        let a = KeyPair::from_secret([0x11; 20]);
        let b = KeyPair::from_secret([0x5a; 20]);
        let s1 = a.shared(b.public()).unwrap();
        let s2 = b.shared(a.public()).unwrap();
        assert_eq!(s1, s2);
        assert_ne!(s1, [0u8; KEY_LEN]);
    }

    #[test]
    fn small_exponents_give_known_values() {
        // 2^1 and 2^8 are far below P: the public key is the number itself.
        let mut one = [0u8; 20];
        one[19] = 1;
        let mut expect = [0u8; KEY_LEN];
        expect[95] = 2;
        assert_eq!(KeyPair::from_secret(one).public(), &expect);
        let mut eight = [0u8; 20];
        eight[19] = 8;
        expect[95] = 0;
        expect[94] = 1;
        assert_eq!(KeyPair::from_secret(eight).public(), &expect);
    }

    #[test]
    fn degenerate_keys_are_refused() {
        let a = KeyPair::from_secret([3; 20]);
        let mut k = [0u8; KEY_LEN];
        assert!(a.shared(&k).is_none());
        k[95] = 1;
        assert!(a.shared(&k).is_none());
        assert!(a.shared(&[0xff; KEY_LEN]).is_none());
        let mut pm1 = to_bytes(&P);
        pm1[95] -= 1;
        assert!(a.shared(&pm1).is_none());
        k[95] = 2;
        assert!(a.shared(&k).is_some());
    }
}
