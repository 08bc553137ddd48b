//! The session: one node with its listener, its transports, the DHT and LSD, and the
//! table of every torrent it holds. The session owns each torrent's lifecycle:
//!
//! ```text
//!   add(magnet) ─> Metadata ─┐
//!   add(.torrent) ───────────┴─> Checking ─> Live ──> (Error on a disk failure)
//!                     pause: any state ─> Paused;  resume: Paused/Error ─> Metadata|Checking
//!                     remove: any state ─> gone (optionally with its data)
//! ```
//!
//! A magnet link is a torrent in the `Metadata` state: the connections that fetch its info
//! dictionary carry on into the download. A paused torrent holds no task, no connection
//! and no open file. Every operation works from any task, at run time, by [`TorrentId`].

use crate::context::{NodeContext, seed_from_time};
use crate::error::EngineError;
use crate::lsd::{Lsd, LsdConfig};
use crate::magnet::{FetchStats, MetadataFetch, MetadataSources};
use crate::peer::Handoff;
use crate::settings::Settings;
use crate::torrent::{Stats, Torrent, TorrentConfig};
use crate::transport::{Connector, PeerStream, TcpConnector, Transports};
use metainfo::Metainfo;
use metainfo::magnet::Magnet;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// A torrent's number in its session: small, stable for the session's life, never reused.
pub type TorrentId = u64;

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// A magnet link fetching its info dictionary from peers (BEP 9).
    Metadata,
    /// Checking the data already on disk against the piece hashes.
    Checking,
    /// Waiting for a free slot in the session's queue.
    Queued,
    /// Stopped by the user: no task, no connection, no open file.
    Paused,
    /// Downloading or seeding.
    Live,
    /// Stopped by a failure it cannot get past alone (a full disk), with why.
    Error(String),
}

impl TorrentState {
    /// Lower-case name, as the CLI and the API print it.
    pub fn name(&self) -> &'static str {
        match self {
            TorrentState::Metadata => "metadata",
            TorrentState::Checking => "checking",
            TorrentState::Queued => "queued",
            TorrentState::Paused => "paused",
            TorrentState::Live => "live",
            TorrentState::Error(_) => "error",
        }
    }
}

/// What to add.
#[derive(Debug, Clone)]
pub enum AddSource {
    Torrent(Box<Metainfo>),
    Magnet(Box<Magnet>),
}

/// How to add a torrent.
#[derive(Debug, Clone)]
pub struct AddTorrent {
    pub source: AddSource,
    pub config: TorrentConfig,
    /// Add it paused: nothing is touched on disk until it is resumed.
    pub paused: bool,
}

/// A torrent as the session lists it.
#[derive(Debug, Clone)]
pub struct TorrentInfo {
    pub id: TorrentId,
    pub info_hash: [u8; 20],
    /// The torrent's name, or a magnet's `dn` (or the info-hash) until the metadata is in.
    pub name: String,
    pub state: TorrentState,
    pub save_path: PathBuf,
    /// Counters; the last ones seen while it was live, for a paused torrent. `uploaded`
    /// and `downloaded` are totals over every run (see [`Session::set_counters`]).
    pub stats: Stats,
    /// Live with every wanted piece verified (seeding).
    pub complete: bool,
    /// The metainfo, once known.
    pub meta: Option<Arc<Metainfo>>,
    /// While fetching metadata.
    pub fetch: Option<FetchStats>,
    /// Bytes checked so far, while checking.
    pub checked_bytes: u64,
    pub added_at: SystemTime,
    pub has_metadata: bool,
}

/// A torrent's state in a few words ([`Session::states`]).
#[derive(Debug, Clone)]
pub struct TorrentBrief {
    pub id: TorrentId,
    pub state: TorrentState,
    /// Live with every wanted piece verified (seeding).
    pub complete: bool,
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to listen for peers (port 0: any free port).
    pub listen: SocketAddr,
    /// A second listening address, of the other family (IPv6 beside IPv4): TCP, and the
    /// DHT's second UDP socket (BEP 32). Port 0: `listen`'s port when free. Its socket is
    /// IPv6-only, so `0.0.0.0:P` and `[::]:P` live side by side. A failure to bind it is
    /// not fatal (see [`Session::listen6_error`]).
    pub listen6: Option<SocketAddr>,
    /// Local Service Discovery (BEP 14): announce our torrents on the local network and
    /// dial the peers that announce them. `None`: off.
    pub lsd: Option<LsdSettings>,
    /// The IPv6 LSD group, used when `lsd` is on and we listen on IPv6 (joined on the
    /// interface of the IPv6 listening address, or the system's choice for `[::]`).
    pub lsd6_group: Option<std::net::SocketAddrV6>,
    /// Settings of the tracker client.
    pub tracker: tracker::client::ClientConfig,
    /// The mainline DHT (BEP 5), on a UDP socket at the listening address. `None`: off.
    pub dht: Option<DhtSettings>,
    /// Limits, changeable later with [`Session::set_settings`].
    pub settings: Settings,
    /// Which transports carry peer connections (TCP and uTP by default).
    pub transports: Transports,
}

