//! BEP 11, peer exchange (`ut_pex`): peers tell each other which peers they are
//! connected to, so a swarm can be found without a tracker or the DHT.
//!
//! A PEX message is a bencoded dictionary sent as a BEP 10 extended message. It lists the
//! peers the sender connected to (`added`, `added6`, compact 6- and 18-byte addresses,
//! with one flags byte per peer in `added.f` / `added6.f`) and those it disconnected from
//! (`dropped`, `dropped6`) since its previous PEX message to us. [`PexMessage`] decodes and
//! encodes that dictionary.
//!
//! [`PexState`] is the per-connection sans-IO side: it remembers what we told a peer,
//! builds the next diff at most once a minute with at most 50 added and 50 dropped peers
//! (the BEP 11 limits; the rest waits for the next message), and rate-checks what the
//! peer sends us.
//!
//! Everything here comes from a peer and is only a hint: addresses are candidates to dial,
//! never trusted facts. Decoding keeps at most [`MAX_ADDED`] added and [`MAX_DROPPED`]
//! dropped peers, however many a peer lists.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use thiserror::Error;

use bencode::{Dict, Encoder, Limits};

/// Most added peers kept from one received message. BEP 11 lets a sender list 50; we allow
/// some slack for clients that send more, and drop the rest.
pub const MAX_ADDED: usize = 200;
/// Most dropped peers kept from one received message.
pub const MAX_DROPPED: usize = 200;
/// Most added (and, separately, dropped) peers we put in one message (BEP 11).
pub const MAX_PEERS_PER_MESSAGE: usize = 50;
/// We send a peer at most one PEX message per interval (BEP 11: once a minute).
pub const SEND_INTERVAL: Duration = Duration::from_secs(60);
/// A peer sending PEX more often than this is flooding; its message is refused.
pub const MIN_RECEIVE_INTERVAL: Duration = Duration::from_secs(45);

/// Bounds for a received PEX dictionary. A message that follows BEP 11 is under 2 KiB;
/// 64 KiB still fits ~3,000 compact IPv4 peers from a sloppy client.
pub const LIMITS: Limits = Limits {
    max_input: 64 * 1024,
    max_depth: 4,
    max_string: 64 * 1024,
    max_items: 256,
};

const V4_LEN: usize = 6;
const V6_LEN: usize = 18;

/// Why a PEX message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PexError {
    #[error("PEX message is not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("PEX message is not a dictionary")]
    NotADictionary,
}

/// The flags byte BEP 11 gives each added peer. Unknown bits are kept as received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// 0x01: the peer prefers encrypted connections.
    pub const PREFERS_ENCRYPTION: PexFlags = PexFlags(0x01);
    /// 0x02: the peer is a seed or upload-only.
    pub const SEED: PexFlags = PexFlags(0x02);
    /// 0x04: the peer supports uTP.
    pub const UTP: PexFlags = PexFlags(0x04);
    /// 0x08: the peer supports `ut_holepunch`.
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// 0x10: the sender connected out to this peer, so it is reachable.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

