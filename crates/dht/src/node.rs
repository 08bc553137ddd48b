//! [`Node`]: a mainline DHT node (BEP 5) as a sans-IO state machine.
//!
//! It owns no socket and reads no clock. The caller feeds it datagrams with
//! [`Node::handle_datagram`] and wake-ups with [`Node::handle_timeout`], always passing `now`;
//! it takes back datagrams to send from [`Node::poll_transmit`], the next deadline from
//! [`Node::poll_timeout`] and results from [`Node::poll_event`] — the shape of quinn-proto's
//! `Endpoint`. The tokio driver ([`crate::Dht`]) and the simulation tests drive the same code.
//!
//! Client side: iterative lookups (`get_peers`, `find_node` for bootstrap and bucket
//! refresh) with α = 3 queries in flight, converging on the k closest nodes that answer;
//! `announce` is a `get_peers` lookup followed by `announce_peer` to the k closest nodes that
//! gave a token. Server side: `ping`, `find_node`, `get_peers` (with tokens, BEP 5) and
//! `announce_peer` (token checked, bad ones get error 203), unknown methods get error 204.
//! Read-only mode (BEP 43): we send `ro=1` and answer no queries; queriers that send `ro=1`
//! are not added to our table. BEP 42: nodes on public IPv4 addresses whose id does not match
//! their address are kept out of the routing table (local addresses are exempt).
//!
//! BEP 32 (IPv6): one routing table per address family. A node is fed datagrams of either
//! family (the driver runs one socket per family); [`NodeConfig::families`] says which ones
//! it can reach, and only nodes of those families enter its tables and lookups. A query's
//! `want` (`n4`, `n6`) chooses whether `nodes`, `nodes6` or both come back; without it the
//! family the query came over. When both families are on, our own `find_node`, `get_peers`
//! and `get` ask for both, so one lookup fills both tables and finds peers of both.
//!
//! Every map here is bounded: pending queries, lookups and their candidates, the peer store,
//! the rate limiter, the outgoing queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::{NodeId, bep42_id, bep42_valid};
use crate::item::{Item, ItemLimits, ItemStore};
use crate::krpc::{self, Body, DecodeError, Message, Query, Response, Want, code};
use crate::store::{PeerStore, RateLimiter, StoreLimits, Tokens};
use crate::table::{Insert, K, RoutingTable};

/// Queries in flight per lookup.
pub const ALPHA: usize = 3;
/// Most queries in flight at once, all purposes together.
pub const MAX_PENDING: usize = 2048;
/// Most lookups at once; more are finished at once with nothing found.
pub const MAX_LOOKUPS: usize = 128;
/// Most candidate nodes a lookup remembers (the farthest are forgotten first).
pub const MAX_CANDIDATES: usize = 100;
/// Most nodes taken from one response (the closest to the target).
pub const NODES_PER_RESPONSE: usize = K;
/// Most distinct peers one lookup reports.
pub const MAX_PEERS_PER_LOOKUP: usize = 2000;
/// Most peers put in one `get_peers` response (50 IPv6 peers still fit in a datagram).
pub const VALUES_PER_RESPONSE: usize = 50;
/// Most datagrams waiting for [`Node::poll_transmit`]; answers beyond it are dropped.
pub const MAX_QUEUED_TRANSMITS: usize = 4096;
/// Most bootstrap addresses remembered.
pub const MAX_BOOTSTRAP: usize = 32;
/// Distinct responders that must agree on our address before we change our id (BEP 42).
pub const IP_VOTES_NEEDED: usize = 3;
/// Most recent address reports remembered.
pub const IP_VOTES_KEPT: usize = 10;
/// How often housekeeping runs (token rotation, expiry, bucket refresh, re-bootstrap).
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// How a [`Node`] behaves.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// BEP 43: send `ro=1`, answer no queries.
    pub read_only: bool,
    /// BEP 42: keep nodes on public addresses whose id does not match out of the table.
    pub enforce_node_id: bool,
    /// An unanswered query counts as failed after this long.
    pub query_timeout: Duration,
    /// Queries in flight per lookup.
    pub alpha: usize,
    /// Most queries one lookup sends.
    pub max_lookup_queries: usize,
    /// A lookup ends after this long whatever its state.
    pub lookup_deadline: Duration,
    pub store: StoreLimits,
    /// Bounds of the BEP 44 items stored for others.
    pub items: ItemLimits,
    /// Incoming queries per second allowed from one IP, and the burst.
    pub queries_per_ip_per_second: f64,
    pub query_burst_per_ip: f64,
    /// Most source IPs the rate limiter tracks.
    pub rate_limited_ips: usize,
    /// Our `v` (client and version).
    pub version: Option<Vec<u8>>,
    /// The port sent in `announce_peer` with `implied_port=1`: our UDP port, when known.
    pub local_port: u16,
    /// BEP 42 for ourselves: once responders agree on our public IPv4 address and our id
    /// does not fit it, take an id that does (keeping the routing table). Off when the user
    /// chose the id.
    pub adopt_bep42_id: bool,
    /// Seed of the node's pseudo-random numbers (transaction ids, token secrets, refresh
    /// targets). The driver seeds it from the OS; tests pass a fixed one.
    pub seed: u64,
    /// The address families we can send to (BEP 32): `n4` IPv4, `n6` IPv6. Nodes of
    /// another family are neither kept nor queried.
    pub families: Want,
}

