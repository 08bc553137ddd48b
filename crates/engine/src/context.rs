//! What every torrent and metadata fetch of a node shares: its identity (peer id,
//! listening address), its transports, the tracker client, the DHT and LSD, the live
//! [`Settings`] with the session-wide rate buckets and connection counts, and the router
//! of incoming connections.
//!
//! This is the narrow context handed down to `torrent` and `magnet`: they depend on it,
//! never on `session`, and the session (which owns the torrents) depends on them. So the
//! module graph has no cycle: session → {torrent, magnet} → context.

use crate::settings::{Settings, SharedBucket};
use crate::transport::{Connector, PeerStream};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long an incoming connection may take to send the first 48 bytes of its handshake
/// (a real client sends all 68 at once).
const PREFIX_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an incoming MSE/PE handshake may take, up to the decrypted handshake prefix.
const MSE_TIMEOUT: Duration = Duration::from_secs(10);

/// `HASH('req2', info-hash)` → info-hash of every routed torrent: how an encrypted
/// incoming connection names its torrent (MSE/PE).
type Obfuscated = Arc<Mutex<HashMap<[u8; 20], [u8; 20]>>>;

/// Incoming connections still in their handshake: the oldest goes first when the session
/// is full (a host re-dialling half-open connections cannot starve newcomers), and at
/// most `max_half_open_per_ip` come from one address.
#[derive(Default)]
struct HalfOpen {
    next: u64,
    /// Oldest first: id, remote IP, and how to drop it.
    conns: std::collections::VecDeque<(u64, std::net::IpAddr, Arc<tokio::sync::Notify>)>,
}

