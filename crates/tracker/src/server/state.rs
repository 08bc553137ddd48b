//! The tracker's memory, sans-IO: swarms keyed by info-hash, each a set of peers keyed by
//! peer id with their address, bytes left and the time they last announced. Announce and
//! scrape follow BEP 3 (and BEP 48 for scrape); the HTTP and UDP front ends only translate.
//!
//! No clocks inside: every call takes `now` (which must not go backwards from one call to
//! the next), so expiry is tested with virtual time. Memory is bounded whatever arrives: at
//! most [`Config::max_swarms`] swarms, [`Config::max_peers_per_swarm`] peers in one swarm
//! and [`Config::max_peers`] peers in all.
//!
//! One host must not be able to fill a swarm: an IPv4 address (or an IPv6 /64, which one
//! host usually holds whole) has at most [`Config::max_peers_per_ip`] peers in a swarm, and
//! a newcomer beyond that replaces the stalest peer of its own address. A full swarm takes a
//! newcomer by forgetting its stalest peer (the one that announced longest ago), so a flood
//! can only churn itself, never lock honest newcomers out. (opentracker keys peers by
//! address and port, which bounds a host by its ports; keying by peer id with a cap per
//! address bounds it by a small number.) Each swarm keeps its peers in two recency lists,
//! one for the swarm and one per address, linked through the peers' indices, so finding and
//! replacing the stalest peer is O(1), as is every announce. Peers that miss about two
//! announce intervals are forgotten by [`TrackerState::expire`], from the stale end of the
//! lists.
//!
//! Peer ids are not secret (non-compact answers list them), so a peer id already known is
//! taken as the same peer only from the same IP address, or with the same non-zero `key`
//! (BEP 7, BEP 15: the key proves identity across an address change): nobody else can
//! move an honest peer to their own address or make it leave with a `stopped`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeEntry};

/// Peers returned when the announce does not say how many it wants.
pub const DEFAULT_NUMWANT: usize = 50;
/// The most peers one announce gets.
pub const MAX_NUMWANT: usize = 200;
/// Default for [`Config::max_peers_per_ip`]: room for a few clients behind one NAT.
pub const DEFAULT_MAX_PEERS_PER_IP: usize = 4;

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
    /// Most peers in one swarm; a newcomer to a full swarm replaces its stalest peer.
    pub max_peers_per_swarm: usize,
    /// Most peers in all swarms together.
    pub max_peers: usize,
    /// Most peers of one IPv4 address or IPv6 /64 in one swarm (at least 1); a newcomer
    /// beyond it replaces the stalest peer of that address.
    pub max_peers_per_ip: usize,
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
            max_peers_per_ip: DEFAULT_MAX_PEERS_PER_IP,
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
    /// Only with a cap of 0 peers per swarm: any other full swarm makes room.
    #[error("swarm is full")]
    SwarmFull,
    #[error("tracker is full: too many peers")]
    TooManyPeers,
    #[error("peer id in use from another address")]
    PeerIdTaken,
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
    /// Peers forgotten to make room for a newcomer (of the same address, or in a full
    /// swarm), not counting expiry.
    pub replaced: u64,
}

/// The group an address counts against for [`Config::max_peers_per_ip`]: an IPv4 address
/// (IPv4-mapped IPv6 included), or the /64 prefix of an IPv6 address.
fn ip_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// "No peer" in the recency lists.
const NIL: u32 = u32::MAX;

/// A peer's neighbours in one recency list (older, newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    const NONE: Links = Links {
        prev: NIL,
        next: NIL,
    };
}

/// The ends of one recency list: `head` is the stalest peer, `tail` the freshest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ends {
    head: u32,
    tail: u32,
    len: u32,
}

impl Ends {
    const EMPTY: Ends = Ends {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// Which recency list: the whole swarm's, or the one of the peer's address group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Swarm,
    Group,
}

#[derive(Debug, Clone)]
struct Peer {
    peer_id: [u8; 20],
    addr: SocketAddr,
    /// [`ip_group`] of `addr`.
    group: IpAddr,
    left: u64,
    /// The `key` it announced with (0: none).
    key: u32,
    last_seen: Instant,
    in_swarm: Links,
    in_group: Links,
}

impl Peer {
    fn is_seeder(&self) -> bool {
        self.left == 0
    }

    /// Whether an announce from `ip` with `key` comes from this peer.
    fn is_announced_by(&self, ip: IpAddr, key: u32) -> bool {
        self.addr.ip() == ip.to_canonical() || (key != 0 && key == self.key)
    }