impl NodeConfig {
    pub fn new(id: NodeId, seed: u64) -> NodeConfig {
        NodeConfig {
            id,
            read_only: false,
            enforce_node_id: true,
            query_timeout: Duration::from_secs(2),
            alpha: ALPHA,
            max_lookup_queries: 200,
            lookup_deadline: Duration::from_secs(60),
            store: StoreLimits::default(),
            items: ItemLimits::default(),
            queries_per_ip_per_second: 20.0,
            query_burst_per_ip: 50.0,
            rate_limited_ips: 10_000,
            version: Some(b"BP01".to_vec()),
            local_port: 0,
            adopt_bep42_id: true,
            seed,
            families: Want {
                n4: true,
                n6: false,
            },
        }
    }
}

/// Identifies a lookup started with [`Node::get_peers`] or [`Node::announce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What a finished lookup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Queries sent (`get_peers`/`find_node`; announces are counted apart).
    pub queries: usize,
    pub responses: usize,
    pub timeouts: usize,
    /// Longest chain of referrals followed: a node from the routing table is hop 1, a node
    /// it named is hop 2, and so on.
    pub rounds: u32,
    /// Distinct peers found.
    pub peers: usize,
    /// `announce_peer` queries sent, and how many were acknowledged.
    pub announced: usize,
    pub announce_acks: usize,
    pub duration: Duration,
}

/// What the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Peers for the info-hash of a lookup (only ones not reported before by this lookup).
    PeersFound {
        lookup: LookupId,
        info_hash: NodeId,
        peers: Vec<SocketAddr>,
    },
    /// A lookup ended; no more events for it.
    LookupDone {
        lookup: LookupId,
        info_hash: NodeId,
        stats: LookupStats,
    },
    /// A verified BEP 44 item for a [`Node::get_item`] lookup: for a mutable item, only
    /// ones with a higher `seq` than reported before by this lookup.
    ItemFound { lookup: LookupId, item: Item },
    /// A bootstrap lookup ended with this many nodes in the table.
    Bootstrapped { nodes: usize },
    /// Responders agree on our public address and our id did not fit it (BEP 42): we now
    /// use `id`.
    NodeIdChanged { id: NodeId, external: SocketAddr },
}

/// Sizes of the node's state, to check that it stays bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub table_nodes: usize,
    pub replacement_nodes: usize,
    pub pending_queries: usize,
    pub lookups: usize,
    pub lookup_candidates: usize,
    pub stored_info_hashes: usize,
    pub stored_peers: usize,
    pub stored_items: usize,
    pub rate_limited_ips: usize,
    pub queued_transmits: usize,
    pub queued_events: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup(LookupId),
    Announce(LookupId),
    /// Liveness or first contact.
    Ping,
}

#[derive(Debug)]
struct Pending {
    to: SocketAddr,
    /// The id we expect to answer (unknown for bootstrap addresses).
    id: Option<NodeId>,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Fresh,
    InFlight,
    Responded,
    Failed,
}

#[derive(Debug)]
struct Candidate {
    id: Option<NodeId>,
    addr: SocketAddr,
    state: CState,
    token: Option<Vec<u8>>,
    /// Hops from our table: 0 for our own contacts.
    depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bootstrap,
    Refresh,
    GetPeers,
    Announce {
        port: Option<u16>,
    },
    /// BEP 44 `get` lookups: to read an item, or to collect tokens before a `put`.
    GetItem,
    PutItem,
}

/// Which item a [`Node::get_item`] lookup wants, to verify what it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemWant {
    /// The SHA-1 of the value is the target.
    Immutable,
    /// A mutable item under this key and salt.
    Mutable { key: [u8; 32], salt: Vec<u8> },
}

impl ItemWant {
    pub fn target(&self, immutable_target: NodeId) -> NodeId {
        match self {
            ItemWant::Immutable => immutable_target,
            ItemWant::Mutable { key, salt } => crate::item::mutable_target(key, salt),
        }
    }
}

#[derive(Debug)]
struct Lookup {
    target: NodeId,
    kind: Kind,
    candidates: Vec<Candidate>,
    in_flight: usize,
    peers: HashSet<SocketAddr>,
    stats: LookupStats,
    started: Instant,
    deadline: Instant,
    /// `Some(outstanding)` once the announces are sent.
    announcing: Option<usize>,
    /// GetItem: what to accept, and the best item found so far.
    want: Option<ItemWant>,
    best: Option<Item>,
    /// PutItem: the item and its `cas`.
    put: Option<Box<(Item, Option<i64>)>>,
}

impl Lookup {
    fn sort_key(&self, c: &Candidate) -> NodeId {
        c.id.map_or(NodeId([0xff; 20]), |id| id.distance(&self.target))
    }