/// How to join the DHT.
#[derive(Debug, Clone)]
pub struct DhtSettings {
    /// `HOST:PORT` of nodes to start from (the well-known routers by default).
    pub bootstrap: Vec<String>,
    /// Where the routing table is kept between runs (used before the bootstrap nodes).
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for DhtSettings {
    fn default() -> Self {
        DhtSettings {
            bootstrap: dht::driver::DEFAULT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect(),
            state_file: None,
        }
    }
}

/// Where LSD multicasts; the defaults are BEP 14's.
#[derive(Debug, Clone)]
pub struct LsdSettings {
    pub group: std::net::SocketAddrV4,
    /// The interface to multicast on (unspecified: the system's choice).
    pub interface: std::net::Ipv4Addr,
}

impl Default for LsdSettings {
    fn default() -> Self {
        LsdSettings {
            group: crate::lsd::DEFAULT_GROUP_V4,
            interface: std::net::Ipv4Addr::UNSPECIFIED,
        }
    }
}

impl SessionConfig {
    /// Listen on `listen`, LSD and the DHT on, default tracker settings and limits. An
    /// unspecified address (`0.0.0.0:P` or `[::]:P`) means every interface of both
    /// families: `0.0.0.0:P` and `[::]:P`.
    pub fn new(listen: SocketAddr) -> Self {
        let (listen, listen6) = if listen.ip().is_unspecified() {
            (
                SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, listen.port())),
                Some(SocketAddr::from((
                    std::net::Ipv6Addr::UNSPECIFIED,
                    listen.port(),
                ))),
            )
        } else {
            (listen, None)
        };
        SessionConfig {
            listen,
            listen6,
            lsd: Some(LsdSettings::default()),
            lsd6_group: Some(crate::lsd::DEFAULT_GROUP_V6),
            tracker: tracker::client::ClientConfig::default(),
            dht: Some(DhtSettings::default()),
            settings: Settings::default(),
            transports: Transports::default(),
        }
    }
}

/// What a torrent of the table is running now.
enum Running {
    Nothing,
    Fetching(Arc<MetadataFetch>),
    Checking,
    Torrent(Torrent),
}

struct Entry {
    id: TorrentId,
    info_hash: [u8; 20],
    config: TorrentConfig,
    added_at: SystemTime,
    /// Set once known (at add for a .torrent, when fetched for a magnet).
    meta: Option<Arc<Metainfo>>,
    magnet: Option<Box<Magnet>>,
    state: TorrentState,
    running: Running,
    /// Bumped by every pause, resume and remove: a start task that finds it changed
    /// stops what it started (the user changed their mind meanwhile).
    epoch: u64,
    last_stats: Stats,
    checked: Arc<AtomicU64>,
    /// Payload bytes (uploaded, downloaded) of the runs that ended, and of earlier
    /// sessions ([`Session::set_counters`]): the totals are these plus the running ones.
    carried: (u64, u64),
}

impl Entry {
    fn name(&self) -> String {
        if let Some(m) = &self.meta {
            return m.info.name.clone();
        }
        self.magnet
            .as_ref()
            .and_then(|m| m.display_name.clone())
            .unwrap_or_else(|| metainfo::hash::to_hex(&self.info_hash))
    }
}

#[derive(Default)]
struct Table {
    next_id: TorrentId,
    entries: BTreeMap<TorrentId, Entry>,
    by_hash: HashMap<[u8; 20], TorrentId>,
}

struct SessionInner {
    ctx: Arc<NodeContext>,
    table: Mutex<Table>,
    /// Bumped on every change of the table or of a torrent's state.
    changes: watch::Sender<u64>,
    lsd_error: Option<String>,
    dht_error: Option<String>,
    listen_addr6: Option<SocketAddr>,
    listen6_error: Option<String>,
    /// Stops the uTP dispatchers and the shared UDP sockets' receive loops.
    udp_stop: UdpStop,
}

/// What stops the shared UDP sockets (one per address family): the uTP dispatchers'
/// tokens and the receive loops.
#[derive(Default)]
struct UdpStop {
    utp: Vec<tokio_util::sync::CancellationToken>,
    mux: Vec<tokio::task::AbortHandle>,
}

/// The uTP side of one shared UDP socket.
struct UtpSide {
    socket: Arc<crate::utp::SessionUtp>,
    cancel: tokio_util::sync::CancellationToken,
    /// Where the receive loop ([`crate::utp::Mux`]) puts uTP datagrams, and what it
    /// tells the transport about them.
    inbox: (
        tokio::sync::mpsc::Sender<crate::utp::Received>,
        Arc<crate::utp::LargeDatagrams>,
    ),
}

/// uTP on the shared UDP socket `udp`; `None` (logged) when it cannot start.
fn open_utp(udp: &Arc<tokio::net::UdpSocket>) -> Option<UtpSide> {
    let (tx, rx) = tokio::sync::mpsc::channel(crate::utp::UTP_QUEUE);
    let cancel = tokio_util::sync::CancellationToken::new();
    let opened = crate::utp::ChannelTransport::new(udp.clone(), rx)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            let large = t.large_datagrams();
            crate::utp::utp_socket(t, crate::utp::socket_opts(cancel.clone()))
                .map(|sock| (sock, large))
                .map_err(|e| e.to_string())
        });
    match opened {
        Ok((socket, large)) => Some(UtpSide {
            socket,
            cancel,
            inbox: (tx, large),
        }),
        Err(e) => {
            let addr = udp.local_addr().ok();
            tracing::warn!(error = %e, ?addr, "uTP is off");
            None
        }
    }
}

