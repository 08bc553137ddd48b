//! [`Dht`]: the tokio driver of a [`Node`]. It owns one UDP socket and one task; the task
//! moves datagrams between the socket and the node, sleeps until the node's next deadline,
//! and turns the node's events into per-lookup channels.
//!
//! The socket can be shared with uTP (BEP 29), as libtorrent does ([`Dht::start_shared`]):
//! the owner of the socket reads it and hands over the KRPC datagrams (a KRPC message is a
//! bencoded dictionary, so its first byte is `d`, which no uTP packet starts with: its
//! first byte is type and version, 0x01, 0x11, 0x21, 0x31, 0x41). On a socket of its own
//! ([`Dht::start`]) the node drops datagrams that do not start with `d`.
//!
//! BEP 32: with [`DhtConfig::bind6`] the node also has an IPv6 socket; the one node (one
//! routing table per family) is fed from both, and each datagram leaves by the socket of its
//! destination's family.
//!
//! Bootstrap host names are resolved inside the task, each with a time limit; a name that
//! does not resolve (no internet, say) is skipped. The routing table is saved to
//! [`DhtConfig::state_file`] on shutdown and loaded from it on start.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::id::NodeId;
use crate::item::Item;
use crate::krpc::{Want, decode_compact_addr, encode_compact_addr};
use crate::node::{Event, ItemWant, LookupId, LookupStats, Node, NodeConfig};

/// The well-known bootstrap routers.
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// How long resolving one bootstrap host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Peer batches buffered per lookup channel. A lookup yields at most one batch per response
/// (plus one from our own store), and sends at most `max_lookup_queries` (200) queries, so
/// even a consumer that reads nothing until the end loses no batch.
const LOOKUP_CHANNEL: usize = 256;
/// Largest state file read.
const MAX_STATE_FILE: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// The UDP address to bind (port 0: any free port).
    pub bind: SocketAddr,
    /// A second socket, of the other address family (BEP 32), e.g. `[::]:6881` beside
    /// `0.0.0.0:6881`. Port 0: the port of `bind`'s socket when free, else any.
    pub bind6: Option<SocketAddr>,
    /// `HOST:PORT` of bootstrap nodes, resolved by the driver.
    pub bootstrap: Vec<String>,
    /// Where the routing table is saved on shutdown and loaded from on start.
    pub state_file: Option<PathBuf>,
    /// BEP 43 read-only mode.
    pub read_only: bool,
    /// Our node id; by default the saved one, or a random one.
    pub node_id: Option<[u8; 20]>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 6881)),
            bind6: None,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            state_file: None,
            read_only: false,
            node_id: None,
        }
    }
}

enum Command {
    Lookup {
        info_hash: NodeId,
        /// `Some(port)` to announce (`Some(None)`: implied port).
        announce: Option<Option<u16>>,
        tx: mpsc::Sender<Vec<SocketAddr>>,
    },
    Bootstrap(Vec<SocketAddr>),
    GetItem {
        target: NodeId,
        want: ItemWant,
        tx: oneshot::Sender<ItemLookup>,
    },
    PutItem {
        item: Item,
        cas: Option<i64>,
        tx: oneshot::Sender<ItemLookup>,
    },
    TableSize(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<io::Result<()>>),
}

/// The end of a BEP 44 lookup: the newest verified item found (for a get), and what the
/// lookup did (for a put, `announced` counts the `put`s sent and `announce_acks` the
/// acknowledged ones).
#[derive(Debug, Clone, Default)]
pub struct ItemLookup {
    pub item: Option<Item>,
    pub stats: LookupStats,
}

/// A running DHT node. Dropping it stops the node (and saves the state file, if the runtime
/// lets the task finish); [`Dht::shutdown`] does it and waits.
pub struct Dht {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    local_addr6: Option<SocketAddr>,
    node_id: NodeId,
    task: Option<JoinHandle<()>>,
}

