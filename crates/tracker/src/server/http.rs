//! HTTP tracker requests and answers, sans-IO: the raw query string of `GET /announce` and
//! `GET /scrape` in, a bencoded body out (BEP 3; compact peers BEP 23, `peers6` BEP 7,
//! scrape BEP 48).
//!
//! `info_hash` and `peer_id` are 20 raw bytes, percent-encoded, so the query is decoded here
//! byte by byte rather than as UTF-8 form data. A malformed request gets a bencoded
//! `failure reason` with status 200, as real trackers answer.
//!
//! The peer's IP is the address the request came from. The `ip=` parameter is ignored:
//! believing it would let anyone point a swarm at a third party's address.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bencode::Encoder;

use super::state::{Announced, Family, TrackerState};
use crate::proto::{AnnounceEvent, AnnounceRequest, ScrapeEntry, encode_compact_peers};

/// Longest query string accepted (a real announce is about 250 bytes; a scrape of
/// [`MAX_HTTP_SCRAPE`] hashes about 7 KiB).
pub const MAX_QUERY: usize = 8 * 1024;
/// Most `key=value` pairs in one query.
pub const MAX_PARAMS: usize = 128;
/// Most info-hashes in one HTTP scrape.
pub const MAX_HTTP_SCRAPE: usize = 100;

/// A parsed `GET /announce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnnounce {
    pub request: AnnounceRequest,
    /// `compact=1` (the default here): peers as 6/18-byte strings.
    pub compact: bool,
    /// `no_peer_id=1`: leave `peer id` out of non-compact peer dicts.
    pub no_peer_id: bool,
}

/// Why a query was refused; the text is the `failure reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("request too long")]
    TooLong,
    #[error("too many parameters")]
    TooManyParams,
    #[error("missing info_hash")]
    MissingInfoHash,
    #[error("invalid info_hash: must be 20 bytes")]
    BadInfoHash,
    #[error("missing peer_id")]
    MissingPeerId,
    #[error("invalid peer_id: must be 20 bytes")]
    BadPeerId,
    #[error("missing port")]
    MissingPort,
    #[error("invalid port")]
    BadPort,
    #[error("missing left")]
    MissingLeft,
    #[error("invalid number")]
    BadNumber,
    #[error("invalid percent-encoding")]
    BadEncoding,
    #[error("too many info_hash values")]
    TooManyHashes,
    #[error("full scrape is not supported; name an info_hash")]
    FullScrape,
}

/// Percent-decodes `s` into raw bytes (`+` is kept as is: clients escape every byte of a
/// binary value, and a literal `+` in one would otherwise be corrupted).
fn percent_decode(s: &[u8]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(QueryError::BadEncoding),
            }
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The `key=value` pairs of a raw query, keys and values percent-decoded.
/// A decoded `key=value` pair.
type Pair = (Vec<u8>, Vec<u8>);

fn pairs(query: &[u8]) -> Result<Vec<Pair>, QueryError> {
    if query.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    let mut out = Vec::new();
    for part in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PARAMS {
            return Err(QueryError::TooManyParams);
        }
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn number(v: &[u8]) -> Result<u64, QueryError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(QueryError::BadNumber)
}