    fn add(&mut self, id: Option<NodeId>, addr: SocketAddr, depth: u32) {
        if self.candidates.iter().any(|c| {
            c.addr == addr || (id.is_some() && c.id == id && c.addr.is_ipv4() == addr.is_ipv4())
        }) {
            return;
        }
        let c = Candidate {
            id,
            addr,
            state: CState::Fresh,
            token: None,
            depth,
        };
        let key = self.sort_key(&c);
        let at = self.candidates.partition_point(|x| self.sort_key(x) <= key);
        self.candidates.insert(at, c);
        // Over the bound: forget failed candidates first (they only keep their place so
        // they are not asked twice), then the farthest ones not being asked.
        while self.candidates.len() > MAX_CANDIDATES {
            let victim = self
                .candidates
                .iter()
                .rposition(|c| c.state == CState::Failed)
                .or_else(|| {
                    self.candidates
                        .iter()
                        .rposition(|c| c.state != CState::InFlight)
                });
            match victim {
                Some(i) => {
                    self.candidates.remove(i);
                }
                None => break,
            }
        }
    }

    fn resort(&mut self) {
        let target = self.target;
        self.candidates
            .sort_by_key(|c| c.id.map_or(NodeId([0xff; 20]), |id| id.distance(&target)));
    }

    fn find(&mut self, addr: &SocketAddr) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| c.addr == *addr)
    }

    /// Fresh candidates among the k closest that have not failed, closest first.
    fn next_fresh(&self) -> Option<usize> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != CState::Failed)
            .take(K)
            .find(|(_, c)| c.state == CState::Fresh)
            .map(|(i, _)| i)
    }
}

/// A small, fast PRNG (SplitMix64): enough for transaction ids and refresh targets; the
/// token secret mixes in SHA-1 of its output so tokens cannot be predicted from ids.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes20(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        out
    }

    fn secret(&mut self) -> [u8; 20] {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        for _ in 0..4 {
            h.update(self.next().to_le_bytes());
        }
        h.finalize().into()
    }
}

/// A DHT node. See the module docs.
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    rng: Rng,
    /// The IPv4 routing table.
    table: RoutingTable,
    /// The IPv6 routing table (BEP 32).
    table6: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    items: ItemStore,
    limiter: RateLimiter,
    pending: HashMap<[u8; 2], Pending>,
    /// Queries in flight per address, to avoid asking one address twice at once.
    pending_to: HashMap<SocketAddr, u16>,
    next_tid: u16,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    lookups: BTreeMap<LookupId, Lookup>,
    next_lookup: u64,
    bootstrap: Vec<SocketAddr>,
    next_maintenance: Instant,
    last_bootstrap: Option<Instant>,
    external: Option<SocketAddr>,
    /// Recent `ip` reports (BEP 42): which responder said what, newest last.
    ip_votes: VecDeque<(std::net::IpAddr, std::net::IpAddr)>,
}

