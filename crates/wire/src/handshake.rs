//! The BitTorrent handshake (BEP 3), with the reserved bits of BEP 5, 6 and 10.
//!
//! A handshake is `<pstrlen=19><pstr="BitTorrent protocol"><reserved:8><info_hash:20>
//! <peer_id:20>`, 68 bytes in all. A listener that serves many torrents must pick the
//! torrent from the info-hash before it answers, and some clients wait for our
//! handshake before they send their peer id, so the first 48 bytes can be parsed on
//! their own as a [`HandshakePrefix`].
//!
//! Parsers take a byte slice and return `Ok(None)` while the slice is too short, so the
//! caller can keep reading. They check every byte as soon as it is there: a connection
//! that starts with anything but `\x13BitTorrent protocol` (an HTTP request, an
//! encrypted MSE stream, noise) is refused at its first wrong byte.

use thiserror::Error;

/// The protocol string that follows the length byte.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a whole handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Length of the part before the peer id: length byte, protocol string, reserved bytes
/// and info-hash.
pub const HANDSHAKE_PREFIX_LEN: usize = 48;

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The first byte is not 19, the length of "BitTorrent protocol".
    #[error("handshake protocol string length is {0}, expected 19")]
    WrongProtocolLength(u8),
    /// The protocol string is not "BitTorrent protocol".
    #[error("handshake protocol string is not \"BitTorrent protocol\"")]
    WrongProtocol,
}

/// The reserved bytes and info-hash: what a listener needs to route a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakePrefix {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
}

impl HandshakePrefix {
    /// Parses the first 48 bytes of a handshake. Returns `Ok(None)` if `buf` is shorter
    /// than that and what is there so far is valid. Bytes past 48 are not looked at.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, HandshakeError> {
        check_protocol(buf)?;
        let Some(prefix) = buf.get(..HANDSHAKE_PREFIX_LEN) else {
            return Ok(None);
        };
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&prefix[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&prefix[28..48]);
        Ok(Some(Self {
            reserved,
            info_hash,
        }))
    }
}

/// A whole handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

// Reserved bits, as (byte index, mask). Bytes are numbered from the left as they go on
// the wire, which is how the BEPs describe them.
const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10); // BEP 10
const FAST_EXTENSION: (usize, u8) = (7, 0x04); // BEP 6
const DHT: (usize, u8) = (7, 0x01); // BEP 5

impl Handshake {
    /// A handshake with no reserved bits set.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        Self {
            reserved: [0; 8],
            info_hash,
            peer_id,
        }
    }

    /// Parses a whole handshake. Returns `Ok(None)` if `buf` is shorter than 68 bytes
    /// and what is there so far is valid. Bytes past 68 (the first messages) are not
    /// looked at; the caller drops exactly [`HANDSHAKE_LEN`] bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, HandshakeError> {
        let Some(prefix) = HandshakePrefix::parse(buf)? else {
            return Ok(None);
        };
        let Some(peer_id) = buf.get(HANDSHAKE_PREFIX_LEN..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let mut id = [0u8; 20];
        id.copy_from_slice(peer_id);
        Ok(Some(Self {
            reserved: prefix.reserved,
            info_hash: prefix.info_hash,
            peer_id: id,
        }))
    }

    /// The 48-byte prefix of this handshake.
    pub fn prefix(&self) -> HandshakePrefix {
        HandshakePrefix {
            reserved: self.reserved,
            info_hash: self.info_hash,
        }
    }

    /// Encodes the handshake as the 68 bytes that go on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    /// BEP 10: the peer speaks the extension protocol (reserved byte 5, bit 0x10).
    pub fn supports_extension_protocol(&self) -> bool {
        bit(&self.reserved, EXTENSION_PROTOCOL)
    }
    /// BEP 6: the peer speaks the fast extension (reserved byte 7, bit 0x04).
    pub fn supports_fast_extension(&self) -> bool {
        bit(&self.reserved, FAST_EXTENSION)
    }
    /// BEP 5: the peer runs a DHT node (reserved byte 7, bit 0x01).
    pub fn supports_dht(&self) -> bool {
        bit(&self.reserved, DHT)
    }
    pub fn set_extension_protocol(&mut self, on: bool) -> &mut Self {
        set_bit(&mut self.reserved, EXTENSION_PROTOCOL, on);
        self
    }
    pub fn set_fast_extension(&mut self, on: bool) -> &mut Self {
        set_bit(&mut self.reserved, FAST_EXTENSION, on);
        self
    }
    pub fn set_dht(&mut self, on: bool) -> &mut Self {
        set_bit(&mut self.reserved, DHT, on);
        self
    }
}

