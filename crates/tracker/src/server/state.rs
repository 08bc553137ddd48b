//! The tracker's memory, sans-IO: swarms keyed by info-hash, each a set of peers keyed by
//! peer id with their address, bytes left and the time they last announced. Announce and
//! scrape follow BEP 3 (and BEP 48 for scrape); the HTTP and UDP front ends only translate.
//!
//! No clocks inside: every call takes `now`, so expiry is tested with virtual time. Memory is
//! bounded whatever arrives: at most [`Config::max_swarms`] swarms,
//! [`Config::max_peers_per_swarm`] peers in one swarm and [`Config::max_peers`] peers in all.
//! A new peer or swarm beyond a cap is refused with a failure reason (the peers already
//! known are not pushed out by a flood of new ones); peers that miss about two announce
//! intervals are forgotten by [`TrackerState::expire`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeEntry};

/// Peers returned when the announce does not say how many it wants.
pub const DEFAULT_NUMWANT: usize = 50;
/// The most peers one announce gets.
pub const MAX_NUMWANT: usize = 200;

/// Limits and timings of a tracker.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds between regular announces that the tracker asks for.
    pub interval: Duration,
    /// The least time the tracker wants between announces.
    pub min_interval: Duration,
    /// A peer not heard from for this long is forgotten (about two intervals).
    pub peer_timeout: Duration,
    /// Most info-hashes tracked at once.
    pub max_swarms: usize,
    /// Most peers in one swarm.
    pub max_peers_per_swarm: usize,
    /// Most peers in all swarms together.
    pub max_peers: usize,
    /// If set, only these info-hashes are tracked; others get a failure reason.
    pub allow: Option<HashSet<[u8; 20]>>,
}

impl Config {
    /// Default caps with announce `interval` (min interval: a quarter of it, at least 1 s;
    /// peer timeout: two intervals and a bit).
    pub fn with_interval(interval: Duration) -> Self {
        let interval = interval.max(Duration::from_secs(1));
        Config {
            interval,
            min_interval: (interval / 4).max(Duration::from_secs(1)),
            peer_timeout: interval * 2 + interval / 4,
            max_swarms: 100_000,
            max_peers_per_swarm: 50_000,
            max_peers: 1_000_000,
            allow: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::with_interval(Duration::from_secs(1800))
    }
}

/// Why an announce was refused; sent to the peer as a `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("info-hash not allowed on this tracker")]
    NotAllowed,
    #[error("invalid port")]
    InvalidPort,
    #[error("tracker is full: too many torrents")]
    TooManySwarms,
    #[error("swarm is full")]
    SwarmFull,
    #[error("tracker is full: too many peers")]
    TooManyPeers,
}

/// Which address family a requester wants peers of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn matches(self, addr: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// A peer handed out by an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
}

/// The outcome of an accepted announce, with the peer ids that a non-compact HTTP answer
/// lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub interval: u32,
    pub min_interval: u32,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    pub peers: Vec<PeerEntry>,
}

impl Announced {
    pub fn into_response(self) -> AnnounceResponse {
        AnnounceResponse {
            interval: self.interval,
            min_interval: Some(self.min_interval),
            complete: Some(self.complete),
            incomplete: Some(self.incomplete),
            peers: self.peers.into_iter().map(|p| p.addr).collect(),
            warning: None,
            tracker_id: None,
        }
    }
}

/// Counts that show the tracker respects its caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub swarms: usize,
    pub peers: usize,
    pub announces: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    peer_id: [u8; 20],
    addr: SocketAddr,
    left: u64,
    last_seen: Instant,
}

impl Peer {
    fn is_seeder(&self) -> bool {
        self.left == 0
    }
}

#[derive(Debug, Default)]
struct Swarm {
    /// Peers in a vector (cheap rotation through it) with an index by peer id.
    peers: Vec<Peer>,
    index: HashMap<[u8; 20], usize>,
    seeders: u32,
    downloaded: u32,
    /// Where the next announce starts handing out peers, so successive announces see
    /// different parts of a large swarm.
    cursor: usize,
}

impl Swarm {
    fn remove(&mut self, peer_id: &[u8; 20]) -> Option<Peer> {
        let i = self.index.remove(peer_id)?;
        let peer = self.peers.swap_remove(i);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.peer_id, i);
        }
        if peer.is_seeder() {
            self.seeders -= 1;
        }
        Some(peer)
    }

    fn leechers(&self) -> u32 {
        self.peers.len() as u32 - self.seeders
    }

    fn scrape(&self) -> ScrapeEntry {
        ScrapeEntry {
            complete: self.seeders,
            downloaded: self.downloaded,
            incomplete: self.leechers(),
        }
    }
}