impl Dht {
    /// Bind the socket and start the node's task. Must be called inside a Tokio runtime.
    pub fn start(config: DhtConfig) -> io::Result<Dht> {
        let std_socket = std::net::UdpSocket::bind(config.bind)?;
        std_socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std_socket)?;
        Self::start_inner(config, Arc::new(socket), None, None)
    }

    /// Start the node on a socket someone else reads (the node's shared UDP socket, whose
    /// receive loop also feeds uTP): KRPC datagrams arrive on `inbox`, replies are sent on
    /// `socket`. `config.bind` is ignored.
    pub fn start_shared(
        config: DhtConfig,
        socket: Arc<UdpSocket>,
        inbox: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    ) -> io::Result<Dht> {
        Self::start_inner(config, socket, Some(inbox), None)
    }

    /// [`Dht::start_shared`] with a shared second socket too (the other address family,
    /// BEP 32), whose KRPC datagrams arrive on `inbox6`; [`DhtConfig::bind6`] is then
    /// not used.
    pub fn start_shared_dual(
        config: DhtConfig,
        socket: Arc<UdpSocket>,
        inbox: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
        socket6: Arc<UdpSocket>,
        inbox6: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    ) -> io::Result<Dht> {
        Self::start_inner(config, socket, Some(inbox), Some((socket6, Some(inbox6))))
    }

    fn start_inner(
        config: DhtConfig,
        socket: Arc<UdpSocket>,
        inbox: Option<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
        second: Option<Second>,
    ) -> io::Result<Dht> {
        let local_addr = socket.local_addr()?;
        // Without its second socket the node still runs on the first family.
        let second = second.or_else(|| {
            config
                .bind6
                .and_then(|b| match bind_second(b, local_addr.port()) {
                    Ok(s) => Some((Arc::new(s), None)),
                    Err(e) => {
                        tracing::warn!(addr = %b, error = %e, "DHT: cannot bind the second address family; running on {local_addr} only");
                        None
                    }
                })
        });
        let local_addr6 = match &second {
            Some((s, _)) => Some(s.local_addr()?),
            None => None,
        };
        let has =
            |v4: bool| local_addr.is_ipv4() == v4 || local_addr6.is_some_and(|a| a.is_ipv4() == v4);
        let saved = config
            .state_file
            .as_deref()
            .and_then(|p| load_state(p).ok());
        let node_id = config
            .node_id
            .map(NodeId)
            .or(saved.as_ref().map(|s| s.0))
            .unwrap_or_else(|| NodeId(random_bytes()));
        let mut cfg = NodeConfig::new(
            node_id,
            u64::from_le_bytes(random_bytes()[..8].try_into().expect("8")),
        );
        cfg.read_only = config.read_only;
        // An id the user chose is kept; otherwise BEP 42 may replace it once our public
        // address is known.
        cfg.adopt_bep42_id = config.node_id.is_none();
        cfg.local_port = local_addr.port();
        cfg.families = Want {
            n4: has(true),
            n6: has(false),
        };
        let now = Instant::now();
        let mut node = Node::new(cfg, now);
        if let Some((_, nodes)) = &saved {
            node.import(nodes, now);
            if !node.table().is_empty() {
                node.bootstrap(&[], now);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Resolve bootstrap hosts concurrently; each result is fed in as it comes.
        for host in config.bootstrap {
            let tx = tx.clone();
            let (n4, n6) = (has(true), has(false));
            tokio::spawn(async move {
                if let Ok(Ok(addrs)) =
                    tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host)).await
                {
                    let addrs: Vec<SocketAddr> = addrs
                        .filter(|a| if a.is_ipv4() { n4 } else { n6 })
                        .collect();
                    if !addrs.is_empty() {
                        let _ = tx.send(Command::Bootstrap(addrs));
                    }
                }
            });
        }
        let task = tokio::spawn(run(socket, inbox, second, node, rx, config.state_file));
        Ok(Dht {
            commands: tx,
            local_addr,
            local_addr6,
            node_id,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The second socket's address ([`DhtConfig::bind6`]), if it has one.
    pub fn local_addr6(&self) -> Option<SocketAddr> {
        self.local_addr6
    }

    /// Our node id at start. (Unless it was configured, BEP 42 may later replace it with one
    /// that fits our public address; the state file keeps the current one.)
    pub fn node_id(&self) -> [u8; 20] {
        self.node_id.0
    }

    fn lookup(
        &self,
        info_hash: [u8; 20],
        announce: Option<Option<u16>>,
    ) -> mpsc::Receiver<Vec<SocketAddr>> {
        let (tx, rx) = mpsc::channel(LOOKUP_CHANNEL);
        let _ = self.commands.send(Command::Lookup {
            info_hash: NodeId(info_hash),
            announce,
            tx,
        });
        rx
    }

    /// Look up peers for `info_hash`: batches of newly found peers; the channel ends when the
    /// lookup is done.
    pub fn get_peers(&self, info_hash: [u8; 20]) -> mpsc::Receiver<Vec<SocketAddr>> {
        self.lookup(info_hash, None)
    }

    /// Announce that we have `info_hash` on `port` (`None`: our DHT UDP port, as
    /// `implied_port`). Yields the peers found on the way; ends when the announces are done.
    pub fn announce(
        &self,
        info_hash: [u8; 20],
        port: Option<u16>,
    ) -> mpsc::Receiver<Vec<SocketAddr>> {
        self.lookup(info_hash, Some(port))
    }

    async fn item_lookup(
        &self,
        make: impl FnOnce(oneshot::Sender<ItemLookup>) -> Command,
    ) -> ItemLookup {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(make(tx)).is_err() {
            return ItemLookup::default();
        }
        rx.await.unwrap_or_default()
    }

    /// BEP 44: the immutable item whose bencoded value hashes to `target`.
    pub async fn get_immutable(&self, target: [u8; 20]) -> ItemLookup {
        self.item_lookup(|tx| Command::GetItem {
            target: NodeId(target),
            want: ItemWant::Immutable,
            tx,
        })
        .await
    }

    /// BEP 44: the mutable item of `key` and `salt` with the highest `seq` found, its
    /// signature checked.
    pub async fn get_mutable(&self, key: [u8; 32], salt: Vec<u8>) -> ItemLookup {
        let want = ItemWant::Mutable { key, salt };
        self.item_lookup(|tx| Command::GetItem {
            target: want.target(NodeId([0; 20])),
            want,
            tx,
        })
        .await
    }

    /// BEP 44: store `item` on the nodes closest to its target.
    pub async fn put(&self, item: Item, cas: Option<i64>) -> ItemLookup {
        self.item_lookup(|tx| Command::PutItem { item, cas, tx })
            .await
    }

    /// Contact these nodes (besides the configured bootstrap hosts).
    pub fn add_bootstrap(&self, addrs: Vec<SocketAddr>) {
        let _ = self.commands.send(Command::Bootstrap(addrs));
    }

    /// Nodes in the routing table (0 once stopped).
    pub async fn routing_table_size(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::TableSize(tx)).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Stop the node and save the routing table (if a state file is configured).
    pub async fn shutdown(mut self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Shutdown(tx)).is_ok();
        let result = if sent {
            rx.await.unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        result
    }
}

/// The next KRPC datagram: from the socket, or from the shared socket's receive loop.
async fn next_datagram(
    socket: &UdpSocket,
    inbox: &mut Option<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match inbox {
        None => socket.recv_from(buf).await,
        Some(rx) => match rx.recv().await {
            Some((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            None => std::future::pending().await,
        },
    }
}

/// Bind the second socket: on `port` (the first socket's) when `bind`'s port is 0 and that
/// port is free, else on `bind` as given. An IPv6 socket is IPv6-only, so it never takes
/// IPv4 traffic from the first one.
pub fn bind_second(bind: SocketAddr, port: u16) -> io::Result<UdpSocket> {
    let open = |addr: SocketAddr| -> io::Result<UdpSocket> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        UdpSocket::from_std(s.into())
    };
    if bind.port() == 0
        && let Ok(s) = open(SocketAddr::new(bind.ip(), port))
    {
        return Ok(s);
    }
    open(bind)
}

/// Send `bytes` by the socket of `to`'s family, if there is one.
async fn send(
    socket: &UdpSocket,
    socket6: Option<&UdpSocket>,
    v4: bool,
    to: SocketAddr,
    bytes: &[u8],
) {
    let s = if to.is_ipv4() == v4 {
        Some(socket)
    } else {
        socket6
    };
    if let Some(s) = s {
        // A send can fail (unreachable network, full buffer): the query times out.
        let _ = s.send_to(bytes, to).await;
    }
}

/// The second socket (the other address family), and the queue its KRPC datagrams come
/// on when it is shared (`None`: the driver reads the socket itself).
type Second = (
    Arc<UdpSocket>,
    Option<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
);

/// Wait for a datagram on the second socket; never, without one.
async fn recv_second(
    second: &mut Option<Second>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match second {
        Some((s, inbox)) => next_datagram(s, inbox, buf).await,
        None => std::future::pending().await,
    }
}

async fn run(
    socket: Arc<UdpSocket>,
    mut inbox: Option<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    mut second: Option<Second>,
    mut node: Node,
    mut commands: mpsc::UnboundedReceiver<Command>,
    state_file: Option<PathBuf>,
) {
    let mut buf = vec![0u8; 2048];
    let mut buf6 = vec![0u8; 2048];
    let mut lookups: HashMap<LookupId, mpsc::Sender<Vec<SocketAddr>>> = HashMap::new();
    let mut item_lookups: HashMap<LookupId, (Option<Item>, oneshot::Sender<ItemLookup>)> =
        HashMap::new();
    let v4 = socket.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    loop {
        let now = Instant::now();
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        while let Some((to, bytes)) = node.poll_transmit() {
            send(&socket, second.as_ref().map(|(s, _)| &**s), v4, to, &bytes).await;
        }
        while let Some(event) = node.poll_event() {
            match event {
                Event::PeersFound { lookup, peers, .. } => {
                    if let Some(tx) = lookups.get(&lookup) {
                        let _ = tx.try_send(peers);
                    }
                }
                Event::ItemFound { lookup, item } => {
                    if let Some((best, _)) = item_lookups.get_mut(&lookup) {
                        *best = Some(item);
                    }
                }
                Event::LookupDone { lookup, stats, .. } => {
                    lookups.remove(&lookup);
                    if let Some((item, tx)) = item_lookups.remove(&lookup) {
                        let _ = tx.send(ItemLookup { item, stats });
                    }
                }
                Event::Bootstrapped { .. } | Event::NodeIdChanged { .. } => {}
            }
        }
        let deadline = node
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            received = next_datagram(&socket, &mut inbox, &mut buf) => {
                // Errors (an ICMP unreachable reported on the socket) concern one datagram.
                if let Ok((n, from)) = received
                    && buf[..n].first() == Some(&b'd')
                {
                    node.handle_datagram(Instant::now(), from, &buf[..n]);
                }
            }
            received = recv_second(&mut second, &mut buf6) => {
                if let Ok((n, from)) = received
                    && buf6[..n].first() == Some(&b'd')
                {
                    node.handle_datagram(Instant::now(), from, &buf6[..n]);
                }
            }
            command = commands.recv() => {
                let now = Instant::now();
                match command {
                    Some(Command::Lookup { info_hash, announce, tx }) => {
                        let id = match announce {
                            None => node.get_peers(info_hash, now),
                            Some(port) => node.announce(info_hash, port, now),
                        };
                        lookups.insert(id, tx);
                    }
                    Some(Command::Bootstrap(addrs)) => node.bootstrap(&addrs, now),
                    Some(Command::GetItem { target, want, tx }) => {
                        let id = node.get_item(target, want, now);
                        item_lookups.insert(id, (None, tx));
                    }
                    Some(Command::PutItem { item, cas, tx }) => {
                        let id = node.put_item(item, cas, now);
                        item_lookups.insert(id, (None, tx));
                    }
                    Some(Command::TableSize(tx)) => {
                        let _ = tx.send(node.table_len());
                    }
                    Some(Command::Shutdown(tx)) => {
                        let _ = tx.send(save(&node, state_file.as_deref()));
                        return;
                    }
                    None => {
                        let _ = save(&node, state_file.as_deref());
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                node.handle_timeout(Instant::now());
            }
        }
    }
}

fn save(node: &Node, path: Option<&Path>) -> io::Result<()> {
    match path {
        Some(p) => save_state(p, &node.id(), &node.export()),
        None => Ok(()),
    }
}

/// Write the state file atomically: `{id, nodes, nodes6}` in bencode, compact node infos.
pub fn save_state(path: &Path, id: &NodeId, nodes: &[(NodeId, SocketAddr)]) -> io::Result<()> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (nid, addr) in nodes {
        let out = if addr.is_ipv4() { &mut v4 } else { &mut v6 };
        out.extend_from_slice(&nid.0);
        encode_compact_addr(addr, out);
    }
    let mut e = bencode::Encoder::new();
    e.dict(|d| {
        d.bytes(b"id", &id.0);
        d.bytes(b"nodes", &v4);
        d.bytes(b"nodes6", &v6);
    });
    // Unique per process: two nodes saving at once must not write one temp file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&e.into_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Read a state file written by [`save_state`].
pub fn load_state(path: &Path) -> io::Result<(NodeId, Vec<(NodeId, SocketAddr)>)> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_STATE_FILE)
        .read_to_end(&mut bytes)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("DHT state: {what}"));
    let limits = bencode::Limits {
        max_input: MAX_STATE_FILE as usize,
        max_depth: 4,
        max_string: MAX_STATE_FILE as usize,
        max_items: 64,
    };
    let v = bencode::decode_with(&bytes, &limits).map_err(|e| bad(&e.to_string()))?;
    let d = v.as_dict().ok_or_else(|| bad("not a dictionary"))?;
    let id = d
        .get(b"id")
        .and_then(|v| v.as_bytes())
        .and_then(NodeId::from_slice)
        .ok_or_else(|| bad("id"))?;
    let mut nodes = Vec::new();
    for (key, len) in [(&b"nodes"[..], 26), (&b"nodes6"[..], 38)] {
        if let Some(b) = d.get(key).and_then(|v| v.as_bytes()) {
            for c in b.chunks_exact(len) {
                if let (Some(nid), Some(addr)) =
                    (NodeId::from_slice(&c[..20]), decode_compact_addr(&c[20..]))
                {
                    nodes.push((nid, addr));
                }
            }
        }
    }
    Ok((id, nodes))
}

/// Random bytes from the OS (`/dev/urandom`), or failing that from std's randomly keyed
/// hasher mixed with the time.
fn random_bytes() -> [u8; 20] {
    use std::io::Read;
    let mut out = [0u8; 20];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .is_ok()
    {
        return out;
    }
    use sha1::{Digest, Sha1};
    use std::hash::BuildHasher;
    let mut h = Sha1::new();
    for i in 0..4u32 {
        let r = std::collections::hash_map::RandomState::new().hash_one((
            i,
            std::process::id(),
            std::time::SystemTime::now(),
        ));
        h.update(r.to_le_bytes());
    }
    h.finalize().into()
}
