//! HTTP tracker messages, without the HTTP: building announce and scrape URLs and reading the
//! bencoded answers.
//!
//! - Announce (BEP 3): `GET announce?info_hash=..&peer_id=..&port=..` with `compact=1`
//!   (BEP 23). The answer carries `peers` as a compact string of 6-byte entries or, from old
//!   trackers, as a list of `{ip, port}` dictionaries, and `peers6` with 18-byte entries
//!   (BEP 7). A `failure reason` replaces everything else.
//! - Scrape (BEP 48): the announce URL with its last path segment `announce` turned into
//!   `scrape`; the answer maps each info-hash to its seeder/leecher/download counts.
//!
//! Everything here is a pure function so it can be unit tested, property tested and fuzzed.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bencode::{Limits, Value};

use super::TrackerError;
use crate::proto::{
    AnnounceRequest, AnnounceResponse, ScrapeEntry, decode_compact_v4, decode_compact_v6,
};

/// The interval we assume when a tracker does not give one (libtorrent does the same).
const DEFAULT_INTERVAL: u32 = 1800;

/// Bencode bounds for a tracker answer: no real answer nests deeper than a list of peer
/// dictionaries, and the body itself is already capped by the caller.
fn limits(body_len: usize) -> Limits {
    Limits {
        max_input: body_len.max(1),
        max_depth: 16,
        max_string: body_len.max(1),
        max_items: 200_000,
    }
}

/// Percent-encode raw bytes for a query string: unreserved characters stay, the rest
/// become `%XX`. Info-hashes and peer ids are binary, so this works byte by byte.
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `?` to start a query, `&` when the URL already has one (private trackers put a passkey
/// there).
fn query_separator(url: &str) -> char {
    if url.contains('?') { '&' } else { '?' }
}

/// The URL without its `#fragment`, after which nothing may be appended.
fn without_fragment(url: &str) -> &str {
    url.split('#').next().unwrap_or(url)
}

/// The full announce URL for `req` on the tracker at `announce`.
pub fn announce_url(announce: &str, req: &AnnounceRequest, tracker_id: Option<&[u8]>) -> String {
    let announce = without_fragment(announce);
    let mut url = String::with_capacity(announce.len() + 256);
    url.push_str(announce);
    url.push(query_separator(announce));
    url.push_str("info_hash=");
    percent_encode(&req.info_hash, &mut url);
    url.push_str("&peer_id=");
    percent_encode(&req.peer_id, &mut url);
    let _ = write!(
        url,
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        req.port, req.uploaded, req.downloaded, req.left
    );
    if let Some(n) = req.numwant {
        let _ = write!(url, "&numwant={n}");
    }
    let _ = write!(url, "&key={:08x}", req.key);
    if let Some(event) = req.event.as_http() {
        let _ = write!(url, "&event={event}");
    }
    if let Some(id) = tracker_id {
        url.push_str("&trackerid=");
        percent_encode(id, &mut url);
    }
    url
}

/// The scrape URL of an announce URL (BEP 48): the last path segment must start with
/// `announce`, which becomes `scrape` (`/announce.php` becomes `/scrape.php`). Trackers
/// whose URL does not follow that convention do not support scrape.
pub fn scrape_base(announce: &str) -> Result<String, TrackerError> {
    let announce = without_fragment(announce);
    let path_end = announce.find('?').unwrap_or(announce.len());
    let (path, query) = announce.split_at(path_end);
    let slash = path.rfind('/').ok_or(TrackerError::ScrapeUnsupported)?;
    let segment = &path[slash + 1..];
    let rest = segment
        .strip_prefix("announce")
        .ok_or(TrackerError::ScrapeUnsupported)?;
    Ok(format!("{}scrape{rest}{query}", &path[..=slash]))
}

/// The full scrape URL asking about `hashes`.
pub fn scrape_url(announce: &str, hashes: &[[u8; 20]]) -> Result<String, TrackerError> {
    let mut url = scrape_base(announce)?;
    for (i, hash) in hashes.iter().enumerate() {
        url.push(if i == 0 { query_separator(&url) } else { '&' });
        url.push_str("info_hash=");
        percent_encode(hash, &mut url);
    }
    Ok(url)
}

fn int_u32(v: Option<&Value<'_>>) -> Option<u32> {
    v?.as_int().map(|i| i.clamp(0, u32::MAX as i64) as u32)
}

fn text(v: Option<&Value<'_>>) -> Option<String> {
    v?.as_bytes()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(1024)]).into_owned())
}

