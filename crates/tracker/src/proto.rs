//! What the tracker client and server share: the announce and scrape messages as plain data,
//! the UDP tracker constants (BEP 15), and compact peer lists (BEP 23 for IPv4, BEP 7 for
//! IPv6). Encoding them for HTTP or UDP lives with whoever sends them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The magic connection id of a UDP `connect` request (BEP 15).
pub const UDP_PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// UDP tracker actions (BEP 15).
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// Info-hashes one UDP scrape may carry (BEP 15: about 74 fit in a 1500-byte packet).
pub const UDP_MAX_SCRAPE: usize = 74;

/// Why a peer announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AnnounceEvent {
    /// A regular announce.
    #[default]
    None,
    Completed,
    Started,
    Stopped,
}

impl AnnounceEvent {
    /// The number BEP 15 gives the event.
    pub fn to_udp(self) -> u32 {
        match self {
            AnnounceEvent::None => 0,
            AnnounceEvent::Completed => 1,
            AnnounceEvent::Started => 2,
            AnnounceEvent::Stopped => 3,
        }
    }

    pub fn from_udp(n: u32) -> Option<Self> {
        Some(match n {
            0 => AnnounceEvent::None,
            1 => AnnounceEvent::Completed,
            2 => AnnounceEvent::Started,
            3 => AnnounceEvent::Stopped,
            _ => return None,
        })
    }

    /// The `event=` value of an HTTP announce, if any.
    pub fn as_http(self) -> Option<&'static str> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Completed => Some("completed"),
            AnnounceEvent::Started => Some("started"),
            AnnounceEvent::Stopped => Some("stopped"),
        }
    }

    /// Parse an HTTP `event=` value; empty and unknown values are a regular announce.
    pub fn from_http(s: &[u8]) -> Self {
        match s {
            b"completed" => AnnounceEvent::Completed,
            b"started" => AnnounceEvent::Started,
            b"stopped" => AnnounceEvent::Stopped,
            _ => AnnounceEvent::None,
        }
    }
}

/// An announce: a peer telling the tracker about itself and asking for others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: AnnounceEvent,
    /// Peers wanted; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// A random number that stays the same for the session, so the tracker can recognise
    /// us when our address changes.
    pub key: u32,
}

/// A tracker's answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Seconds the tracker wants at least between announces.
    pub min_interval: Option<u32>,
    /// Seeders, if the tracker says.
    pub complete: Option<u32>,
    /// Leechers, if the tracker says.
    pub incomplete: Option<u32>,
    pub peers: Vec<SocketAddr>,
    pub warning: Option<String>,
    /// To be sent back on the next HTTP announce.
    pub tracker_id: Option<Vec<u8>>,
}

/// A tracker's counts for one info-hash (BEP 48, BEP 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeEntry {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever reported.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Append `peers` in compact form: 6 bytes (IPv4, BEP 23) or 18 bytes (IPv6, BEP 7) each,
/// the IPv4 ones (and IPv4-mapped IPv6) to `v4`, the others to `v6`.
pub fn encode_compact_peers(peers: &[SocketAddr], v4: &mut Vec<u8>, v6: &mut Vec<u8>) {
    for peer in peers {
        match peer.ip() {
            IpAddr::V4(ip) => push_v4(v4, ip, peer.port()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => push_v4(v4, ip, peer.port()),
                None => {
                    v6.extend_from_slice(&ip.octets());
                    v6.extend_from_slice(&peer.port().to_be_bytes());
                }
            },
        }
    }
}

fn push_v4(out: &mut Vec<u8>, ip: Ipv4Addr, port: u16) {
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&port.to_be_bytes());
}

/// Read a compact IPv4 peer list (6 bytes each); a trailing partial entry is ignored.
pub fn decode_compact_v4(bytes: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    bytes.chunks_exact(6).map(|c| {
        let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
        SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
    })
}

/// Read a compact IPv6 peer list (18 bytes each); a trailing partial entry is ignored.
pub fn decode_compact_v6(bytes: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    bytes.chunks_exact(18).map(|c| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&c[..16]);
        let port = u16::from_be_bytes([c[16], c[17]]);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trip() {
        let peers: Vec<SocketAddr> = vec![
            "1.2.3.4:6881".parse().unwrap(),
            "[2001:db8::1]:51413".parse().unwrap(),
            "[::ffff:10.0.0.1]:80".parse().unwrap(),
        ];
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        encode_compact_peers(&peers, &mut v4, &mut v6);
        assert_eq!(v4.len(), 12);
        assert_eq!(v6.len(), 18);
        let back: Vec<_> = decode_compact_v4(&v4)
            .chain(decode_compact_v6(&v6))
            .collect();
        assert_eq!(back[0], peers[0]);
        assert_eq!(back[1], "10.0.0.1:80".parse().unwrap());
        assert_eq!(back[2], peers[1]);
    }

    #[test]
    fn partial_entries_are_ignored() {
        assert_eq!(decode_compact_v4(&[1, 2, 3, 4, 5]).count(), 0);
        assert_eq!(decode_compact_v6(&[0; 35]).count(), 1);
    }

    #[test]
    fn events_round_trip() {
        for e in [
            AnnounceEvent::None,
            AnnounceEvent::Completed,
            AnnounceEvent::Started,
            AnnounceEvent::Stopped,
        ] {
            assert_eq!(AnnounceEvent::from_udp(e.to_udp()), Some(e));
            assert_eq!(
                AnnounceEvent::from_http(e.as_http().unwrap_or("").as_bytes()),
                e
            );
        }
        assert_eq!(AnnounceEvent::from_udp(4), None);
    }
}
