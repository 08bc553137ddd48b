//! The routing table of BEP 5: k-buckets over the 160-bit id space.
//!
//! Bucket `i` holds nodes whose id shares exactly `i` leading bits with ours; the last bucket
//! holds everything closer, and it is the only one that splits when full (the table starts
//! with one bucket covering the whole space). A node is *good* if it answered one of our
//! queries in the last 15 minutes (or answered once and queried us in the last 15 minutes),
//! *bad* after [`MAX_FAILURES`] unanswered queries in a row, and *questionable* otherwise. A full bucket takes a newcomer only in place of a bad node;
//! newcomers wait in the bucket's replacement cache while its questionable nodes are pinged,
//! and take the place of the first one that turns bad. Only nodes that answered us are
//! inserted (except imported ones, which come in questionable), so a spoofed source address
//! cannot enter the table. At most one node per IP:port.
//!
//! This module is pure bookkeeping: which nodes to ping and which buckets to refresh is
//! returned to the caller ([`crate::Node`]), which sends the queries.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::NodeId;

/// Bucket size.
pub const K: usize = 8;
/// A node that answered within this long is good.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// A bucket untouched for this long is refreshed with a lookup of a random id in it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row after which a node is bad.
pub const MAX_FAILURES: u8 = 2;

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// When it last answered one of our queries.
    pub last_response: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Unanswered queries in a row.
    pub failures: u8,
    /// A ping to decide its fate is on the way.
    pub ping_pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Questionable,
    Bad,
}

impl Entry {
    fn new(id: NodeId, addr: SocketAddr, responded: Option<Instant>) -> Entry {
        Entry {
            id,
            addr,
            last_response: responded,
            last_query: None,
            failures: 0,
            ping_pending: false,
        }
    }

    pub fn status(&self, now: Instant) -> Status {
        if self.failures >= MAX_FAILURES {
            Status::Bad
        } else if self.failures == 0
            && self.last_response.is_some_and(|answered| {
                // Answered us lately, or answered once and queries us lately (BEP 5).
                let last = self.last_query.map_or(answered, |q| q.max(answered));
                now.saturating_duration_since(last) < GOOD_FOR
            })
        {
            Status::Good
        } else {
            Status::Questionable
        }
    }
}

#[derive(Debug)]
struct Bucket {
    nodes: Vec<Entry>,
    /// Nodes that answered us while the bucket was full, newest last.
    replacements: Vec<Entry>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            replacements: Vec::new(),
            last_changed: now,
        }
    }

    fn add_replacement(&mut self, e: Entry) {
        self.replacements
            .retain(|r| r.id != e.id && r.addr != e.addr);
        if self.replacements.len() >= K {
            self.replacements.remove(0);
        }
        self.replacements.push(e);
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// A new node in a bucket.
    Added,
    /// A node we had: its liveness was updated.
    Updated,
    /// The bucket is full: the node waits in the replacement cache. Ping these questionable
    /// nodes; the first that turns bad makes room.
    Cached { ping: Vec<(NodeId, SocketAddr)> },
    /// Not taken (our own id, an address taken by another good node, a moved id).
    Rejected,
}

