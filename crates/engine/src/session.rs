//! The session: one TCP listener for every torrent of this node, routing each incoming
//! connection by the info-hash in its handshake (BEP 3), and the limits that span torrents.

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

pub(crate) struct SessionShared {
    pub(crate) listen_addr: SocketAddr,
    /// Our peer id (BEP 20 style: `-BP0100-` and 12 random digits), the same for every
    /// torrent and tracker of the session.
    pub(crate) peer_id: [u8; 20],
    pub(crate) torrents: Mutex<HashMap<[u8; 20], Arc<Shared>>>,
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
}

impl Session {
    /// Listen on `addr` (port 0: any free port) and start accepting peers.
    pub async fn bind(addr: SocketAddr) -> Result<Session, EngineError> {
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
            torrents: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            half_open: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Session { shared })
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

    /// Stop accepting connections. Torrents are shut down by their own handles.
    pub fn close(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
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
            if let Some((torrent, stream, prefix)) = routed {
                torrent::accept(torrent, stream, addr, prefix).await;
            }
        });
    }
}

/// Read the first 48 bytes of the handshake and find the torrent it names.
async fn route(
    session: &SessionShared,
    mut stream: TcpStream,
) -> Option<(Arc<Shared>, TcpStream, [u8; 48])> {
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
        .cloned()?;
    Some((torrent, stream, prefix))
}
