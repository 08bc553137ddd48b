//! The sans-IO core of a WebSocket tracker: it relays offers and answers between WebSocket
//! peers the way npm `bittorrent-tracker` does, with bounds on everything one connection can
//! make it hold or send.
//!
//! - An announce registers (or refreshes) the peer in its swarm and is answered with
//!   `complete`/`incomplete` and the interval. Its offers go one each to
//!   `min(offers, max_relay)` peers of the swarm picked at random (never the announcer).
//! - An answer is forwarded to the offerer only when this connection was relayed that very
//!   offer (same offer id, offerer and swarm) within `offer_ttl`, and at most once: no
//!   connection can send unsolicited answers through the tracker.
//! - Announces per connection are rate limited (a token bucket); swarms, peers, swarms per
//!   connection and relayed offers awaiting an answer per connection are capped.
//!
//! Connections are numbers given by the shell ([`ConnId`]); what to send to whom comes back
//! as [`Out`]s. Time is always an argument.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{Announce, Answer, ClientMessage, Event, Id20, Relayed, ServerMessage};

/// A WebSocket connection, numbered by the shell.
pub type ConnId = u64;

/// Limits and timings of the tracker.
#[derive(Debug, Clone)]
pub struct Config {
    /// The interval sent to clients (npm sends its HTTP interval / 5: 120 s).
    pub interval: Duration,
    /// A peer that has not announced for this long is dropped.
    pub peer_timeout: Duration,
    /// Most offers of one announce relayed (npm: 82; webtorrent sends at most 5).
    pub max_relay: usize,
    pub max_swarms: usize,
    pub max_peers: usize,
    pub max_peers_per_swarm: usize,
    /// Most swarms one connection may be in.
    pub max_swarms_per_conn: usize,
    /// Relayed offers a connection may still answer; the oldest is forgotten first.
    pub max_pending_per_conn: usize,
    /// How long a relayed offer may be answered.
    pub offer_ttl: Duration,
    /// Announces a connection may send in a burst, and the time to earn one more.
    pub announce_burst: u32,
    pub announce_refill: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(120),
            peer_timeout: Duration::from_secs(360),
            max_relay: 10,
            max_swarms: 100_000,
            max_peers: 1_000_000,
            max_peers_per_swarm: 10_000,
            max_swarms_per_conn: 256,
            max_pending_per_conn: 128,
            offer_ttl: Duration::from_secs(60),
            announce_burst: 20,
            announce_refill: Duration::from_millis(500),
        }
    }
}

/// A message for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub to: ConnId,
    pub msg: ServerMessage,
}

struct Peer {
    conn: ConnId,
    last: Instant,
    complete: bool,
}

#[derive(Default)]
struct Swarm {
    peers: HashMap<Id20, Peer>,
}

/// An offer relayed to a connection, which it may answer once.
struct Delivered {
    info_hash: Id20,
    offer_id: Id20,
    from: Id20,
    at: Instant,
}

struct Conn {
    /// The swarms it is in, with its peer id in each.
    swarms: HashMap<Id20, Id20>,
    tokens: u32,
    refilled: Instant,
    delivered: VecDeque<Delivered>,
}

/// Counts, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub swarms: usize,
    pub peers: usize,
}

/// The tracker's state: swarms of WebSocket peers and the connections they came from.
pub struct WsTracker {
    config: Config,
    swarms: HashMap<Id20, Swarm>,
    conns: HashMap<ConnId, Conn>,
    peers: usize,
    rng: u64,
}

impl WsTracker {
    /// `seed` feeds the random choice of the peers an offer goes to.
    pub fn new(config: Config, seed: u64) -> Self {
        WsTracker {
            config,
            swarms: HashMap::new(),
            conns: HashMap::new(),
            peers: 0,
            rng: seed | 1,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            swarms: self.swarms.len(),
            peers: self.peers,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A new connection.
    pub fn connect(&mut self, conn: ConnId, now: Instant) {
        self.conns.insert(
            conn,
            Conn {
                swarms: HashMap::new(),
                tokens: self.config.announce_burst,
                refilled: now,
                delivered: VecDeque::new(),
            },
        );
    }

    /// A connection closed: its peers leave their swarms.
    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            for (info_hash, peer_id) in c.swarms {
                self.remove_peer(&info_hash, &peer_id, conn);
            }
        }
    }

    fn remove_peer(&mut self, info_hash: &Id20, peer_id: &Id20, conn: ConnId) {
        if let Some(swarm) = self.swarms.get_mut(info_hash) {
            if swarm.peers.get(peer_id).is_some_and(|p| p.conn == conn) {
                swarm.peers.remove(peer_id);
                self.peers -= 1;
            }
            if swarm.peers.is_empty() {
                self.swarms.remove(info_hash);
            }
        }
    }