#[derive(Debug)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    pub fn new(own: NodeId, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn bucket_index(&self, id: &NodeId) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    /// Number of nodes in buckets (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets (1 to 160).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of entries in replacement caches.
    pub fn replacement_count(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    fn find_addr(&self, addr: &SocketAddr) -> Option<(usize, usize)> {
        self.buckets.iter().enumerate().find_map(|(bi, b)| {
            b.nodes
                .iter()
                .position(|e| e.addr == *addr)
                .map(|ni| (bi, ni))
        })
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = &self.buckets[self.bucket_index(id)];
        b.nodes.iter().find(|e| e.id == *id)
    }

    /// Whether `id` at `addr` is in the table.
    pub fn contains(&self, id: &NodeId, addr: &SocketAddr) -> bool {
        self.get(id).is_some_and(|e| e.addr == *addr)
    }

    /// The same nodes under a new own id (BEP 42 made us change it), keeping what we know of
    /// each; nodes that no longer fit wait in replacement caches.
    pub fn rebuild(self, own: NodeId, now: Instant) -> RoutingTable {
        let mut t = RoutingTable::new(own, now);
        for b in self.buckets {
            for e in b.nodes.into_iter().chain(b.replacements) {
                t.insert_entry(e, now);
            }
        }
        // Nobody is pinging on the new table's behalf yet.
        for e in t.buckets.iter_mut().flat_map(|b| b.nodes.iter_mut()) {
            e.ping_pending = false;
        }
        t
    }

    /// `id` at `addr` answered one of our queries.
    pub fn insert(&mut self, id: NodeId, addr: SocketAddr, now: Instant) -> Insert {
        self.insert_entry(Entry::new(id, addr, Some(now)), now)
    }

    /// A node from a saved table or a trusted list: it comes in questionable, and only if
    /// its bucket has room.
    pub fn insert_unverified(&mut self, id: NodeId, addr: SocketAddr, now: Instant) -> bool {
        if id == self.own || self.get(&id).is_some() || self.find_addr(&addr).is_some() {
            return false;
        }
        loop {
            let bi = self.bucket_index(&id);
            if self.buckets[bi].nodes.len() < K {
                self.buckets[bi].nodes.push(Entry::new(id, addr, None));
                return true;
            }
            if !self.split(bi, now) {
                return false;
            }
        }
    }

    fn insert_entry(&mut self, entry: Entry, now: Instant) -> Insert {
        let (id, addr) = (entry.id, entry.addr);
        if id == self.own {
            return Insert::Rejected;
        }
        // One node per IP:port: another id at this address keeps its place unless it is bad.
        if let Some((bi, ni)) = self.find_addr(&addr) {
            let e = &mut self.buckets[bi].nodes[ni];
            if e.id == id {
                e.last_response = entry.last_response;
                e.failures = 0;
                e.ping_pending = false;
                self.buckets[bi].last_changed = now;
                return Insert::Updated;
            }
            if e.status(now) == Status::Bad {
                self.buckets[bi].nodes.remove(ni);
            } else {
                return Insert::Rejected;
            }
        }
        loop {
            let bi = self.bucket_index(&id);
            let bucket = &mut self.buckets[bi];
            if let Some(e) = bucket.nodes.iter().find(|e| e.id == id) {
                // Same id at another address: a moved node or an impostor. Keep the one we
                // know unless it stopped answering.
                if e.status(now) != Status::Bad {
                    return Insert::Rejected;
                }
                bucket.nodes.retain(|e| e.id != id);
            }
            if bucket.nodes.len() < K {
                bucket.replacements.retain(|r| r.id != id && r.addr != addr);
                bucket.nodes.push(entry);
                bucket.last_changed = now;
                return Insert::Added;
            }
            if let Some(i) = bucket
                .nodes
                .iter()
                .position(|e| e.status(now) == Status::Bad)
            {
                bucket.nodes[i] = entry;
                bucket.last_changed = now;
                return Insert::Added;
            }
            if self.split(bi, now) {
                continue;
            }
            let bucket = &mut self.buckets[bi];
            let mut ping = Vec::new();
            for e in bucket.nodes.iter_mut() {
                if e.status(now) == Status::Questionable && !e.ping_pending {
                    e.ping_pending = true;
                    ping.push((e.id, e.addr));
                }
            }
            bucket.add_replacement(entry);
            return Insert::Cached { ping };
        }
    }

    /// Split bucket `bi` if it is the last one (the one covering our own id).
    fn split(&mut self, bi: usize, now: Instant) -> bool {
        if bi != self.buckets.len() - 1 || self.buckets.len() >= 160 {
            return false;
        }
        let own = self.own;
        let depth = bi + 1;
        let old = &mut self.buckets[bi];
        let mut new = Bucket::new(now);
        new.last_changed = old.last_changed;
        let (near, far): (Vec<Entry>, Vec<Entry>) = old
            .nodes
            .drain(..)
            .partition(|e| own.common_prefix_len(&e.id) >= depth);
        old.nodes = far;
        new.nodes = near;
        let (near, far): (Vec<Entry>, Vec<Entry>) = old
            .replacements
            .drain(..)
            .partition(|e| own.common_prefix_len(&e.id) >= depth);
        old.replacements = far;
        new.replacements = near;
        // Promote replacements into room freed by the split.
        for b in [&mut *old, &mut new] {
            while b.nodes.len() < K {
                match b.replacements.pop() {
                    Some(e) => b.nodes.push(e),
                    None => break,
                }
            }
        }
        self.buckets.push(new);
        true
    }

    /// `id` at `addr` sent us a query: if it is in the table and has answered us before, it
    /// stays good without being pinged.
    pub fn heard_query(&mut self, id: &NodeId, addr: &SocketAddr, now: Instant) {
        let bi = self.bucket_index(id);
        if let Some(e) = self.buckets[bi]
            .nodes
            .iter_mut()
            .find(|e| e.id == *id && e.addr == *addr)
        {
            e.last_query = Some(now);
        }
    }

    /// A query to `id` at `addr` went unanswered. A node that turns bad gives its place to
    /// the newest replacement, if there is one.
    pub fn failed(&mut self, id: &NodeId, addr: &SocketAddr, now: Instant) {
        let bi = self.bucket_index(id);
        let bucket = &mut self.buckets[bi];
        let Some(i) = bucket
            .nodes
            .iter()
            .position(|e| e.id == *id && e.addr == *addr)
        else {
            bucket.replacements.retain(|r| r.id != *id);
            return;
        };
        let e = &mut bucket.nodes[i];
        e.failures = e.failures.saturating_add(1);
        e.ping_pending = false;
        if e.status(now) == Status::Bad
            && let Some(r) = bucket.replacements.pop()
        {
            bucket.nodes[i] = r;
            bucket.last_changed = now;
        }
    }

    /// The `n` nodes closest to `target` that are not bad, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        let mut all: Vec<&Entry> = self
            .buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| e.status(now) != Status::Bad)
            .collect();
        all.sort_unstable_by_key(|e| e.id.distance(target));
        all.into_iter().take(n).map(|e| (e.id, e.addr)).collect()
    }

    /// Every node, for persistence.
    pub fn export(&self) -> Vec<(NodeId, SocketAddr)> {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .map(|e| (e.id, e.addr))
            .collect()
    }

    /// Ids to look up to refresh buckets untouched for [`REFRESH_AFTER`]; those buckets count
    /// as refreshed from now on. `random` supplies the random bits of each id.
    pub fn due_refreshes(
        &mut self,
        now: Instant,
        mut random: impl FnMut() -> [u8; 20],
    ) -> Vec<NodeId> {
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= REFRESH_AFTER {
                b.last_changed = now;
                out.push(own.random_with_prefix(i, random()));
            }
        }
        out
    }

    /// When the next bucket becomes due for a refresh.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.buckets
            .iter()
            .map(|b| b.last_changed + REFRESH_AFTER)
            .min()
    }

    /// Nodes pinged because their bucket is full and whose answer is awaited.
    pub fn questionable_count(&self, now: Instant) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| e.status(now) == Status::Questionable)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with_prefix(own: &NodeId, prefix: usize, salt: u8) -> NodeId {
        own.random_with_prefix(prefix, [salt; 20])
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(((0x0a00_0000 + i).to_be_bytes(), 6881))
    }

    #[test]
    fn far_bucket_fills_then_caches_and_pings_questionable() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, now);
        // 8 nodes in the far half (first bit differs), then 8 in the near half: a split.
        for i in 0..8u8 {
            assert_eq!(
                t.insert(id_with_prefix(&own, 0, i + 1), addr(u32::from(i)), now),
                Insert::Added
            );
        }
        assert_eq!(t.bucket_count(), 1);
        for i in 0..8u8 {
            t.insert(
                id_with_prefix(&own, 1, i + 1),
                addr(100 + u32::from(i)),
                now,
            );
        }
        assert!(t.bucket_count() >= 2, "the bucket holding our id splits");
        assert_eq!(t.len(), 16);
        // The far bucket is full of good nodes: a newcomer is cached, nobody is pinged.
        let newcomer = id_with_prefix(&own, 0, 0x77);
        assert_eq!(
            t.insert(newcomer, addr(200), now),
            Insert::Cached { ping: vec![] }
        );
        // 16 minutes later they are questionable: the next newcomer causes pings.
        let later = now + Duration::from_secs(16 * 60);
        let Insert::Cached { ping } = t.insert(id_with_prefix(&own, 0, 0x78), addr(201), later)
        else {
            panic!()
        };
        assert_eq!(ping.len(), 8);
        // They are pinged only once.
        assert_eq!(
            t.insert(id_with_prefix(&own, 0, 0x79), addr(202), later),
            Insert::Cached { ping: vec![] }
        );
        // One of them fails twice: it is replaced by the newest cached node.
        let (bad_id, bad_addr) = ping[3];
        t.failed(&bad_id, &bad_addr, later);
        assert!(t.contains(&bad_id, &bad_addr), "one failure is not bad yet");
        t.failed(&bad_id, &bad_addr, later);
        assert!(!t.contains(&bad_id, &bad_addr));
        assert!(t.contains(&id_with_prefix(&own, 0, 0x79), &addr(202)));
        assert_eq!(t.len(), 16);
    }

    #[test]
    fn splits_down_to_our_neighbourhood() {
        let now = Instant::now();
        let own = NodeId([0x5a; 20]);
        let mut t = RoutingTable::new(own, now);
        let mut n = 0;
        for depth in 0..40 {
            for salt in 0..3u8 {
                t.insert(
                    id_with_prefix(&own, depth, salt.wrapping_mul(31).wrapping_add(depth as u8)),
                    addr(n),
                    now,
                );
                n += 1;
            }
        }
        // 3 per depth fit without eviction: every node is in.
        assert_eq!(t.len(), 120);
        assert!(t.bucket_count() >= 35, "{}", t.bucket_count());
        let closest = t.closest(&own, K, now);
        assert_eq!(closest.len(), K);
        assert!(own.common_prefix_len(&closest[0].0) >= 39);
        // The same node again is an update, and our own id is refused.
        let (id, a) = closest[0];
        assert_eq!(t.insert(id, a, now), Insert::Updated);
        assert_eq!(t.insert(own, addr(9999), now), Insert::Rejected);
    }

    #[test]
    fn one_node_per_address_and_no_id_moves() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, now);
        let a = NodeId([0x80; 20]);
        let b = NodeId([0x81; 20]);
        assert_eq!(t.insert(a, addr(1), now), Insert::Added);
        assert_eq!(t.insert(b, addr(1), now), Insert::Rejected);
        assert_eq!(t.insert(a, addr(2), now), Insert::Rejected);
        assert_eq!(t.len(), 1);
        // Once a is bad, b may take the address.
        t.failed(&a, &addr(1), now);
        t.failed(&a, &addr(1), now);
        assert_eq!(t.insert(b, addr(1), now), Insert::Added);
        assert_eq!(t.export(), vec![(b, addr(1))]);
    }

    #[test]
    fn refresh_after_idle() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, now);
        t.insert(NodeId([0x80; 20]), addr(1), now);
        assert!(t.due_refreshes(now, || [7; 20]).is_empty());
        assert_eq!(t.next_refresh(), Some(now + REFRESH_AFTER));
        let later = now + REFRESH_AFTER;
        let ids = t.due_refreshes(later, || [7; 20]);
        assert_eq!(ids.len(), 1);
        assert!(t.due_refreshes(later, || [7; 20]).is_empty());
    }

    #[test]
    fn queries_keep_a_node_that_answered_once_good() {
        let now = Instant::now();
        let mut t = RoutingTable::new(NodeId([0; 20]), now);
        let (id, a) = (NodeId([0x80; 20]), addr(1));
        t.insert(id, a, now);
        let later = now + GOOD_FOR + Duration::from_secs(1);
        assert_eq!(t.get(&id).unwrap().status(later), Status::Questionable);
        t.heard_query(&id, &a, later);
        assert_eq!(t.get(&id).unwrap().status(later), Status::Good);
        // A node that never answered is not made good by its queries.
        let (id2, a2) = (NodeId([0x81; 20]), addr(2));
        t.insert_unverified(id2, a2, now);
        t.heard_query(&id2, &a2, now);
        assert_eq!(t.get(&id2).unwrap().status(now), Status::Questionable);
    }

    #[test]
    fn imported_nodes_are_questionable() {
        let now = Instant::now();
        let mut t = RoutingTable::new(NodeId([0; 20]), now);
        assert!(t.insert_unverified(NodeId([0x80; 20]), addr(1), now));
        assert!(!t.insert_unverified(NodeId([0x80; 20]), addr(1), now));
        assert_eq!(t.questionable_count(now), 1);
        // A real answer makes it good.
        assert_eq!(t.insert(NodeId([0x80; 20]), addr(1), now), Insert::Updated);
        assert_eq!(t.questionable_count(now), 0);
    }
}
