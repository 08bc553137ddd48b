//! An in-memory network with virtual time for driving many sans-IO [`Node`]s: datagrams
//! from `poll_transmit` are delivered to the target's `handle_datagram` after a pseudo-random
//! latency, and the clock jumps to the next delivery or the earliest `poll_timeout`.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dht::NodeId;
use dht::id::bep42_id;
use dht::krpc::{self, Body, Message, Response};
use dht::node::{Event, Node, NodeConfig};

/// A deterministic PRNG for the tests (xorshift64*).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes20(&mut self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for b in out.iter_mut() {
            *b = self.next() as u8;
        }
        out
    }
}

/// What sits at an address of the simulated network.
pub enum Host {
    Node(Box<Node>),
    /// Answers every query with the closest thing to a flood it can fit: as many fake nodes
    /// (random ids, random unreachable addresses) as one datagram holds.
    Liar {
        id: NodeId,
        /// Fake ids next to the looked-up target (sharing its first 6 bytes) rather than
        /// random: they beat every real node on distance.
        targeted: bool,
    },
    /// Gone: datagrams to it are lost.
    Offline,
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Net {
    pub now: Instant,
    pub start: Instant,
    pub hosts: Vec<(SocketAddr, Host)>,
    pub by_addr: HashMap<SocketAddr, usize>,
    pub events: Vec<Vec<Event>>,
    queue: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    pub rng: TestRng,
    pub delivered: u64,
    pub dropped: u64,
    /// Datagrams sent by node `i`.
    pub sent_by: Vec<u64>,
}

/// A public-looking IPv4 address for host `i` (so BEP 42 applies).
pub fn public_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    let ip = Ipv4Addr::from(0x2000_0000 + i * 7919);
    SocketAddr::new(IpAddr::V4(ip), 6881 + (i % 1000) as u16)
}

impl Net {
    pub fn new(seed: u64) -> Net {
        let now = Instant::now();
        Net {
            now,
            start: now,
            hosts: Vec::new(),
            by_addr: HashMap::new(),
            events: Vec::new(),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            rng: TestRng(seed | 1),
            delivered: 0,
            dropped: 0,
            sent_by: Vec::new(),
        }
    }

    /// Add a node at `addr` with a BEP 42 id; `tweak` may change its config.
    pub fn add_node(&mut self, addr: SocketAddr, tweak: impl FnOnce(&mut NodeConfig)) -> usize {
        let id = bep42_id(addr.ip(), self.rng.next() as u8, self.rng.bytes20());
        let mut cfg = NodeConfig::new(id, self.rng.next());
        tweak(&mut cfg);
        let node = Node::new(cfg, self.now);
        self.add_host(addr, Host::Node(Box::new(node)))
    }

    pub fn add_liar(&mut self, addr: SocketAddr, targeted: bool) -> usize {
        let id = bep42_id(addr.ip(), self.rng.next() as u8, self.rng.bytes20());
        self.add_host(addr, Host::Liar { id, targeted })
    }

    fn add_host(&mut self, addr: SocketAddr, host: Host) -> usize {
        let i = self.hosts.len();
        self.hosts.push((addr, host));
        self.by_addr.insert(addr, i);
        self.events.push(Vec::new());
        self.sent_by.push(0);
        self.flush(i);
        i
    }

    pub fn node(&mut self, i: usize) -> &mut Node {
        match &mut self.hosts[i].1 {
            Host::Node(n) => n,
            _ => panic!("host {i} is not a node"),
        }
    }