    /// A text frame from `conn`: what to send, to it and to others.
    pub fn handle(&mut self, conn: ConnId, now: Instant, text: &str) -> Vec<Out> {
        if !self.conns.contains_key(&conn) {
            return Vec::new();
        }
        match ClientMessage::decode(text) {
            Ok(ClientMessage::Announce(a)) => self.announce(conn, now, a),
            Ok(ClientMessage::Answer(a)) => self.answer(conn, now, a).into_iter().collect(),
            Err(e) => vec![Out {
                to: conn,
                msg: ServerMessage::Failure {
                    info_hash: None,
                    reason: format!("invalid message: {e}"),
                },
            }],
        }
    }

    fn fail(conn: ConnId, info_hash: Id20, reason: &str) -> Vec<Out> {
        vec![Out {
            to: conn,
            msg: ServerMessage::Failure {
                info_hash: Some(info_hash),
                reason: reason.to_owned(),
            },
        }]
    }

    fn announce(&mut self, conn: ConnId, now: Instant, a: Announce) -> Vec<Out> {
        let refill = self.config.announce_refill.max(Duration::from_millis(1));
        let burst = self.config.announce_burst;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        // The token bucket: one token per `refill`, at most `burst`.
        let earned = now.saturating_duration_since(c.refilled).as_nanos() / refill.as_nanos();
        if earned > 0 {
            c.tokens = u32::try_from(earned)
                .unwrap_or(u32::MAX)
                .saturating_add(c.tokens)
                .min(burst);
            c.refilled = now;
        }
        if c.tokens == 0 {
            return Self::fail(conn, a.info_hash, "too many announces, slow down");
        }
        c.tokens -= 1;

        if a.event == Some(Event::Stopped) {
            c.swarms.remove(&a.info_hash);
            self.remove_peer(&a.info_hash, &a.peer_id, conn);
            return vec![self.reply(conn, a.info_hash)];
        }

        // Register or refresh the peer.
        let known = c.swarms.get(&a.info_hash).copied();
        if known.is_none() && c.swarms.len() >= self.config.max_swarms_per_conn {
            return Self::fail(conn, a.info_hash, "too many torrents on one connection");
        }
        if let Some(old) = known.filter(|old| *old != a.peer_id) {
            // A new peer id for the same swarm on this connection replaces the old one.
            self.remove_peer(&a.info_hash, &old, conn);
        }
        let complete = a.left == Some(0) || a.event == Some(Event::Completed);
        let swarm_exists = self.swarms.contains_key(&a.info_hash);
        if !swarm_exists && self.swarms.len() >= self.config.max_swarms {
            return Self::fail(conn, a.info_hash, "tracker full (torrents)");
        }
        let swarm = self.swarms.entry(a.info_hash).or_default();
        match swarm.peers.get_mut(&a.peer_id) {
            Some(p) => {
                if p.conn != conn {
                    // The same peer on a new connection (a reconnect): it moves.
                    if let Some(prev) = self.conns.get_mut(&p.conn) {
                        prev.swarms.remove(&a.info_hash);
                    }
                    p.conn = conn;
                }
                p.last = now;
                p.complete = complete;
            }
            None => {
                if swarm.peers.len() >= self.config.max_peers_per_swarm
                    || self.peers >= self.config.max_peers
                {
                    if swarm.peers.is_empty() {
                        self.swarms.remove(&a.info_hash);
                    }
                    return Self::fail(conn, a.info_hash, "tracker full (peers)");
                }
                swarm.peers.insert(
                    a.peer_id,
                    Peer {
                        conn,
                        last: now,
                        complete,
                    },
                );
                self.peers += 1;
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.swarms.insert(a.info_hash, a.peer_id);
        }

        let mut out = vec![self.reply(conn, a.info_hash)];
        // Relay the offers to random other peers of the swarm.
        let n = a.offers.len().min(self.config.max_relay);
        if n > 0 {
            let mut others: Vec<(Id20, ConnId)> = self
                .swarms
                .get(&a.info_hash)
                .map(|s| {
                    s.peers
                        .iter()
                        .filter(|(_, p)| p.conn != conn)
                        .map(|(id, p)| (*id, p.conn))
                        .collect()
                })
                .unwrap_or_default();
            let take = n.min(others.len());
            for i in 0..take {
                let j = i + (self.random() % (others.len() - i) as u64) as usize;
                others.swap(i, j);
            }
            let max_pending = self.config.max_pending_per_conn;
            let ttl = self.config.offer_ttl;
            for ((_, to), offer) in others.into_iter().take(take).zip(a.offers) {
                let Some(target) = self.conns.get_mut(&to) else {
                    continue;
                };
                while target
                    .delivered
                    .front()
                    .is_some_and(|d| now.saturating_duration_since(d.at) > ttl)
                    || target.delivered.len() >= max_pending
                {
                    target.delivered.pop_front();
                }
                if max_pending == 0 {
                    continue;
                }
                target.delivered.push_back(Delivered {
                    info_hash: a.info_hash,
                    offer_id: offer.offer_id,
                    from: a.peer_id,
                    at: now,
                });
                out.push(Out {
                    to,
                    msg: ServerMessage::Offer(Relayed {
                        info_hash: a.info_hash,
                        peer_id: a.peer_id,
                        offer_id: offer.offer_id,
                        sdp: offer.sdp,
                    }),
                });
            }
        }
        out
    }

    fn reply(&self, conn: ConnId, info_hash: Id20) -> Out {
        let (complete, incomplete) = self.swarms.get(&info_hash).map_or((0, 0), |s| {
            let c = s.peers.values().filter(|p| p.complete).count();
            (c, s.peers.len() - c)
        });
        Out {
            to: conn,
            msg: ServerMessage::AnnounceReply {
                info_hash,
                interval: Some(u32::try_from(self.config.interval.as_secs()).unwrap_or(u32::MAX)),
                complete: u32::try_from(complete).unwrap_or(u32::MAX),
                incomplete: u32::try_from(incomplete).unwrap_or(u32::MAX),
            },
        }
    }

    fn answer(&mut self, conn: ConnId, now: Instant, a: Answer) -> Option<Out> {
        let ttl = self.config.offer_ttl;
        let c = self.conns.get_mut(&conn)?;
        let i = c.delivered.iter().position(|d| {
            d.offer_id == a.offer_id && d.from == a.to_peer_id && d.info_hash == a.info_hash
        })?;
        let d = c.delivered.remove(i)?;
        if now.saturating_duration_since(d.at) > ttl {
            return None;
        }
        let offerer = self.swarms.get(&a.info_hash)?.peers.get(&a.to_peer_id)?;
        Some(Out {
            to: offerer.conn,
            msg: ServerMessage::Answer(Relayed {
                info_hash: a.info_hash,
                peer_id: a.peer_id,
                offer_id: a.offer_id,
                sdp: a.sdp,
            }),
        })
    }

    /// Drops peers silent for longer than `peer_timeout` and stale relayed offers.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.config.peer_timeout;
        let mut gone = Vec::new();
        for (ih, s) in &self.swarms {
            for (pid, p) in &s.peers {
                if now.saturating_duration_since(p.last) > timeout {
                    gone.push((*ih, *pid, p.conn));
                }
            }
        }
        for (ih, pid, conn) in gone {
            self.remove_peer(&ih, &pid, conn);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.swarms.remove(&ih);
            }
        }
        let ttl = self.config.offer_ttl;
        for c in self.conns.values_mut() {
            c.delivered
                .retain(|d| now.saturating_duration_since(d.at) <= ttl);
        }
    }

    /// The connections that are in no swarm (for the shell's idle timeout).
    pub fn idle_connections(&self) -> HashSet<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.swarms.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Offer;

    fn announce(ih: u8, peer: u8, offers: &[u8]) -> String {
        ClientMessage::Announce(Announce {
            info_hash: [ih; 20],
            peer_id: [peer; 20],
            numwant: None,
            uploaded: 0,
            downloaded: 0,
            left: Some(1),
            event: None,
            offers: offers
                .iter()
                .map(|&o| Offer {
                    offer_id: [o; 20],
                    sdp: format!("sdp{o}"),
                })
                .collect(),
        })
        .encode()
    }

    fn answer(ih: u8, peer: u8, to: u8, offer: u8) -> String {
        ClientMessage::Answer(Answer {
            info_hash: [ih; 20],
            peer_id: [peer; 20],
            to_peer_id: [to; 20],
            offer_id: [offer; 20],
            sdp: "ans".into(),
        })
        .encode()
    }

    #[test]
    fn relays_offers_and_only_solicited_answers() {
        let t = Instant::now();
        let mut s = WsTracker::new(Config::default(), 7);
        for c in 1..=3 {
            s.connect(c, t);
        }
        assert_eq!(s.handle(2, t, &announce(1, 2, &[])).len(), 1);
        assert_eq!(s.handle(3, t, &announce(1, 3, &[])).len(), 1);
        // Peer 1 sends 5 offers; only 2 other peers: 2 relayed, one each.
        let out = s.handle(1, t, &announce(1, 1, &[10, 11, 12, 13, 14]));
        assert!(matches!(
            out[0].msg,
            ServerMessage::AnnounceReply { incomplete: 3, .. }
        ));
        let relayed: Vec<_> = out[1..].iter().collect();
        assert_eq!(relayed.len(), 2);
        let mut to: Vec<_> = relayed.iter().map(|o| o.to).collect();
        to.sort();
        assert_eq!(to, [2, 3]);
        let ServerMessage::Offer(r) = &relayed[0].msg else {
            panic!()
        };
        assert_eq!(r.peer_id, [1; 20]);
        let (first, oid) = (relayed[0].to, r.offer_id[0]);
        // An answer to an offer this connection was not given: dropped.
        assert!(
            s.handle(first, t, &answer(1, first as u8, 1, 99))
                .is_empty()
        );
        // From the wrong connection: dropped.
        let other = if first == 2 { 3 } else { 2 };
        assert!(
            s.handle(other, t, &answer(1, other as u8, 1, oid))
                .is_empty()
        );
        // The right one goes to the offerer, once.
        let out = s.handle(first, t, &answer(1, first as u8, 1, oid));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, 1);
        assert!(matches!(&out[0].msg, ServerMessage::Answer(r) if r.offer_id == [oid; 20]));
        assert!(
            s.handle(first, t, &answer(1, first as u8, 1, oid))
                .is_empty()
        );
    }

    #[test]
    fn answers_expire() {
        let t = Instant::now();
        let mut s = WsTracker::new(Config::default(), 1);
        s.connect(1, t);
        s.connect(2, t);
        s.handle(2, t, &announce(1, 2, &[]));
        let out = s.handle(1, t, &announce(1, 1, &[5]));
        assert_eq!(out.len(), 2);
        let late = t + Duration::from_secs(61);
        assert!(s.handle(2, late, &answer(1, 2, 1, 5)).is_empty());
    }

    #[test]
    fn announces_are_rate_limited_and_swarms_capped() {
        let t = Instant::now();
        let config = Config {
            max_swarms_per_conn: 3,
            announce_burst: 5,
            ..Config::default()
        };
        let mut s = WsTracker::new(config, 1);
        s.connect(1, t);
        for ih in 0..3 {
            assert!(matches!(
                s.handle(1, t, &announce(ih, 1, &[]))[0].msg,
                ServerMessage::AnnounceReply { .. }
            ));
        }
        assert!(matches!(
            s.handle(1, t, &announce(9, 1, &[]))[0].msg,
            ServerMessage::Failure { .. }
        ));
        assert!(matches!(
            s.handle(1, t, &announce(0, 1, &[]))[0].msg,
            ServerMessage::AnnounceReply { .. }
        ));
        // Burst spent.
        assert!(matches!(
            s.handle(1, t, &announce(0, 1, &[]))[0].msg,
            ServerMessage::Failure { .. }
        ));
        let later = t + Duration::from_secs(1);
        assert!(matches!(
            s.handle(1, later, &announce(0, 1, &[]))[0].msg,
            ServerMessage::AnnounceReply { .. }
        ));
        assert_eq!(s.stats().swarms, 3);
        s.disconnect(1);
        assert_eq!(
            s.stats(),
            Stats {
                connections: 0,
                swarms: 0,
                peers: 0
            }
        );
    }

    #[test]
    fn pending_offers_per_connection_are_bounded_and_peers_expire() {
        let t = Instant::now();
        let config = Config {
            max_pending_per_conn: 4,
            announce_burst: 100,
            ..Config::default()
        };
        let mut s = WsTracker::new(config, 3);
        s.connect(1, t);
        s.connect(2, t);
        s.handle(2, t, &announce(1, 2, &[]));
        for o in 0..10 {
            assert_eq!(s.handle(1, t, &announce(1, 1, &[o])).len(), 2);
        }
        // Only the 4 newest can be answered.
        assert!(s.handle(2, t, &answer(1, 2, 1, 5)).is_empty());
        assert_eq!(s.handle(2, t, &answer(1, 2, 1, 9)).len(), 1);
        assert!(s.handle(1, t, "{\"action\":\"announce\"}")[0].msg != ServerMessage::Other);
        s.expire(t + Duration::from_secs(1000));
        assert_eq!(s.stats().peers, 0);
        assert_eq!(s.stats().swarms, 0);
        assert_eq!(s.idle_connections().len(), 2);
    }
}