    fn links(&self, list: List) -> Links {
        match list {
            List::Swarm => self.in_swarm,
            List::Group => self.in_group,
        }
    }

    fn links_mut(&mut self, list: List) -> &mut Links {
        match list {
            List::Swarm => &mut self.in_swarm,
            List::Group => &mut self.in_group,
        }
    }
}

/// Most peers one swarm can index (the lists use `u32` indices, `NIL` excluded).
const MAX_SWARM_LEN: usize = (NIL - 1) as usize;

#[derive(Debug)]
struct Swarm {
    /// Peers in a vector (cheap rotation through it) with an index by peer id.
    peers: Vec<Peer>,
    index: HashMap<[u8; 20], u32>,
    /// Every peer, stalest first.
    recency: Ends,
    /// The peers of each address group, stalest first.
    groups: HashMap<IpAddr, Ends>,
    seeders: u32,
    downloaded: u32,
    /// Where the next announce starts handing out peers, so successive announces see
    /// different parts of a large swarm.
    cursor: usize,
}

impl Default for Swarm {
    fn default() -> Self {
        Swarm {
            peers: Vec::new(),
            index: HashMap::new(),
            recency: Ends::EMPTY,
            groups: HashMap::new(),
            seeders: 0,
            downloaded: 0,
            cursor: 0,
        }
    }
}

impl Swarm {
    fn len(&self) -> usize {
        self.peers.len()
    }

    fn ends(&self, list: List, group: &IpAddr) -> Ends {
        match list {
            List::Swarm => self.recency,
            List::Group => self.groups.get(group).copied().unwrap_or(Ends::EMPTY),
        }
    }

    fn ends_mut(&mut self, list: List, group: IpAddr) -> &mut Ends {
        match list {
            List::Swarm => &mut self.recency,
            List::Group => self.groups.entry(group).or_insert(Ends::EMPTY),
        }
    }

    /// Appends peer `i` as the freshest of `list`.
    fn push_back(&mut self, i: u32, list: List) {
        let group = self.peers[i as usize].group;
        let ends = self.ends_mut(list, group);
        let old_tail = ends.tail;
        ends.tail = i;
        if ends.head == NIL {
            ends.head = i;
        }
        ends.len += 1;
        if old_tail != NIL {
            self.peers[old_tail as usize].links_mut(list).next = i;
        }
        *self.peers[i as usize].links_mut(list) = Links {
            prev: old_tail,
            next: NIL,
        };
    }

    /// Takes peer `i` out of `list`.
    fn unlink(&mut self, i: u32, list: List) {
        let group = self.peers[i as usize].group;
        let Links { prev, next } = self.peers[i as usize].links(list);
        if prev != NIL {
            self.peers[prev as usize].links_mut(list).next = next;
        } else {
            self.ends_mut(list, group).head = next;
        }
        if next != NIL {
            self.peers[next as usize].links_mut(list).prev = prev;
        } else {
            self.ends_mut(list, group).tail = prev;
        }
        let ends = self.ends_mut(list, group);
        ends.len -= 1;
        if list == List::Group && ends.len == 0 {
            self.groups.remove(&group);
        }
        *self.peers[i as usize].links_mut(list) = Links::NONE;
    }

    /// The peer now at index `to` was at `from` (moved by a `swap_remove`): point its
    /// neighbours, list ends and index entry at `to`.
    fn renumber(&mut self, from: u32, to: u32) {
        let group = self.peers[to as usize].group;
        for list in [List::Swarm, List::Group] {
            let Links { prev, next } = self.peers[to as usize].links(list);
            if prev != NIL {
                self.peers[prev as usize].links_mut(list).next = to;
            } else {
                debug_assert_eq!(self.ends(list, &group).head, from);
                self.ends_mut(list, group).head = to;
            }
            if next != NIL {
                self.peers[next as usize].links_mut(list).prev = to;
            } else {
                self.ends_mut(list, group).tail = to;
            }
        }
        self.index.insert(self.peers[to as usize].peer_id, to);
    }

    fn insert(&mut self, peer: Peer) {
        let i = self.peers.len() as u32; // < MAX_SWARM_LEN, checked by make_room
        if peer.is_seeder() {
            self.seeders += 1;
        }
        self.index.insert(peer.peer_id, i);
        self.peers.push(peer);
        self.push_back(i, List::Swarm);
        self.push_back(i, List::Group);
    }