/// Parses the raw query string of an announce (after the `?`).
pub fn parse_announce_query(query: &[u8]) -> Result<HttpAnnounce, QueryError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let (mut uploaded, mut downloaded, mut left) = (0, 0, None);
    let mut event = AnnounceEvent::None;
    let mut numwant = None;
    let mut key = 0u32;
    let mut compact = true;
    let mut no_peer_id = false;
    for (k, v) in pairs(query)? {
        match k.as_slice() {
            b"info_hash" => {
                info_hash =
                    Some(<[u8; 20]>::try_from(v.as_slice()).map_err(|_| QueryError::BadInfoHash)?)
            }
            b"peer_id" => {
                peer_id =
                    Some(<[u8; 20]>::try_from(v.as_slice()).map_err(|_| QueryError::BadPeerId)?)
            }
            b"port" => {
                let p = number(&v).map_err(|_| QueryError::BadPort)?;
                port = Some(
                    u16::try_from(p)
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or(QueryError::BadPort)?,
                );
            }
            b"uploaded" => uploaded = number(&v)?,
            b"downloaded" => downloaded = number(&v)?,
            b"left" => left = Some(number(&v)?),
            b"event" => event = AnnounceEvent::from_http(&v),
            // A bad numwant is not worth refusing the announce for.
            b"numwant" | b"num_want" => {
                numwant = number(&v).ok().map(|n| n.min(u32::MAX as u64) as u32)
            }
            b"compact" => compact = v.as_slice() != b"0",
            b"no_peer_id" => no_peer_id = v.as_slice() == b"1",
            b"key" => {
                key = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| u32::from_str_radix(s, 16).ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    let info_hash = info_hash.ok_or(QueryError::MissingInfoHash)?;
    let peer_id = peer_id.ok_or(QueryError::MissingPeerId)?;
    let port = port.ok_or(QueryError::MissingPort)?;
    let left = left.ok_or(QueryError::MissingLeft)?;
    Ok(HttpAnnounce {
        request: AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded,
            downloaded,
            left,
            event,
            numwant,
            key,
        },
        compact,
        no_peer_id,
    })
}

/// Parses the raw query string of a scrape: one or more `info_hash=`.
pub fn parse_scrape_query(query: &[u8]) -> Result<Vec<[u8; 20]>, QueryError> {
    let mut hashes = Vec::new();
    for (k, v) in pairs(query)? {
        if k == b"info_hash" {
            if hashes.len() == MAX_HTTP_SCRAPE {
                return Err(QueryError::TooManyHashes);
            }
            hashes.push(<[u8; 20]>::try_from(v.as_slice()).map_err(|_| QueryError::BadInfoHash)?);
        }
    }
    if hashes.is_empty() {
        return Err(QueryError::FullScrape);
    }
    Ok(hashes)
}

/// `d14:failure reason...e`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut e = Encoder::new();
    e.dict(|d| {
        d.bytes(b"failure reason", reason.as_bytes());
    });
    e.into_bytes()
}

/// The bencoded answer to an accepted announce.
pub fn encode_announce(a: &Announced, compact: bool, no_peer_id: bool) -> Vec<u8> {
    let mut e = Encoder::new();
    e.dict(|d| {
        d.int(b"interval", a.interval as i64);
        d.int(b"min interval", a.min_interval as i64);
        d.int(b"complete", a.complete as i64);
        d.int(b"incomplete", a.incomplete as i64);
        if compact {
            let addrs: Vec<SocketAddr> = a.peers.iter().map(|p| p.addr).collect();
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            encode_compact_peers(&addrs, &mut v4, &mut v6);
            d.bytes(b"peers", &v4);
            if !v6.is_empty() {
                d.bytes(b"peers6", &v6);
            }
        } else {
            d.entry(b"peers", |l| {
                l.list(|l| {
                    for p in &a.peers {
                        l.dict(|pd| {
                            pd.bytes(b"ip", p.addr.ip().to_string().as_bytes());
                            pd.int(b"port", p.addr.port() as i64);
                            if !no_peer_id {
                                pd.bytes(b"peer id", &p.peer_id);
                            }
                        });
                    }
                });
            });
        }
    });
    e.into_bytes()
}

/// The bencoded answer to a scrape: `files` maps each raw info-hash to its counts.
pub fn encode_scrape(hashes: &[[u8; 20]], entries: &[ScrapeEntry]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.dict(|d| {
        d.entry(b"files", |f| {
            f.dict(|fd| {
                for (h, s) in hashes.iter().zip(entries) {
                    fd.entry(h, |x| {
                        x.dict(|sd| {
                            sd.int(b"complete", s.complete as i64);
                            sd.int(b"downloaded", s.downloaded as i64);
                            sd.int(b"incomplete", s.incomplete as i64);
                        });
                    });
                }
            });
        });
    });
    e.into_bytes()
}

/// Which tracker endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Announce,
    Scrape,
}

