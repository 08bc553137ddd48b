//! UDP tracker protocol (BEP 15), server side and sans-IO: a datagram in, maybe a datagram
//! out.
//!
//! Connection ids are not stored: an id is a keyed hash (SHA-1 over a random per-process
//! secret, the client's address and the current minute), so the server keeps no state per
//! connect, and an id works for the minute it was made in and the next (1-2 minutes; BEP 15
//! asks for at least one). A packet that is too short, too long, not a connect with the
//! protocol magic, or that carries a wrong connection id gets no reply at all, so the tracker
//! cannot be used to reflect traffic at a spoofed address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::state::{Family, TrackerState};
use crate::proto::{
    ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_ERROR, ACTION_SCRAPE, AnnounceEvent, AnnounceRequest,
    UDP_MAX_SCRAPE, UDP_PROTOCOL_ID, encode_compact_peers,
};

/// Longest datagram answered (a scrape of 74 hashes is 1496 bytes).
pub const MAX_UDP_PACKET: usize = 1500;
/// Length of an announce without BEP 41 options.
const ANNOUNCE_LEN: usize = 98;
/// How long one connection-id epoch lasts.
const EPOCH: Duration = Duration::from_secs(60);

/// A decoded UDP tracker request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpRequest {
    Connect {
        transaction_id: u32,
    },
    Announce {
        connection_id: u64,
        transaction_id: u32,
        request: AnnounceRequest,
    },
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<[u8; 20]>,
    },
}

/// Why a datagram was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// Too short, too long or not a tracker packet at all: ignored without a reply.
    #[error("not a UDP tracker request")]
    Ignored,
    /// A request with a plausible header but a bad field: answered with an error action
    /// (once its connection id checks out).
    #[error("{message}")]
    Bad {
        connection_id: u64,
        transaction_id: u32,
        message: &'static str,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn array20(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().unwrap()
}

/// Decodes one datagram.
pub fn parse_udp_request(packet: &[u8]) -> Result<UdpRequest, UdpError> {
    if packet.len() < 16 || packet.len() > MAX_UDP_PACKET {
        return Err(UdpError::Ignored);
    }
    let connection_id = u64_at(packet, 0);
    let action = u32_at(packet, 8);
    let transaction_id = u32_at(packet, 12);
    match action {
        ACTION_CONNECT if connection_id == UDP_PROTOCOL_ID => {
            Ok(UdpRequest::Connect { transaction_id })
        }
        ACTION_ANNOUNCE if packet.len() >= ANNOUNCE_LEN => {
            let bad = |message| UdpError::Bad {
                connection_id,
                transaction_id,
                message,
            };
            let event = AnnounceEvent::from_udp(u32_at(packet, 80)).ok_or(bad("invalid event"))?;
            let numwant = u32_at(packet, 92) as i32;
            Ok(UdpRequest::Announce {
                connection_id,
                transaction_id,
                request: AnnounceRequest {
                    info_hash: array20(packet, 16),
                    peer_id: array20(packet, 36),
                    downloaded: u64_at(packet, 56),
                    left: u64_at(packet, 64),
                    uploaded: u64_at(packet, 72),
                    event,
                    // The IP field (84..88) is ignored: the peer is where the packet came from.
                    key: u32_at(packet, 88),
                    numwant: (numwant >= 0).then_some(numwant as u32),
                    port: u16::from_be_bytes([packet[96], packet[97]]),
                },
            })
        }
        ACTION_SCRAPE => {
            let hashes = &packet[16..];
            if hashes.is_empty() || !hashes.len().is_multiple_of(20) {
                return Err(UdpError::Bad {
                    connection_id,
                    transaction_id,
                    message: "scrape must carry whole 20-byte info-hashes",
                });
            }
            Ok(UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes: hashes
                    .chunks_exact(20)
                    .take(UDP_MAX_SCRAPE)
                    .map(|c| c.try_into().unwrap())
                    .collect(),
            })
        }
        _ => Err(UdpError::Ignored),
    }
}

/// Makes and checks stateless connection ids.
#[derive(Clone)]
pub struct ConnectionIds {
    secret: [u8; 32],
    start: Instant,
}

impl std::fmt::Debug for ConnectionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionIds { .. }")
    }
}

impl ConnectionIds {
    /// With a given secret (the shell passes a random one) and the time epochs count from.
    pub fn new(secret: [u8; 32], start: Instant) -> Self {
        ConnectionIds { secret, start }
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / EPOCH.as_secs()
    }