/// All swarms of a tracker. Feed it announces and scrapes; call [`TrackerState::expire`]
/// from time to time (see [`TrackerState::expire_every`]).
#[derive(Debug)]
pub struct TrackerState {
    config: Config,
    swarms: HashMap<[u8; 20], Swarm>,
    total_peers: usize,
    announces: u64,
    rejected: u64,
    /// When a full tracker last swept for expired peers before refusing one: at most one
    /// such sweep a second, so a flood at the cap costs no more than the flood.
    last_full_sweep: Option<Instant>,
}

impl TrackerState {
    pub fn new(config: Config) -> Self {
        TrackerState {
            config,
            swarms: HashMap::new(),
            total_peers: 0,
            announces: 0,
            rejected: 0,
            last_full_sweep: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        Stats {
            swarms: self.swarms.len(),
            peers: self.total_peers,
            announces: self.announces,
            rejected: self.rejected,
        }
    }

    /// Whether `info_hash` may be tracked here.
    pub fn allowed(&self, info_hash: &[u8; 20]) -> bool {
        self.config
            .allow
            .as_ref()
            .is_none_or(|a| a.contains(info_hash))
    }

    /// How often the shell should call [`TrackerState::expire`].
    pub fn expire_every(&self) -> Duration {
        (self.config.peer_timeout / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// An announce from `source` (the address the request came from; the peer's address is
    /// its IP with the announced port). Peers of any address family are returned.
    pub fn announce(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        source: SocketAddr,
    ) -> Result<AnnounceResponse, Rejection> {
        self.announce_peers(now, req, source.ip(), Family::Any)
            .map(Announced::into_response)
    }

    /// An announce from IP `source`, returning up to numwant peers of `family` (never the
    /// requester itself; no seeders to a seeder).
    pub fn announce_peers(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        source: IpAddr,
        family: Family,
    ) -> Result<Announced, Rejection> {
        self.announces += 1;
        let result = self.announce_inner(now, req, source, family);
        if result.is_err() {
            self.rejected += 1;
        }
        result
    }

    fn announce_inner(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        source: IpAddr,
        family: Family,
    ) -> Result<Announced, Rejection> {
        if !self.allowed(&req.info_hash) {
            return Err(Rejection::NotAllowed);
        }
        let interval = self.config.interval.as_secs().min(u32::MAX as u64) as u32;
        let min_interval = self.config.min_interval.as_secs().min(u32::MAX as u64) as u32;
        if req.event == AnnounceEvent::Stopped {
            // A peer leaving: forget it, hand out nothing, and create no swarm for it.
            let mut counts = (0, 0);
            if let Some(swarm) = self.swarms.get_mut(&req.info_hash) {
                if swarm.remove(&req.peer_id).is_some() {
                    self.total_peers -= 1;
                }
                counts = (swarm.seeders, swarm.leechers());
                if swarm.peers.is_empty() && swarm.downloaded == 0 {
                    self.swarms.remove(&req.info_hash);
                }
            }
            return Ok(Announced {
                interval,
                min_interval,
                complete: counts.0,
                incomplete: counts.1,
                peers: Vec::new(),
            });
        }
        if req.port == 0 {
            return Err(Rejection::InvalidPort);
        }
        let addr = SocketAddr::new(source.to_canonical(), req.port);

        let known = self
            .swarms
            .get(&req.info_hash)
            .is_some_and(|s| s.index.contains_key(&req.peer_id));
        if !known {
            self.make_room(now, &req.info_hash)?;
        }
        let swarm = self.swarms.entry(req.info_hash).or_default();
        match swarm.index.get(&req.peer_id) {
            Some(&i) => {
                let peer = &mut swarm.peers[i];
                let was_seeder = peer.is_seeder();
                if req.event == AnnounceEvent::Completed && !was_seeder {
                    swarm.downloaded = swarm.downloaded.saturating_add(1);
                }
                peer.addr = addr;
                peer.left = req.left;
                peer.last_seen = now;
                match (was_seeder, peer.is_seeder()) {
                    (false, true) => swarm.seeders += 1,
                    (true, false) => swarm.seeders -= 1,
                    _ => {}
                }
            }
            None => {
                if req.event == AnnounceEvent::Completed {
                    swarm.downloaded = swarm.downloaded.saturating_add(1);
                }
                let peer = Peer {
                    peer_id: req.peer_id,
                    addr,
                    left: req.left,
                    last_seen: now,
                };
                if peer.is_seeder() {
                    swarm.seeders += 1;
                }
                swarm.index.insert(req.peer_id, swarm.peers.len());
                swarm.peers.push(peer);
                self.total_peers += 1;
            }
        }

        let numwant = match req.numwant {
            Some(n) => (n as usize).min(MAX_NUMWANT),
            None => DEFAULT_NUMWANT,
        };
        let seeder = req.left == 0;
        let n = swarm.peers.len();
        let mut peers = Vec::with_capacity(numwant.min(n));
        let start = if n == 0 { 0 } else { swarm.cursor % n };
        let mut visited = 0;
        while visited < n && peers.len() < numwant {
            let p = &swarm.peers[(start + visited) % n];
            visited += 1;
            if p.peer_id == req.peer_id || p.addr == addr {
                continue;
            }
            if seeder && p.is_seeder() {
                continue;
            }
            if !family.matches(&p.addr) {
                continue;
            }
            peers.push(PeerEntry {
                addr: p.addr,
                peer_id: p.peer_id,
            });
        }
        swarm.cursor = if n == 0 { 0 } else { (start + visited) % n };
        Ok(Announced {
            interval,
            min_interval,
            complete: swarm.seeders,
            incomplete: swarm.leechers(),
            peers,
        })
    }

    /// Checks the caps before a new peer (and maybe a new swarm) is added; when one is
    /// reached, sweeps expired peers (at most once a second) and checks again.
    fn make_room(&mut self, now: Instant, info_hash: &[u8; 20]) -> Result<(), Rejection> {
        let check = |s: &Self| -> Result<(), Rejection> {
            match s.swarms.get(info_hash) {
                Some(swarm) if swarm.peers.len() >= s.config.max_peers_per_swarm => {
                    return Err(Rejection::SwarmFull);
                }
                None if s.swarms.len() >= s.config.max_swarms => {
                    return Err(Rejection::TooManySwarms);
                }
                _ => {}
            }
            if s.total_peers >= s.config.max_peers {
                return Err(Rejection::TooManyPeers);
            }
            Ok(())
        };
        match check(self) {
            Ok(()) => Ok(()),
            Err(e) => {
                let recently = self
                    .last_full_sweep
                    .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
                if recently {
                    return Err(e);
                }
                self.last_full_sweep = Some(now);
                self.expire(now);
                check(self)
            }
        }
    }

    /// Counts for each of `info_hashes` (zeros for one not tracked).
    pub fn scrape(&self, _now: Instant, info_hashes: &[[u8; 20]]) -> Vec<ScrapeEntry> {
        info_hashes
            .iter()
            .map(|h| self.swarms.get(h).map(Swarm::scrape).unwrap_or_default())
            .collect()
    }

    /// Forgets peers not heard from within the peer timeout, and swarms left empty.
    /// Returns how many peers were forgotten.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.config.peer_timeout;
        let mut removed = 0;
        self.swarms.retain(|_, swarm| {
            let before = swarm.peers.len();
            swarm
                .peers
                .retain(|p| now.saturating_duration_since(p.last_seen) < timeout);
            if swarm.peers.len() != before {
                removed += before - swarm.peers.len();
                swarm.index.clear();
                swarm.seeders = 0;
                for (i, p) in swarm.peers.iter().enumerate() {
                    swarm.index.insert(p.peer_id, i);
                    if p.is_seeder() {
                        swarm.seeders += 1;
                    }
                }
                swarm.index.shrink_to_fit();
                swarm.peers.shrink_to_fit();
            }
            !swarm.peers.is_empty()
        });
        self.total_peers -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> [u8; 20] {
        let mut h = [0xabu8; 20];
        h[..4].copy_from_slice(&n.to_be_bytes());
        h
    }

    fn req(ih: u32, peer: u32, port: u16, left: u64, event: AnnounceEvent) -> AnnounceRequest {
        let mut peer_id = [b'-'; 20];
        peer_id[..4].copy_from_slice(&peer.to_be_bytes());
        AnnounceRequest {
            info_hash: hash(ih),
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            key: 0,
        }
    }

    fn src(n: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::from([10, 0, (n >> 8) as u8, n as u8]), 40000)
    }

    fn short() -> Config {
        Config::with_interval(Duration::from_secs(10))
    }

    #[test]
    fn peers_find_each_other_but_never_themselves() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        let r = t
            .announce(now, &req(1, 1, 6881, 0, AnnounceEvent::Started), src(1))
            .unwrap();
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(0)));
        assert_eq!(r.interval, 10);
        let r = t
            .announce(now, &req(1, 2, 6882, 100, AnnounceEvent::Started), src(2))
            .unwrap();
        assert_eq!(r.peers, vec![SocketAddr::new(src(1).ip(), 6881)]);
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
        // The seeder sees the leecher, and again on a second announce, never itself.
        for _ in 0..2 {
            let r = t
                .announce(now, &req(1, 1, 6881, 0, AnnounceEvent::None), src(1))
                .unwrap();
            assert_eq!(r.peers, vec![SocketAddr::new(src(2).ip(), 6882)]);
        }
        // Another torrent is another swarm.
        let r = t
            .announce(now, &req(2, 3, 6883, 5, AnnounceEvent::Started), src(3))
            .unwrap();
        assert!(r.peers.is_empty());
        assert_eq!(t.stats().swarms, 2);
        assert_eq!(t.stats().peers, 3);
    }

    #[test]
    fn seeders_get_no_seeders() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        for i in 0..5 {
            t.announce(
                now,
                &req(1, i, 7000 + i as u16, 0, AnnounceEvent::Started),
                src(i),
            )
            .unwrap();
        }
        t.announce(now, &req(1, 9, 7009, 50, AnnounceEvent::Started), src(9))
            .unwrap();
        let r = t
            .announce(now, &req(1, 10, 7010, 0, AnnounceEvent::Started), src(10))
            .unwrap();
        assert_eq!(r.peers, vec![SocketAddr::new(src(9).ip(), 7009)]);
        let r = t
            .announce(now, &req(1, 11, 7011, 1, AnnounceEvent::Started), src(11))
            .unwrap();
        assert_eq!(r.peers.len(), 7);
    }

    #[test]
    fn numwant_default_max_and_rotation() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        for i in 0..300 {
            t.announce(
                now,
                &req(1, i, 1000 + i as u16, 1, AnnounceEvent::Started),
                src(i),
            )
            .unwrap();
        }
        let mut r = req(1, 1000, 9999, 1, AnnounceEvent::None);
        let a = t.announce(now, &r, src(1000)).unwrap();
        assert_eq!(a.peers.len(), DEFAULT_NUMWANT);
        r.numwant = Some(10_000);
        assert_eq!(
            t.announce(now, &r, src(1000)).unwrap().peers.len(),
            MAX_NUMWANT
        );
        r.numwant = Some(0);
        assert!(t.announce(now, &r, src(1000)).unwrap().peers.is_empty());
        r.numwant = Some(7);
        let b = t.announce(now, &r, src(1000)).unwrap();
        let c = t.announce(now, &r, src(1000)).unwrap();
        assert_eq!((b.peers.len(), c.peers.len()), (7, 7));
        assert!(
            b.peers.iter().all(|p| !c.peers.contains(p)),
            "rotation repeats peers"
        );
        let mut uniq = a.peers.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), a.peers.len());
    }

    #[test]
    fn family_filter() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        t.announce(
            now,
            &req(1, 1, 1, 1, AnnounceEvent::None),
            "[2001:db8::1]:1".parse().unwrap(),
        )
        .unwrap();
        // An IPv4-mapped source is stored as IPv4.
        t.announce(
            now,
            &req(1, 2, 2, 1, AnnounceEvent::None),
            "[::ffff:1.2.3.4]:1".parse().unwrap(),
        )
        .unwrap();
        let r = req(1, 3, 3, 1, AnnounceEvent::None);
        let ip: IpAddr = "9.9.9.9".parse().unwrap();
        let v4 = t.announce_peers(now, &r, ip, Family::V4).unwrap();
        assert_eq!(v4.peers.len(), 1);
        assert_eq!(v4.peers[0].addr, "1.2.3.4:2".parse().unwrap());
        let v6 = t.announce_peers(now, &r, ip, Family::V6).unwrap();
        assert_eq!(v6.peers.len(), 1);
        assert_eq!(v6.peers[0].addr, "[2001:db8::1]:1".parse().unwrap());
        assert_eq!(
            t.announce_peers(now, &r, ip, Family::Any)
                .unwrap()
                .peers
                .len(),
            2
        );
    }

    #[test]
    fn stopped_removes_and_completed_counts() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        t.announce(now, &req(1, 1, 1, 10, AnnounceEvent::Started), src(1))
            .unwrap();
        t.announce(now, &req(1, 2, 2, 10, AnnounceEvent::Started), src(2))
            .unwrap();
        let s = t.scrape(now, &[hash(1), hash(7)]);
        assert_eq!(
            s[0],
            ScrapeEntry {
                complete: 0,
                downloaded: 0,
                incomplete: 2
            }
        );
        assert_eq!(s[1], ScrapeEntry::default());
        t.announce(now, &req(1, 1, 1, 0, AnnounceEvent::Completed), src(1))
            .unwrap();
        // A repeated completed from a seeder does not count twice.
        t.announce(now, &req(1, 1, 1, 0, AnnounceEvent::Completed), src(1))
            .unwrap();
        let s = t.scrape(now, &[hash(1)]);
        assert_eq!(
            s[0],
            ScrapeEntry {
                complete: 1,
                downloaded: 1,
                incomplete: 1
            }
        );
        let r = t
            .announce(now, &req(1, 2, 2, 10, AnnounceEvent::Stopped), src(2))
            .unwrap();
        assert!(r.peers.is_empty());
        let s = t.scrape(now, &[hash(1)]);
        assert_eq!(
            s[0],
            ScrapeEntry {
                complete: 1,
                downloaded: 1,
                incomplete: 0
            }
        );
        assert_eq!(t.stats().peers, 1);
        // A stopped for an unknown torrent creates nothing.
        t.announce(now, &req(5, 2, 2, 10, AnnounceEvent::Stopped), src(2))
            .unwrap();
        assert_eq!(t.stats().swarms, 1);
        // The seeder leaving the swarm is not handed out any more.
        t.announce(now, &req(1, 1, 1, 0, AnnounceEvent::Stopped), src(1))
            .unwrap();
        let r = t
            .announce(now, &req(1, 3, 3, 10, AnnounceEvent::Started), src(3))
            .unwrap();
        assert!(r.peers.is_empty());
    }

    #[test]
    fn peers_expire_after_missing_two_intervals() {
        let mut t = TrackerState::new(short());
        let t0 = Instant::now();
        t.announce(t0, &req(1, 1, 1, 10, AnnounceEvent::Started), src(1))
            .unwrap();
        t.announce(t0, &req(1, 2, 2, 0, AnnounceEvent::Started), src(2))
            .unwrap();
        t.announce(t0, &req(2, 3, 3, 10, AnnounceEvent::Started), src(3))
            .unwrap();
        // Peer 1 keeps announcing every interval; the others go quiet.
        for k in 1..=2 {
            let now = t0 + Duration::from_secs(10 * k);
            t.announce(now, &req(1, 1, 1, 10, AnnounceEvent::None), src(1))
                .unwrap();
            assert_eq!(t.expire(now), 0);
        }
        let now = t0 + Duration::from_secs(23);
        assert_eq!(t.expire(now), 2);
        assert_eq!(
            t.stats(),
            Stats {
                swarms: 1,
                peers: 1,
                announces: 5,
                rejected: 0
            }
        );
        let s = t.scrape(now, &[hash(1)]);
        assert_eq!(
            s[0],
            ScrapeEntry {
                complete: 0,
                downloaded: 0,
                incomplete: 1
            }
        );
        let r = t
            .announce(now, &req(1, 4, 4, 10, AnnounceEvent::None), src(4))
            .unwrap();
        assert_eq!(r.peers, vec![SocketAddr::new(src(1).ip(), 1)]);
        assert_eq!(t.expire(now + Duration::from_secs(1000)), 2);
        assert_eq!(t.stats().swarms, 0);
    }

    #[test]
    fn caps_hold_and_refuse_with_a_reason() {
        let mut c = short();
        c.max_swarms = 3;
        c.max_peers_per_swarm = 4;
        c.max_peers = 10;
        let mut t = TrackerState::new(c);
        let now = Instant::now();
        for i in 0..5 {
            let r = t.announce(now, &req(1, i, 1, 1, AnnounceEvent::None), src(i));
            assert_eq!(r.is_ok(), i < 4, "peer {i}");
        }
        assert_eq!(
            t.announce(now, &req(1, 9, 1, 1, AnnounceEvent::None), src(9)),
            Err(Rejection::SwarmFull)
        );
        // Known peers still announce in a full swarm.
        assert!(
            t.announce(now, &req(1, 0, 1, 1, AnnounceEvent::None), src(0))
                .is_ok()
        );
        for i in 0..4 {
            t.announce(now, &req(2, i, 1, 1, AnnounceEvent::None), src(i))
                .unwrap();
        }
        t.announce(now, &req(3, 1, 1, 1, AnnounceEvent::None), src(1))
            .unwrap();
        t.announce(now, &req(3, 2, 1, 1, AnnounceEvent::None), src(2))
            .unwrap();
        assert_eq!(
            t.announce(now, &req(3, 3, 1, 1, AnnounceEvent::None), src(3)),
            Err(Rejection::TooManyPeers)
        );
        assert_eq!(
            t.announce(now, &req(4, 3, 1, 1, AnnounceEvent::None), src(3)),
            Err(Rejection::TooManySwarms)
        );
        assert_eq!(t.stats().peers, 10);
        assert_eq!(t.stats().swarms, 3);
        // Once the old peers expire there is room again (the full tracker sweeps by itself).
        let later = now + Duration::from_secs(60);
        t.announce(later, &req(4, 3, 1, 1, AnnounceEvent::None), src(3))
            .unwrap();
        assert_eq!(
            t.stats(),
            Stats {
                swarms: 1,
                peers: 1,
                announces: 16,
                rejected: 4
            }
        );
    }

    #[test]
    fn allow_list_and_bad_port() {
        let mut c = short();
        c.allow = Some([hash(1)].into_iter().collect());
        let mut t = TrackerState::new(c);
        let now = Instant::now();
        assert!(
            t.announce(now, &req(1, 1, 1, 1, AnnounceEvent::None), src(1))
                .is_ok()
        );
        assert_eq!(
            t.announce(now, &req(2, 1, 1, 1, AnnounceEvent::None), src(1)),
            Err(Rejection::NotAllowed)
        );
        assert_eq!(
            t.announce(now, &req(1, 2, 0, 1, AnnounceEvent::None), src(1)),
            Err(Rejection::InvalidPort)
        );
        assert_eq!(t.stats().swarms, 1);
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever announces arrive, in whatever order, with time going forward: the
        /// counts agree with the peers held, no cap is passed, and no one is handed itself.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(
            (0u32..6, 0u32..40, 0u8..4, 0u64..3, 0u64..30, proptest::option::of(0u32..300)),
            1..300,
        )) {
            let mut c = short();
            c.max_swarms = 4;
            c.max_peers_per_swarm = 6;
            c.max_peers = 15;
            let mut t = TrackerState::new(c);
            let t0 = Instant::now();
            let mut secs = 0;
            for (ih, peer, event, left, step, numwant) in ops {
                secs += step;
                let now = t0 + Duration::from_secs(secs);
                let event = AnnounceEvent::from_udp(event as u32).unwrap();
                let mut r = req(ih, peer, 1 + peer as u16, left, event);
                r.numwant = numwant;
                if step % 7 == 0 {
                    t.expire(now);
                }
                if let Ok(a) = t.announce_peers(now, &r, src(peer).ip(), Family::Any) {
                    prop_assert!(a.peers.len() <= numwant.map_or(DEFAULT_NUMWANT, |n| (n as usize).min(MAX_NUMWANT)));
                    prop_assert!(a.peers.iter().all(|p| p.peer_id != r.peer_id));
                    if left == 0 {
                        let no_seeders = t.swarms.get(&r.info_hash).is_none_or(|s| {
                            a.peers.iter().all(|p| {
                                s.index.get(&p.peer_id).is_none_or(|&i| !s.peers[i].is_seeder())
                            })
                        });
                        prop_assert!(no_seeders, "a seeder was handed seeders");
                    }
                }
                let total: usize = t.swarms.values().map(|s| s.peers.len()).sum();
                prop_assert_eq!(total, t.stats().peers);
                prop_assert!(total <= 15 && t.swarms.len() <= 4);
                for s in t.swarms.values() {
                    prop_assert!(s.peers.len() <= 6);
                    prop_assert_eq!(s.index.len(), s.peers.len());
                    let seeders = s.peers.iter().filter(|p| p.is_seeder()).count() as u32;
                    prop_assert_eq!(seeders, s.seeders);
                    for (i, p) in s.peers.iter().enumerate() {
                        prop_assert_eq!(s.index[&p.peer_id], i);
                    }
                }
            }
        }
    }
}