/// A running node: its listener, its transports and its torrents. Cheap to clone; every
/// clone is the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl Session {
    /// Listen on `addr` (port 0: any free port) and start accepting peers; no LSD, no DHT.
    pub async fn bind(addr: SocketAddr) -> Result<Session, EngineError> {
        let mut config = SessionConfig::new(addr);
        config.lsd = None;
        config.dht = None;
        Self::start(config).await
    }

    /// Start a node: listen for peers, and run LSD and the DHT if asked. An LSD or DHT
    /// socket that cannot be opened is not an error (the node still works without it);
    /// see [`Session::lsd_error`] and [`Session::dht_error`].
    pub async fn start(config: SessionConfig) -> Result<Session, EngineError> {
        let addr = config.listen;
        let tracker_client = tracker::client::TrackerClient::new(config.tracker.clone())
            .map_err(|e| EngineError::Tracker(e.to_string()))?;
        let transports = config.transports;
        if !transports.tcp && !transports.utp {
            return Err(EngineError::Listen {
                addr,
                source: std::io::Error::other("no transport enabled (tcp, utp)"),
            });
        }
        // TCP takes the port first (port 0: any free one); the UDP socket of the DHT and
        // uTP binds the same port number.
        let listener = match transports.tcp {
            true => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| EngineError::Listen { addr, source })?,
            ),
            false => None,
        };
        let tcp_addr = match &listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|source| EngineError::Listen { addr, source })?,
            ),
            None => None,
        };
        let mut dht_error = None;
        let udp = if transports.utp || config.dht.is_some() {
            let udp_addr = tcp_addr.unwrap_or(addr);
            match bind_udp(udp_addr) {
                Ok(s) => Some(Arc::new(s)),
                // Without TCP, uTP is the only way in: its socket must open.
                Err(source) if listener.is_none() => {
                    return Err(EngineError::Listen {
                        addr: udp_addr,
                        source,
                    });
                }
                Err(e) => {
                    tracing::info!(error = %e, "the DHT and uTP are off: cannot open their UDP socket");
                    dht_error = Some(format!("cannot open its UDP socket: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let listen_addr = match (tcp_addr, &udp) {
            (Some(a), _) => a,
            (None, Some(u)) => u
                .local_addr()
                .map_err(|source| EngineError::Listen { addr, source })?,
            (None, None) => addr,
        };
        let mut peer_id = *b"-BP0100-000000000000";
        let seed = seed_from_time();
        for (i, b) in peer_id[8..].iter_mut().enumerate() {
            *b = b'0' + ((seed >> (i * 5)) % 10) as u8;
        }
        let mut connectors: Vec<Arc<dyn Connector>> = Vec::new();
        if transports.tcp {
            connectors.push(Arc::new(TcpConnector));
        }
        // The second address family (`listen6`): its TCP listener, and a UDP socket of its
        // own for the DHT (BEP 32) and uTP, on the same port number when it is free.
        let (mut listen_addr6, mut listen6_error, mut listener6) = (None, None, None);
        if let (Some(addr6), true) = (config.listen6, transports.tcp) {
            match bind_second_listener(addr6, listen_addr.port()) {
                Ok(l) => {
                    listen_addr6 = l.local_addr().ok();
                    listener6 = Some(l);
                }
                Err(e) => {
                    tracing::info!(error = %e, %addr6, "cannot listen");
                    listen6_error = Some(format!("cannot listen on {addr6}: {e}"));
                }
            }
        }
        let udp6_addr = match (listen_addr6, config.listen6) {
            (Some(a), _) => Some(a),
            (None, Some(a)) if !transports.tcp => Some(a),
            _ => None,
        };
        let udp6 = match udp6_addr {
            Some(a) if udp.is_some() => match bind_second_udp(a, listen_addr.port()) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::info!(error = %e, addr = %a, "the DHT and uTP run on {listen_addr} only: cannot open a UDP socket");
                    None
                }
            },
            _ => None,
        };
        if listen_addr6.is_none() {
            // uTP only: the second family's address is its UDP socket's.
            listen_addr6 = udp6.as_ref().and_then(|s| s.local_addr().ok());
        }
        let (dht_tx, dht_rx) = tokio::sync::mpsc::channel(crate::utp::DHT_QUEUE);
        let (dht6_tx, dht6_rx) = tokio::sync::mpsc::channel(crate::utp::DHT_QUEUE);
        let (utp4, utp6) = match transports.utp {
            true => (
                udp.as_ref().and_then(open_utp),
                udp6.as_ref().and_then(open_utp),
            ),
            false => (None, None),
        };
        if let Some(u) = &utp4 {
            connectors.push(Arc::new(crate::utp::UtpConnector {
                socket: u.socket.clone(),
                socket6: utp6.as_ref().map(|u| u.socket.clone()),
            }));
        }
        let ctx = Arc::new(NodeContext::new(
            listen_addr,
            peer_id,
            (seed >> 16) as u32,
            tracker_client,
            connectors,
            config.settings,
        ));
        if let Some(listener) = listener {
            tokio::spawn(tcp_accept_loop(ctx.clone(), listener));
        }
        for u in [&utp4, &utp6].into_iter().flatten() {
            let c = ctx.clone();
            tokio::spawn(crate::utp::accept_loop(u.socket.clone(), move |s| {
                c.incoming(s)
            }));
        }
        tracing::info!(%listen_addr, tcp = transports.tcp, utp = utp4.is_some(), "listening for peers");
        if listen_addr6.is_some() {
            let tcp = listener6.is_some();
            tracing::info!(listen_addr = ?listen_addr6, tcp, utp = utp6.is_some(), "listening for peers");
        }
        if let Some(l) = listener6 {
            tokio::spawn(tcp_accept_loop(ctx.clone(), l));
        }
        let mut dht_on = false;
        if let (Some(settings), Some(udp)) = (config.dht, &udp) {
            let cfg = dht::DhtConfig {
                bind: listen_addr,
                bind6: None,
                bootstrap: settings.bootstrap,
                state_file: settings.state_file,
                read_only: false,
                node_id: None,
            };
            let started = match &udp6 {
                Some(udp6) => {
                    dht::Dht::start_shared_dual(cfg, udp.clone(), dht_rx, udp6.clone(), dht6_rx)
                }
                None => dht::Dht::start_shared(cfg, udp.clone(), dht_rx),
            };
            match started {
                Ok(d) => {
                    *ctx.dht.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
                    dht_on = true;
                }
                Err(e) => {
                    tracing::info!(error = %e, "the DHT is off: cannot open its UDP socket");
                    dht_error = Some(format!("cannot open its UDP socket: {e}"));
                }
            }
        }
        // One receive loop per UDP socket hands KRPC to the DHT and uTP to its socket.
        let mut udp_stop = UdpStop::default();
        let sides = [(udp, dht_tx, utp4), (udp6, dht6_tx, utp6)];
        for (socket, dht_tx, utp) in sides {
            let Some(socket) = socket else { continue };
            let utp = utp.map(|u| {
                udp_stop.utp.push(u.cancel);
                u.inbox
            });
            let mux = crate::utp::Mux {
                socket,
                dht: dht_on.then_some(dht_tx),
                utp,
            };
            udp_stop.mux.push(tokio::spawn(mux.run()).abort_handle());
        }
        let v6_listen = listen_addr6.or(listen_addr.is_ipv6().then_some(listen_addr));
        if let (Some(_), Some(group), Some(addr6)) = (&config.lsd, config.lsd6_group, v6_listen) {
            let interface = match addr6.ip() {
                std::net::IpAddr::V6(ip) if !ip.is_unspecified() => {
                    crate::lsd::interface_index(ip).unwrap_or(0)
                }
                _ => 0,
            };
            let cfg = crate::lsd::LsdConfigV6 {
                group,
                listen_port: addr6.port(),
                interface,
            };
            match Lsd::start_v6(cfg).await {
                Ok((lsd, found)) => {
                    *ctx.lsd6.lock().unwrap_or_else(|e| e.into_inner()) = Some(lsd);
                    tokio::spawn(forward_lsd(ctx.clone(), found));
                }
                Err(e) => tracing::info!(error = %e, "local peer discovery over IPv6 is off"),
            }
        }
        let mut lsd_error = None;
        // IPv4 LSD announces the IPv4 listener's port: none without one.
        if let Some(settings) = config.lsd.filter(|_| listen_addr.is_ipv4()) {
            let cfg = LsdConfig {
                group: settings.group,
                listen_port: listen_addr.port(),
                interface: settings.interface,
            };
            match Lsd::start(cfg).await {
                Ok((lsd, found)) => {
                    *ctx.lsd.lock().unwrap_or_else(|e| e.into_inner()) = Some(lsd);
                    tokio::spawn(forward_lsd(ctx.clone(), found));
                }
                Err(e) => {
                    tracing::info!(error = %e, "local peer discovery is off");
                    lsd_error = Some(e.to_string());
                }
            }
        }
        Ok(Session {
            inner: Arc::new(SessionInner {
                ctx,
                table: Mutex::new(Table::default()),
                changes: watch::Sender::new(0),
                lsd_error,
                dht_error,
                udp_stop,
                listen_addr6,
                listen6_error,
            }),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that sees a new value whenever a torrent is added or removed or
    /// changes state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Why the DHT is not running although it was asked for.
    pub fn dht_error(&self) -> Option<&str> {
        self.inner.dht_error.as_deref()
    }

    /// Why LSD is not running although it was asked for.
    pub fn lsd_error(&self) -> Option<&str> {
        self.inner.lsd_error.as_deref()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.ctx.listen_addr
    }

    /// The second listening address ([`SessionConfig::listen6`]), when it could be bound.
    pub fn listen_addr6(&self) -> Option<SocketAddr> {
        self.inner.listen_addr6
    }

    /// Every address we listen on: [`Session::listen_addr`], then the second one.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.listen_addr())
            .chain(self.listen_addr6())
            .collect()
    }

    /// Why the second listening address could not be bound, if it could not.
    pub fn listen6_error(&self) -> Option<&str> {
        self.inner.listen6_error.as_deref()
    }

    /// The peer id this node uses in handshakes and announces.
    pub fn peer_id(&self) -> [u8; 20] {
        self.inner.ctx.peer_id
    }

    /// The limits in force.
    pub fn settings(&self) -> Settings {
        self.inner.ctx.settings()
    }

    /// Change the limits; rate limits apply at once, connection limits to new
    /// connections, upload slots at the next choker round.
    pub fn set_settings(&self, settings: Settings) {
        self.inner.ctx.set_settings(settings);
    }

    /// Peer connections open now, across torrents.
    pub fn connection_count(&self) -> usize {
        self.inner.ctx.connection_count()
    }

    /// Give the session a connection accepted by another transport's listener (uTP,
    /// WebRTC): it is routed by its handshake like a TCP one.
    pub fn incoming(&self, stream: PeerStream) {
        self.inner.ctx.incoming(stream);
    }

    /// Give the session a connection another transport made for `info_hash` (a WebRTC
    /// data channel we offered): we act as the dialler and send our handshake first, so
    /// two peers that both wait for the other's handshake do not stall. Returns false
    /// (the stream is dropped) when the session has no such torrent.
    pub fn outgoing(&self, info_hash: &[u8; 20], stream: PeerStream) -> bool {
        self.inner.ctx.outgoing(info_hash, stream)
    }

    /// Add a torrent to the table and start it (unless `paused`). A torrent whose
    /// info-hash is already in the session is refused before any file is touched. Returns
    /// at once: watch [`Session::info`] for the state, or use [`Session::add_torrent`] to
    /// wait until it is live.
    pub fn add(&self, add: AddTorrent) -> Result<TorrentId, EngineError> {
        let (info_hash, meta, magnet) = match add.source {
            AddSource::Torrent(meta) => {
                let h = meta.info_hashes.get_v1().ok_or(EngineError::V2Only)?.0;
                (h, Some(Arc::new(*meta)), None)
            }
            AddSource::Magnet(m) => {
                let h = m.info_hashes.get_v1().ok_or(EngineError::V2Only)?.0;
                (h, None, Some(m))
            }
        };
        if self.inner.ctx.shutdown.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let id = {
            let mut t = self.table();
            if t.by_hash.contains_key(&info_hash) {
                return Err(EngineError::Duplicate);
            }
            t.next_id += 1;
            let id = t.next_id;
            let state = if add.paused {
                TorrentState::Paused
            } else if meta.is_some() {
                TorrentState::Checking
            } else {
                TorrentState::Metadata
            };
            t.by_hash.insert(info_hash, id);
            t.entries.insert(
                id,
                Entry {
                    id,
                    info_hash,
                    config: add.config,
                    added_at: SystemTime::now(),
                    meta,
                    magnet,
                    state,
                    running: Running::Nothing,
                    epoch: 0,
                    last_stats: Stats::default(),
                    checked: Arc::new(AtomicU64::new(0)),
                    carried: (0, 0),
                },
            );
            id
        };
        tracing::info!(id, info_hash = %metainfo::hash::to_hex(&info_hash), paused = add.paused, "torrent added");
        if !add.paused {
            self.spawn_start(id);
        }
        self.changed();
        Ok(id)
    }

    /// Add a .torrent and wait until it is live (its data checked): the one-shot
    /// commands' way. The returned handle stays valid until the torrent is paused or
    /// removed.
    pub async fn add_torrent(
        &self,
        meta: Metainfo,
        config: TorrentConfig,
        check_progress: Arc<AtomicU64>,
    ) -> Result<Torrent, EngineError> {
        let id = self.add(AddTorrent {
            source: AddSource::Torrent(Box::new(meta)),
            config,
            paused: false,
        })?;
        {
            let mut t = self.table();
            if let Some(e) = t.entries.get_mut(&id) {
                e.checked = check_progress;
            }
        }
        match self.wait_live(id).await {
            Ok(t) => Ok(t),
            Err(e) => {
                // Nothing of it stays in the table: the caller got the error.
                let _ = self.remove(id, false).await;
                Err(e)
            }
        }
    }

    /// Wait until torrent `id` is live and return its handle; an error if it ends in the
    /// `Error` state, is paused or removed meanwhile.
    pub async fn wait_live(&self, id: TorrentId) -> Result<Torrent, EngineError> {
        let mut changes = self.subscribe();
        loop {
            {
                let t = self.table();
                let e = t.entries.get(&id).ok_or(EngineError::UnknownTorrent(id))?;
                match (&e.state, &e.running) {
                    (TorrentState::Live, Running::Torrent(t)) => return Ok(t.clone()),
                    (TorrentState::Error(msg), _) => return Err(EngineError::Failed(msg.clone())),
                    (TorrentState::Paused, _) => return Err(EngineError::ShuttingDown),
                    _ => {}
                }
            }
            if changes.changed().await.is_err() {
                return Err(EngineError::ShuttingDown);
            }
        }
    }

    /// The handle of a live torrent.
    pub fn torrent(&self, id: TorrentId) -> Option<Torrent> {
        match &self.table().entries.get(&id)?.running {
            Running::Torrent(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// The id of the torrent with this (v1 or truncated v2) info-hash.
    pub fn find(&self, info_hash: &[u8; 20]) -> Option<TorrentId> {
        self.table().by_hash.get(info_hash).copied()
    }

    /// The torrent's metainfo, once known.
    pub fn metainfo(&self, id: TorrentId) -> Option<Arc<Metainfo>> {
        self.table().entries.get(&id)?.meta.clone()
    }

    /// One torrent as the session sees it now.
    pub fn info(&self, id: TorrentId) -> Option<TorrentInfo> {
        let mut t = self.table();
        let e = t.entries.get_mut(&id)?;
        Some(info_of(e))
    }

    /// Every torrent, by id.
    pub fn list(&self) -> Vec<TorrentInfo> {
        let mut t = self.table();
        t.entries.values_mut().map(info_of).collect()
    }

    /// Stop a torrent: close its connections, save its resume data, tell its trackers,
    /// close its files. It stays in the table, `Paused`.
    pub async fn pause(&self, id: TorrentId) -> Result<(), EngineError> {
        let running = {
            let mut t = self.table();
            let e = t
                .entries
                .get_mut(&id)
                .ok_or(EngineError::UnknownTorrent(id))?;
            e.epoch += 1;
            e.state = TorrentState::Paused;
            take_running(e)
        };
        self.changed();
        stop_running(running).await;
        tracing::info!(id, "torrent paused");
        Ok(())
    }

    /// Start a paused (or failed) torrent again: its resume data spares a recheck of the
    /// data that did not change.
    pub fn resume(&self, id: TorrentId) -> Result<(), EngineError> {
        {
            let mut t = self.table();
            let e = t
                .entries
                .get_mut(&id)
                .ok_or(EngineError::UnknownTorrent(id))?;
            if !matches!(e.state, TorrentState::Paused | TorrentState::Error(_)) {
                return Ok(());
            }
            e.epoch += 1;
            e.state = if e.meta.is_some() {
                TorrentState::Checking
            } else {
                TorrentState::Metadata
            };
        }
        tracing::info!(id, "torrent resumed");
        self.spawn_start(id);
        self.changed();
        Ok(())
    }

    /// Check the torrent's data again from scratch (its resume file is not trusted).
    pub async fn recheck(&self, id: TorrentId) -> Result<(), EngineError> {
        let was_paused = matches!(
            self.info(id).ok_or(EngineError::UnknownTorrent(id))?.state,
            TorrentState::Paused
        );
        self.pause(id).await?;
        let (meta, dir) = {
            let t = self.table();
            let e = t.entries.get(&id).ok_or(EngineError::UnknownTorrent(id))?;
            (e.meta.clone(), e.config.dir.clone())
        };
        if let Some(meta) = meta {
            let _ = std::fs::remove_file(crate::torrent::resume_path(&dir, &meta));
        }
        if !was_paused {
            self.resume(id)?;
        }
        Ok(())
    }

    /// Remove a torrent from the session, and with `delete_data` its files (only the
    /// torrent's own files, and the folders they leave empty) and resume file.
    pub async fn remove(&self, id: TorrentId, delete_data: bool) -> Result<(), EngineError> {
        let entry = {
            let mut t = self.table();
            let mut e = t
                .entries
                .remove(&id)
                .ok_or(EngineError::UnknownTorrent(id))?;
            t.by_hash.remove(&e.info_hash);
            e.epoch += 1;
            e
        };
        self.changed();
        stop_running(entry.running).await;
        if delete_data && let Some(meta) = &entry.meta {
            let dir = entry.config.dir.clone();
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || delete_torrent_data(&meta, &dir))
                .await
                .map_err(|_| EngineError::Delete(std::io::Error::other("cancelled")))?
                .map_err(EngineError::Delete)?;
        }
        tracing::info!(id, delete_data, "torrent removed");
        Ok(())
    }

    /// Move a torrent's data (its files, resume and part files) to `new_dir`: the torrent
    /// stops while the files move (a rename, or a copy and delete across filesystems) and
    /// starts again from its resume data if it was running. Folders left empty are
    /// removed. A torrent whose metadata is not known yet just changes its folder.
    pub async fn move_data(&self, id: TorrentId, new_dir: PathBuf) -> Result<(), EngineError> {
        let (was, meta, old_dir) = {
            let t = self.table();
            let e = t.entries.get(&id).ok_or(EngineError::UnknownTorrent(id))?;
            (e.state.clone(), e.meta.clone(), e.config.dir.clone())
        };
        if old_dir == new_dir {
            return Ok(());
        }
        let was_running = !matches!(was, TorrentState::Paused | TorrentState::Error(_));
        if was_running {
            self.pause(id).await?;
        }
        if let Some(meta) = meta {
            let (from, to) = (old_dir.clone(), new_dir.clone());
            tokio::task::spawn_blocking(move || move_torrent_data(&meta, &from, &to))
                .await
                .map_err(|_| EngineError::Delete(std::io::Error::other("cancelled")))?
                .map_err(EngineError::Move)?;
        }
        self.update_config(id, |c| c.dir = new_dir)?;
        tracing::info!(id, from = %old_dir.display(), "torrent data moved");
        if was_running {
            self.resume(id)?;
        }
        Ok(())
    }

    /// Change a torrent's own rate limits (bytes per second; 0: none). Kept across
    /// pause and resume.
    pub fn set_torrent_limits(
        &self,
        id: TorrentId,
        download: u64,
        upload: u64,
    ) -> Result<(), EngineError> {
        self.update_config(id, |c| {
            c.download_limit = download;
            c.upload_limit = upload;
        })?;
        if let Some(t) = self.torrent(id) {
            t.set_rate_limits(download, upload);
        }
        Ok(())
    }

    /// Stop every torrent (saving resume data, telling trackers), then LSD and the DHT
    /// (saving its routing table). The session accepts nothing more.
    pub async fn shutdown(&self) {
        self.inner.ctx.shutdown.store(true, Ordering::SeqCst);
        let running: Vec<Running> = {
            let mut t = self.table();
            t.entries
                .values_mut()
                .map(|e| {
                    e.epoch += 1;
                    take_running(e)
                })
                .collect()
        };
        let stops = running.into_iter().map(stop_running);
        futures_join_all(stops).await;
        self.close();
        let dht = self
            .inner
            .ctx
            .dht
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(dht) = dht {
            let _ = tokio::time::timeout(Duration::from_secs(5), dht.shutdown()).await;
        }
    }

    /// Stop accepting connections and stop LSD.
    pub fn close(&self) {
        self.inner.ctx.shutdown.store(true, Ordering::SeqCst);
        let stop = &self.inner.udp_stop;
        for utp in &stop.utp {
            utp.cancel();
        }
        for mux in &stop.mux {
            mux.abort();
        }
        for lsd in [&self.inner.ctx.lsd, &self.inner.ctx.lsd6] {
            if let Some(lsd) = lsd.lock().unwrap_or_else(|e| e.into_inner()).take() {
                lsd.shutdown();
            }
        }
    }

    fn spawn_start(&self, id: TorrentId) {
        let session = self.clone();
        tokio::spawn(async move { session.run_start(id).await });
    }

    /// Bring torrent `id` from `Metadata` or `Checking` to `Live` (or `Error`), unless a
    /// pause or remove comes first.
    async fn run_start(&self, id: TorrentId) {
        let Some((epoch, info_hash, meta, magnet, config)) = ({
            let t = self.table();
            t.entries.get(&id).map(|e| {
                (
                    e.epoch,
                    e.info_hash,
                    e.meta.clone(),
                    e.magnet.clone(),
                    e.config.clone(),
                )
            })
        }) else {
            return;
        };
        // A magnet link: fetch the info dictionary, keeping the connections.
        let mut handoffs = None;
        let mut fetch_guard = None;
        let meta = match meta {
            Some(m) => m,
            None => {
                let Some(magnet) = magnet else { return };
                let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
                let fetch = Arc::new(MetadataFetch::start(
                    &self.inner.ctx,
                    info_hash,
                    magnet_sources(&magnet, &config),
                    Some(tx),
                ));
                if !self.set_running(id, epoch, Running::Fetching(fetch.clone()), None) {
                    fetch.stop();
                    return;
                }
                let trackers: Vec<Vec<String>> =
                    magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
                let got = fetch.wait(trackers, magnet.web_seeds.clone()).await;
                match got {
                    Ok(m) => {
                        fetch.finish();
                        let m = Arc::new(m);
                        {
                            let mut t = self.table();
                            match t.entries.get_mut(&id) {
                                Some(e) if e.epoch == epoch => {
                                    e.meta = Some(m.clone());
                                    e.state = TorrentState::Checking;
                                    e.running = Running::Checking;
                                }
                                _ => {
                                    fetch.stop();
                                    return;
                                }
                            }
                        }
                        self.changed();
                        handoffs = Some(rx);
                        fetch_guard = Some(fetch);
                        m
                    }
                    Err(e) => {
                        fetch.stop();
                        self.fail(id, epoch, e.to_string());
                        return;
                    }
                }
            }
        };
        let checked = {
            let mut t = self.table();
            match t.entries.get_mut(&id) {
                Some(e) if e.epoch == epoch => {
                    e.state = TorrentState::Checking;
                    e.running = Running::Checking;
                    e.checked.clone()
                }
                _ => return,
            }
        };
        self.changed();
        let started = Torrent::start(&self.inner.ctx, (*meta).clone(), config, checked).await;
        let torrent = match started {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(id, error = %e, "torrent cannot start");
                self.fail(id, epoch, e.to_string());
                return;
            }
        };
        if !self.set_running(
            id,
            epoch,
            Running::Torrent(torrent.clone()),
            Some(TorrentState::Live),
        ) {
            torrent.shutdown().await;
            return;
        }
        // The metadata connections carry on.
        if let Some(mut rx) = handoffs {
            let t = torrent.clone();
            tokio::spawn(async move {
                // The fetch lives until its connections are handed over.
                let mut adopted = Vec::new();
                while let Some(h) = rx.recv().await {
                    if let Some(a) = h.stream.remote.ip() {
                        adopted.push(a);
                    }
                    t.adopt(h);
                }
                // Then every other address it learnt goes to the torrent's dialer (the
                // handed-over ones are known to it already).
                if let Some(f) = fetch_guard {
                    let mut known = f.known_peers();
                    known.retain(|a| !adopted.contains(a));
                    t.add_peers(&known);
                }
            });
        }
        // A disk failure stops the torrent and says why.
        let session = self.clone();
        tokio::spawn(async move {
            let reason = torrent.wait_fatal().await;
            let still = {
                let t = session.table();
                t.entries.get(&id).is_some_and(|e| e.epoch == epoch)
            };
            if still {
                tracing::info!(id, error = %reason, "torrent stopped");
                session.fail(id, epoch, reason);
                torrent.shutdown().await;
            }
        });
    }

    /// Record what torrent `id` now runs, if no pause or remove came since `epoch`.
    fn set_running(
        &self,
        id: TorrentId,
        epoch: u64,
        running: Running,
        state: Option<TorrentState>,
    ) -> bool {
        let ok = {
            let mut t = self.table();
            match t.entries.get_mut(&id) {
                Some(e) if e.epoch == epoch => {
                    e.running = running;
                    if let Some(s) = state {
                        e.state = s;
                    }
                    true
                }
                _ => false,
            }
        };
        if ok {
            self.changed();
        }
        ok
    }

    fn fail(&self, id: TorrentId, epoch: u64, reason: String) {
        {
            let mut t = self.table();
            if let Some(e) = t.entries.get_mut(&id)
                && e.epoch == epoch
            {
                take_running(e);
                e.state = TorrentState::Error(reason);
            }
        }
        self.changed();
    }
}

/// Take what the entry runs, adding a live torrent's counters to the carried ones.
fn take_running(e: &mut Entry) -> Running {
    if let Running::Torrent(t) = &e.running {
        e.last_stats = t.stats();
        e.carried.0 += e.last_stats.uploaded;
        e.carried.1 += e.last_stats.downloaded;
    }
    std::mem::replace(&mut e.running, Running::Nothing)
}

fn info_of(e: &mut Entry) -> TorrentInfo {
    let mut fetch = None;
    match &e.running {
        Running::Torrent(t) => e.last_stats = t.stats(),
        Running::Fetching(f) => fetch = Some(f.stats()),
        _ => {}
    }
    if let Some(m) = &e.meta {
        e.last_stats.total_bytes = m.info.total_length;
        e.last_stats.piece_count = m.info.pieces.len() as u32;
    }
    let mut stats = e.last_stats;
    let complete = match &e.running {
        Running::Torrent(t) => {
            stats.uploaded += e.carried.0;
            stats.downloaded += e.carried.1;
            t.is_complete()
        }
        _ => {
            stats.download_rate = 0;
            stats.upload_rate = 0;
            stats.peers = 0;
            stats.seeds = 0;
            (stats.uploaded, stats.downloaded) = e.carried;
            false
        }
    };
    TorrentInfo {
        id: e.id,
        info_hash: e.info_hash,
        name: e.name(),
        state: e.state.clone(),
        save_path: e.config.dir.clone(),
        stats,
        complete,
        meta: e.meta.clone(),
        fetch,
        checked_bytes: e.checked.load(Ordering::Relaxed),
        added_at: e.added_at,
        has_metadata: e.meta.is_some(),
    }
}

async fn stop_running(running: Running) {
    match running {
        Running::Torrent(t) => t.shutdown().await,
        Running::Fetching(f) => f.stop(),
        Running::Checking | Running::Nothing => {}
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// Where a magnet's peers come from: its `x.pe` peers, `--peer`, and its `tr` trackers.
fn magnet_sources(magnet: &Magnet, config: &TorrentConfig) -> MetadataSources {
    use std::net::ToSocketAddrs;
    let mut peers = config.peers.clone();
    for p in &magnet.peers {
        // A bad x.pe entry is the link's problem, not a reason to stop. Only literal
        // addresses: no DNS lookup on the session's tasks.
        if let Ok(mut a) = p.to_socket_addrs()
            && let Some(a) = a.next()
        {
            peers.push(a);
        }
    }
    MetadataSources {
        peers,
        trackers: if config.trackers {
            magnet.trackers.iter().map(|t| vec![t.clone()]).collect()
        } else {
            Vec::new()
        },
    }
}

/// Delete the torrent's own files below `dir`, and the folders that this leaves empty up
/// to (not including) `dir`. Paths come from the metainfo's sanitized layout, so nothing
/// outside `dir` is touched.
fn delete_torrent_data(meta: &Metainfo, dir: &std::path::Path) -> std::io::Result<()> {
    let info = &meta.info;
    let mut folders = std::collections::BTreeSet::new();
    for (i, f) in info.files.iter().enumerate() {
        if f.attr.pad {
            continue;
        }
        let rel = info.file_path(i);
        let path = dir.join(&rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut p = rel.parent();
        while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
            folders.insert(dir.join(parent));
            p = parent.parent();
        }
    }
    // Deepest first; a folder that still holds other files stays.
    for folder in folders.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
    let _ = std::fs::remove_file(crate::torrent::resume_path(dir, meta));
    let _ = std::fs::remove_file(crate::storage::part_file_path(info, dir));
    Ok(())
}

/// Move the torrent's own files (and its resume and part files) from `from` to `to`, and
/// remove the folders this leaves empty below `from`. Paths come from the metainfo's
/// sanitized layout, so nothing outside the two folders is touched.
fn move_torrent_data(
    meta: &Metainfo,
    from: &std::path::Path,
    to: &std::path::Path,
) -> std::io::Result<()> {
    let info = &meta.info;
    let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut folders = std::collections::BTreeSet::new();
    for (i, f) in info.files.iter().enumerate() {
        if f.attr.pad {
            continue;
        }
        let rel = info.file_path(i);
        moves.push((from.join(&rel), to.join(&rel)));
        let mut p = rel.parent();
        while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
            folders.insert(from.join(parent));
            p = parent.parent();
        }
    }
    let resume = crate::torrent::resume_path(from, meta);
    moves.push((resume, crate::torrent::resume_path(to, meta)));
    let part = crate::storage::part_file_path(info, from);
    moves.push((part, crate::storage::part_file_path(info, to)));
    // Nothing moves if any destination is taken.
    if let Some((_, dst)) = moves
        .iter()
        .find(|(src, dst)| src.is_file() && dst.exists())
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", dst.display()),
        ));
    }
    for (src, dst) in moves {
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue, // not a plain file of ours: left alone
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if dst.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", dst.display()),
            ));
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::rename(&src, &dst).is_err() {
            // Another filesystem: copy, flush, then delete the original.
            std::fs::copy(&src, &dst)?;
            std::fs::File::open(&dst)?.sync_all()?;
            std::fs::remove_file(&src)?;
        }
    }
    for folder in folders.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
    Ok(())
}

