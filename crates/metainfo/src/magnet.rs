//! Magnet links (BEP 9, with BEP 52's `urn:btmh:` and BEP 53's `so=`).
//!
//! `magnet:?xt=urn:btih:<hex or base32>&xt=urn:btmh:1220<hex>&dn=<name>&tr=<tracker>&ws=<web
//! seed>&x.pe=<host:port>&so=<file indices>`. Parsing is bounded: a link longer than
//! [`MAX_LEN`] is refused, and each list keeps at most [`MAX_ITEMS`] entries.

use crate::hash::{InfoHashV1, InfoHashV2, InfoHashes, from_hex};
use std::fmt;
use std::ops::RangeInclusive;

/// Longest magnet link accepted, in bytes.
pub const MAX_LEN: usize = 64 * 1024;
/// Most trackers, web seeds, peers or `so` ranges kept from one link.
pub const MAX_ITEMS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link (it must start with `magnet:?`)")]
    NotMagnet,
    #[error("the magnet link is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the magnet link has no `xt=urn:btih:` or `xt=urn:btmh:` info-hash")]
    NoInfoHash,
    #[error(
        "bad info-hash `{0}` (expected 40 hex or 32 base32 characters after urn:btih:, or 1220 and 64 hex characters after urn:btmh:)"
    )]
    BadInfoHash(String),
    #[error("bad percent-encoding in `{0}`")]
    BadEncoding(String),
    #[error("bad `so=` file selection `{0}`")]
    BadSelectOnly(String),
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hashes: InfoHashes,
    /// `dn`: the name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: trackers, each its own tier.
    pub trackers: Vec<String>,
    /// `ws`: web seeds (BEP 19).
    pub web_seeds: Vec<String>,
    /// `x.pe`: peer addresses, `host:port`.
    pub peers: Vec<String>,
    /// `so`: indices of the files to download (BEP 53).
    pub select_only: Vec<RangeInclusive<u32>>,
}

impl Magnet {
    pub fn parse(link: &str) -> Result<Self, MagnetError> {
        if link.len() > MAX_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = link
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &link[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let (mut v1, mut v2) = (None, None);
        let mut m = Magnet {
            info_hashes: InfoHashes::v1(InfoHashV1([0; 20])),
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
            select_only: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw)?;
            // BEP 12-style numbered keys (`tr.1`, `xt.2`) mean the same as the plain ones.
            let key = key.split_once('.').map_or(key, |(k, n)| {
                if n.bytes().all(|b| b.is_ascii_digit()) {
                    k
                } else {
                    key
                }
            });
            match key {
                "xt" => {
                    if let Some(h) = strip_prefix_ci(&value, "urn:btih:") {
                        let hash = match h.len() {
                            40 => InfoHashV1::from_hex(h),
                            32 => InfoHashV1::from_base32(h),
                            _ => None,
                        };
                        v1 = Some(hash.ok_or_else(|| MagnetError::BadInfoHash(value.clone()))?);
                    } else if let Some(h) = strip_prefix_ci(&value, "urn:btmh:") {
                        // A multihash: 0x12 = sha2-256, 0x20 = 32 bytes.
                        let hash = strip_prefix_ci(h, "1220")
                            .and_then(from_hex::<32>)
                            .ok_or_else(|| MagnetError::BadInfoHash(value.clone()))?;
                        v2 = Some(InfoHashV2(hash));
                    }
                }
                "dn" => m.display_name = Some(value),
                "tr" => push_bounded(&mut m.trackers, value),
                "ws" => push_bounded(&mut m.web_seeds, value),
                "x.pe" => push_bounded(&mut m.peers, value),
                "so" => m.select_only = parse_select_only(&value)?,
                _ => {}
            }
        }
        m.info_hashes = InfoHashes::from_parts(v1, v2).ok_or(MagnetError::NoInfoHash)?;
        Ok(m)
    }
}