impl Node {
    pub fn new(cfg: NodeConfig, now: Instant) -> Node {
        let mut rng = Rng(cfg.seed);
        let tokens = Tokens::new(rng.secret(), now);
        let next_tid = rng.next() as u16;
        Node {
            table: RoutingTable::new(cfg.id, now),
            table6: RoutingTable::new(cfg.id, now),
            store: PeerStore::new(cfg.store),
            items: ItemStore::new(cfg.items),
            limiter: RateLimiter::new(
                cfg.queries_per_ip_per_second,
                cfg.query_burst_per_ip,
                cfg.rate_limited_ips,
            ),
            cfg,
            rng,
            tokens,
            pending: HashMap::new(),
            pending_to: HashMap::new(),
            next_tid,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            lookups: BTreeMap::new(),
            next_lookup: 1,
            bootstrap: Vec::new(),
            next_maintenance: now + MAINTENANCE_EVERY,
            last_bootstrap: None,
            external: None,
            ip_votes: VecDeque::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Nodes in the routing tables (both families).
    pub fn table_len(&self) -> usize {
        self.table.len() + self.table6.len()
    }

    /// The IPv4 routing table, read-only.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The IPv6 routing table (BEP 32), read-only.
    pub fn table6(&self) -> &RoutingTable {
        &self.table6
    }

    /// The routing table of `addr`'s family.
    fn table_of(&mut self, addr: &SocketAddr) -> &mut RoutingTable {
        if addr.is_ipv4() {
            &mut self.table
        } else {
            &mut self.table6
        }
    }

    /// Whether we can send to `addr` (its family is one of [`NodeConfig::families`]).
    fn reachable(&self, addr: &SocketAddr) -> bool {
        if addr.is_ipv4() {
            self.cfg.families.n4
        } else {
            self.cfg.families.n6
        }
    }

    /// The `want` we put in our queries: both families when we have both.
    fn our_want(&self) -> Option<Want> {
        (self.cfg.families.n4 && self.cfg.families.n6).then_some(Want::BOTH)
    }

    /// The k closest nodes of both tables.
    fn closest_any(&self, target: &NodeId, n: usize, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        let mut all = self.table.closest(target, n, now);
        all.extend(self.table6.closest(target, n, now));
        all.sort_unstable_by_key(|(id, _)| id.distance(target));
        all.truncate(n);
        all
    }

    /// Our address as the last responder saw it (BEP 42 `ip`).
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    /// The nodes of both routing tables, to save and [`Node::import`] later.
    pub fn export(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut all = self.table.export();
        all.extend(self.table6.export());
        all
    }

    /// Nodes from a saved table: they enter as questionable and are replaced if they do not
    /// answer.
    pub fn import(&mut self, nodes: &[(NodeId, SocketAddr)], now: Instant) {
        for &(id, addr) in nodes {
            if addr.port() != 0 && self.reachable(&addr) {
                self.table_of(&addr).insert_unverified(id, addr, now);
            }
        }
    }

    pub fn footprint(&self) -> Footprint {
        Footprint {
            table_nodes: self.table.len() + self.table6.len(),
            replacement_nodes: self.table.replacement_count() + self.table6.replacement_count(),
            pending_queries: self.pending.len(),
            lookups: self.lookups.len(),
            lookup_candidates: self.lookups.values().map(|l| l.candidates.len()).sum(),
            stored_info_hashes: self.store.info_hash_count(),
            stored_peers: self.store.peer_count(),
            stored_items: self.items.len(),
            rate_limited_ips: self.limiter.tracked_ips(),
            queued_transmits: self.transmits.len(),
            queued_events: self.events.len(),
        }
    }

    // ---- commands -------------------------------------------------------------------

    /// Join the DHT through these addresses (ids unknown): a `find_node` lookup of our own
    /// id. The addresses are remembered and used again whenever the table runs low.
    pub fn bootstrap(&mut self, addrs: &[SocketAddr], now: Instant) {
        for a in addrs {
            if !self.bootstrap.contains(a) && self.bootstrap.len() < MAX_BOOTSTRAP {
                self.bootstrap.push(*a);
            }
        }
        self.start_bootstrap(now);
    }

    fn start_bootstrap(&mut self, now: Instant) {
        self.last_bootstrap = Some(now);
        if self.lookups.values().any(|l| l.kind == Kind::Bootstrap) {
            return;
        }
        self.start_lookup(self.cfg.id, Kind::Bootstrap, now);
    }

    /// Find peers for `info_hash`. Results come as [`Event::PeersFound`], then one
    /// [`Event::LookupDone`].
    pub fn get_peers(&mut self, info_hash: NodeId, now: Instant) -> LookupId {
        self.start_lookup(info_hash, Kind::GetPeers, now)
    }

    /// Find peers for `info_hash` and announce us to the k closest nodes: on `port`, or with
    /// `implied_port` (the UDP source port) when `None`.
    pub fn announce(&mut self, info_hash: NodeId, port: Option<u16>, now: Instant) -> LookupId {
        self.start_lookup(info_hash, Kind::Announce { port }, now)
    }

    /// Look up a BEP 44 item under `target` (for a mutable item: the SHA-1 of its key and
    /// salt). Verified items come as [`Event::ItemFound`], then one [`Event::LookupDone`].
    pub fn get_item(&mut self, target: NodeId, want: ItemWant, now: Instant) -> LookupId {
        let lid = LookupId(self.next_lookup);
        if let Some(item) = self.items.get(&target, now).cloned()
            && Self::item_fits(&want, &target, &item)
        {
            self.events
                .push_back(Event::ItemFound { lookup: lid, item });
        }
        self.start_lookup_with(target, Kind::GetItem, now, |l| l.want = Some(want))
    }

    /// Store a BEP 44 item on the k nodes closest to its target (a `get` lookup for their
    /// tokens, then `put`s); `cas` is passed on for a mutable item. One
    /// [`Event::LookupDone`] ends it, with the puts sent and acknowledged in its stats.
    pub fn put_item(&mut self, item: Item, cas: Option<i64>, now: Instant) -> LookupId {
        let target = item.target();
        self.start_lookup_with(target, Kind::PutItem, now, |l| {
            l.put = Some(Box::new((item, cas)))
        })
    }

    fn item_fits(want: &ItemWant, target: &NodeId, item: &Item) -> bool {
        let kind_ok = match (want, item) {
            (ItemWant::Immutable, Item::Immutable { .. }) => true,
            (
                ItemWant::Mutable { key, salt },
                Item::Mutable {
                    key: k, salt: s, ..
                },
            ) => key == k && salt == s,
            _ => false,
        };
        kind_ok && item.target() == *target && item.check().is_ok()
    }

    fn start_lookup(&mut self, target: NodeId, kind: Kind, now: Instant) -> LookupId {
        self.start_lookup_with(target, kind, now, |_| {})
    }

    fn start_lookup_with(
        &mut self,
        target: NodeId,
        kind: Kind,
        now: Instant,
        setup: impl FnOnce(&mut Lookup),
    ) -> LookupId {
        let lid = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let mut lookup = Lookup {
            target,
            kind,
            candidates: Vec::new(),
            in_flight: 0,
            peers: HashSet::new(),
            stats: LookupStats::default(),
            started: now,
            deadline: now + self.cfg.lookup_deadline,
            announcing: None,
            want: None,
            best: None,
            put: None,
        };
        setup(&mut lookup);
        for (id, addr) in self.closest_any(&target, 2 * K, now) {
            lookup.add(Some(id), addr, 0);
        }
        if self.table_len() < K || kind == Kind::Bootstrap {
            for a in &self.bootstrap {
                if self.reachable(a) {
                    lookup.add(None, *a, 0);
                }
            }
        }
        if matches!(kind, Kind::GetPeers | Kind::Announce { .. }) {
            // Peers announced to us count too: we may be one of the closest nodes.
            let mut local = self.store.peers(&target, None, VALUES_PER_RESPONSE, now);
            local.retain(|p| lookup.peers.insert(*p));
            if !local.is_empty() {
                lookup.stats.peers += local.len();
                self.events.push_back(Event::PeersFound {
                    lookup: lid,
                    info_hash: target,
                    peers: local,
                });
            }
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            self.finish_lookup(lid, lookup, now);
            return lid;
        }
        self.lookups.insert(lid, lookup);
        self.step_lookup(lid, now);
        lid
    }

    // ---- input ----------------------------------------------------------------------

    /// A datagram from `from`. Datagrams that do not start with `d` are not KRPC (the
    /// caller may route them elsewhere, e.g. to uTP) and are ignored here.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if datagram.first() != Some(&b'd') {
            return;
        }
        let msg = match krpc::decode(datagram) {
            Ok(m) => m,
            Err(DecodeError::BadQuery { tid, what }) => {
                if !self.cfg.read_only && self.limiter.allow(from.ip(), now) {
                    self.send_error(from, tid, code::PROTOCOL, &format!("invalid `{what}`"));
                }
                return;
            }
            Err(_) => return,
        };
        match msg.body {
            Body::Query(ref q) => self.handle_query(now, from, &msg, q),
            Body::Response(ref r) => self.handle_response(now, from, &msg, Some(r)),
            Body::Error { .. } => self.handle_response(now, from, &msg, None),
        }
    }