impl HandshakePrefix {
    /// BEP 10 bit, as in [`Handshake::supports_extension_protocol`].
    pub fn supports_extension_protocol(&self) -> bool {
        bit(&self.reserved, EXTENSION_PROTOCOL)
    }
    /// BEP 6 bit, as in [`Handshake::supports_fast_extension`].
    pub fn supports_fast_extension(&self) -> bool {
        bit(&self.reserved, FAST_EXTENSION)
    }
    /// BEP 5 bit, as in [`Handshake::supports_dht`].
    pub fn supports_dht(&self) -> bool {
        bit(&self.reserved, DHT)
    }
}

fn bit(reserved: &[u8; 8], (byte, mask): (usize, u8)) -> bool {
    reserved[byte] & mask != 0
}

fn set_bit(reserved: &mut [u8; 8], (byte, mask): (usize, u8), on: bool) {
    if on {
        reserved[byte] |= mask;
    } else {
        reserved[byte] &= !mask;
    }
}

/// Checks whatever part of the length byte and protocol string has arrived.
fn check_protocol(buf: &[u8]) -> Result<(), HandshakeError> {
    if let Some(&len) = buf.first()
        && usize::from(len) != PROTOCOL.len()
    {
        return Err(HandshakeError::WrongProtocolLength(len));
    }
    let got = buf.get(1..).unwrap_or(&[]);
    let n = got.len().min(PROTOCOL.len());
    if got[..n] != PROTOCOL[..n] {
        return Err(HandshakeError::WrongProtocol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // Built by hand from BEP 3: 19, "BitTorrent protocol", reserved with the BEP 10
        // bit (byte 5 = 0x10) and the BEP 6 and BEP 5 bits (byte 7 = 0x05).
        let mut v = vec![19u8];
        v.extend_from_slice(b"BitTorrent protocol");
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        v.extend_from_slice(&[0xaa; 20]);
        v.extend_from_slice(b"-BP0001-123456789012");
        v
    }

    #[test]
    fn parses_hand_written_handshake() {
        let bytes = sample();
        let hs = Handshake::parse(&bytes).unwrap().unwrap();
        assert_eq!(hs.info_hash, [0xaa; 20]);
        assert_eq!(&hs.peer_id, b"-BP0001-123456789012");
        assert!(hs.supports_extension_protocol());
        assert!(hs.supports_fast_extension());
        assert!(hs.supports_dht());
        assert_eq!(hs.encode().as_slice(), bytes.as_slice());
    }

    #[test]
    fn setters_set_the_documented_bits() {
        let mut hs = Handshake::new([1; 20], [2; 20]);
        hs.set_extension_protocol(true)
            .set_fast_extension(true)
            .set_dht(true);
        assert_eq!(hs.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        hs.set_fast_extension(false);
        assert_eq!(hs.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x01]);
        assert!(!hs.supports_fast_extension());
    }

    #[test]
    fn every_short_prefix_is_incomplete() {
        let bytes = sample();
        for n in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::parse(&bytes[..n]), Ok(None), "len {n}");
        }
        for n in 0..HANDSHAKE_PREFIX_LEN {
            assert_eq!(HandshakePrefix::parse(&bytes[..n]), Ok(None), "len {n}");
        }
    }

    #[test]
    fn prefix_routes_before_peer_id_arrives() {
        let bytes = sample();
        let p = HandshakePrefix::parse(&bytes[..48]).unwrap().unwrap();
        assert_eq!(p.info_hash, [0xaa; 20]);
        assert!(p.supports_extension_protocol());
        assert!(p.supports_fast_extension());
        assert!(p.supports_dht());
        assert_eq!(Handshake::parse(&bytes[..48]), Ok(None));
        let hs = Handshake::parse(&bytes).unwrap().unwrap();
        assert_eq!(hs.prefix(), p);
    }

    #[test]
    fn wrong_length_byte_is_refused_at_once() {
        assert_eq!(
            Handshake::parse(b"G"),
            Err(HandshakeError::WrongProtocolLength(b'G'))
        );
        assert_eq!(
            HandshakePrefix::parse(&[18]),
            Err(HandshakeError::WrongProtocolLength(18))
        );
    }

    #[test]
    fn wrong_protocol_string_is_refused_at_first_wrong_byte() {
        assert_eq!(
            Handshake::parse(b"\x13BitTorrent pX"),
            Err(HandshakeError::WrongProtocol)
        );
        let mut bytes = sample();
        bytes[19] = b'L';
        assert_eq!(Handshake::parse(&bytes), Err(HandshakeError::WrongProtocol));
    }

    #[test]
    fn trailing_bytes_are_left_alone() {
        let mut bytes = sample();
        bytes.extend_from_slice(&[0, 0, 0, 1, 2]);
        assert!(Handshake::parse(&bytes).unwrap().is_some());
    }
}
