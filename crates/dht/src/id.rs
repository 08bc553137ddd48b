//! Node ids and info-hashes (BEP 5: 160-bit ids, XOR distance) and the node-id restriction of
//! BEP 42 (DHT security extension): on a public address the first 21 bits of a node's id must
//! be derived from its IP address with CRC32-C, so one host cannot choose ids next to a target.

use std::fmt;
use std::net::IpAddr;

/// A 160-bit DHT id: a node id or an info-hash (they live in the same space).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    pub const LEN: usize = 20;

    pub fn from_slice(b: &[u8]) -> Option<NodeId> {
        b.try_into().ok().map(NodeId)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// XOR distance to `other`, itself a 160-bit number compared bytewise.
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        NodeId(d)
    }

    /// Number of leading bits `self` shares with `other` (160 when equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        for i in 0..20 {
            let x = self.0[i] ^ other.0[i];
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// An id that shares exactly `prefix` leading bits with `self` (the rest from `random`);
    /// used to refresh the bucket at that depth.
    pub fn random_with_prefix(&self, prefix: usize, random: [u8; 20]) -> NodeId {
        let mut out = random;
        if prefix >= 160 {
            return *self;
        }
        for bit in 0..=prefix {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let want = if bit < prefix {
                self.0[byte] & mask
            } else {
                !self.0[byte] & mask
            };
            out[byte] = (out[byte] & !mask) | want;
        }
        out.into()
    }
}

impl From<[u8; 20]> for NodeId {
    fn from(b: [u8; 20]) -> Self {
        NodeId(b)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// CRC32-C (Castagnoli, reflected polynomial 0x82F63B78), as BEP 42 specifies. Bitwise: it
/// hashes at most 8 bytes per node id, so a table buys nothing.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The CRC32-C of `ip` masked as BEP 42 says, with `r` (0..=7) in the top bits.
fn bep42_crc(ip: IpAddr, r: u8) -> u32 {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *x &= m;
            }
            b[0] |= (r & 7) << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let mut b: [u8; 8] = v6.octets()[..8].try_into().expect("8 of 16 bytes");
            for (x, m) in b
                .iter_mut()
                .zip([0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff])
            {
                *x &= m;
            }
            b[0] |= (r & 7) << 5;
            crc32c(&b)
        }
    }
}

/// A node id valid for `ip` under BEP 42: 21 bits from the CRC, the last byte `rand`, the
/// rest from `random`.
pub fn bep42_id(ip: IpAddr, rand: u8, random: [u8; 20]) -> NodeId {
    let crc = bep42_crc(ip, rand & 7);
    let mut id = random;
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (random[2] & 7);
    id[19] = rand;
    NodeId(id)
}

/// Whether BEP 42 exempts `ip`: loopback, private, link-local and other local addresses,
/// where many nodes legitimately share an address or the address says nothing.
pub fn bep42_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10, CGNAT
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Whether `id` is an acceptable node id for a node at `ip` under BEP 42.
pub fn bep42_valid(id: &NodeId, ip: IpAddr) -> bool {
    if bep42_exempt(ip) {
        return true;
    }
    let crc = bep42_crc(ip, id.0[19] & 7);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// The test vectors of BEP 42.
    const VECTORS: [(&str, u8, &str); 5] = [
        (
            "124.31.75.21",
            1,
            "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
        ),
        (
            "21.75.31.124",
            86,
            "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
        ),
        (
            "65.23.51.170",
            22,
            "a5d43220bc8f112a3d426c84764f8c2a1150e616",
        ),
        (
            "84.124.73.14",
            65,
            "1b0321dd1bb1fe518101ceef99462b947a01ff41",
        ),
        (
            "43.213.53.83",
            90,
            "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
        ),
    ];

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn bep42_vectors() {
        for (ip, rand, id) in VECTORS {
            let ip: IpAddr = ip.parse().unwrap();
            let want = NodeId(hex(id));
            assert!(bep42_valid(&want, ip), "{ip} {want}");
            let made = bep42_id(ip, rand, want.0);
            // The first 21 bits come from the CRC, so they match the vector's.
            assert_eq!(made.0[..2], want.0[..2], "{ip}");
            assert_eq!(made.0[2] & 0xf8, want.0[2] & 0xf8, "{ip}");
            assert_eq!(made.0[19], rand);
            // The same id at another address, or with another r, is refused.
            let mut other = want;
            other.0[19] ^= 1;
            assert!(!bep42_valid(&other, ip), "{ip} accepted a wrong r");
            assert!(!bep42_valid(&want, "8.8.8.8".parse().unwrap()));
        }
    }

    #[test]
    fn local_addresses_are_exempt() {
        let any = NodeId([0x42; 20]);
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.5.5", "::1"] {
            assert!(bep42_valid(&any, ip.parse().unwrap()), "{ip}");
        }
        assert!(!bep42_valid(&any, "1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn prefix_and_distance() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[1] = 0x10;
        assert_eq!(a.common_prefix_len(&NodeId(b)), 11);
        assert_eq!(a.common_prefix_len(&a), 160);
        for p in [0, 1, 7, 8, 33, 159] {
            let r = a.random_with_prefix(p, [0xa5; 20]);
            assert_eq!(a.common_prefix_len(&r), p);
        }
        assert_eq!(a.distance(&NodeId(b)), NodeId(b));
    }
}