/// A peer address worth dialling: not port 0, not an unspecified, multicast or broadcast
/// address.
pub fn is_routable(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

/// Keeps routable, distinct peers, at most `max`.
pub(crate) struct PeerSink {
    peers: Vec<SocketAddr>,
    seen: HashSet<SocketAddr>,
    max: usize,
}

impl PeerSink {
    pub(crate) fn new(max: usize) -> Self {
        PeerSink {
            peers: Vec::new(),
            seen: HashSet::new(),
            max,
        }
    }

    pub(crate) fn push(&mut self, addr: SocketAddr) {
        if self.peers.len() < self.max && is_routable(&addr) && self.seen.insert(addr) {
            self.peers.push(addr);
        }
    }

    pub(crate) fn into_vec(self) -> Vec<SocketAddr> {
        self.peers
    }
}

/// A tracker's `failure reason`, if the body is a bencoded dictionary holding one.
pub fn failure_reason(body: &[u8]) -> Option<String> {
    let root = bencode::decode_with(body, &limits(body.len())).ok()?;
    text(root.as_dict()?.get(b"failure reason"))
}

/// Read an announce answer, keeping at most `max_peers` routable peers.
pub fn parse_announce(body: &[u8], max_peers: usize) -> Result<AnnounceResponse, TrackerError> {
    let root = bencode::decode_with(body, &limits(body.len()))?;
    let dict = root
        .as_dict()
        .ok_or(TrackerError::Malformed("answer is not a dictionary"))?;
    if let Some(reason) = dict.get(b"failure reason") {
        return Err(TrackerError::Failure(
            text(Some(reason)).unwrap_or_else(|| "(failure reason is not a string)".into()),
        ));
    }
    let peers_v = dict.get(b"peers");
    let peers6_v = dict.get(b"peers6");
    let interval = int_u32(dict.get(b"interval"));
    if interval.is_none() && peers_v.is_none() && peers6_v.is_none() {
        return Err(TrackerError::Malformed(
            "answer has no interval and no peers",
        ));
    }

    let mut sink = PeerSink::new(max_peers);
    match peers_v.map(|v| v.kind()) {
        Some(bencode::Kind::Bytes(b)) => decode_compact_v4(b).for_each(|a| sink.push(a)),
        Some(bencode::Kind::List(list)) => {
            for entry in list {
                if let Some(addr) = dict_peer(entry) {
                    sink.push(addr);
                }
            }
        }
        Some(_) => {
            return Err(TrackerError::Malformed(
                "peers is neither a string nor a list",
            ));
        }
        None => {}
    }
    if let Some(v) = peers6_v {
        let b = v
            .as_bytes()
            .ok_or(TrackerError::Malformed("peers6 is not a string"))?;
        decode_compact_v6(b).for_each(|a| sink.push(a));
    }

    Ok(AnnounceResponse {
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        min_interval: int_u32(dict.get(b"min interval")),
        complete: int_u32(dict.get(b"complete")),
        incomplete: int_u32(dict.get(b"incomplete")),
        peers: sink.into_vec(),
        warning: text(dict.get(b"warning message")),
        tracker_id: dict
            .get(b"tracker id")
            .and_then(|v| v.as_bytes())
            .filter(|b| b.len() <= 1024)
            .map(<[u8]>::to_vec),
    })
}

/// One `{ip, port}` entry of a non-compact peer list. Host names are not resolved: a
/// tracker has no business sending them, and resolving them would let it aim us anywhere.
fn dict_peer(entry: &Value<'_>) -> Option<SocketAddr> {
    let d = entry.as_dict()?;
    let ip: IpAddr = d.get(b"ip")?.as_str()?.trim().parse().ok()?;
    let port = u16::try_from(d.get(b"port")?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Read a scrape answer: one entry per asked hash, in the order asked; a hash the tracker
/// does not know gets zero counts.
pub fn parse_scrape(body: &[u8], hashes: &[[u8; 20]]) -> Result<Vec<ScrapeEntry>, TrackerError> {
    let root = bencode::decode_with(body, &limits(body.len()))?;
    let dict = root
        .as_dict()
        .ok_or(TrackerError::Malformed("answer is not a dictionary"))?;
    if let Some(reason) = dict.get(b"failure reason") {
        return Err(TrackerError::Failure(
            text(Some(reason)).unwrap_or_else(|| "(failure reason is not a string)".into()),
        ));
    }
    let files = dict
        .get(b"files")
        .and_then(|f| f.as_dict())
        .ok_or(TrackerError::Malformed(
            "scrape answer has no files dictionary",
        ))?;
    Ok(hashes
        .iter()
        .map(|h| {
            files
                .get(h)
                .and_then(|e| e.as_dict())
                .map(|e| ScrapeEntry {
                    complete: int_u32(e.get(b"complete")).unwrap_or(0),
                    downloaded: int_u32(e.get(b"downloaded")).unwrap_or(0),
                    incomplete: int_u32(e.get(b"incomplete")).unwrap_or(0),
                })
                .unwrap_or_default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AnnounceEvent;
    use proptest::prelude::*;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: *b"\x00\x01abc~-._ \xff/+?&=%\x12\x34\x56",
            peer_id: *b"-BP0001-012345678901",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: AnnounceEvent::Started,
            numwant: Some(50),
            key: 0xdead_beef,
        }
    }

    #[test]
    fn announce_url_encodes_raw_bytes() {
        let url = announce_url("http://t.example/announce", &request(), None);
        assert_eq!(
            url,
            "http://t.example/announce?info_hash=%00%01abc~-._%20%FF%2F%2B%3F%26%3D%25%124V\
             &peer_id=-BP0001-012345678901&port=6881&uploaded=1&downloaded=2&left=3&compact=1\
             &numwant=50&key=deadbeef&event=started"
        );
    }

    #[test]
    fn announce_url_keeps_passkey_and_sends_tracker_id() {
        let mut req = request();
        req.event = AnnounceEvent::None;
        req.numwant = None;
        let url = announce_url(
            "https://t.example/a/announce?passkey=xyz",
            &req,
            Some(b"id 1"),
        );
        assert!(url.starts_with("https://t.example/a/announce?passkey=xyz&info_hash="));
        assert!(!url.contains("event="));
        assert!(!url.contains("numwant="));
        assert!(url.ends_with("&trackerid=id%201"));
    }

    #[test]
    fn scrape_urls() {
        assert_eq!(
            scrape_base("http://t.example/announce").unwrap(),
            "http://t.example/scrape"
        );
        assert_eq!(
            scrape_base("http://t.example/x/announce.php?pk=1").unwrap(),
            "http://t.example/x/scrape.php?pk=1"
        );
        for bad in [
            "http://t.example/a",
            "http://t.example/announce/x",
            "http://t.example/x%064announce",
        ] {
            assert!(
                matches!(scrape_base(bad), Err(TrackerError::ScrapeUnsupported)),
                "{bad}"
            );
        }
        let url = scrape_url("http://t.example/announce?pk=1", &[[0xaa; 20], [b'a'; 20]]).unwrap();
        assert_eq!(
            url,
            format!(
                "http://t.example/scrape?pk=1&info_hash={}&info_hash={}",
                "%AA".repeat(20),
                "a".repeat(20)
            )
        );
    }

    #[test]
    fn compact_and_ipv6_peers() {
        let mut body =
            b"d8:completei5e10:incompletei7e8:intervali900e12:min intervali60e5:peers18:".to_vec();
        body.extend_from_slice(&[1, 2, 3, 4, 0x1a, 0xe1]);
        body.extend_from_slice(&[0, 0, 0, 0, 0x1a, 0xe1]); // unspecified: dropped
        body.extend_from_slice(&[5, 6, 7, 8, 0, 0]); // port 0: dropped
        body.extend_from_slice(b"6:peers618:");
        body.extend_from_slice(&[
            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80,
        ]);
        body.extend_from_slice(b"10:tracker id3:abc15:warning message4:slowe");
        let r = parse_announce(&body, 100).unwrap();
        assert_eq!(r.interval, 900);
        assert_eq!(r.min_interval, Some(60));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(7)));
        assert_eq!(
            r.peers,
            vec![
                "1.2.3.4:6881".parse().unwrap(),
                "[2001:db8::1]:80".parse().unwrap()
            ]
        );
        assert_eq!(r.tracker_id.as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.warning.as_deref(), Some("slow"));
    }

    #[test]
    fn dictionary_peers() {
        let body = b"d8:intervali60e5:peersld2:ip7:1.2.3.47:peer id20:xxxxxxxxxxxxxxxxxxxx4:porti80eed2:ip11:example.org4:porti80eed2:ip3:::14:porti70000eed2:ip3:::14:porti81eeee";
        let r = parse_announce(body, 100).unwrap();
        assert_eq!(
            r.peers,
            vec!["1.2.3.4:80".parse().unwrap(), "[::1]:81".parse().unwrap()]
        );
    }

    #[test]
    fn peers_are_capped_and_deduplicated() {
        let mut body = b"d8:intervali60e5:peers600:".to_vec();
        for i in 0..100u8 {
            body.extend_from_slice(&[10, 0, i / 2, 1, 0, 1]);
        }
        body.push(b'e');
        assert_eq!(parse_announce(&body, 1000).unwrap().peers.len(), 50);
        assert_eq!(parse_announce(&body, 7).unwrap().peers.len(), 7);
    }

    #[test]
    fn failure_reason_is_an_error() {
        let body = b"d14:failure reason17:torrent not founde";
        match parse_announce(body, 10) {
            Err(TrackerError::Failure(t)) => assert_eq!(t, "torrent not found"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_scrape(body, &[]),
            Err(TrackerError::Failure(_))
        ));
        assert_eq!(failure_reason(body).as_deref(), Some("torrent not found"));
    }

    #[test]
    fn garbage_is_an_error() {
        for body in [
            &b"<html>502</html>"[..],
            b"",
            b"le",
            b"d8:intervali5e",
            b"de",
        ] {
            assert!(parse_announce(body, 10).is_err(), "{body:?}");
        }
        assert!(matches!(
            parse_announce(b"d5:peersi3ee", 10),
            Err(TrackerError::Malformed(_))
        ));
    }

    #[test]
    fn scrape_answers() {
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&[7; 20]);
        body.extend_from_slice(b"d8:completei3e10:downloadedi9e10:incompletei4eeee");
        let r = parse_scrape(&body, &[[1; 20], [7; 20]]).unwrap();
        assert_eq!(r[0], ScrapeEntry::default());
        assert_eq!(
            r[1],
            ScrapeEntry {
                complete: 3,
                downloaded: 9,
                incomplete: 4
            }
        );
        assert!(parse_scrape(b"d4:fileli1eee", &[[1; 20]]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_announce(&body, 50);
            let _ = parse_scrape(&body, &[[0; 20]]);
            let _ = failure_reason(&body);
        }

        #[test]
        fn bencode_shaped_input_never_panics(
            parts in proptest::collection::vec(prop_oneof![
                Just(&b"d"[..]), Just(&b"l"[..]), Just(&b"e"[..]), Just(&b"i-1e"[..]),
                Just(&b"i99999999999e"[..]), Just(&b"5:peers"[..]), Just(&b"6:peers6"[..]),
                Just(&b"8:interval"[..]), Just(&b"2:ip"[..]), Just(&b"4:port"[..]),
                Just(&b"7:1.2.3.4"[..]), Just(&b"6:abcdef"[..]), Just(&b"14:failure reason"[..]),
                Just(&b"5:files"[..]), Just(&b"20:aaaaaaaaaaaaaaaaaaaa"[..]),
            ], 0..40)
        ) {
            let body = parts.concat();
            let _ = parse_announce(&body, 50);
            let _ = parse_scrape(&body, &[*b"aaaaaaaaaaaaaaaaaaaa"]);
        }

        #[test]
        fn urls_never_panic(announce in ".{0,40}", hash in any::<[u8; 20]>()) {
            let _ = scrape_url(&announce, &[hash]);
            let mut req = request();
            req.info_hash = hash;
            let url = announce_url(&announce, &req, Some(&hash));
            prop_assert!(url.is_ascii() || !announce.is_ascii());
        }
    }
}