    fn id_for(&self, addr: SocketAddr, epoch: u64) -> u64 {
        let mut h = Sha1::new();
        h.update(self.secret);
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => h.update(ip.octets()),
            IpAddr::V6(ip) => h.update(ip.octets()),
        }
        h.update(addr.port().to_be_bytes());
        h.update(epoch.to_be_bytes());
        let d = h.finalize();
        u64::from_be_bytes(d[..8].try_into().unwrap())
    }

    /// The id to give `addr` now.
    pub fn issue(&self, now: Instant, addr: SocketAddr) -> u64 {
        self.id_for(addr, self.epoch(now))
    }

    /// Whether `id` was issued to `addr` in this epoch or the one before.
    pub fn check(&self, now: Instant, addr: SocketAddr, id: u64) -> bool {
        let e = self.epoch(now);
        id == self.id_for(addr, e) || (e > 0 && id == self.id_for(addr, e - 1))
    }
}

fn error_packet(transaction_id: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// Answers one datagram from `source`, or `None` when it must be ignored.
pub fn handle(
    state: &mut TrackerState,
    ids: &ConnectionIds,
    now: Instant,
    packet: &[u8],
    source: SocketAddr,
) -> Option<Vec<u8>> {
    let request = match parse_udp_request(packet) {
        Ok(r) => r,
        Err(UdpError::Ignored) => return None,
        Err(UdpError::Bad {
            connection_id,
            transaction_id,
            message,
        }) => {
            return ids
                .check(now, source, connection_id)
                .then(|| error_packet(transaction_id, message));
        }
    };
    match request {
        UdpRequest::Connect { transaction_id } => {
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            out.extend_from_slice(&ids.issue(now, source).to_be_bytes());
            Some(out)
        }
        UdpRequest::Announce {
            connection_id,
            transaction_id,
            request,
        } => {
            if !ids.check(now, source, connection_id) {
                return None;
            }
            let ip = source.ip().to_canonical();
            let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
            match state.announce_peers(now, &request, ip, family) {
                Ok(a) => {
                    let mut out = Vec::with_capacity(20 + 18 * a.peers.len());
                    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                    out.extend_from_slice(&transaction_id.to_be_bytes());
                    out.extend_from_slice(&a.interval.to_be_bytes());
                    out.extend_from_slice(&a.incomplete.to_be_bytes());
                    out.extend_from_slice(&a.complete.to_be_bytes());
                    let addrs: Vec<SocketAddr> = a.peers.iter().map(|p| p.addr).collect();
                    let (mut v4, mut v6) = (Vec::new(), Vec::new());
                    encode_compact_peers(&addrs, &mut v4, &mut v6);
                    out.extend_from_slice(if ip.is_ipv4() { &v4 } else { &v6 });
                    Some(out)
                }
                Err(e) => Some(error_packet(transaction_id, &e.to_string())),
            }
        }
        UdpRequest::Scrape {
            connection_id,
            transaction_id,
            info_hashes,
        } => {
            if !ids.check(now, source, connection_id) {
                return None;
            }
            let mut out = Vec::with_capacity(8 + 12 * info_hashes.len());
            out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            for s in state.scrape(now, &info_hashes) {
                out.extend_from_slice(&s.complete.to_be_bytes());
                out.extend_from_slice(&s.downloaded.to_be_bytes());
                out.extend_from_slice(&s.incomplete.to_be_bytes());
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::Config;
    use proptest::prelude::*;

    fn connect(tid: u32) -> Vec<u8> {
        let mut p = UDP_PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p
    }

    fn announce(cid: u64, tid: u32, ih: [u8; 20], pid: u8, left: u64, port: u16) -> Vec<u8> {
        let mut p = cid.to_be_bytes().to_vec();
        p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p.extend_from_slice(&ih);
        p.extend_from_slice(&[pid; 20]);
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&(-1i32).to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p
    }

    fn setup() -> (TrackerState, ConnectionIds, Instant) {
        let now = Instant::now();
        (
            TrackerState::new(Config::default()),
            ConnectionIds::new([5; 32], now),
            now,
        )
    }

    fn cid_from(reply: &[u8]) -> u64 {
        u64::from_be_bytes(reply[8..16].try_into().unwrap())
    }

    #[test]
    fn connect_announce_scrape() {
        let (mut t, ids, now) = setup();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let r = handle(&mut t, &ids, now, &connect(7), a).unwrap();
        assert_eq!(&r[..8], &[0, 0, 0, 0, 0, 0, 0, 7]);
        let ca = cid_from(&r);
        let cb = cid_from(&handle(&mut t, &ids, now, &connect(8), b).unwrap());
        assert_ne!(ca, cb);
        let ih = [3; 20];
        let r = handle(&mut t, &ids, now, &announce(ca, 9, ih, 1, 0, 6001), a).unwrap();
        assert_eq!(r.len(), 20);
        assert_eq!(
            u32::from_be_bytes(r[0..4].try_into().unwrap()),
            ACTION_ANNOUNCE
        );
        assert_eq!(u32::from_be_bytes(r[4..8].try_into().unwrap()), 9);
        let r = handle(&mut t, &ids, now, &announce(cb, 10, ih, 2, 9, 6002), b).unwrap();
        assert_eq!(&r[12..20], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&r[20..], &[127, 0, 0, 1, 0x17, 0x71]);
        // A connection id is bound to its address.
        assert_eq!(
            handle(&mut t, &ids, now, &announce(ca, 11, ih, 2, 9, 6002), b),
            None
        );
        // ...and to time: valid for the next minute, not after two.
        let later = now + Duration::from_secs(90);
        assert!(handle(&mut t, &ids, later, &announce(ca, 12, ih, 1, 0, 6001), a).is_some());
        let much_later = now + Duration::from_secs(200);
        assert_eq!(
            handle(
                &mut t,
                &ids,
                much_later,
                &announce(ca, 12, ih, 1, 0, 6001),
                a
            ),
            None
        );
        let mut s = cb.to_be_bytes().to_vec();
        s.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
        s.extend_from_slice(&77u32.to_be_bytes());
        s.extend_from_slice(&ih);
        s.extend_from_slice(&[0xee; 20]);
        let r = handle(&mut t, &ids, now, &s, b).unwrap();
        assert_eq!(r.len(), 8 + 24);
        assert_eq!(&r[8..20], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&r[20..], &[0; 12]);
    }

    #[test]
    fn errors_and_ignores() {
        let (mut t, ids, now) = setup();
        let a: SocketAddr = "[::1]:5000".parse().unwrap();
        let ca = cid_from(&handle(&mut t, &ids, now, &connect(1), a).unwrap());
        // Bad event with a good id: an error action with a message.
        let mut p = announce(ca, 4, [1; 20], 1, 0, 1);
        p[80..84].copy_from_slice(&9u32.to_be_bytes());
        let r = handle(&mut t, &ids, now, &p, a).unwrap();
        assert_eq!(&r[..8], &[0, 0, 0, 3, 0, 0, 0, 4]);
        assert_eq!(&r[8..], b"invalid event");
        // The same with a wrong id, a short packet, an oversized one, garbage: silence.
        p[0] ^= 1;
        assert_eq!(handle(&mut t, &ids, now, &p, a), None);
        assert_eq!(
            handle(
                &mut t,
                &ids,
                now,
                &announce(ca, 4, [1; 20], 1, 0, 1)[..97],
                a
            ),
            None
        );
        assert_eq!(handle(&mut t, &ids, now, &[0; 15], a), None);
        assert_eq!(handle(&mut t, &ids, now, &vec![0; 1501], a), None);
        let mut c = connect(1);
        c[0] ^= 1;
        assert_eq!(handle(&mut t, &ids, now, &c, a), None);
        // Port 0 is refused with an error.
        let r = handle(&mut t, &ids, now, &announce(ca, 5, [1; 20], 1, 0, 0), a).unwrap();
        assert_eq!(&r[8..], b"invalid port");
        // An IPv6 requester gets 18-byte entries.
        let b: SocketAddr = "[::1]:5001".parse().unwrap();
        let cb = cid_from(&handle(&mut t, &ids, now, &connect(1), b).unwrap());
        handle(&mut t, &ids, now, &announce(ca, 5, [1; 20], 1, 0, 7), a).unwrap();
        let r = handle(&mut t, &ids, now, &announce(cb, 5, [1; 20], 2, 1, 8), b).unwrap();
        assert_eq!(r.len(), 20 + 18);
        assert_eq!(t.stats().peers, 2);
    }

    proptest! {
        #[test]
        fn udp_parsing_never_panics(p in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = parse_udp_request(&p);
        }

        #[test]
        fn udp_handling_never_panics(
            action in 0u32..5,
            body in proptest::collection::vec(any::<u8>(), 0..200),
            magic in any::<bool>(),
        ) {
            let (mut t, ids, now) = setup();
            let src: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let cid = if magic { UDP_PROTOCOL_ID } else { ids.issue(now, src) };
            let mut p = cid.to_be_bytes().to_vec();
            p.extend_from_slice(&action.to_be_bytes());
            p.extend_from_slice(&body);
            if let Some(r) = handle(&mut t, &ids, now, &p, src) {
                prop_assert!(r.len() >= 8);
            }
        }
    }
}