    /// Announced again (`group` is its address group now): the freshest of its lists.
    fn touch(&mut self, i: u32, group: IpAddr) {
        self.unlink(i, List::Swarm);
        self.unlink(i, List::Group);
        self.peers[i as usize].group = group;
        self.push_back(i, List::Swarm);
        self.push_back(i, List::Group);
    }

    fn remove_at(&mut self, i: u32) -> Peer {
        self.unlink(i, List::Swarm);
        self.unlink(i, List::Group);
        let peer = self.peers.swap_remove(i as usize);
        self.index.remove(&peer.peer_id);
        let last = self.peers.len() as u32;
        if i < last {
            self.renumber(last, i);
        }
        if peer.is_seeder() {
            self.seeders -= 1;
        }
        if self.peers.len() < self.peers.capacity() / 4 {
            // After a flood left: give the memory back.
            self.peers.shrink_to(self.peers.len() * 2);
            self.index.shrink_to(self.peers.len() * 2);
        }
        peer
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
    replaced: u64,
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
            replaced: 0,
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
            replaced: self.replaced,
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
                let own = swarm
                    .index
                    .get(&req.peer_id)
                    .copied()
                    .filter(|&i| swarm.peers[i as usize].is_announced_by(source, req.key));
                if let Some(i) = own {
                    swarm.remove_at(i);
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
        let group = ip_group(source);

        let known = self
            .swarms
            .get(&req.info_hash)
            .and_then(|s| s.index.get(&req.peer_id).copied());
        match known {
            Some(i) => {
                let swarm = &self.swarms[&req.info_hash];
                if !swarm.peers[i as usize].is_announced_by(source, req.key) {
                    return Err(Rejection::PeerIdTaken);
                }
                self.update_peer(now, req, i, addr, group)
            }
            None => {
                self.make_room(now, &req.info_hash, group)?;
                let swarm = self.swarms.entry(req.info_hash).or_default();
                if req.event == AnnounceEvent::Completed {
                    swarm.downloaded = swarm.downloaded.saturating_add(1);
                }
                swarm.insert(Peer {
                    peer_id: req.peer_id,
                    addr,
                    group,
                    left: req.left,
                    key: req.key,
                    last_seen: now,
                    in_swarm: Links::NONE,
                    in_group: Links::NONE,
                });
                self.total_peers += 1;
            }
        }

        let Some(swarm) = self.swarms.get_mut(&req.info_hash) else {
            return Err(Rejection::SwarmFull); // not reached: the peer was just added
        };
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

    /// A known peer (index `i` in its swarm) announced again, maybe from another address.
    fn update_peer(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        mut i: u32,
        addr: SocketAddr,
        group: IpAddr,
    ) {
        let per_ip = self.config.max_peers_per_ip.max(1);
        let Some(swarm) = self.swarms.get_mut(&req.info_hash) else {
            return;
        };
        if swarm.peers[i as usize].group != group {
            // Moving to another address: that address's cap holds for it too.
            let ends = swarm.ends(List::Group, &group);
            if ends.len as usize >= per_ip && ends.head != NIL {
                let victim = ends.head;
                swarm.remove_at(victim);
                self.total_peers -= 1;
                self.replaced += 1;
                if i as usize == swarm.peers.len() {
                    i = victim; // our peer was the last one, moved into the gap
                }
            }
        }
        let peer = &mut swarm.peers[i as usize];
        let was_seeder = peer.is_seeder();
        if req.event == AnnounceEvent::Completed && !was_seeder {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        peer.addr = addr;
        peer.left = req.left;
        peer.last_seen = now;
        if req.key != 0 {
            peer.key = req.key;
        }
        match (was_seeder, peer.is_seeder()) {
            (false, true) => swarm.seeders += 1,
            (true, false) => swarm.seeders -= 1,
            _ => {}
        }
        swarm.touch(i, group);
    }

    /// Makes room for a new peer of address `group` in swarm `info_hash` (maybe a new
    /// swarm). A group at its cap gives up its stalest peer; a full swarm its stalest peer;
    /// a full tracker sweeps expired peers (at most once a second), then takes the stalest
    /// peer of this swarm, or refuses a newcomer that would start a swarm.
    fn make_room(
        &mut self,
        now: Instant,
        info_hash: &[u8; 20],
        group: IpAddr,
    ) -> Result<(), Rejection> {
        let per_ip = self.config.max_peers_per_ip.max(1);
        let per_swarm = self.config.max_peers_per_swarm.min(MAX_SWARM_LEN);
        if let Some(swarm) = self.swarms.get(info_hash) {
            let in_group = swarm.ends(List::Group, &group);
            let victim = if in_group.len as usize >= per_ip {
                Some(in_group.head)
            } else if swarm.len() >= per_swarm {
                Some(swarm.recency.head)
            } else {
                None
            };
            match victim {
                Some(NIL) => return Err(Rejection::SwarmFull), // a cap of 0
                Some(v) => {
                    self.replace(info_hash, v);
                    return Ok(());
                }
                None => {}
            }
        }
        let new_swarm = !self.swarms.contains_key(info_hash);
        let full = |s: &Self| {
            s.total_peers >= s.config.max_peers
                || (new_swarm && s.swarms.len() >= s.config.max_swarms)
        };
        if full(self) {
            let recently = self
                .last_full_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
            if !recently {
                self.last_full_sweep = Some(now);
                self.expire(now);
            }
        }
        // The sweep may have emptied and dropped this swarm.
        let new_swarm = !self.swarms.contains_key(info_hash);
        if new_swarm && self.swarms.len() >= self.config.max_swarms {
            return Err(Rejection::TooManySwarms);
        }
        if self.total_peers >= self.config.max_peers {
            let stalest = self.swarms.get(info_hash).map_or(NIL, |s| s.recency.head);
            if stalest == NIL {
                return Err(Rejection::TooManyPeers);
            }
            self.replace(info_hash, stalest);
        }
        Ok(())
    }

    /// Forgets peer `i` of swarm `info_hash` to make room for a newcomer.
    fn replace(&mut self, info_hash: &[u8; 20], i: u32) {
        if let Some(swarm) = self.swarms.get_mut(info_hash) {
            swarm.remove_at(i);
            self.total_peers -= 1;
            self.replaced += 1;
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
    /// Returns how many peers were forgotten. Each swarm is read from its stale end only,
    /// so a sweep costs the swarms plus the peers it forgets.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.config.peer_timeout;
        let mut removed = 0;
        self.swarms.retain(|_, swarm| {
            while swarm.recency.head != NIL {
                let head = swarm.recency.head;
                if now.saturating_duration_since(swarm.peers[head as usize].last_seen) < timeout {
                    break;
                }
                swarm.remove_at(head);
                removed += 1;
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
                rejected: 0,
                replaced: 0,
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
    fn caps_hold_and_full_swarms_replace_their_stalest() {
        let mut c = short();
        c.max_swarms = 3;
        c.max_peers_per_swarm = 4;
        c.max_peers = 10;
        let mut t = TrackerState::new(c);
        let now = Instant::now();
        for i in 0..5 {
            t.announce(now, &req(1, i, 1, 1, AnnounceEvent::None), src(i))
                .unwrap();
        }
        // Peer 0, the stalest, made room for peer 4.
        assert_eq!(t.swarms[&hash(1)].len(), 4);
        assert!(
            !t.swarms[&hash(1)]
                .index
                .contains_key(&req(1, 0, 1, 1, AnnounceEvent::None).peer_id)
        );
        assert_eq!(t.stats().replaced, 1);
        // Peer 1 announces again, so peer 2 is now the stalest and goes next.
        t.announce(now, &req(1, 1, 1, 1, AnnounceEvent::None), src(1))
            .unwrap();
        let r = t
            .announce(now, &req(1, 9, 1, 1, AnnounceEvent::None), src(9))
            .unwrap();
        let mut got = r.peers.clone();
        got.sort();
        let mut want: Vec<SocketAddr> = [1, 3, 4]
            .iter()
            .map(|&i| SocketAddr::new(src(i).ip(), 1))
            .collect();
        want.sort();
        assert_eq!(got, want);
        for i in 0..4 {
            t.announce(now, &req(2, i, 1, 1, AnnounceEvent::None), src(i))
                .unwrap();
        }
        t.announce(now, &req(3, 1, 1, 1, AnnounceEvent::None), src(1))
            .unwrap();
        t.announce(now, &req(3, 2, 1, 1, AnnounceEvent::None), src(2))
            .unwrap();
        assert_eq!(t.stats().peers, 10);
        // The tracker is full: a newcomer to a swarm takes that swarm's stalest place...
        t.announce(now, &req(3, 3, 1, 1, AnnounceEvent::None), src(3))
            .unwrap();
        assert_eq!(t.swarms[&hash(3)].len(), 2);
        // ... but a new swarm cannot be started.
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
                rejected: 1,
                replaced: 3,
            }
        );
        check_lists(&t, 4);
    }

    #[test]
    fn one_address_cannot_fill_a_swarm() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        let attacker = src(66).ip();
        for i in 0..1000u32 {
            let r = t.announce_peers(
                now,
                &req(1, 1000 + i, 1 + i as u16, 1, AnnounceEvent::Started),
                attacker,
                Family::Any,
            );
            assert!(r.is_ok(), "{r:?}");
        }
        // Only its 4 freshest peers are kept.
        let s = &t.swarms[&hash(1)];
        assert_eq!(s.len(), DEFAULT_MAX_PEERS_PER_IP);
        let mut ports: Vec<u16> = s.peers.iter().map(|p| p.addr.port()).collect();
        ports.sort();
        assert_eq!(ports, [997, 998, 999, 1000]);
        assert_eq!(t.stats().replaced, 1000 - 4);
        // An honest peer from elsewhere gets in and is handed the attacker's few.
        let r = t
            .announce(now, &req(1, 1, 6881, 1, AnnounceEvent::Started), src(1))
            .unwrap();
        assert_eq!(r.peers.len(), 4);
        // And a host with several clients keeps them all, up to the cap.
        for i in 0..3 {
            t.announce(
                now,
                &req(1, 2 + i, 7000 + i as u16, 1, AnnounceEvent::None),
                src(1),
            )
            .unwrap();
        }
        assert_eq!(t.swarms[&hash(1)].len(), 8);
        // The cap is per swarm: the same address in another swarm is counted apart.
        t.announce_peers(
            now,
            &req(2, 5000, 1, 1, AnnounceEvent::None),
            attacker,
            Family::Any,
        )
        .unwrap();
        assert_eq!(t.swarms[&hash(2)].len(), 1);
        check_lists(&t, 4);
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let mut c = short();
        c.max_peers_per_ip = 2;
        let mut t = TrackerState::new(c);
        let now = Instant::now();
        for i in 0..10u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            t.announce_peers(
                now,
                &req(1, u32::from(i), 1, 1, AnnounceEvent::None),
                ip,
                Family::Any,
            )
            .unwrap();
        }
        assert_eq!(t.swarms[&hash(1)].len(), 2);
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.announce_peers(
            now,
            &req(1, 99, 1, 1, AnnounceEvent::None),
            other,
            Family::Any,
        )
        .unwrap();
        assert_eq!(t.swarms[&hash(1)].len(), 3);
        // IPv4-mapped addresses are their IPv4 address.
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        assert_eq!(ip_group(mapped), "10.9.9.9".parse::<IpAddr>().unwrap());
        check_lists(&t, 2);
    }

    #[test]
    fn a_peer_moving_to_a_full_address_replaces_its_stalest() {
        let mut c = short();
        c.max_peers_per_ip = 2;
        let mut t = TrackerState::new(c);
        let now = Instant::now();
        t.announce(now, &req(1, 1, 1, 1, AnnounceEvent::None), src(1))
            .unwrap();
        t.announce(now, &req(1, 2, 2, 1, AnnounceEvent::None), src(1))
            .unwrap();
        let mut r = req(1, 3, 3, 1, AnnounceEvent::None);
        r.key = 0x5eed;
        t.announce(now, &r, src(2)).unwrap();
        // Peer 3 (the last index) moves to src(1), which is full: peer 1 goes.
        t.announce(now, &r, src(1)).unwrap();
        let s = &t.swarms[&hash(1)];
        assert_eq!(s.len(), 2);
        let ids: HashSet<u32> = s
            .peers
            .iter()
            .map(|p| u32::from_be_bytes(p.peer_id[..4].try_into().unwrap()))
            .collect();
        assert_eq!(ids, [2, 3].into_iter().collect());
        assert!(s.peers.iter().all(|p| p.addr.ip() == src(1).ip()));
        check_lists(&t, 2);
    }

    #[test]
    fn expiry_reads_from_the_stale_end() {
        let mut t = TrackerState::new(short());
        let t0 = Instant::now();
        for i in 0..50 {
            t.announce(
                t0 + Duration::from_secs(i as u64),
                &req(1, i, 1, 1, AnnounceEvent::None),
                src(i),
            )
            .unwrap();
        }
        // Peer timeout is 22.5 s: at 40 s, peers announced before 17.5 s are gone.
        assert_eq!(t.expire(t0 + Duration::from_secs(40)), 18);
        assert_eq!(t.stats().peers, 32);
        check_lists(&t, DEFAULT_MAX_PEERS_PER_IP);
    }

    #[test]
    fn a_known_peer_id_from_another_address_needs_its_key() {
        let mut t = TrackerState::new(short());
        let now = Instant::now();
        let mut honest = req(1, 1, 6881, 10, AnnounceEvent::Started);
        honest.key = 42;
        t.announce(now, &honest, src(1)).unwrap();
        let mut spoof = req(1, 1, 9999, 10, AnnounceEvent::None);
        // Another host cannot take the peer id over, with no key or a wrong one...
        for key in [0, 41] {
            spoof.key = key;
            spoof.event = AnnounceEvent::None;
            assert_eq!(
                t.announce(now, &spoof, src(66)),
                Err(Rejection::PeerIdTaken)
            );
            // ...nor make it leave.
            spoof.event = AnnounceEvent::Stopped;
            t.announce(now, &spoof, src(66)).unwrap();
            assert_eq!(t.stats().peers, 1);
            let s = &t.swarms[&hash(1)];
            assert_eq!(s.peers[0].addr, SocketAddr::new(src(1).ip(), 6881));
        }
        // The peer itself, from a new address with its key, moves.
        honest.event = AnnounceEvent::None;
        t.announce(now, &honest, src(2)).unwrap();
        assert_eq!(
            t.swarms[&hash(1)].peers[0].addr,
            SocketAddr::new(src(2).ip(), 6881)
        );
        // And leaves with a stopped from there (a key is not needed from its own address).
        let mut bye = req(1, 1, 6881, 10, AnnounceEvent::Stopped);
        bye.key = 0;
        t.announce(now, &bye, src(2)).unwrap();
        assert_eq!(t.stats().peers, 0);
    }

    /// Walks every recency list and checks it against the peers and the caps.
    fn check_lists(t: &TrackerState, per_ip: usize) {
        for s in t.swarms.values() {
            assert_eq!(s.index.len(), s.peers.len());
            for (i, p) in s.peers.iter().enumerate() {
                assert_eq!(s.index[&p.peer_id] as usize, i);
                assert_eq!(p.group, ip_group(p.addr.ip()));
            }
            let walk = |ends: Ends, list: List| -> Vec<u32> {
                let mut seen = Vec::new();
                let mut prev = NIL;
                let mut at = ends.head;
                while at != NIL {
                    assert!(seen.len() <= s.peers.len(), "cycle");
                    let l = s.peers[at as usize].links(list);
                    assert_eq!(l.prev, prev);
                    seen.push(at);
                    prev = at;
                    at = l.next;
                }
                assert_eq!(ends.tail, prev);
                assert_eq!(ends.len as usize, seen.len());
                seen
            };
            let all = walk(s.recency, List::Swarm);
            assert_eq!(all.len(), s.peers.len());
            // Stalest first.
            assert!(
                all.windows(2)
                    .all(|w| s.peers[w[0] as usize].last_seen <= s.peers[w[1] as usize].last_seen)
            );
            let mut in_groups = 0;
            for (g, ends) in &s.groups {
                let members = walk(*ends, List::Group);
                assert!(!members.is_empty() && members.len() <= per_ip);
                assert!(members.iter().all(|&i| s.peers[i as usize].group == *g));
                in_groups += members.len();
            }
            assert_eq!(in_groups, s.peers.len());
        }
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
            c.max_peers_per_ip = 2;
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
                // Few addresses, so that they reach their cap.
                if let Ok(a) = t.announce_peers(now, &r, src(peer % 9).ip(), Family::Any) {
                    prop_assert!(a.peers.len() <= numwant.map_or(DEFAULT_NUMWANT, |n| (n as usize).min(MAX_NUMWANT)));
                    prop_assert!(a.peers.iter().all(|p| p.peer_id != r.peer_id));
                    if left == 0 {
                        let no_seeders = t.swarms.get(&r.info_hash).is_none_or(|s| {
                            a.peers.iter().all(|p| {
                                s.index.get(&p.peer_id).is_none_or(|&i| !s.peers[i as usize].is_seeder())
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
                    let seeders = s.peers.iter().filter(|p| p.is_seeder()).count() as u32;
                    prop_assert_eq!(seeders, s.seeders);
                }
                check_lists(&t, 2);
            }
        }
    }
}
