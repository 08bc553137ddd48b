//! Info-hashes: the SHA-1 of a v1 `info` dictionary (BEP 3) and the SHA-256 of a v2 one
//! (BEP 52). A hybrid torrent has both. Hex and base32 forms, as used in magnet links.

use std::fmt;

/// A v1 info-hash: SHA-1 of the bencoded `info` dictionary as it appears in the .torrent file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHashV1(pub [u8; 20]);

/// A v2 info-hash: SHA-256 of the bencoded `info` dictionary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHashV2(pub [u8; 32]);

/// The info-hashes of one torrent: v1, v2 or both (hybrid). Never neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct InfoHashes {
    v1: Option<InfoHashV1>,
    v2: Option<InfoHashV2>,
}

impl InfoHashes {
    pub fn v1(v1: InfoHashV1) -> Self {
        InfoHashes {
            v1: Some(v1),
            v2: None,
        }
    }

    pub fn v2(v2: InfoHashV2) -> Self {
        InfoHashes {
            v1: None,
            v2: Some(v2),
        }
    }

    pub fn hybrid(v1: InfoHashV1, v2: InfoHashV2) -> Self {
        InfoHashes {
            v1: Some(v1),
            v2: Some(v2),
        }
    }

    /// Both hashes of an `info` dictionary's exact bytes; which ones apply depends on the
    /// torrent's version, so the caller picks.
    pub fn of_info(info: &[u8], v1: bool, v2: bool) -> Option<Self> {
        use sha1::Digest as _;
        let h1 = v1.then(|| InfoHashV1(sha1::Sha1::digest(info).into()));
        let h2 = v2.then(|| InfoHashV2(sha2::Sha256::digest(info).into()));
        Self::from_parts(h1, h2)
    }

    pub fn from_parts(v1: Option<InfoHashV1>, v2: Option<InfoHashV2>) -> Option<Self> {
        (v1.is_some() || v2.is_some()).then_some(InfoHashes { v1, v2 })
    }

    pub fn get_v1(&self) -> Option<InfoHashV1> {
        self.v1
    }

    pub fn get_v2(&self) -> Option<InfoHashV2> {
        self.v2
    }

    /// The 20 bytes that stand for this torrent in handshakes, trackers and the DHT: the v1
    /// hash, or for a v2-only torrent the v2 hash truncated to 20 bytes (BEP 52).
    pub fn wire_id(&self) -> [u8; 20] {
        match (self.v1, self.v2) {
            (Some(v1), _) => v1.0,
            (None, Some(v2)) => v2.truncated(),
            (None, None) => unreachable!("InfoHashes always holds at least one hash"),
        }
    }
}

impl InfoHashV1 {
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        from_hex(s).map(InfoHashV1)
    }

    /// RFC 4648 base32 (32 characters), as older magnet links carry it.
    pub fn from_base32(s: &str) -> Option<Self> {
        from_base32(s).map(InfoHashV1)
    }
}

impl InfoHashV2 {
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        from_hex(s).map(InfoHashV2)
    }

    pub fn truncated(&self) -> [u8; 20] {
        let mut t = [0u8; 20];
        t.copy_from_slice(&self.0[..20]);
        t
    }
}

impl fmt::Debug for InfoHashV1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV1({})", self.to_hex())
    }
}

impl fmt::Display for InfoHashV1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV2({})", self.to_hex())
    }
}

impl fmt::Display for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Exactly `N` bytes of hex, either case.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// RFC 4648 base32 without padding, either case, decoding to exactly `N` bytes.
pub fn from_base32<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() * 5 / 8 != N || s.len() != (N * 8).div_ceil(5) {
        return None;
    }
    let mut out = [0u8; N];
    let (mut acc, mut bits, mut at) = (0u64, 0u32, 0usize);
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let h = InfoHashV1([0xab; 20]);
        assert_eq!(InfoHashV1::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHashV1::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(InfoHashV1::from_hex("abc"), None);
        assert_eq!(InfoHashV1::from_hex(&"g".repeat(40)), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        // "Hello!Hello!Hello!Hel" is not 20 bytes; use a known hash instead:
        // hex c12fe1c06bba254a9dc9f519b335aa7c1367a88a == base32 YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK
        let from32 = InfoHashV1::from_base32("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(from32.to_hex(), "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
        assert_eq!(
            InfoHashV1::from_base32("yex6dqdlxisuvhoj6um3gnnkpqjwpkek"),
            Some(from32)
        );
        assert_eq!(
            InfoHashV1::from_base32("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1"),
            None
        );
        assert_eq!(InfoHashV1::from_base32("YEX6"), None);
    }

    #[test]
    fn wire_id_truncates_v2() {
        let v2 = InfoHashV2([7; 32]);
        assert_eq!(InfoHashes::v2(v2).wire_id(), [7; 20]);
        let v1 = InfoHashV1([1; 20]);
        assert_eq!(InfoHashes::hybrid(v1, v2).wire_id(), [1; 20]);
    }
}
