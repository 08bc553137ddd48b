//! The session: one TCP listener for every torrent of this node, routing each incoming
//! connection by the info-hash in its handshake (BEP 3), and the limits that span torrents.

use crate::lsd::{Lsd, LsdConfig};
use crate::torrent::{self, EngineError, Shared, Torrent, TorrentConfig};
use metainfo::Metainfo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Peer connections across all torrents.
const MAX_CONNECTIONS: usize = 500;
/// Incoming connections still in their handshake.
const MAX_HALF_OPEN: usize = 64;
const PREFIX_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to listen for peers (port 0: any free port).
    pub listen: SocketAddr,
    /// Local Service Discovery (BEP 14): announce our torrents on the local network and
    /// dial the peers that announce them. `None`: off.
    pub lsd: Option<LsdSettings>,
    /// Settings of the tracker client.
    pub tracker: tracker::client::ClientConfig,
    /// The mainline DHT (BEP 5), on a UDP socket at the listening address. `None`: off.
    pub dht: Option<DhtSettings>,
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
    /// Listen on `listen`, LSD on, default tracker settings.
    pub fn new(listen: SocketAddr) -> Self {
        SessionConfig {
            listen,
            lsd: Some(LsdSettings::default()),
            tracker: tracker::client::ClientConfig::default(),
            dht: Some(DhtSettings::default()),
        }
    }
}

pub(crate) struct SessionShared {
    pub(crate) listen_addr: SocketAddr,
    /// Our peer id (BEP 20 style: `-BP0100-` and 12 random digits), the same for every
    /// torrent and tracker of the session.
    pub(crate) peer_id: [u8; 20],
    /// Sent with every announce, so trackers know us across address changes.
    pub(crate) tracker_key: u32,
    pub(crate) tracker_client: tracker::client::TrackerClient,
    /// Running when LSD is on and its socket could be opened.
    lsd: Mutex<Option<Lsd>>,
    /// Running when the DHT is on and its socket could be opened.
    dht: Mutex<Option<dht::Dht>>,
    pub(crate) torrents: Mutex<HashMap<[u8; 20], Arc<Shared>>>,
    /// Magnet links whose metadata is being fetched: incoming peers for them go there.
    pub(crate) fetches: Mutex<HashMap<[u8; 20], Arc<crate::magnet::Fetch>>>,
    connections: AtomicUsize,
    half_open: AtomicUsize,
    shutdown: AtomicBool,
}

impl SessionShared {
    /// Count one more established connection, if the session-wide limit allows it.
    pub(crate) fn take_connection_slot(&self) -> bool {
        self.connections
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .is_ok()
    }