/// Something incoming connections can be routed to: a torrent, or a magnet link's
/// metadata fetch.
pub(crate) trait PeerSink: Send + Sync {
    /// Take over a connection whose handshake prefix (`prefix`, already read) names us.
    fn accept(
        self: Arc<Self>,
        stream: PeerStream,
        prefix: [u8; 48],
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Take over a connection made for us by another transport (a WebRTC data channel we
    /// offered): we send our handshake first, as a dialler does.
    fn connect(self: Arc<Self>, stream: PeerStream) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Addresses to dial (from LSD).
    fn add_peers(&self, addrs: &[SocketAddr]);
    /// BEP 27: private torrents take peers from their trackers only.
    fn is_private(&self) -> bool;
}

pub(crate) struct NodeContext {
    pub(crate) listen_addr: SocketAddr,
    /// Our peer id (BEP 20 style: `-BP0100-` and 12 random digits), the same for every
    /// torrent and tracker of the session.
    pub(crate) peer_id: [u8; 20],
    /// Sent with every announce, so trackers know us across address changes.
    pub(crate) tracker_key: u32,
    pub(crate) tracker_client: tracker::client::TrackerClient,
    /// How we dial, in order of preference.
    pub(crate) connectors: Vec<Arc<dyn Connector>>,
    /// Running when LSD is on and its socket could be opened.
    pub(crate) lsd: Mutex<Option<crate::lsd::Lsd>>,
    /// LSD over IPv6, beside the IPv4 one.
    pub(crate) lsd6: Mutex<Option<crate::lsd::Lsd>>,
    /// Running when the DHT is on and its socket could be opened.
    pub(crate) dht: Mutex<Option<dht::Dht>>,
    /// Where incoming connections go, by the info-hash of their handshake.
    routes: Mutex<HashMap<[u8; 20], Arc<dyn PeerSink>>>,
    obfuscated: Obfuscated,
    /// Peers that refused MSE/PE and took plaintext: `prefer` dials them in plaintext.
    pub(crate) plaintext_peers: Mutex<crate::encryption::PlaintextPeers>,
    settings: RwLock<Settings>,
    /// Session-wide rate limits.
    pub(crate) download: SharedBucket,
    pub(crate) upload: SharedBucket,
    connections: AtomicUsize,
    half_open: Mutex<HalfOpen>,
    pub(crate) shutdown: AtomicBool,
    /// DHT lookups running at once; the others wait here.
    dht_queue: tokio::sync::Semaphore,
    /// Addresses a peer said (PEX flag 0x04) accept uTP: dialled over uTP first.
    utp_hints: Mutex<std::collections::HashSet<SocketAddr>>,
}

/// Addresses remembered as uTP-capable (a bound on what PEX can make us keep).
const MAX_UTP_HINTS: usize = 4096;

/// DHT lookups one session runs at once (the DHT node ends lookups past 128).
pub(crate) const MAX_DHT_LOOKUPS: usize = 32;

impl NodeContext {
    pub(crate) fn new(
        listen_addr: SocketAddr,
        peer_id: [u8; 20],
        tracker_key: u32,
        tracker_client: tracker::client::TrackerClient,
        connectors: Vec<Arc<dyn Connector>>,
        settings: Settings,
    ) -> NodeContext {
        NodeContext {
            listen_addr,
            peer_id,
            tracker_key,
            tracker_client,
            connectors,
            lsd: Mutex::new(None),
            lsd6: Mutex::new(None),
            dht: Mutex::new(None),
            routes: Mutex::new(HashMap::new()),
            obfuscated: Obfuscated::default(),
            plaintext_peers: Mutex::default(),
            download: SharedBucket::new(settings.download_limit),
            upload: SharedBucket::new(settings.upload_limit),
            settings: RwLock::new(settings),
            connections: AtomicUsize::new(0),
            half_open: Mutex::new(HalfOpen::default()),
            shutdown: AtomicBool::new(false),
            dht_queue: tokio::sync::Semaphore::new(MAX_DHT_LOOKUPS),
            utp_hints: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The transports to dial `addr` with, in order: the session's order (TCP, then uTP,
    /// as libtorrent falls back from one to the other), but uTP first for a peer that PEX
    /// said accepts it.
    pub(crate) fn dial_order(&self, addr: SocketAddr) -> Vec<Arc<dyn Connector>> {
        let mut order = self.connectors.clone();
        let hinted = self
            .utp_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&addr);
        if hinted {
            // Stable: uTP connectors move to the front, the rest keep their order.
            order.sort_by_key(|c| c.kind() != crate::transport::TransportKind::Utp);
        }
        order
    }

    /// Remember that `addr` accepts uTP (PEX flag 0x04), up to a bound.
    pub(crate) fn hint_utp(&self, addr: SocketAddr) {
        let mut h = self.utp_hints.lock().unwrap_or_else(|e| e.into_inner());
        // Full: some older hint makes room, so peers met later are still learnt.
        if h.len() >= MAX_UTP_HINTS
            && !h.contains(&addr)
            && let Some(old) = h.iter().next().copied()
        {
            h.remove(&old);
        }
        h.insert(addr);
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_settings(&self, s: Settings) {
        self.download.set_rate(s.download_limit);
        self.upload.set_rate(s.upload_limit);
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Count one more established connection, if the session-wide limit allows it.
    pub(crate) fn take_connection_slot(&self) -> bool {
        let max = self.settings().max_connections;
        self.connections
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release_connection_slot(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Route incoming connections for `info_hash` to `sink` (replacing what was there).
    pub(crate) fn register(&self, info_hash: [u8; 20], sink: Arc<dyn PeerSink>) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info_hash, sink);
        self.obfuscated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mse::req2_hash(&info_hash), info_hash);
        self.routes_changed();
    }

    /// Stop routing `info_hash` to `sink` (if it is still the one registered).
    pub(crate) fn unregister(&self, info_hash: &[u8; 20], sink: &Arc<dyn PeerSink>) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.get(info_hash).is_some_and(|s| same_sink(s, sink)) {
            routes.remove(info_hash);
            self.obfuscated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&mse::req2_hash(info_hash));
        }
        drop(routes);
        self.routes_changed();
    }

    fn route(&self, info_hash: &[u8; 20]) -> Option<Arc<dyn PeerSink>> {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .cloned()
    }

    /// Peers found by LSD for `info_hash` (never for private torrents).
    pub(crate) fn lsd_found(&self, info_hash: &[u8; 20], addr: SocketAddr) {
        if let Some(sink) = self.route(info_hash).filter(|s| !s.is_private()) {
            sink.add_peers(&[addr]);
        }
    }

    /// Torrents were added or removed: tell LSD which ones to announce (never private
    /// ones, BEP 27).
    fn routes_changed(&self) {
        for lsd in [&self.lsd, &self.lsd6] {
            self.tell_lsd(lsd);
        }
    }

    fn tell_lsd(&self, lsd: &Mutex<Option<crate::lsd::Lsd>>) {
        let lsd = lsd.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lsd) = lsd.as_ref() {
            let hashes = self
                .routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, t)| !t.is_private())
                .map(|(h, _)| *h)
                .collect();
            lsd.set_torrents(hashes);
        }
    }

    /// Look `info_hash` up on the DHT, announcing our port if `announce`; peers arrive on
    /// the receiver, which ends with the lookup. `None` when the DHT is off. Lookups wait
    /// their turn in a queue ([`MAX_DHT_LOOKUPS`] at once, below the DHT node's own cap),
    /// so a session with thousands of torrents gets every lookup done, late rather than
    /// never.
    pub(crate) fn dht_lookup(
        self: &Arc<Self>,
        info_hash: [u8; 20],
        announce: bool,
    ) -> Option<tokio::sync::mpsc::Receiver<Vec<SocketAddr>>> {
        if self.dht.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let ctx = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = ctx.dht_queue.acquire().await else {
                return;
            };
            let found = {
                let dht = ctx.dht.lock().unwrap_or_else(|e| e.into_inner());
                let Some(dht) = dht.as_ref() else { return };
                if announce {
                    dht.announce(info_hash, Some(ctx.listen_addr.port()))
                } else {
                    dht.get_peers(info_hash)
                }
            };
            let mut found = found;
            while let Some(peers) = found.recv().await {
                if tx.send(peers).await.is_err() {
                    return; // the torrent stopped; the permit goes to the next lookup
                }
            }
        });
        Some(rx)
    }

    /// An incoming connection of any transport: bounded by the half-open limit, read the
    /// first 48 bytes of its handshake (BEP 3), and hand it to the torrent or fetch it
    /// names. A stream naming nothing we have is dropped.
    pub(crate) fn incoming(self: &Arc<Self>, stream: PeerStream) {
        let settings = self.settings();
        let ip = stream.remote.ip().map(|a| a.ip());
        let cancel = Arc::new(tokio::sync::Notify::new());
        let id = {
            let mut h = self.half_open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(ip) = ip.filter(|ip| crate::settings::ip_limited(*ip)) {
                let from_ip = h.conns.iter().filter(|(_, i, _)| *i == ip).count();
                if from_ip >= settings.max_half_open_per_ip {
                    tracing::debug!(peer = %stream.remote, "dropped: too many half-open connections from its address");
                    return;
                }
            }
            // Full: the oldest half-open connection makes room.
            while h.conns.len() >= settings.max_half_open.max(1) {
                if let Some((_, old_ip, old)) = h.conns.pop_front() {
                    tracing::debug!(peer = %old_ip, "half-open connection dropped for a newcomer");
                    old.notify_one();
                }
            }
            h.next += 1;
            let id = h.next;
            let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
            h.conns
                .push_back((id, ip.unwrap_or(unspecified), cancel.clone()));
            id
        };
        let ctx = self.clone();
        tokio::spawn(async move {
            let routed = tokio::select! {
                r = ctx.read_prefix(stream) => r,
                _ = cancel.notified() => None,
            };
            ctx.half_open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .conns
                .retain(|(i, _, _)| *i != id);
            if let Some((sink, stream, prefix)) = routed {
                sink.accept(stream, prefix).await;
            }
        });
    }

    /// An outgoing connection of a transport that dials outside the engine (a WebRTC
    /// data channel we offered) for `info_hash`: we send our handshake first. Returns
    /// false (the stream is dropped) when no torrent or fetch has that info-hash.
    pub(crate) fn outgoing(self: &Arc<Self>, info_hash: &[u8; 20], stream: PeerStream) -> bool {
        let Some(sink) = self.route(info_hash) else {
            return false;
        };
        tokio::spawn(sink.connect(stream));
        true
    }

    async fn read_prefix(
        &self,
        mut stream: PeerStream,
    ) -> Option<(Arc<dyn PeerSink>, PeerStream, [u8; 48])> {
        // The first 20 bytes tell a plaintext handshake from an encrypted one (MSE/PE).
        let mut first = [0u8; 20];
        let read = tokio::time::timeout(PREFIX_TIMEOUT, stream.read.read_exact(&mut first)).await;
        if !matches!(read, Ok(Ok(_))) {
            tracing::debug!(peer = %stream.remote, "incoming: no handshake in time");
            return None;
        }
        let policy = self.settings().encryption;
        let mut skey = None;
        let mut prefix = [0u8; 48];
        if crate::encryption::is_plaintext(&first) {
            if policy == crate::settings::Encryption::Require {
                tracing::debug!(peer = %stream.remote, "incoming: plaintext refused (encryption required)");
                return None;
            }
            prefix[..20].copy_from_slice(&first);
            let read =
                tokio::time::timeout(PREFIX_TIMEOUT, stream.read.read_exact(&mut prefix[20..]))
                    .await;
            if !matches!(read, Ok(Ok(_))) {
                tracing::debug!(peer = %stream.remote, "incoming: no handshake in time");
                return None;
            }
        } else {
            if policy == crate::settings::Encryption::Disable {
                tracing::debug!(peer = %stream.remote, "incoming: not a plaintext handshake (encryption disabled)");
                return None;
            }
            let remote = stream.remote;
            let table = self.obfuscated.clone();
            let lookup: mse::SkeyLookup = Box::new(move |req2| {
                table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(req2)
                    .copied()
            });
            let secured = tokio::time::timeout(MSE_TIMEOUT, async move {
                let (mut s, key) =
                    crate::encryption::accept(stream, &first, policy, lookup).await?;
                let mut prefix = [0u8; 48];
                s.read.read_exact(&mut prefix).await?;
                Ok::<_, std::io::Error>((s, key, prefix))
            })
            .await;
            match secured {
                Ok(Ok((s, key, p))) => {
                    stream = s;
                    skey = Some(key);
                    prefix = p;
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %remote, error = %e, "incoming: MSE handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(peer = %remote, "incoming: MSE handshake timed out");
                    return None;
                }
            }
        }
        let parsed = match wire::HandshakePrefix::parse(&prefix) {
            Ok(Some(p)) => p,
            _ => {
                tracing::debug!(peer = %stream.remote, "incoming: not a BitTorrent handshake");
                return None;
            }
        };
        if skey.is_some_and(|k| k != parsed.info_hash) {
            tracing::debug!(peer = %stream.remote, "incoming: MSE key and handshake name different torrents");
            return None;
        }
        let Some(sink) = self.route(&parsed.info_hash) else {
            tracing::debug!(
                peer = %stream.remote,
                info_hash = %metainfo::hash::to_hex(&parsed.info_hash),
                "incoming: unknown info-hash"
            );
            return None;
        };
        Some((sink, stream, prefix))
    }
}