    /// Host `i` leaves without a word.
    pub fn take_offline(&mut self, i: usize) {
        let addr = self.hosts[i].0;
        self.by_addr.remove(&addr);
        self.hosts[i].1 = Host::Offline;
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].0
    }

    /// Run a command on node `i` at the current time, then send what it produced.
    pub fn with_node<T>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> T) -> T {
        let now = self.now;
        let out = f(self.node(i), now);
        self.flush(i);
        out
    }

    /// Inject a datagram from an arbitrary address (which need not be a host).
    pub fn inject(&mut self, from: SocketAddr, to: usize, bytes: Vec<u8>) {
        let now = self.now;
        if let Host::Node(n) = &mut self.hosts[to].1 {
            n.handle_datagram(now, from, &bytes);
        }
        self.flush(to);
    }

    fn latency(&mut self) -> Duration {
        Duration::from_millis(10 + self.rng.below(90))
    }

    /// Move everything node `i` has to send onto the network, collect its events, and
    /// remember its next deadline.
    pub fn flush(&mut self, i: usize) {
        let from = self.hosts[i].0;
        let Host::Node(node) = &mut self.hosts[i].1 else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = node.poll_event() {
            self.events[i].push(e);
        }
        if let Some(t) = node.poll_timeout() {
            self.timers.push(Reverse((t, i)));
        }
        for (to, bytes) in out {
            self.sent_by[i] += 1;
            let at = self.now + self.latency();
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to,
                bytes,
            }));
        }
    }

    fn liar_answer(&mut self, liar_id: NodeId, targeted: bool, bytes: &[u8]) -> Option<Vec<u8>> {
        let msg = krpc::decode(bytes).ok()?;
        let Body::Query(q) = &msg.body else {
            return None;
        };
        let target = match q {
            krpc::Query::FindNode { target, .. } => Some(*target),
            krpc::Query::GetPeers { info_hash, .. } => Some(*info_hash),
            _ => None,
        };
        // As many fake IPv4 nodes as fit in a datagram under the decoder's limit.
        let nodes = (0..50)
            .map(|_| {
                let ip = Ipv4Addr::from(self.rng.next() as u32 | 0x0100_0000);
                let port = (self.rng.next() as u16) | 1;
                let mut id = self.rng.bytes20();
                if let (true, Some(t)) = (targeted, target) {
                    id[..6].copy_from_slice(&t.0[..6]);
                }
                (NodeId(id), SocketAddr::new(IpAddr::V4(ip), port))
            })
            .collect();
        let token = matches!(q, krpc::Query::GetPeers { .. }).then(|| b"liar".to_vec());
        Some(
            Message {
                tid: msg.tid,
                version: None,
                read_only: false,
                ip: None,
                want: None,
                body: Body::Response(Response {
                    id: liar_id,
                    nodes,
                    token,
                    ..Default::default()
                }),
            }
            .encode(),
        )
    }

    /// Run until `deadline` (virtual) or until `done` returns true (checked after every step).
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&Net) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let next_msg = self.queue.peek().map(|Reverse(m)| m.at);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let t = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return false,
            };
            if t > deadline {
                self.now = self.now.max(deadline);
                return false;
            }
            self.now = self.now.max(t);
            let now = self.now;
            if next_msg == Some(t) {
                let Reverse(m) = self.queue.pop().expect("peeked");
                let Some(&to) = self.by_addr.get(&m.to) else {
                    self.dropped += 1;
                    continue;
                };
                self.delivered += 1;
                match &mut self.hosts[to].1 {
                    Host::Node(n) => {
                        n.handle_datagram(now, m.from, &m.bytes);
                        self.flush(to);
                    }
                    Host::Offline => self.dropped += 1,
                    Host::Liar { id, targeted } => {
                        let (id, targeted) = (*id, *targeted);
                        if let Some(answer) = self.liar_answer(id, targeted, &m.bytes) {
                            let at = now + self.latency();
                            self.seq += 1;
                            self.queue.push(Reverse(InFlight {
                                at,
                                seq: self.seq,
                                from: m.to,
                                to: m.from,
                                bytes: answer,
                            }));
                        }
                    }
                }
            } else {
                let Reverse((_, i)) = self.timers.pop().expect("peeked");
                let Host::Node(n) = &mut self.hosts[i].1 else {
                    continue;
                };
                // Stale entries (the node's deadline moved) are skipped: a fresh one was
                // pushed when it moved.
                if n.poll_timeout().is_some_and(|d| d <= now) {
                    n.handle_timeout(now);
                    self.flush(i);
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline, |_| false);
    }
}

/// Everything a node wants to send, decoded.
pub fn drain(n: &mut Node) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    while let Some((to, bytes)) = n.poll_transmit() {
        out.push((to, krpc::decode(&bytes).expect("we send valid KRPC")));
    }
    out
}

pub fn median(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Helpers for tests of the tokio driver on loopback.
pub mod live {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use dht::{Dht, DhtConfig};
    use tokio::sync::mpsc;
    use tokio::time::{Instant, timeout};

    pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    pub fn config(bootstrap: Vec<String>) -> DhtConfig {
        DhtConfig {
            bind: SocketAddr::from((LOOPBACK, 0)),
            bind6: None,
            bootstrap,
            state_file: None,
            read_only: false,
            node_id: None,
        }
    }

    /// All peers a lookup yields until it ends (bounded by `limit`).
    pub async fn collect(
        mut rx: mpsc::Receiver<Vec<SocketAddr>>,
        limit: Duration,
    ) -> Vec<SocketAddr> {
        let mut all = Vec::new();
        let _ = timeout(limit, async {
            while let Some(batch) = rx.recv().await {
                all.extend(batch);
            }
        })
        .await;
        all
    }

    pub async fn wait_table(dht: &Dht, at_least: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let n = dht.routing_table_size().await;
            if n >= at_least || Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