/// The UDP socket the DHT and uTP share, at `addr`.
fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    crate::utp::size_buffers(&s);
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s)
}

/// The second UDP socket (the other address family; see [`dht::bind_second`]), with the
/// kernel buffers the shared socket asks for.
fn bind_second_udp(addr: SocketAddr, port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    let s = dht::bind_second(addr, port)?;
    crate::utp::size_buffers(&s);
    Ok(s)
}

/// Hand the peers LSD finds to their torrents.
async fn forward_lsd(
    ctx: Arc<NodeContext>,
    mut found: tokio::sync::mpsc::Receiver<([u8; 20], SocketAddr)>,
) {
    while let Some((info_hash, addr)) = found.recv().await {
        ctx.lsd_found(&info_hash, addr);
    }
}

/// Bind the second TCP listener: on `port` (the first listener's) when `addr`'s port is 0
/// and that port is free, else on `addr` as given. An IPv6 socket is IPv6-only.
fn bind_second_listener(addr: SocketAddr, port: u16) -> std::io::Result<TcpListener> {
    let open = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        TcpListener::from_std(s.into())
    };
    if addr.port() == 0
        && let Ok(l) = open(SocketAddr::new(addr.ip(), port))
    {
        return Ok(l);
    }
    open(addr)
}

async fn tcp_accept_loop(ctx: Arc<NodeContext>, listener: TcpListener) {
    while !ctx.shutdown.load(Ordering::SeqCst) {
        match listener.accept().await {
            Ok((stream, addr)) => ctx.incoming(PeerStream::tcp(stream, addr)),
            Err(e) => {
                // Out of file descriptors, mostly: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Session {
    /// Change the configuration a torrent is kept with (file priorities, sequential, ...),
    /// so a pause and resume keep the change. A live torrent is not touched: tell it too
    /// ([`Torrent::set_file_priorities`], [`Torrent::set_sequential`]).
    pub fn update_config(
        &self,
        id: TorrentId,
        f: impl FnOnce(&mut TorrentConfig),
    ) -> Result<(), EngineError> {
        self.with_entry(id, |e| f(&mut e.config))
    }

    fn with_entry<R>(
        &self,
        id: TorrentId,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Result<R, EngineError> {
        let mut t = self.table();
        let e = t
            .entries
            .get_mut(&id)
            .ok_or(EngineError::UnknownTorrent(id))?;
        Ok(f(e))
    }

    /// Carry over the payload counters (uploaded, downloaded) of an earlier session (a
    /// daemon's restart): the totals in [`TorrentInfo::stats`] count from them.
    pub fn set_counters(
        &self,
        id: TorrentId,
        uploaded: u64,
        downloaded: u64,
    ) -> Result<(), EngineError> {
        self.with_entry(id, |e| e.carried = (uploaded, downloaded))
    }

    /// The state of every torrent, by id, without its counters: cheap enough to call on
    /// every add in a session of thousands.
    pub fn states(&self) -> Vec<TorrentBrief> {
        self.table()
            .entries
            .values()
            .map(|e| TorrentBrief {
                id: e.id,
                state: e.state.clone(),
                complete: matches!(&e.running, Running::Torrent(t) if t.is_complete()),
            })
            .collect()
    }

    /// The configuration torrent `id` is kept with.
    pub fn torrent_config(&self, id: TorrentId) -> Option<TorrentConfig> {
        Some(self.table().entries.get(&id)?.config.clone())
    }
}
