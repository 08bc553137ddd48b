//! The 768-bit Diffie-Hellman exchange of MSE: the prime below, generator 2, a 160-bit
//! private exponent; public keys and the shared secret travel as 96 big-endian bytes.

use num_bigint::BigUint;
use std::sync::OnceLock;

/// Bytes of a public key or shared secret.
pub const KEY_LEN: usize = 96;

const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B57\
6625E7EC6F44C42E9A63A36210000000000090563";

fn prime() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| BigUint::parse_bytes(PRIME_HEX, 16).unwrap_or_default())
}

fn to_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let b = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // Always below the 96-byte prime, so it fits.
    let start = KEY_LEN.saturating_sub(b.len());
    out[start..].copy_from_slice(&b[b.len().saturating_sub(KEY_LEN)..]);
    out
}

/// Our side of the exchange.
#[derive(Clone)]
pub struct KeyPair {
    secret: BigUint,
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
        let secret = BigUint::from_bytes_be(&secret);
        let public = to_bytes(&BigUint::from(2u32).modpow(&secret, prime()));
        KeyPair { secret, public }
    }

    /// Our public key, `2^x mod P`.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The shared secret with the peer's public key; `None` for a degenerate key
    /// (0, 1, P-1 or not below P), which would give a secret an observer can guess.
    pub fn shared(&self, theirs: &[u8; KEY_LEN]) -> Option<[u8; KEY_LEN]> {
        let y = BigUint::from_bytes_be(theirs);
        let p = prime();
        let one = BigUint::from(1u32);
        if y <= one || y >= p - &one {
            return None;
        }
        Some(to_bytes(&y.modpow(&self.secret, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prime_is_768_bits() {
        assert_eq!(prime().bits(), 768);
        assert_eq!(to_bytes(prime()).len(), KEY_LEN);
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
        let mut pm1 = to_bytes(prime());
        pm1[95] -= 1;
        assert!(a.shared(&pm1).is_none());
        k[95] = 2;
        assert!(a.shared(&k).is_some());
    }
}