/// One `ut_pex` message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers the sender connected to, IPv4 ones first.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender disconnected from, IPv4 ones first.
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    /// Decodes the payload of a `ut_pex` extended message (after the id byte).
    ///
    /// Lenient like [`crate::extended`]: unknown keys and keys of the wrong type are
    /// ignored, a trailing partial address is ignored, a missing flags byte means no
    /// flags. Addresses with port 0 or an unspecified IP (0.0.0.0, ::) cannot be dialed
    /// and are skipped. At most [`MAX_ADDED`] added and [`MAX_DROPPED`] dropped peers are
    /// kept, IPv4 first.
    pub fn decode(payload: &[u8]) -> Result<Self, PexError> {
        let value = bencode::decode_with(payload, &LIMITS)?;
        let dict = value.as_dict().ok_or(PexError::NotADictionary)?;
        let mut msg = PexMessage::default();
        for (key, flags_key, len) in [
            (&b"added"[..], &b"added.f"[..], V4_LEN),
            (b"added6", b"added6.f", V6_LEN),
        ] {
            let flags = bytes(dict, flags_key);
            for (i, addr) in addrs(bytes(dict, key), len).enumerate() {
                if msg.added.len() >= MAX_ADDED {
                    break;
                }
                if let Some(addr) = addr {
                    let f = flags.get(i).copied().map(PexFlags).unwrap_or_default();
                    msg.added.push((addr, f));
                }
            }
        }
        for (key, len) in [(&b"dropped"[..], V4_LEN), (b"dropped6", V6_LEN)] {
            for addr in addrs(bytes(dict, key), len).flatten() {
                if msg.dropped.len() >= MAX_DROPPED {
                    break;
                }
                msg.dropped.push(addr);
            }
        }
        Ok(msg)
    }

    /// Encodes the message. All six keys are written, even when empty, as libtorrent
    /// does. Callers keep each list at [`MAX_PEERS_PER_MESSAGE`] (as [`PexState`] does).
    pub fn encode(&self) -> Vec<u8> {
        let mut added = Vec::new();
        let mut added_f = Vec::new();
        let mut added6 = Vec::new();
        let mut added6_f = Vec::new();
        for (addr, flags) in &self.added {
            match addr {
                SocketAddr::V4(a) => {
                    push_v4(&mut added, a);
                    added_f.push(flags.0);
                }
                SocketAddr::V6(a) => {
                    push_v6(&mut added6, a);
                    added6_f.push(flags.0);
                }
            }
        }
        let mut dropped = Vec::new();
        let mut dropped6 = Vec::new();
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(a) => push_v4(&mut dropped, a),
                SocketAddr::V6(a) => push_v6(&mut dropped6, a),
            }
        }
        let mut e = Encoder::new();
        e.dict(|d| {
            d.bytes(b"added", &added);
            d.bytes(b"added.f", &added_f);
            d.bytes(b"added6", &added6);
            d.bytes(b"added6.f", &added6_f);
            d.bytes(b"dropped", &dropped);
            d.bytes(b"dropped6", &dropped6);
        });
        e.into_bytes()
    }
}

fn bytes<'a>(dict: &Dict<'a>, key: &[u8]) -> &'a [u8] {
    dict.get(key).and_then(|v| v.as_bytes()).unwrap_or_default()
}

/// The compact addresses in `b` (`len` 6 or 18), `None` for undialable ones so that
/// indices still line up with the flags bytes; a trailing partial entry is dropped.
fn addrs(b: &[u8], len: usize) -> impl Iterator<Item = Option<SocketAddr>> + '_ {
    b.chunks_exact(len).map(move |c| {
        let (ip, port) = c.split_at(len - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        let addr = if let Ok(v4) = <[u8; 4]>::try_from(ip) {
            SocketAddr::from((Ipv4Addr::from(v4), port))
        } else {
            let v6 = <[u8; 16]>::try_from(ip).ok()?;
            SocketAddr::from((Ipv6Addr::from(v6), port))
        };
        dialable(&addr).then_some(addr)
    })
}

fn dialable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}