    fn handle_query(&mut self, now: Instant, from: SocketAddr, msg: &Message, q: &Query) {
        if self.cfg.read_only || !self.limiter.allow(from.ip(), now) {
            return;
        }
        let mut r = Response {
            id: self.cfg.id,
            ..Default::default()
        };
        match q {
            Query::Ping { .. } => {}
            Query::FindNode { target, .. } => self.fill_nodes(&mut r, target, now, from, msg.want),
            Query::GetPeers { info_hash, .. } => {
                self.fill_nodes(&mut r, info_hash, now, from, msg.want);
                r.token = Some(self.tokens.make(from.ip()));
                r.values = self
                    .store
                    .peers(info_hash, Some(from.ip()), VALUES_PER_RESPONSE, now);
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                if !self.tokens.check(from.ip(), token) {
                    self.send_error(from, msg.tid.clone(), code::PROTOCOL, "bad token");
                    return;
                }
                let port = if *implied_port { from.port() } else { *port };
                if port == 0 {
                    self.send_error(from, msg.tid.clone(), code::PROTOCOL, "invalid port");
                    return;
                }
                self.store
                    .announce(*info_hash, SocketAddr::new(from.ip(), port), now);
            }
            Query::Get { target, seq, .. } => {
                self.fill_nodes(&mut r, target, now, from, msg.want);
                r.token = Some(self.tokens.make(from.ip()));
                match self.items.get(target, now) {
                    Some(Item::Immutable { value }) => r.v = Some(value.clone()),
                    Some(Item::Mutable {
                        key,
                        seq: stored,
                        value,
                        sig,
                        ..
                    }) => {
                        r.k = Some(*key);
                        r.seq = Some(*stored);
                        r.sig = Some(*sig);
                        if seq.is_none_or(|asked| *stored > asked) {
                            r.v = Some(value.clone());
                        }
                    }
                    None => {}
                }
            }
            Query::Put {
                token, item, cas, ..
            } => {
                if !self.tokens.check(from.ip(), token) {
                    self.send_error(from, msg.tid.clone(), code::PROTOCOL, "bad token");
                    return;
                }
                if let Err(e) = self.items.put(item.clone(), *cas, from.ip(), now) {
                    self.send_error(from, msg.tid.clone(), e.code(), &e.to_string());
                    return;
                }
            }
            Query::Unknown { .. } => {
                self.send_error(
                    from,
                    msg.tid.clone(),
                    code::METHOD_UNKNOWN,
                    "method unknown",
                );
                return;
            }
        }
        self.queue(
            from,
            Message {
                tid: msg.tid.clone(),
                version: self.cfg.version.clone(),
                read_only: false,
                ip: Some(from),
                want: None,
                body: Body::Response(r),
            },
        );
        // A querier we do not know may belong in our table: ping it, and add it if it
        // answers (a query's source address alone proves nothing). Not if it is read-only.
        let id = q.id();
        self.table_of(&from).heard_query(&id, &from, now);
        if !msg.read_only
            && id != self.cfg.id
            && from.port() != 0
            && self.reachable(&from)
            && self.table_of(&from).get(&id).is_none()
            && self.id_acceptable(&id, from)
            && !self.pending_to.contains_key(&from)
        {
            self.send_query(
                now,
                from,
                Some(id),
                Query::Ping { id: self.cfg.id },
                Purpose::Ping,
            );
        }
    }

