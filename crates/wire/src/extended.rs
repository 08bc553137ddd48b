//! The BEP 10 extended handshake: the dictionary sent as extended message id 0.
//!
//! It tells the other side which extensions we speak and under which message ids
//! (`m`), and a few facts about us (`v` client name, `p` listen port, `reqq` request
//! queue depth, `yourip` the address we see them at, BEP 9 `metadata_size`).
//!
//! Decoding is lenient the way libtorrent is: unknown keys are ignored, and a known key
//! with the wrong type or an out-of-range value is treated as absent rather than
//! failing the connection, because clients in the wild get these details wrong. What
//! is refused is input that is not a bencoded dictionary at all, or that breaks the
//! bencode limits ([`LIMITS`]). Strings we keep are bounded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use bencode::{Encoder, Limits, Value};

/// Bounds for a peer's extended handshake: real ones are a few hundred bytes, two levels deep.
pub const LIMITS: Limits = Limits {
    max_input: 128 * 1024,
    max_depth: 16,
    max_string: 64 * 1024,
    max_items: 10_000,
};

/// Most entries kept from a peer's `m` dictionary. Real clients list fewer than twenty.
pub const MAX_EXTENSIONS: usize = 64;
/// Longest extension name kept from `m`.
pub const MAX_EXTENSION_NAME_LEN: usize = 64;
/// Longest client name (`v`) kept, in bytes; longer ones are cut.
pub const MAX_CLIENT_NAME_LEN: usize = 128;

/// Extension names we know about, for convenience.
pub const UT_METADATA: &str = "ut_metadata";
pub const UT_PEX: &str = "ut_pex";

/// Why an extended handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtendedHandshakeError {
    #[error("extended handshake is not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("extended handshake is not a dictionary")]
    NotADictionary,
}

/// The extended handshake dictionary. Every field is optional on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the message id the sender wants to receive it under. An id of
    /// 0 on the wire means "disabled"; such entries are kept so that a later handshake
    /// can switch an extension off, but [`ExtendedHandshake::extension_id`] hides them.
    pub m: BTreeMap<String, u8>,
    /// Client name and version, e.g. "bitpeer 0.1.0".
    pub v: Option<String>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts from us.
    pub reqq: Option<u32>,
    /// Our address as the sender sees it.
    pub yourip: Option<IpAddr>,
    /// The sender's own IPv4 and IPv6 addresses, if it knows them.
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// BEP 9: size of the info dictionary in bytes. Bounding it is the metadata
    /// extension's job; here it is only required to be positive.
    pub metadata_size: Option<u64>,
}