    /// Torrents were added or removed: tell LSD which ones to announce (never private
    /// ones, BEP 27).
    pub(crate) fn torrents_changed(&self) {
        let lsd = self.lsd.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lsd) = lsd.as_ref() {
            let hashes = self
                .torrents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, t)| !t.is_private())
                .map(|(h, _)| *h)
                .collect();
            lsd.set_torrents(hashes);
        }
    }

    /// Start a DHT lookup of `info_hash`, announcing our port if `announce`. `None` when
    /// the DHT is off.
    pub(crate) fn dht_lookup(
        &self,
        info_hash: [u8; 20],
        announce: bool,
    ) -> Option<tokio::sync::mpsc::Receiver<Vec<SocketAddr>>> {
        let dht = self.dht.lock().unwrap_or_else(|e| e.into_inner());
        let dht = dht.as_ref()?;
        Some(if announce {
            dht.announce(info_hash, Some(self.listen_addr.port()))
        } else {
            dht.get_peers(info_hash)
        })
    }

    pub(crate) fn release_connection_slot(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// A running node: its listener and its torrents.
#[derive(Clone)]
pub struct Session {
    shared: Arc<SessionShared>,
    lsd_error: Option<String>,
    dht_error: Option<String>,
}

impl Session {
    /// Listen on `addr` (port 0: any free port) and start accepting peers; no LSD, no DHT.
    pub async fn bind(addr: SocketAddr) -> Result<Session, EngineError> {
        let mut config = SessionConfig::new(addr);
        config.lsd = None;
        config.dht = None;
        Self::start(config).await
    }

    /// Start a node: listen for peers, and run LSD if asked. An LSD socket that cannot be
    /// opened is not an error (the node still works without it); see [`Session::lsd_error`].
    pub async fn start(config: SessionConfig) -> Result<Session, EngineError> {
        let addr = config.listen;
        let tracker_client = tracker::client::TrackerClient::new(config.tracker.clone())
            .map_err(|e| EngineError::Tracker(e.to_string()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EngineError::Listen { addr, source })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| EngineError::Listen { addr, source })?;
        let mut peer_id = *b"-BP0100-000000000000";
        let seed = torrent::seed_from_time();
        for (i, b) in peer_id[8..].iter_mut().enumerate() {
            *b = b'0' + ((seed >> (i * 5)) % 10) as u8;
        }
        let shared = Arc::new(SessionShared {
            listen_addr,
            peer_id,
            tracker_key: (seed >> 16) as u32,
            tracker_client,
            lsd: Mutex::new(None),
            dht: Mutex::new(None),
            torrents: Mutex::new(HashMap::new()),
            fetches: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            half_open: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        let mut dht_error = None;
        if let Some(settings) = config.dht {
            let cfg = dht::DhtConfig {
                bind: listen_addr,
                bootstrap: settings.bootstrap,
                state_file: settings.state_file,
                read_only: false,
                node_id: None,
            };
            match dht::Dht::start(cfg) {
                Ok(d) => *shared.dht.lock().unwrap_or_else(|e| e.into_inner()) = Some(d),
                Err(e) => dht_error = Some(format!("cannot open its UDP socket: {e}")),
            }
        }
        let mut lsd_error = None;
        if let Some(settings) = config.lsd {
            let cfg = LsdConfig {
                group: settings.group,
                listen_port: listen_addr.port(),
                interface: settings.interface,
            };
            match Lsd::start(cfg).await {
                Ok((lsd, mut found)) => {
                    *shared.lsd.lock().unwrap_or_else(|e| e.into_inner()) = Some(lsd);
                    let s = shared.clone();
                    tokio::spawn(async move {
                        while let Some((info_hash, addr)) = found.recv().await {
                            let t = s
                                .torrents
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&info_hash)
                                .cloned();
                            if let Some(t) = t.filter(|t| !t.is_private()) {
                                torrent::add_peers(&t, &[addr], false);
                            }
                        }
                    });
                }
                Err(e) => lsd_error = Some(e.to_string()),
            }
        }
        Ok(Session {
            shared,
            lsd_error,
            dht_error,
        })
    }

    /// Why the DHT is not running although it was asked for.
    pub fn dht_error(&self) -> Option<&str> {
        self.dht_error.as_deref()
    }

    /// Stop LSD and the DHT (saving its routing table). Torrents are shut down by their
    /// own handles, first.
    pub async fn shutdown(&self) {
        self.close();
        let dht = self
            .shared
            .dht
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(dht) = dht {
            let _ = tokio::time::timeout(Duration::from_secs(5), dht.shutdown()).await;
        }
    }

    /// Why LSD is not running although it was asked for.
    pub fn lsd_error(&self) -> Option<&str> {
        self.lsd_error.as_deref()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// The peer id this node uses in handshakes and announces.
    pub fn peer_id(&self) -> [u8; 20] {
        self.shared.peer_id
    }

    /// Add a torrent: check its data (or trust a matching resume file), then serve and
    /// download it. `check_progress` counts the bytes checked.
    pub async fn add_torrent(
        &self,
        meta: Metainfo,
        config: TorrentConfig,
        check_progress: Arc<AtomicU64>,
    ) -> Result<Torrent, EngineError> {
        Torrent::start(&self.shared, meta, config, check_progress).await
    }

    /// Start fetching the info dictionary of `info_hash` from peers (BEP 9): a magnet link's
    /// first step. Peers come from `sources` and whatever is added to the fetch later.
    pub fn fetch_metadata(
        &self,
        info_hash: [u8; 20],
        sources: crate::magnet::MetadataSources,
    ) -> crate::magnet::MetadataFetch {
        crate::magnet::MetadataFetch::start(&self.shared, info_hash, sources)
    }

    /// Stop accepting connections. Torrents are shut down by their own handles.
    pub fn close(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(lsd) = self
            .shared
            .lsd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            lsd.shutdown();
        }
    }
}

async fn accept_loop(session: Arc<SessionShared>, listener: TcpListener) {
    while !session.shutdown.load(Ordering::SeqCst) {
        let Ok((stream, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if session.half_open.load(Ordering::SeqCst) >= MAX_HALF_OPEN {
            continue; // dropped: the peer may try again later
        }
        session.half_open.fetch_add(1, Ordering::SeqCst);
        let s = session.clone();
        tokio::spawn(async move {
            let routed = route(&s, stream).await;
            s.half_open.fetch_sub(1, Ordering::SeqCst);
            match routed {
                Some((Route::Torrent(t), stream, prefix)) => {
                    torrent::accept(t, stream, addr, prefix).await;
                }
                Some((Route::Fetch(f), stream, prefix)) => {
                    crate::magnet::accept(f, stream, addr, prefix).await;
                }
                None => {}
            }
        });
    }
}

enum Route {
    Torrent(Arc<Shared>),
    Fetch(Arc<crate::magnet::Fetch>),
}

/// Read the first 48 bytes of the handshake and find the torrent (or metadata fetch) it
/// names.
async fn route(
    session: &SessionShared,
    mut stream: TcpStream,
) -> Option<(Route, TcpStream, [u8; 48])> {
    let mut prefix = [0u8; 48];
    tokio::time::timeout(PREFIX_TIMEOUT, stream.read_exact(&mut prefix))
        .await
        .ok()?
        .ok()?;
    let parsed = wire::HandshakePrefix::parse(&prefix).ok()??;
    let torrent = session
        .torrents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&parsed.info_hash)
        .cloned();
    if let Some(t) = torrent {
        return Some((Route::Torrent(t), stream, prefix));
    }
    let fetch = session
        .fetches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&parsed.info_hash)
        .cloned()?;
    Some((Route::Fetch(fetch), stream, prefix))
}