fn push_v4(out: &mut Vec<u8>, a: &SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn push_v6(out: &mut Vec<u8>, a: &SocketAddrV6) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// PEX bookkeeping for one connection (sans-IO: the caller passes `now`).
///
/// Sending: [`poll_message`](Self::poll_message) compares the caller's current peer list
/// with what this peer has already been told and returns the difference, at most once per
/// [`SEND_INTERVAL`]. Receiving: [`accept_incoming`](Self::accept_incoming) says whether a
/// PEX message from this peer arrives too soon after the previous one.
#[derive(Debug, Clone, Default)]
pub struct PexState {
    /// What this peer has been told we are connected to, with the flags we sent.
    told: BTreeMap<SocketAddr, PexFlags>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
}

impl PexState {
    pub fn new() -> Self {
        PexState::default()
    }

    /// The PEX message to send this peer now, if one is due and anything changed.
    ///
    /// `current` is the peers we are connected to, with their flags; it must not include
    /// this peer itself. The first message goes out right away; later ones at most once
    /// per [`SEND_INTERVAL`]. An empty diff sends nothing (some clients disconnect on
    /// empty PEX messages) and does not restart the interval. Each message carries at most
    /// [`MAX_PEERS_PER_MESSAGE`] added and as many dropped peers; the rest is carried over
    /// to the next one. A peer whose flags change is not re-announced.
    pub fn poll_message(
        &mut self,
        now: Instant,
        current: &[(SocketAddr, PexFlags)],
    ) -> Option<PexMessage> {
        if self.next_send_at().is_some_and(|at| now < at) {
            return None;
        }
        let live: HashSet<SocketAddr> = current.iter().map(|(a, _)| *a).collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .keys()
            .filter(|a| !live.contains(a))
            .take(MAX_PEERS_PER_MESSAGE)
            .copied()
            .collect();
        let mut added = Vec::new();
        for &(addr, flags) in current {
            if added.len() >= MAX_PEERS_PER_MESSAGE {
                break;
            }
            if dialable(&addr) && !self.told.contains_key(&addr) {
                self.told.insert(addr, flags);
                added.push((addr, flags));
            }
        }
        for a in &dropped {
            self.told.remove(a);
        }
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        self.last_sent = Some(now);
        Some(PexMessage { added, dropped })
    }

    /// When the next message may be sent, or `None` if one may be sent now (nothing was
    /// sent yet). Use it as a timer deadline.
    pub fn next_send_at(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + SEND_INTERVAL)
    }

    /// Call on each PEX message received from this peer. Returns `false` if it came less
    /// than [`MIN_RECEIVE_INTERVAL`] after the last accepted one: the caller ignores it
    /// (or disconnects a peer that keeps doing this). Refused messages do not restart the
    /// interval.
    pub fn accept_incoming(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_received
            && now.saturating_duration_since(last) < MIN_RECEIVE_INTERVAL
        {
            return false;
        }
        self.last_received = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decodes_a_hand_written_message() {
        // 10.0.0.1:6881 (0x1ae1) flags seed|reachable, 10.0.0.2:80 flags utp,
        // [2001:db8::1]:51413 (0xc8d5) flags encryption, dropped 192.168.1.9:1 and [::1]:2.
        let mut p = b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50".to_vec();
        p.extend_from_slice(b"7:added.f2:\x12\x04");
        p.extend_from_slice(b"6:added618:\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\xc8\xd5");
        p.extend_from_slice(b"8:added6.f1:\x01");
        p.extend_from_slice(b"7:dropped6:\xc0\xa8\x01\x09\x00\x01");
        p.extend_from_slice(b"8:dropped618:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x00\x02e");
        let m = PexMessage::decode(&p).unwrap();
        assert_eq!(
            m.added,
            [
                (v4("10.0.0.1:6881"), PexFlags::SEED | PexFlags::REACHABLE),
                (v4("10.0.0.2:80"), PexFlags::UTP),
                (v4("[2001:db8::1]:51413"), PexFlags::PREFERS_ENCRYPTION),
            ]
        );
        assert_eq!(m.dropped, [v4("192.168.1.9:1"), v4("[::1]:2")]);
        assert!(m.added[0].1.contains(PexFlags::SEED));
        assert!(!m.added[0].1.contains(PexFlags::UTP));
        // Our encoding of the same message is byte-identical (the keys were sorted).
        assert_eq!(m.encode(), p);
    }

    #[test]
    fn encodes_byte_exact() {
        let m = PexMessage {
            added: vec![(v4("1.2.3.4:258"), PexFlags::HOLEPUNCH)],
            dropped: vec![],
        };
        assert_eq!(
            m.encode(),
            b"d5:added6:\x01\x02\x03\x04\x01\x027:added.f1:\x086:added60:8:added6.f0:7:dropped0:8:dropped60:e"
        );
        assert_eq!(
            PexMessage::default().encode(),
            b"d5:added0:7:added.f0:6:added60:8:added6.f0:7:dropped0:8:dropped60:e"
        );
    }

    #[test]
    fn lenient_decoding() {
        // Missing flags, a trailing partial entry, port 0 and 0.0.0.0 skipped, wrong
        // types and unknown keys ignored; the flags still line up after a skipped entry.
        let p = b"d5:added20:\x01\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x09\x02\x02\x02\x02\x00\x09\x03\x037:added.f1:\x026:added6i1e1:xle7:dropped8:\x05\x05\x05\x05\x00\x07\x06\x06e";
        let m = PexMessage::decode(p).unwrap();
        assert_eq!(m.added, [(v4("2.2.2.2:9"), PexFlags::default())]);
        assert_eq!(m.dropped, [v4("5.5.5.5:7")]);

        let p = b"d5:added12:\x01\x01\x01\x01\x00\x01\x02\x02\x02\x02\x00\x027:added.f2:\xff\x02e";
        let m = PexMessage::decode(p).unwrap();
        assert_eq!(
            m.added,
            [
                (v4("1.1.1.1:1"), PexFlags(0xff)),
                (v4("2.2.2.2:2"), PexFlags::SEED)
            ]
        );
        assert_eq!(PexMessage::decode(b"de"), Ok(PexMessage::default()));
    }

    #[test]
    fn refuses_non_dictionaries() {
        assert_eq!(PexMessage::decode(b"le"), Err(PexError::NotADictionary));
        assert!(matches!(
            PexMessage::decode(b"d5:added"),
            Err(PexError::Bencode(_))
        ));
        assert!(matches!(
            PexMessage::decode(&vec![b'x'; LIMITS.max_input + 1]),
            Err(PexError::Bencode(bencode::Error::InputTooLarge { .. }))
        ));
    }

    #[test]
    fn keeps_at_most_the_bound() {
        let n = 500usize;
        let mut added = Vec::new();
        for i in 0..n {
            added.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8, 0, 1]);
        }
        let mut p = format!("d5:added{}:", added.len()).into_bytes();
        p.extend_from_slice(&added);
        p.extend_from_slice(format!("7:dropped{}:", added.len()).as_bytes());
        p.extend_from_slice(&added);
        p.push(b'e');
        let m = PexMessage::decode(&p).unwrap();
        assert_eq!(m.added.len(), MAX_ADDED);
        assert_eq!(m.dropped.len(), MAX_DROPPED);
        assert_eq!(m.added[199].0, v4("10.0.0.199:1"));
    }

    fn peers(range: std::ops::Range<u16>) -> Vec<(SocketAddr, PexFlags)> {
        range
            .map(|i| {
                (
                    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881)),
                    PexFlags::SEED,
                )
            })
            .collect()
    }

    #[test]
    fn sends_diffs_once_a_minute() {
        let t0 = Instant::now();
        let mut s = PexState::new();
        assert_eq!(s.poll_message(t0, &[]), None, "nothing to say");
        assert_eq!(s.next_send_at(), None);
        let first = peers(0..3);
        let m = s.poll_message(t0, &first).unwrap();
        assert_eq!(m.added, first);
        assert!(m.dropped.is_empty());
        assert_eq!(s.next_send_at(), Some(t0 + SEND_INTERVAL));

        // Peer 1 leaves, peer 3 arrives: nothing before the minute is up.
        let now: Vec<_> = [first[0], first[2]]
            .into_iter()
            .chain(peers(3..4))
            .collect();
        assert_eq!(s.poll_message(t0 + Duration::from_secs(59), &now), None);
        let m = s.poll_message(t0 + SEND_INTERVAL, &now).unwrap();
        assert_eq!(m.added, peers(3..4));
        assert_eq!(m.dropped, [first[1].0]);

        // Nothing changed: no message, even though one is allowed.
        assert_eq!(s.poll_message(t0 + 10 * SEND_INTERVAL, &now), None);
        // Peer 1 comes back: it is added again.
        let back: Vec<_> = now.iter().copied().chain([first[1]]).collect();
        let m = s.poll_message(t0 + 10 * SEND_INTERVAL, &back).unwrap();
        assert_eq!(m.added, [first[1]]);
        assert!(m.dropped.is_empty());
    }

    #[test]
    fn caps_each_message_and_carries_the_rest_over() {
        let t0 = Instant::now();
        let mut s = PexState::new();
        let all = peers(0..120);
        let m1 = s.poll_message(t0, &all).unwrap();
        assert_eq!(m1.added, all[..50]);
        let m2 = s.poll_message(t0 + SEND_INTERVAL, &all).unwrap();
        assert_eq!(m2.added, all[50..100]);
        // All of them leave and 60 new ones arrive.
        let new = peers(1000..1060);
        let m3 = s.poll_message(t0 + 2 * SEND_INTERVAL, &new).unwrap();
        assert_eq!(m3.added, new[..50]);
        assert_eq!(m3.dropped.len(), 50);
        let m4 = s.poll_message(t0 + 3 * SEND_INTERVAL, &new).unwrap();
        assert_eq!(m4.added, new[50..]);
        // 100 were told, 50 dropped already: the other 50 now. The 20 never told
        // are never dropped.
        assert_eq!(m4.dropped.len(), 50);
        let mut dropped: Vec<_> = m3.dropped.iter().chain(&m4.dropped).copied().collect();
        dropped.sort();
        let mut told: Vec<_> = all[..100].iter().map(|p| p.0).collect();
        told.sort();
        assert_eq!(dropped, told);
        assert_eq!(s.poll_message(t0 + 4 * SEND_INTERVAL, &new), None);
        // Every message respects the BEP 11 cap, and decodes back to itself.
        for m in [m1, m2, m3, m4] {
            assert!(m.added.len() <= MAX_PEERS_PER_MESSAGE);
            assert!(m.dropped.len() <= MAX_PEERS_PER_MESSAGE);
            assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn does_not_announce_undialable_or_duplicate_peers() {
        let t0 = Instant::now();
        let mut s = PexState::new();
        let a = (v4("1.2.3.4:5"), PexFlags::default());
        let cur = [a, (v4("1.2.3.4:0"), PexFlags::default()), a];
        let m = s.poll_message(t0, &cur).unwrap();
        assert_eq!(m.added, [a]);
    }

    #[test]
    fn rate_limits_incoming() {
        let t0 = Instant::now();
        let mut s = PexState::new();
        assert!(s.accept_incoming(t0));
        assert!(!s.accept_incoming(t0 + Duration::from_secs(10)));
        assert!(!s.accept_incoming(t0 + Duration::from_secs(44)));
        assert!(s.accept_incoming(t0 + MIN_RECEIVE_INTERVAL));
        assert!(!s.accept_incoming(t0 + MIN_RECEIVE_INTERVAL + Duration::from_secs(1)));
        // A clock going backwards is not a reason to accept.
        assert!(!s.accept_incoming(t0));
        assert!(s.accept_incoming(t0 + 2 * MIN_RECEIVE_INTERVAL));
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
        .prop_filter("dialable", dialable)
    }

    fn arb_message() -> impl Strategy<Value = PexMessage> {
        (
            proptest::collection::vec((arb_addr(), any::<u8>().prop_map(PexFlags)), 0..=50),
            proptest::collection::vec(arb_addr(), 0..=50),
        )
            .prop_map(|(mut added, mut dropped)| {
                // Decoding yields IPv4 peers first; give the round trip the same order.
                added.sort_by_key(|(a, _)| a.is_ipv6());
                dropped.sort_by_key(|a| a.is_ipv6());
                PexMessage { added, dropped }
            })
    }

    proptest! {
        #[test]
        fn round_trips(m in arb_message()) {
            prop_assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(m) = PexMessage::decode(&bytes) {
                prop_assert!(m.added.len() <= MAX_ADDED && m.dropped.len() <= MAX_DROPPED);
                prop_assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
            }
        }

        #[test]
        fn arbitrary_strings_under_pex_keys_never_panic(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 6),
        ) {
            let keys: [&[u8]; 6] = [b"added", b"added.f", b"added6", b"added6.f", b"dropped", b"dropped6"];
            let mut e = Encoder::new();
            e.dict(|d| {
                for (k, v) in keys.iter().zip(&values) {
                    d.bytes(k, v);
                }
            });
            let m = PexMessage::decode(&e.into_bytes()).unwrap();
            prop_assert_eq!(m.added.len() <= values[0].len() / 6 + values[2].len() / 18, true);
            prop_assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn state_never_exceeds_caps(
            rounds in proptest::collection::vec(proptest::collection::vec(0u16..200, 0..150), 1..6),
        ) {
            let t0 = Instant::now();
            let mut s = PexState::new();
            for (i, round) in rounds.iter().enumerate() {
                let cur: Vec<_> = round
                    .iter()
                    .map(|&p| (SocketAddr::from(([10, 0, 0, 1], p + 1)), PexFlags::default()))
                    .collect();
                if let Some(m) = s.poll_message(t0 + SEND_INTERVAL * i as u32, &cur) {
                    prop_assert!(m.added.len() <= MAX_PEERS_PER_MESSAGE);
                    prop_assert!(m.dropped.len() <= MAX_PEERS_PER_MESSAGE);
                    let live: HashSet<_> = cur.iter().map(|p| p.0).collect();
                    prop_assert!(m.added.iter().all(|p| live.contains(&p.0)));
                    prop_assert!(m.dropped.iter().all(|a| !live.contains(a)));
                }
            }
        }
    }
}