impl fmt::Display for Magnet {
    /// The canonical form: v1 hash in hex, then v2 as a multihash, then the other fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("magnet:?")?;
        let mut sep = "";
        if let Some(v1) = self.info_hashes.get_v1() {
            write!(f, "xt=urn:btih:{}", v1.to_hex())?;
            sep = "&";
        }
        if let Some(v2) = self.info_hashes.get_v2() {
            write!(f, "{sep}xt=urn:btmh:1220{}", v2.to_hex())?;
        }
        if let Some(dn) = &self.display_name {
            write!(f, "&dn={}", percent_encode(dn))?;
        }
        for (key, list) in [
            ("tr", &self.trackers),
            ("ws", &self.web_seeds),
            ("x.pe", &self.peers),
        ] {
            for v in list {
                write!(f, "&{key}={}", percent_encode(v))?;
            }
        }
        if !self.select_only.is_empty() {
            let parts: Vec<String> = self
                .select_only
                .iter()
                .map(|r| {
                    if r.start() == r.end() {
                        r.start().to_string()
                    } else {
                        format!("{}-{}", r.start(), r.end())
                    }
                })
                .collect();
            write!(f, "&so={}", parts.join(","))?;
        }
        Ok(())
    }
}

fn push_bounded(list: &mut Vec<String>, v: String) {
    if list.len() < MAX_ITEMS && !v.is_empty() && !list.contains(&v) {
        list.push(v);
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// BEP 53: `so=0,2,4-6`.
fn parse_select_only(s: &str) -> Result<Vec<RangeInclusive<u32>>, MagnetError> {
    let bad = || MagnetError::BadSelectOnly(s.to_string());
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_ITEMS {
            return Err(bad());
        }
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        out.push(a..=b);
    }
    Ok(out)
}

/// Decode `%XX` escapes and `+` (a space in query strings, as libtorrent reads it).
fn percent_decode(s: &str) -> Result<String, MagnetError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| MagnetError::BadEncoding(s.to_string()))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| MagnetError::BadEncoding(s.to_string()))
}

/// Escape everything but RFC 3986 unreserved characters and the few that are safe and
/// common in URLs inside a query value (`:`, `/`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hex_and_base32() {
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        let b = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(a.info_hashes, b.info_hashes);
        assert_eq!(a.info_hashes.get_v1().unwrap().to_hex(), HEX);
        assert_eq!(a.to_string(), format!("magnet:?xt=urn:btih:{HEX}"));
    }

    #[test]
    fn parses_every_field() {
        let v2 = "a".repeat(64);
        let link = format!(
            "MAGNET:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{v2}&dn=My+File%20%C3%A9&tr=udp%3A%2F%2Ft.example%3A80&tr.1=http://x/ann&ws=http://seed/&x.pe=127.0.0.1:6881&x.pe=[::1]:51413&so=0,2,4-6&foo=bar"
        );
        let m = Magnet::parse(&link).unwrap();
        assert_eq!(m.info_hashes.get_v2().unwrap().to_hex(), v2);
        assert_eq!(m.display_name.as_deref(), Some("My File é"));
        assert_eq!(m.trackers, ["udp://t.example:80", "http://x/ann"]);
        assert_eq!(m.web_seeds, ["http://seed/"]);
        assert_eq!(m.peers, ["127.0.0.1:6881", "[::1]:51413"]);
        assert_eq!(m.select_only, vec![0..=0, 2..=2, 4..=6]);
        // Formatting and parsing again gives the same link.
        let again = Magnet::parse(&m.to_string()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn v2_only() {
        let link = format!("magnet:?xt=urn:btmh:1220{}", "0f".repeat(32));
        let m = Magnet::parse(&link).unwrap();
        assert!(m.info_hashes.get_v1().is_none());
        assert_eq!(m.to_string(), link);
    }

    #[test]
    fn rejects_bad_links() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("magnet:?dn=x"), Err(MagnetError::NoInfoHash));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:1234"),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btmh:1114{}", "0".repeat(64))),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%G1")),
            Err(MagnetError::BadEncoding(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%")),
            Err(MagnetError::BadEncoding(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so=5-2")),
            Err(MagnetError::BadSelectOnly(_))
        ));
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(MAX_LEN));
        assert_eq!(Magnet::parse(&long), Err(MagnetError::TooLong));
        // A multi-byte character where the scheme would be must not panic.
        assert_eq!(Magnet::parse("magnet:é?xt"), Err(MagnetError::NotMagnet));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(s in "\\PC{0,200}") {
            let _ = Magnet::parse(&s);
            let _ = Magnet::parse(&format!("magnet:?{s}"));
        }
    }
}