    /// Count a responder's report of our address; adopt a BEP 42 id once
    /// [`IP_VOTES_NEEDED`] distinct responders among the last [`IP_VOTES_KEPT`] agree on a
    /// public address our id does not fit.
    fn vote_external(&mut self, from: SocketAddr, ours: SocketAddr, now: Instant) {
        self.external = Some(ours);
        self.ip_votes.retain(|(voter, _)| *voter != from.ip());
        self.ip_votes.push_back((from.ip(), ours.ip()));
        if self.ip_votes.len() > IP_VOTES_KEPT {
            self.ip_votes.pop_front();
        }
        let agree = self
            .ip_votes
            .iter()
            .filter(|(_, ip)| *ip == ours.ip())
            .count();
        if !self.cfg.adopt_bep42_id
            || !ours.is_ipv4()
            || agree < IP_VOTES_NEEDED
            || bep42_valid(&self.cfg.id, ours.ip())
        {
            return;
        }
        let rand = self.rng.next() as u8;
        let id = bep42_id(ours.ip(), rand, self.rng.bytes20());
        self.cfg.id = id;
        self.table =
            std::mem::replace(&mut self.table, RoutingTable::new(id, now)).rebuild(id, now);
        self.table6 =
            std::mem::replace(&mut self.table6, RoutingTable::new(id, now)).rebuild(id, now);
        self.ip_votes.clear();
        self.events
            .push_back(Event::NodeIdChanged { id, external: ours });
    }

    fn id_acceptable(&self, id: &NodeId, addr: SocketAddr) -> bool {
        !self.cfg.enforce_node_id || bep42_valid(id, addr.ip())
    }

    /// The k closest nodes of each family asked for (BEP 32): `want`, or without it the
    /// family of the querier's address.
    fn fill_nodes(
        &self,
        r: &mut Response,
        target: &NodeId,
        now: Instant,
        from: SocketAddr,
        want: Option<Want>,
    ) {
        let want = want.unwrap_or(Want {
            n4: from.is_ipv4(),
            n6: from.is_ipv6(),
        });
        if want.n4 {
            r.nodes = self.table.closest(target, K, now);
        }
        if want.n6 {
            r.nodes6 = self.table6.closest(target, K, now);
        }
    }