impl ExtendedHandshake {
    /// The id under which the sender wants to receive extension `name`, if enabled.
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// Decodes the payload of an extended message with id 0.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtendedHandshakeError> {
        let value = bencode::decode_with(payload, &LIMITS)?;
        let root = value
            .as_dict()
            .ok_or(ExtendedHandshakeError::NotADictionary)?;
        let mut hs = ExtendedHandshake::default();
        if let Some(entries) = root.get(b"m").and_then(Value::as_dict) {
            for (name, id) in entries.iter() {
                if hs.m.len() >= MAX_EXTENSIONS {
                    break;
                }
                let (Some(id), Ok(name)) = (
                    id.as_int().and_then(|i| u8::try_from(i).ok()),
                    std::str::from_utf8(name),
                ) else {
                    continue;
                };
                if name.len() <= MAX_EXTENSION_NAME_LEN {
                    // Names are unique in a dictionary (duplicate keys fail to decode).
                    hs.m.entry(name.to_owned()).or_insert(id);
                }
            }
        }
        hs.v = root.get(b"v").and_then(Value::as_bytes).map(|v| {
            let cut = &v[..v.len().min(MAX_CLIENT_NAME_LEN)];
            let mut name = String::from_utf8_lossy(cut).into_owned();
            // Replacement characters can make the string longer than what was cut;
            // trim so the bound holds for what we keep and what we would re-send.
            while name.len() > MAX_CLIENT_NAME_LEN {
                name.pop();
            }
            name
        });
        hs.p = root
            .get(b"p")
            .and_then(Value::as_int)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        hs.reqq = root
            .get(b"reqq")
            .and_then(Value::as_int)
            .and_then(|q| u32::try_from(q).ok())
            .filter(|&q| q != 0);
        hs.yourip = root.get(b"yourip").and_then(Value::as_bytes).and_then(ip);
        hs.ipv4 = root
            .get(b"ipv4")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(Ipv4Addr::from);
        hs.ipv6 = root
            .get(b"ipv6")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Ipv6Addr::from);
        hs.metadata_size = root
            .get(b"metadata_size")
            .and_then(Value::as_int)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n != 0);
        Ok(hs)
    }

    /// Encodes the dictionary with keys in sorted order, as bencode requires.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.dict(|d| {
            if let Some(ip) = self.ipv4 {
                d.bytes(b"ipv4", &ip.octets());
            }
            if let Some(ip) = self.ipv6 {
                d.bytes(b"ipv6", &ip.octets());
            }
            d.entry(b"m", |e| {
                e.dict(|m| {
                    for (name, id) in &self.m {
                        m.int(name.as_bytes(), i64::from(*id));
                    }
                });
            });
            if let Some(n) = self.metadata_size {
                // A size past i64::MAX cannot be real; saturate rather than wrap.
                d.int(b"metadata_size", i64::try_from(n).unwrap_or(i64::MAX));
            }
            if let Some(p) = self.p {
                d.int(b"p", i64::from(p));
            }
            if let Some(q) = self.reqq {
                d.int(b"reqq", i64::from(q));
            }
            if let Some(v) = &self.v {
                d.bytes(b"v", v.as_bytes());
            }
            if let Some(ip) = self.yourip {
                match ip {
                    IpAddr::V4(ip) => d.bytes(b"yourip", &ip.octets()),
                    IpAddr::V6(ip) => d.bytes(b"yourip", &ip.octets()),
                };
            }
        });
        e.into_bytes()
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::from(v6))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_bep10_example() {
        // The example from BEP 10, with the keys as a real libtorrent sends them.
        let payload = b"d1:md11:ut_metadatai3e6:ut_pexi1e11:LT_metadatai0ee13:metadata_sizei31235e1:pi6881e4:reqqi500e1:v13:\xc2\xb5Torrent 1.26:yourip4:\x7f\x00\x00\x01e";
        let hs = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(hs.extension_id(UT_METADATA), Some(3));
        assert_eq!(hs.extension_id(UT_PEX), Some(1));
        assert_eq!(hs.extension_id("LT_metadata"), None);
        assert_eq!(hs.m.get("LT_metadata"), Some(&0));
        assert_eq!(hs.metadata_size, Some(31235));
        assert_eq!(hs.p, Some(6881));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.v.as_deref(), Some("µTorrent 1.2"));
        assert_eq!(hs.yourip, Some(IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn encodes_sorted_keys() {
        let mut hs = ExtendedHandshake {
            v: Some("bitpeer".into()),
            p: Some(6881),
            reqq: Some(500),
            yourip: Some(IpAddr::from([10, 0, 0, 2])),
            metadata_size: Some(1000),
            ..Default::default()
        };
        hs.m.insert(UT_PEX.into(), 2);
        hs.m.insert(UT_METADATA.into(), 1);
        let bytes = hs.encode();
        assert_eq!(
            bytes,
            b"d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei1000e1:pi6881e4:reqqi500e1:v7:bitpeer6:yourip4:\x0a\x00\x00\x02e"
        );
        assert_eq!(ExtendedHandshake::decode(&bytes).unwrap(), hs);
    }

    #[test]
    fn ignores_unknown_keys_and_bad_types() {
        let payload = b"d1:ai1e1:md3:badi300e4:nonei-1e3:str3:abc2:oki7ee1:pi70000e4:reqqi-5e1:v3:\xff\xfeX6:yourip3:abc13:metadata_sizei-1e4:ipv44:\x01\x02\x03\x044:ipv62:xx7:unknownld1:xli1eeeee";
        let hs = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(hs.m.len(), 1);
        assert_eq!(hs.extension_id("ok"), Some(7));
        assert_eq!(hs.p, None);
        assert_eq!(hs.reqq, None);
        assert_eq!(hs.v.as_deref(), Some("\u{fffd}\u{fffd}X"));
        assert_eq!(hs.yourip, None);
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.ipv4, Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(hs.ipv6, None);
    }

    #[test]
    fn bounds_names_and_entries() {
        let mut payload = b"d1:md".to_vec();
        for i in 0..200 {
            let name = format!("ext{i:03}");
            payload.extend_from_slice(format!("{}:{}i1e", name.len(), name).as_bytes());
        }
        let long = "x".repeat(MAX_EXTENSION_NAME_LEN + 1);
        payload.extend_from_slice(format!("{}:{}i1e", long.len(), long).as_bytes());
        payload.extend_from_slice(b"e1:v");
        let v = "y".repeat(1000);
        payload.extend_from_slice(format!("{}:{}", v.len(), v).as_bytes());
        payload.push(b'e');
        let hs = ExtendedHandshake::decode(&payload).unwrap();
        assert_eq!(hs.m.len(), MAX_EXTENSIONS);
        assert!(!hs.m.contains_key(&long));
        assert_eq!(hs.v.map(|v| v.len()), Some(MAX_CLIENT_NAME_LEN));
    }

    #[test]
    fn refuses_non_dictionaries_and_broken_bencode() {
        assert_eq!(
            ExtendedHandshake::decode(b"le"),
            Err(ExtendedHandshakeError::NotADictionary)
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(ExtendedHandshakeError::Bencode(_))
        ));
        assert!(matches!(
            ExtendedHandshake::decode(b"de junk"),
            Err(ExtendedHandshakeError::Bencode(
                bencode::Error::TrailingData(_)
            ))
        ));
    }

    #[test]
    fn ipv6_yourip_round_trips() {
        let hs = ExtendedHandshake {
            yourip: Some("2001:db8::1".parse().unwrap()),
            ipv6: Some("::1".parse().unwrap()),
            ipv4: Some(Ipv4Addr::LOCALHOST),
            ..Default::default()
        };
        assert_eq!(ExtendedHandshake::decode(&hs.encode()).unwrap(), hs);
    }
}