fn same_sink(a: &Arc<dyn PeerSink>, b: &Arc<dyn PeerSink>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// The addresses a peer list may give back for this node itself.
pub(crate) fn own_addrs(listen: SocketAddr) -> Vec<SocketAddr> {
    let port = listen.port();
    let mut v = vec![listen];
    if listen.ip().is_unspecified() || listen.ip().is_loopback() {
        v.push(SocketAddr::from(([127, 0, 0, 1], port)));
        v.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    }
    v
}

pub(crate) fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ConnectFuture, TcpConnector, TransportKind};

    struct FakeUtp;

    impl Connector for FakeUtp {
        fn kind(&self) -> TransportKind {
            TransportKind::Utp
        }
        fn connect(&self, _: SocketAddr, _: Duration) -> ConnectFuture {
            Box::pin(async { Err(std::io::Error::other("fake")) })
        }
    }

    #[test]
    fn utp_hinted_peers_are_dialled_over_utp_first() {
        let client = tracker::client::TrackerClient::new(Default::default()).unwrap();
        let ctx = NodeContext::new(
            "127.0.0.1:1".parse().unwrap(),
            [0; 20],
            0,
            client,
            vec![Arc::new(TcpConnector), Arc::new(FakeUtp)],
            Settings::default(),
        );
        let a: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        let kinds = |addr| -> Vec<TransportKind> {
            ctx.dial_order(addr).iter().map(|c| c.kind()).collect()
        };
        assert_eq!(kinds(a), [TransportKind::Tcp, TransportKind::Utp]);
        ctx.hint_utp(a);
        assert_eq!(kinds(a), [TransportKind::Utp, TransportKind::Tcp]);
        assert_eq!(kinds(b), [TransportKind::Tcp, TransportKind::Utp]);
        for i in 0..(MAX_UTP_HINTS as u32 + 10) {
            ctx.hint_utp(SocketAddr::from((i.to_be_bytes(), 1)));
        }
        assert_eq!(ctx.utp_hints.lock().unwrap().len(), MAX_UTP_HINTS);
    }
}