    /// A response (`r` is `Some`) or an error (`None`) to one of our queries.
    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message,
        r: Option<&Response>,
    ) {
        let Ok(tid) = <[u8; 2]>::try_from(msg.tid.as_slice()) else {
            return;
        };
        // Only the address we asked may answer.
        match self.pending.get(&tid) {
            Some(p) if p.to == from => {}
            _ => return,
        }
        let p = self.take_pending(&tid).expect("checked above");
        if let Some(ip) = msg.ip {
            self.vote_external(from, ip, now);
        }
        let responder = match r {
            Some(r) if p.id.is_none_or(|want| want == r.id) => Some(r),
            Some(_) => {
                // Another id than the one we asked: treat as no answer.
                if let Some(id) = p.id {
                    self.table_of(&from).failed(&id, &from, now);
                }
                None
            }
            None => None,
        };
        if let Some(r) = responder
            && !msg.read_only
            && self.id_acceptable(&r.id, from)
            && self.reachable(&from)
            && let Insert::Cached { ping } = self.table_of(&from).insert(r.id, from, now)
        {
            for (id, addr) in ping {
                self.send_query(
                    now,
                    addr,
                    Some(id),
                    Query::Ping { id: self.cfg.id },
                    Purpose::Ping,
                );
            }
        }
        match p.purpose {
            Purpose::Ping => {}
            Purpose::Lookup(lid) => {
                self.lookup_answer(lid, from, responder, now);
                self.step_lookup(lid, now);
            }
            Purpose::Announce(lid) => {
                if let Some(l) = self.lookups.get_mut(&lid) {
                    if responder.is_some() {
                        l.stats.announce_acks += 1;
                    }
                    if let Some(n) = l.announcing.as_mut() {
                        *n = n.saturating_sub(1);
                    }
                }
                self.step_lookup(lid, now);
            }
        }
    }

    fn lookup_answer(
        &mut self,
        lid: LookupId,
        from: SocketAddr,
        r: Option<&Response>,
        now: Instant,
    ) {
        let own = self.cfg.id;
        let families = self.cfg.families;
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.in_flight = l.in_flight.saturating_sub(1);
        let Some(c) = l.find(&from) else {
            return;
        };
        let Some(r) = r else {
            c.state = CState::Failed;
            return;
        };
        c.state = CState::Responded;
        c.token = r.token.clone();
        let depth = c.depth;
        let renamed = c.id.is_none();
        c.id = Some(r.id);
        if renamed {
            // A bootstrap address told us its id: drop any other entry with that id in
            // the same family (a dual-stack node has one address in each, BEP 32).
            let mut seen = false;
            l.candidates.retain(|c| {
                if c.id == Some(r.id) && c.addr.is_ipv4() == from.is_ipv4() {
                    if seen {
                        return false;
                    }
                    seen = true;
                }
                true
            });
            l.resort();
        }
        l.stats.responses += 1;
        l.stats.rounds = l.stats.rounds.max(depth + 1);
        let mut nodes: Vec<(NodeId, SocketAddr)> = r
            .nodes
            .iter()
            .chain(r.nodes6.iter())
            .filter(|(id, addr)| *id != own && addr.port() != 0 && !addr.ip().is_unspecified())
            .filter(|(_, addr)| {
                if addr.is_ipv4() {
                    families.n4
                } else {
                    families.n6
                }
            })
            .copied()
            .collect();
        nodes.sort_unstable_by_key(|(id, _)| id.distance(&l.target));
        for (id, addr) in nodes.into_iter().take(NODES_PER_RESPONSE) {
            l.add(Some(id), addr, depth + 1);
        }
        if l.kind == Kind::GetItem
            && let (Some(v), Some(want)) = (&r.v, &l.want)
        {
            let item = match want {
                ItemWant::Immutable => Item::Immutable { value: v.clone() },
                ItemWant::Mutable { key, salt } => match (r.k, r.sig, r.seq) {
                    (Some(k), Some(sig), Some(seq)) if k == *key => Item::Mutable {
                        key: k,
                        salt: salt.clone(),
                        seq,
                        value: v.clone(),
                        sig,
                    },
                    _ => Item::Immutable { value: Vec::new() },
                },
            };
            let newer = match (&l.best, item.seq()) {
                (None, _) => true,
                (Some(best), Some(seq)) => best.seq().is_some_and(|b| seq > b),
                (Some(_), None) => false,
            };
            if newer && Self::item_fits(want, &l.target, &item) {
                l.best = Some(item.clone());
                self.events
                    .push_back(Event::ItemFound { lookup: lid, item });
            }
        }
        if matches!(l.kind, Kind::GetPeers | Kind::Announce { .. }) && !r.values.is_empty() {
            let mut fresh = Vec::new();
            for &peer in &r.values {
                if peer.port() != 0 && l.peers.len() < MAX_PEERS_PER_LOOKUP && l.peers.insert(peer)
                {
                    fresh.push(peer);
                }
            }
            if !fresh.is_empty() {
                l.stats.peers += fresh.len();
                let info_hash = l.target;
                self.events.push_back(Event::PeersFound {
                    lookup: lid,
                    info_hash,
                    peers: fresh,
                });
            }
        }
        let _ = now;
    }

    /// Send the next queries of a lookup, or move it to its announce phase, or finish it.
    fn step_lookup(&mut self, lid: LookupId, now: Instant) {
        loop {
            let Some(l) = self.lookups.get_mut(&lid) else {
                return;
            };
            if let Some(outstanding) = l.announcing {
                if outstanding == 0 {
                    let l = self.lookups.remove(&lid).expect("present");
                    self.finish_lookup(lid, l, now);
                }
                return;
            }
            let over = now >= l.deadline;
            let can_send = l.in_flight < self.cfg.alpha
                && l.stats.queries < self.cfg.max_lookup_queries
                && !over;
            let next = if can_send { l.next_fresh() } else { None };
            if let Some(i) = next {
                let c = &mut l.candidates[i];
                c.state = CState::InFlight;
                let (to, id, target) = (c.addr, c.id, l.target);
                l.in_flight += 1;
                l.stats.queries += 1;
                let q = match l.kind {
                    Kind::Bootstrap | Kind::Refresh => Query::FindNode {
                        id: self.cfg.id,
                        target,
                    },
                    Kind::GetPeers | Kind::Announce { .. } => Query::GetPeers {
                        id: self.cfg.id,
                        info_hash: target,
                    },
                    Kind::GetItem | Kind::PutItem => Query::Get {
                        id: self.cfg.id,
                        target,
                        seq: None,
                    },
                };
                if !self.send_query(now, to, id, q, Purpose::Lookup(lid)) {
                    let l = self.lookups.get_mut(&lid).expect("present");
                    l.in_flight -= 1;
                    if let Some(c) = l.find(&to) {
                        c.state = CState::Failed;
                    }
                    // Out of query slots: try again on the next wake-up.
                    if l.in_flight > 0 {
                        return;
                    }
                    let l = self.lookups.remove(&lid).expect("present");
                    self.finish_lookup(lid, l, now);
                    return;
                }
                continue;
            }
            if l.in_flight > 0 && !over {
                return;
            }
            // Converged (or out of time or budget).
            // Then: a put or an announce goes to the k closest that gave a token.
            let store_query: Option<Box<dyn Fn(Vec<u8>) -> Query>> = match l.kind {
                _ if over => None,
                Kind::PutItem => l.put.take().map(|put| {
                    let id = self.cfg.id;
                    Box::new(move |token| Query::Put {
                        id,
                        token,
                        item: put.0.clone(),
                        cas: put.1,
                    }) as Box<dyn Fn(Vec<u8>) -> Query>
                }),
                Kind::Announce { port } => {
                    let (id, info_hash, local) = (self.cfg.id, l.target, self.cfg.local_port);
                    Some(Box::new(move |token| Query::AnnouncePeer {
                        id,
                        info_hash,
                        port: port.unwrap_or(local),
                        implied_port: port.is_none(),
                        token,
                    }))
                }
                _ => None,
            };
            if let Some(make) = store_query {
                let targets: Vec<(SocketAddr, NodeId, Vec<u8>)> = l
                    .candidates
                    .iter()
                    .filter(|c| c.state == CState::Responded)
                    .filter_map(|c| Some((c.addr, c.id?, c.token.clone()?)))
                    .take(K)
                    .collect();
                l.announcing = Some(0);
                for (to, id, token) in targets {
                    if self.send_query(now, to, Some(id), make(token), Purpose::Announce(lid)) {
                        let l = self.lookups.get_mut(&lid).expect("present");
                        l.stats.announced += 1;
                        *l.announcing.as_mut().expect("set") += 1;
                    }
                }
                continue;
            }
            let l = self.lookups.remove(&lid).expect("present");
            self.finish_lookup(lid, l, now);
            return;
        }
    }

    fn finish_lookup(&mut self, lid: LookupId, mut l: Lookup, now: Instant) {
        // Queries still out for it are forgotten when they time out.
        l.stats.duration = now.saturating_duration_since(l.started);
        match l.kind {
            Kind::Bootstrap => self.events.push_back(Event::Bootstrapped {
                nodes: self.table_len(),
            }),
            Kind::Refresh => {}
            Kind::GetPeers | Kind::Announce { .. } | Kind::GetItem | Kind::PutItem => {
                self.events.push_back(Event::LookupDone {
                    lookup: lid,
                    info_hash: l.target,
                    stats: l.stats,
                })
            }
        }
    }

    // ---- time -----------------------------------------------------------------------

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline).min();
        let lookups = self
            .lookups
            .values()
            .filter(|l| l.announcing.is_none())
            .map(|l| l.deadline)
            .min();
        [Some(self.next_maintenance), pending, lookups]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<[u8; 2]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        let mut touched = Vec::new();
        for tid in expired {
            let p = self.take_pending(&tid).expect("listed");
            if let Some(id) = p.id {
                self.table_of(&p.to).failed(&id, &p.to, now);
            }
            match p.purpose {
                Purpose::Ping => {}
                Purpose::Lookup(lid) => {
                    if let Some(l) = self.lookups.get_mut(&lid) {
                        l.in_flight = l.in_flight.saturating_sub(1);
                        l.stats.timeouts += 1;
                        if let Some(c) = l.find(&p.to) {
                            c.state = CState::Failed;
                        }
                        touched.push(lid);
                    }
                }
                Purpose::Announce(lid) => {
                    if let Some(l) = self.lookups.get_mut(&lid) {
                        if let Some(n) = l.announcing.as_mut() {
                            *n = n.saturating_sub(1);
                        }
                        touched.push(lid);
                    }
                }
            }
        }
        touched.extend(
            self.lookups
                .iter()
                .filter(|(_, l)| l.announcing.is_none() && l.deadline <= now)
                .map(|(id, _)| *id),
        );
        touched.sort_unstable();
        touched.dedup();
        for lid in touched {
            self.step_lookup(lid, now);
        }
        if now >= self.next_maintenance {
            self.maintenance(now);
        }
    }

    fn maintenance(&mut self, now: Instant) {
        self.next_maintenance = now + MAINTENANCE_EVERY;
        let rng = &mut self.rng;
        self.tokens.rotate_if_due(now, || rng.secret());
        self.store.expire(now);
        self.items.expire(now);
        self.limiter.forget_idle(now);
        if self.table_len() < K && !self.bootstrap.is_empty() {
            // Few nodes: try the bootstrap addresses again, at most every 5 minutes after
            // the first minute.
            let due = self
                .last_bootstrap
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(300));
            if due || self.table_len() == 0 {
                self.start_bootstrap(now);
            }
        }
        let mut targets = Vec::new();
        for table in [&mut self.table, &mut self.table6] {
            if !table.is_empty() {
                let rng = &mut self.rng;
                targets.extend(table.due_refreshes(now, || rng.bytes20()));
            }
        }
        {
            for target in targets {
                if self.lookups.len() < MAX_LOOKUPS / 2 {
                    self.start_lookup(target, Kind::Refresh, now);
                }
            }
        }
    }

    // ---- output ---------------------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn queue(&mut self, to: SocketAddr, msg: Message) {
        if self.transmits.len() < MAX_QUEUED_TRANSMITS {
            self.transmits.push_back((to, msg.encode()));
        }
    }

    fn send_error(&mut self, to: SocketAddr, tid: Vec<u8>, code: i64, message: &str) {
        self.queue(
            to,
            Message {
                tid,
                version: self.cfg.version.clone(),
                read_only: false,
                ip: None,
                want: None,
                body: Body::Error {
                    code,
                    message: message.to_string(),
                },
            },
        );
    }

    fn take_pending(&mut self, tid: &[u8; 2]) -> Option<Pending> {
        let p = self.pending.remove(tid)?;
        if let Some(n) = self.pending_to.get_mut(&p.to) {
            *n -= 1;
            if *n == 0 {
                self.pending_to.remove(&p.to);
            }
        }
        Some(p)
    }

    /// Send a query and remember it; false if too many are in flight.
    fn send_query(
        &mut self,
        now: Instant,
        to: SocketAddr,
        id: Option<NodeId>,
        q: Query,
        purpose: Purpose,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING || self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            return false;
        }
        let tid = loop {
            self.next_tid = self.next_tid.wrapping_add(1);
            let t = self.next_tid.to_be_bytes();
            if !self.pending.contains_key(&t) {
                break t;
            }
        };
        *self.pending_to.entry(to).or_default() += 1;
        self.pending.insert(
            tid,
            Pending {
                to,
                id,
                deadline: now + self.cfg.query_timeout,
                purpose,
            },
        );
        self.queue(
            to,
            Message {
                tid: tid.to_vec(),
                version: self.cfg.version.clone(),
                read_only: self.cfg.read_only,
                ip: None,
                want: match q {
                    Query::FindNode { .. } | Query::GetPeers { .. } | Query::Get { .. } => {
                        self.our_want()
                    }
                    _ => None,
                },
                body: Body::Query(q),
            },
        );
        true
    }
}
