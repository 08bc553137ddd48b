//! UDP tracker messages (BEP 15), without the socket.
//!
//! A client first sends `connect` with the magic protocol id and gets a connection id,
//! which it may use for one minute. Then `announce` (98 bytes) or `scrape` (16 + 20 bytes
//! per info-hash, at most 74 of them). Every answer starts with the action and the
//! transaction id the client chose; an `error` action carries a message instead.
//! Peers in an announce answer are 6 bytes each if the tracker was reached over IPv4 and
//! 18 bytes each over IPv6.

use super::TrackerError;
use super::http::PeerSink;
use crate::proto::{
    ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_ERROR, ACTION_SCRAPE, AnnounceRequest,
    AnnounceResponse, ScrapeEntry, UDP_MAX_SCRAPE, UDP_PROTOCOL_ID, decode_compact_v4,
    decode_compact_v6,
};

/// Size of a `connect` request.
pub const CONNECT_LEN: usize = 16;
/// Size of an `announce` request (without BEP 41 options).
pub const ANNOUNCE_LEN: usize = 98;

/// An answer from a UDP tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpResponse {
    Connect { connection_id: u64 },
    Announce(AnnounceResponse),
    Scrape(Vec<ScrapeEntry>),
    Error(String),
}

/// The `connect` request.
pub fn encode_connect(transaction_id: u32) -> [u8; CONNECT_LEN] {
    let mut p = [0u8; CONNECT_LEN];
    p[0..8].copy_from_slice(&UDP_PROTOCOL_ID.to_be_bytes());
    p[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    p[12..16].copy_from_slice(&transaction_id.to_be_bytes());
    p
}

/// The `announce` request. The IP field is 0: the tracker uses the packet's source.
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    req: &AnnounceRequest,
) -> [u8; ANNOUNCE_LEN] {
    let mut p = [0u8; ANNOUNCE_LEN];
    p[0..8].copy_from_slice(&connection_id.to_be_bytes());
    p[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    p[12..16].copy_from_slice(&transaction_id.to_be_bytes());
    p[16..36].copy_from_slice(&req.info_hash);
    p[36..56].copy_from_slice(&req.peer_id);
    p[56..64].copy_from_slice(&req.downloaded.to_be_bytes());
    p[64..72].copy_from_slice(&req.left.to_be_bytes());
    p[72..80].copy_from_slice(&req.uploaded.to_be_bytes());
    p[80..84].copy_from_slice(&req.event.to_udp().to_be_bytes());
    // 84..88: IP address, 0 = the sender's.
    p[88..92].copy_from_slice(&req.key.to_be_bytes());
    // num_want: -1 lets the tracker choose.
    let numwant = req.numwant.map_or(-1i32, |n| n.min(i32::MAX as u32) as i32);
    p[92..96].copy_from_slice(&numwant.to_be_bytes());
    p[96..98].copy_from_slice(&req.port.to_be_bytes());
    p
}

/// The `scrape` request for up to [`UDP_MAX_SCRAPE`] info-hashes.
pub fn encode_scrape(
    connection_id: u64,
    transaction_id: u32,
    hashes: &[[u8; 20]],
) -> Result<Vec<u8>, TrackerError> {
    if hashes.len() > UDP_MAX_SCRAPE {
        return Err(TrackerError::TooManyHashes(hashes.len()));
    }
    let mut p = Vec::with_capacity(16 + 20 * hashes.len());
    p.extend_from_slice(&connection_id.to_be_bytes());
    p.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    for h in hashes {
        p.extend_from_slice(h);
    }
    Ok(p)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The transaction id of an answer, if it is long enough to have one.
pub fn transaction_id(packet: &[u8]) -> Option<u32> {
    (packet.len() >= 8).then(|| u32_at(packet, 4))
}

/// Read an answer. `ipv6` says whether the tracker was reached over IPv6, which decides
/// the size of peer entries; at most `max_peers` routable peers are kept.
pub fn decode_response(
    packet: &[u8],
    ipv6: bool,
    max_peers: usize,
) -> Result<(u32, UdpResponse), TrackerError> {
    if packet.len() < 8 {
        return Err(TrackerError::Malformed("UDP answer shorter than 8 bytes"));
    }
    let action = u32_at(packet, 0);
    let txid = u32_at(packet, 4);
    let body = &packet[8..];
    let response = match action {
        ACTION_CONNECT => {
            let id = body
                .get(..8)
                .ok_or(TrackerError::Malformed("short UDP connect answer"))?;
            UdpResponse::Connect {
                connection_id: u64::from_be_bytes(id.try_into().expect("8 bytes")),
            }
        }
        ACTION_ANNOUNCE => {
            if body.len() < 12 {
                return Err(TrackerError::Malformed("short UDP announce answer"));
            }
            let mut sink = PeerSink::new(max_peers);
            let peers = &body[12..];
            if ipv6 {
                decode_compact_v6(peers).for_each(|a| sink.push(a));
            } else {
                decode_compact_v4(peers).for_each(|a| sink.push(a));
            }
            UdpResponse::Announce(AnnounceResponse {
                interval: u32_at(body, 0),
                min_interval: None,
                incomplete: Some(u32_at(body, 4)),
                complete: Some(u32_at(body, 8)),
                peers: sink.into_vec(),
                warning: None,
                tracker_id: None,
            })
        }
        ACTION_SCRAPE => UdpResponse::Scrape(
            body.chunks_exact(12)
                .take(UDP_MAX_SCRAPE)
                .map(|c| ScrapeEntry {
                    complete: u32_at(c, 0),
                    downloaded: u32_at(c, 4),
                    incomplete: u32_at(c, 8),
                })
                .collect(),
        ),
        ACTION_ERROR => {
            let msg = &body[..body.len().min(1024)];
            UdpResponse::Error(String::from_utf8_lossy(msg).trim_end_matches('\0').into())
        }
        _ => return Err(TrackerError::Malformed("unknown UDP action")),
    };
    Ok((txid, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AnnounceEvent;
    use proptest::prelude::*;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [0x11; 20],
            peer_id: [0x22; 20],
            port: 0x1ae1,
            uploaded: 3,
            downloaded: 1,
            left: 2,
            event: AnnounceEvent::Completed,
            numwant: None,
            key: 0x0102_0304,
        }
    }

    #[test]
    fn connect_layout() {
        let p = encode_connect(0xa1b2_c3d4);
        assert_eq!(
            p,
            [
                0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xa1, 0xb2, 0xc3, 0xd4
            ]
        );
    }

    #[test]
    fn announce_layout() {
        let p = encode_announce(0x0102_0304_0506_0708, 9, &request());
        assert_eq!(&p[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&p[8..16], &[0, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(&p[16..36], &[0x11; 20]);
        assert_eq!(&p[36..56], &[0x22; 20]);
        assert_eq!(&p[56..64], &1u64.to_be_bytes()); // downloaded
        assert_eq!(&p[64..72], &2u64.to_be_bytes()); // left
        assert_eq!(&p[72..80], &3u64.to_be_bytes()); // uploaded
        assert_eq!(&p[80..84], &[0, 0, 0, 1]); // completed
        assert_eq!(&p[84..88], &[0; 4]);
        assert_eq!(&p[88..92], &[1, 2, 3, 4]);
        assert_eq!(&p[92..96], &[0xff; 4]); // -1
        assert_eq!(&p[96..98], &[0x1a, 0xe1]);
        let mut r = request();
        r.numwant = Some(u32::MAX);
        assert_eq!(&encode_announce(0, 0, &r)[92..96], &i32::MAX.to_be_bytes());
    }

    #[test]
    fn scrape_layout_and_limit() {
        let p = encode_scrape(7, 8, &[[1; 20], [2; 20]]).unwrap();
        assert_eq!(p.len(), 56);
        assert_eq!(&p[8..12], &[0, 0, 0, 2]);
        assert_eq!(&p[36..56], &[2; 20]);
        assert!(encode_scrape(7, 8, &[[0; 20]; 74]).is_ok());
        assert!(matches!(
            encode_scrape(7, 8, &[[0; 20]; 75]),
            Err(TrackerError::TooManyHashes(75))
        ));
    }

    #[test]
    fn decode_answers() {
        let mut connect = vec![0, 0, 0, 0, 0, 0, 0, 5];
        connect.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(
            decode_response(&connect, false, 10).unwrap(),
            (5, UdpResponse::Connect { connection_id: 42 })
        );

        let mut announce = vec![0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 7, 8, 0, 0, 0, 3, 0, 0, 0, 4];
        announce.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 0, 0, 0, 0, 0, 9]);
        let (txid, r) = decode_response(&announce, false, 10).unwrap();
        assert_eq!(txid, 6);
        let UdpResponse::Announce(r) = r else {
            panic!()
        };
        assert_eq!(r.interval, 1800);
        assert_eq!((r.incomplete, r.complete), (Some(3), Some(4)));
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);

        // The same 12 bytes of peers read as IPv6 are no whole entry.
        let (_, r) = decode_response(&announce, true, 10).unwrap();
        let UdpResponse::Announce(r) = r else {
            panic!()
        };
        assert!(r.peers.is_empty());

        let mut scrape = vec![0, 0, 0, 2, 0, 0, 0, 7];
        scrape.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(
            decode_response(&scrape, false, 10).unwrap().1,
            UdpResponse::Scrape(vec![ScrapeEntry {
                complete: 1,
                downloaded: 2,
                incomplete: 3
            }])
        );

        let mut error = vec![0, 0, 0, 3, 0, 0, 0, 8];
        error.extend_from_slice(b"bad torrent\0");
        assert_eq!(
            decode_response(&error, false, 10).unwrap(),
            (8, UdpResponse::Error("bad torrent".into()))
        );
    }

    #[test]
    fn short_and_unknown_answers_are_errors() {
        assert!(decode_response(&[0; 7], false, 10).is_err());
        assert!(decode_response(&[0; 15], false, 10).is_err());
        assert!(decode_response(&[0, 0, 0, 1, 0, 0, 0, 0, 1], false, 10).is_err());
        assert!(decode_response(&[0, 0, 0, 9, 0, 0, 0, 0], false, 10).is_err());
        assert_eq!(transaction_id(&[0, 0, 0, 9, 0, 0, 1, 0]), Some(256));
        assert_eq!(transaction_id(&[0; 7]), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(packet in proptest::collection::vec(any::<u8>(), 0..400), v6: bool) {
            let _ = decode_response(&packet, v6, 20);
            let _ = transaction_id(&packet);
        }

        #[test]
        fn decode_never_panics_on_known_actions(action in 0u32..5, rest in proptest::collection::vec(any::<u8>(), 0..200), v6: bool) {
            let mut packet = action.to_be_bytes().to_vec();
            packet.extend_from_slice(&rest);
            if let Ok((_, UdpResponse::Announce(r))) = decode_response(&packet, v6, 5) {
                prop_assert!(r.peers.len() <= 5);
            }
        }

        #[test]
        fn connect_answer_round_trip(txid: u32, id: u64) {
            let mut p = ACTION_CONNECT.to_be_bytes().to_vec();
            p.extend_from_slice(&txid.to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            prop_assert_eq!(decode_response(&p, false, 1).unwrap(), (txid, UdpResponse::Connect { connection_id: id }));
        }
    }
}