/// `/announce` and `/scrape` (also under a prefix, as in `/x/announce`).
pub fn endpoint(path: &str) -> Option<Endpoint> {
    if path == "/announce" || path.ends_with("/announce") {
        Some(Endpoint::Announce)
    } else if path == "/scrape" || path.ends_with("/scrape") {
        Some(Endpoint::Scrape)
    } else {
        None
    }
}

/// Answers one request to `endpoint` with raw `query` from IP `source`: always a bencoded
/// body (a `failure reason` when refused).
pub fn handle(
    state: &mut TrackerState,
    now: Instant,
    endpoint: Endpoint,
    query: &[u8],
    source: IpAddr,
) -> Vec<u8> {
    match endpoint {
        Endpoint::Announce => match parse_announce_query(query) {
            Ok(a) => match state.announce_peers(now, &a.request, source, Family::Any) {
                Ok(res) => encode_announce(&res, a.compact, a.no_peer_id),
                Err(e) => encode_failure(&e.to_string()),
            },
            Err(e) => encode_failure(&e.to_string()),
        },
        Endpoint::Scrape => match parse_scrape_query(query) {
            Ok(hashes) => encode_scrape(&hashes, &state.scrape(now, &hashes)),
            Err(e) => encode_failure(&e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::Config;
    use proptest::prelude::*;

    fn esc(b: &[u8]) -> String {
        b.iter().map(|b| format!("%{b:02X}")).collect()
    }

    fn announce_query(ih: &[u8], port: &str) -> String {
        format!(
            "info_hash={}&peer_id=-XX0001-abcdefghijkl&port={port}&uploaded=0&downloaded=0&left=5&event=started&compact=1",
            esc(ih)
        )
    }

    #[test]
    fn parses_a_real_announce() {
        let ih: Vec<u8> = (0..20).collect();
        let a = parse_announce_query(announce_query(&ih, "6881").as_bytes()).unwrap();
        assert_eq!(a.request.info_hash.as_slice(), ih.as_slice());
        assert_eq!(&a.request.peer_id, b"-XX0001-abcdefghijkl");
        assert_eq!(a.request.port, 6881);
        assert_eq!(a.request.left, 5);
        assert_eq!(a.request.event, AnnounceEvent::Started);
        assert!(a.compact);
        // Unreserved bytes may come unescaped.
        let q = "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&compact=0&no_peer_id=1&numwant=3";
        let a = parse_announce_query(q.as_bytes()).unwrap();
        assert_eq!(&a.request.info_hash, b"aaaaaaaaaaaaaaaaaaaa");
        assert!(!a.compact && a.no_peer_id);
        assert_eq!(a.request.numwant, Some(3));
    }

    #[test]
    fn refuses_malformed_announces() {
        let ih = [7u8; 20];
        let bad = |q: &str| parse_announce_query(q.as_bytes()).unwrap_err();
        assert_eq!(
            bad(&announce_query(&ih[..19], "1")),
            QueryError::BadInfoHash
        );
        assert_eq!(bad(&announce_query(&ih, "0")), QueryError::BadPort);
        assert_eq!(bad(&announce_query(&ih, "65536")), QueryError::BadPort);
        assert_eq!(bad(&announce_query(&ih, "x")), QueryError::BadPort);
        assert_eq!(
            bad("peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0"),
            QueryError::MissingInfoHash
        );
        assert_eq!(
            bad(&format!("info_hash={}%2", esc(&ih))),
            QueryError::BadEncoding
        );
        assert_eq!(bad(&"a=b&".repeat(3000)), QueryError::TooLong);
        assert_eq!(bad(&"a&".repeat(200)), QueryError::TooManyParams);
    }

    #[test]
    fn scrape_takes_repeated_hashes() {
        let q = format!("info_hash={}&info_hash={}", esc(&[1; 20]), esc(&[2; 20]));
        assert_eq!(
            parse_scrape_query(q.as_bytes()).unwrap(),
            vec![[1; 20], [2; 20]]
        );
        assert_eq!(parse_scrape_query(b""), Err(QueryError::FullScrape));
        let many = format!("info_hash={}&", esc(&[1; 20])).repeat(101);
        assert_eq!(
            parse_scrape_query(many.as_bytes()),
            Err(QueryError::TooManyHashes)
        );
    }

    #[test]
    fn answers_in_bencode() {
        let mut t = TrackerState::new(Config::default());
        let now = Instant::now();
        let ih = [9u8; 20];
        let q1 = announce_query(&ih, "1111");
        let body = handle(
            &mut t,
            now,
            Endpoint::Announce,
            q1.as_bytes(),
            "2001:db8::5".parse().unwrap(),
        );
        let v = bencode::decode(&body).unwrap();
        assert_eq!(
            v.as_dict().unwrap().get(b"peers").unwrap().as_bytes(),
            Some(&b""[..])
        );
        let q2 = announce_query(&ih, "2222").replace("abcdefghijkl", "abcdefghijkm");
        let body = handle(
            &mut t,
            now,
            Endpoint::Announce,
            q2.as_bytes(),
            "127.0.0.1".parse().unwrap(),
        );
        let v = bencode::decode(&body).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get(b"interval").unwrap().as_int(), Some(1800));
        assert_eq!(d.get(b"incomplete").unwrap().as_int(), Some(2));
        let mut v6 = [0u8; 18];
        v6[..16].copy_from_slice(
            &"2001:db8::5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6[16..].copy_from_slice(&1111u16.to_be_bytes());
        assert_eq!(d.get(b"peers6").unwrap().as_bytes(), Some(&v6[..]));
        let q3 = q2.replace("compact=1", "compact=0");
        let body = handle(
            &mut t,
            now,
            Endpoint::Announce,
            q3.as_bytes(),
            "127.0.0.1".parse().unwrap(),
        );
        let v = bencode::decode(&body).unwrap();
        let peers = v
            .as_dict()
            .unwrap()
            .get(b"peers")
            .unwrap()
            .as_list()
            .unwrap();
        let p = peers[0].as_dict().unwrap();
        assert_eq!(p.get(b"ip").unwrap().as_bytes(), Some(&b"2001:db8::5"[..]));
        assert_eq!(p.get(b"port").unwrap().as_int(), Some(1111));
        assert_eq!(
            p.get(b"peer id").unwrap().as_bytes(),
            Some(&b"-XX0001-abcdefghijkl"[..])
        );
        let q = format!("info_hash={}", esc(&ih));
        let body = handle(
            &mut t,
            now,
            Endpoint::Scrape,
            q.as_bytes(),
            "127.0.0.1".parse().unwrap(),
        );
        let v = bencode::decode(&body).unwrap();
        let files = v
            .as_dict()
            .unwrap()
            .get(b"files")
            .unwrap()
            .as_dict()
            .unwrap();
        let s = files.get(&ih).unwrap().as_dict().unwrap();
        assert_eq!(s.get(b"incomplete").unwrap().as_int(), Some(2));
        let body = handle(
            &mut t,
            now,
            Endpoint::Announce,
            b"port=1",
            "127.0.0.1".parse().unwrap(),
        );
        assert_eq!(body, b"d14:failure reason17:missing info_hashe");
    }

    proptest! {
        #[test]
        fn query_parsing_never_panics(q in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_announce_query(&q);
            let _ = parse_scrape_query(&q);
        }

        #[test]
        fn structured_queries_never_panic(
            parts in proptest::collection::vec(
                (prop::sample::select(vec!["info_hash", "peer_id", "port", "left", "numwant", "event", "compact", "%", "x"]),
                 proptest::collection::vec(any::<u8>(), 0..30)),
                0..12)
        ) {
            let q: Vec<u8> = parts.iter().flat_map(|(k, v)| {
                let mut s = k.as_bytes().to_vec();
                s.push(b'=');
                s.extend_from_slice(esc(v).as_bytes());
                s.push(b'&');
                s
            }).collect();
            let mut t = TrackerState::new(Config::default());
            let body = handle(&mut t, Instant::now(), Endpoint::Announce, &q, "127.0.0.1".parse().unwrap());
            prop_assert!(bencode::decode(&body).is_ok());
        }
    }
}
