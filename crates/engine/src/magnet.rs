//! From a magnet link to a torrent: find peers for the info-hash (the link's `x.pe` peers
//! and `tr` trackers, the DHT, `--peer`), and fetch the info dictionary from them with the
//! metadata extension (BEP 9 over BEP 10).
//!
//! Nothing a peer sends is trusted: the size it announces is bounded
//! ([`wire::metadata::MAX_METADATA_SIZE`]), every piece is checked for its index and exact
//! length, and the assembled dictionary is used only once its SHA-1 is the info-hash. When
//! it is not, the peers that sent pieces of it are banned and the fetch starts over.

use crate::pool::PeerPool;
use crate::session::SessionShared;
use crate::torrent::EngineError;
use bytes::{Bytes, BytesMut};
use metainfo::Metainfo;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tracker::client::run_announcer;
use tracker::proto::{AnnounceEvent, AnnounceRequest};
use wire::metadata::{MetadataAssembler, MetadataError, MetadataMessage, Progress};
use wire::{Decoder, DecoderConfig, ExtendedHandshake, Handshake, Message};

/// The id under which we receive ut_metadata messages (our choice, BEP 10).
pub(crate) const UT_METADATA_ID: u8 = 3;
/// Peers asked for metadata at once.
const MAX_FETCH_PEERS: usize = 8;
/// Metadata requests outstanding to one peer.
const REQUESTS_PER_PEER: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that sends nothing useful for this long is dropped.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to look for peers that have the metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataSources {
    /// Peers to ask (`x.pe`, `--peer`); never forgotten.
    pub peers: Vec<SocketAddr>,
    /// Tracker tiers (a magnet's `tr`: each its own tier).
    pub trackers: Vec<Vec<String>>,
}

/// What a fetch has found so far, for progress displays.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchStats {
    /// Addresses known.
    pub candidates: usize,
    /// Peers connected and talking.
    pub connected: usize,
    /// Metadata pieces received, and how many there are (0 until a peer tells).
    pub pieces: u32,
    pub piece_count: u32,
    /// Peers banned for sending metadata that did not hash to the info-hash.
    pub banned: usize,
}

struct FetchState {
    pool: PeerPool,
    dialing: usize,
    connected: HashSet<SocketAddr>,
    /// `None` until a peer tells the size.
    assembler: Option<MetadataAssembler>,
    /// Pieces in the assembler.
    pieces: u32,
    /// The assembler's peer keys.
    keys: HashMap<u64, SocketAddr>,
    /// After metadata from several peers failed its hash, it is fetched from one peer at a
    /// time, so that the next failure has exactly one culprit: that peer.
    one_at_a_time: bool,
    owner: Option<u64>,
    next_key: u64,
    banned: HashSet<SocketAddr>,
    /// Listening addresses of the peers that dialled us (from their extended handshake).
    met: HashSet<SocketAddr>,
    result: Option<Vec<u8>>,
}

pub(crate) struct Fetch {
    pub(crate) info_hash: [u8; 20],
    /// Set when the fetch ends: every connection closes.
    stop: watch::Sender<bool>,
    session: Arc<SessionShared>,
    state: Mutex<FetchState>,
    wake: Notify,
    done: Notify,
}

fn lock(f: &Fetch) -> MutexGuard<'_, FetchState> {
    f.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A metadata fetch in progress.
pub struct MetadataFetch {
    fetch: Arc<Fetch>,
}

impl MetadataFetch {
    pub(crate) fn start(
        session: &Arc<SessionShared>,
        info_hash: [u8; 20],
        sources: MetadataSources,
    ) -> MetadataFetch {
        let (stop, stop_rx) = watch::channel(false);
        let fetch = Arc::new(Fetch {
            info_hash,
            stop,
            session: session.clone(),
            state: Mutex::new(FetchState {
                pool: PeerPool::new(crate::torrent::own_addrs(session.listen_addr)),
                dialing: 0,
                connected: HashSet::new(),
                assembler: None,
                pieces: 0,
                keys: HashMap::new(),
                one_at_a_time: false,
                owner: None,
                next_key: 0,
                banned: HashSet::new(),
                met: HashSet::new(),
                result: None,
            }),
            wake: Notify::new(),
            done: Notify::new(),
        });
        fetch.add_peers(&sources.peers, true);
        session
            .fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info_hash, fetch.clone());
        if !sources.trackers.is_empty() {
            let (peers_tx, mut peers_rx) = mpsc::channel::<Vec<SocketAddr>>(16);
            let (status_tx, _status_rx) = watch::channel(Vec::new());
            // The size is unknown: say one byte is left, so that trackers count us as a
            // leecher and hand out seeds.
            let (progress_tx, progress_rx) = watch::channel(tracker::client::Progress {
                left: 1,
                ..Default::default()
            });
            let base = AnnounceRequest {
                info_hash,
                peer_id: session.peer_id,
                port: session.listen_addr.port(),
                uploaded: 0,
                downloaded: 0,
                left: 1,
                event: AnnounceEvent::Started,
                numwant: Some(50),
                key: session.tracker_key,
            };
            tokio::spawn(run_announcer(
                session.tracker_client.clone(),
                sources.trackers,
                base,
                progress_rx,
                peers_tx,
                status_tx,
                stop_rx.clone(),
            ));
            let f = fetch.clone();
            tokio::spawn(async move {
                let _progress = progress_tx; // the announcer runs while this lives
                while let Some(peers) = peers_rx.recv().await {
                    f.add_peers(&peers, false);
                }
            });
        }
        tokio::spawn(dht_loop(fetch.clone(), stop_rx.clone()));
        tokio::spawn(dial_loop(fetch.clone(), stop_rx));
        MetadataFetch { fetch }
    }

    /// Offer more addresses (from the DHT, LSD, ...).
    pub fn add_peers(&self, peers: &[SocketAddr]) {
        self.fetch.add_peers(peers, false);
    }

    pub fn stats(&self) -> FetchStats {
        let s = lock(&self.fetch);
        let (pieces, piece_count) = s
            .assembler
            .as_ref()
            .map_or((0, 0), |a| (s.pieces, a.piece_count()));
        FetchStats {
            candidates: s.pool.len(),
            connected: s.connected.len(),
            pieces,
            piece_count,
            banned: s.banned.len(),
        }
    }

    /// Addresses known now: the torrent dials them once it starts.
    pub fn known_peers(&self) -> Vec<SocketAddr> {
        let s = lock(&self.fetch);
        let mut all: HashSet<SocketAddr> = s.pool.addrs().collect();
        all.extend(s.met.iter().copied());
        all.extend(s.connected.iter().copied());
        all.into_iter().collect()
    }

    /// Wait for the info dictionary (checked against the info-hash) and build the torrent
    /// with the given trackers and web seeds.
    pub async fn wait(
        &self,
        trackers: Vec<Vec<String>>,
        web_seeds: Vec<String>,
    ) -> Result<Metainfo, EngineError> {
        let bytes = loop {
            let notified = self.fetch.done.notified();
            if let Some(b) = lock(&self.fetch).result.clone() {
                break b;
            }
            notified.await;
        };
        Metainfo::from_info_bytes(&bytes, trackers, web_seeds)
            .map_err(|e| EngineError::Metadata(e.to_string()))
    }

    /// Stop looking: close connections, tell trackers we stopped.
    pub fn stop(&self) {
        let _ = self.fetch.stop.send(true);
        self.fetch.wake.notify_one();
        let mut fetches = self
            .fetch
            .session
            .fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if fetches
            .get(&self.fetch.info_hash)
            .is_some_and(|f| Arc::ptr_eq(f, &self.fetch))
        {
            fetches.remove(&self.fetch.info_hash);
        }
    }
}

impl Drop for MetadataFetch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Fetch {
    fn add_peers(&self, peers: &[SocketAddr], pinned: bool) {
        let now = Instant::now();
        let mut s = lock(self);
        let mut added = false;
        for &a in peers {
            if !s.banned.contains(&a) {
                added |= s.pool.add(a, pinned, now);
            }
        }
        drop(s);
        if added {
            self.wake.notify_one();
        }
    }

    fn finished(&self) -> bool {
        lock(self).result.is_some()
    }
}

/// Ask the DHT for peers until the metadata is here: again soon after a lookup that found
/// none (the routing table may still be filling), else every minute.
async fn dht_loop(fetch: Arc<Fetch>, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(2);
    while !*stop.borrow() && !fetch.finished() {
        let Some(mut found) = fetch.session.dht_lookup(fetch.info_hash, false) else {
            return;
        };
        let mut any = false;
        while let Some(peers) = found.recv().await {
            any |= !peers.is_empty();
            fetch.add_peers(&peers, false);
        }
        wait = if any {
            Duration::from_secs(60)
        } else {
            (wait * 2).min(Duration::from_secs(30))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = fetch.done.notified() => return,
        }
    }
}

async fn dial_loop(fetch: Arc<Fetch>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() && !fetch.finished() {
        let now = Instant::now();
        let dials = {
            let mut guard = lock(&fetch);
            let s = &mut *guard;
            let room = MAX_FETCH_PEERS.saturating_sub(s.connected.len() + s.dialing);
            let busy = &s.connected;
            let banned = &s.banned;
            let dials = s
                .pool
                .next_dials(now, room, |a| busy.contains(a) || banned.contains(a));
            s.dialing += dials.len();
            dials
        };
        for addr in dials {
            let f = fetch.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let talked = fetch_from(&f, addr, stop).await;
                let mut s = lock(&f);
                let done = s.result.is_some();
                s.pool.dial_ended(addr, talked, done, Instant::now());
                drop(s);
                f.wake.notify_one();
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), fetch.wake.notified()).await;
    }
}

/// Ask one peer for metadata until the fetch is done or the peer is of no more use.
/// Returns whether the handshake worked.
async fn fetch_from(fetch: &Arc<Fetch>, addr: SocketAddr, stop: watch::Receiver<bool>) -> bool {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    lock(fetch).dialing -= 1;
    let Ok(Ok(stream)) = stream else {
        return false;
    };
    talk(fetch, stream, addr, None, stop).await
}

/// An incoming connection whose handshake named the info-hash being fetched.
pub(crate) async fn accept(
    fetch: Arc<Fetch>,
    stream: TcpStream,
    addr: SocketAddr,
    prefix: [u8; 48],
) {
    let stop = fetch.stop.subscribe();
    let busy = {
        let s = lock(&fetch);
        s.banned.contains(&addr) || s.connected.len() >= 2 * MAX_FETCH_PEERS
    };
    if !busy {
        talk(&fetch, stream, addr, Some(prefix), stop).await;
    }
}

/// Handshake, then ask for metadata. Returns whether the handshake worked.
async fn talk(
    fetch: &Arc<Fetch>,
    mut stream: TcpStream,
    addr: SocketAddr,
    prefix: Option<[u8; 48]>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let _ = stream.set_nodelay(true);
    let Ok(Ok(())) =
        tokio::time::timeout(CONNECT_TIMEOUT, handshake(fetch, &mut stream, prefix)).await
    else {
        return false;
    };
    let key = {
        let mut s = lock(fetch);
        s.connected.insert(addr);
        s.next_key += 1;
        let key = s.next_key;
        s.keys.insert(key, addr);
        key
    };
    let mut peer = MetadataPeer {
        key,
        addr,
        incoming: prefix.is_some(),
        stream,
        their_id: None,
        in_flight: Vec::new(),
    };
    let _ = tokio::select! {
        r = peer.run(fetch) => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    // Whatever it still owed us goes to other peers.
    let mut s = lock(fetch);
    s.connected.remove(&addr);
    if s.owner == Some(key) {
        s.owner = None;
    }
    if let Some(a) = s.assembler.as_mut() {
        for p in peer.in_flight.drain(..) {
            a.request_failed(p);
        }
    }
    // Its key is kept only while a piece it sent may still be blamed.
    let blamable = s
        .assembler
        .as_ref()
        .is_some_and(|a| a.contributors().contains(&key));
    if !blamable {
        s.keys.remove(&key);
    }
    drop(s);
    fetch.wake.notify_one();
    true
}

/// BEP 3 handshake with the extension bit, then our BEP 10 handshake. On an incoming
/// connection the session has read the first 48 bytes (`prefix`).
async fn handshake(
    fetch: &Fetch,
    stream: &mut TcpStream,
    prefix: Option<[u8; 48]>,
) -> std::io::Result<()> {
    let mut ours = Handshake::new(fetch.info_hash, fetch.session.peer_id);
    ours.set_extension_protocol(true);
    let hs = crate::torrent::exchange_handshakes(stream, &ours, prefix).await?;
    if !hs.supports_extension_protocol() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the peer has no extension protocol, so no metadata",
        ));
    }
    let ext = ExtendedHandshake {
        m: [("ut_metadata".to_string(), UT_METADATA_ID)].into(),
        v: Some(concat!("bitpeer ", env!("CARGO_PKG_VERSION")).into()),
        p: Some(fetch.session.listen_addr.port()),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    Message::Extended {
        id: 0,
        payload: Bytes::from(ext.encode()),
    }
    .encode(&mut out);
    stream.write_all(&out).await
}

struct MetadataPeer {
    /// Who this peer is to the assembler.
    key: u64,
    addr: SocketAddr,
    /// It dialled us: `addr` has its ephemeral port, not its listening one.
    incoming: bool,
    stream: TcpStream,
    /// The id the peer wants its ut_metadata messages under.
    their_id: Option<u8>,
    /// Pieces asked of this peer and not yet answered.
    in_flight: Vec<u32>,
}

impl MetadataPeer {
    async fn run(&mut self, fetch: &Fetch) -> Result<(), String> {
        let mut decoder = Decoder::new(DecoderConfig::default());
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut last_useful = Instant::now();
        loop {
            if fetch.finished() {
                return Ok(());
            }
            self.request_more(fetch).await?;
            let left = PEER_TIMEOUT.saturating_sub(last_useful.elapsed());
            if left.is_zero() {
                return Err("no metadata from this peer".into());
            }
            let read = tokio::select! {
                r = self.stream.read_buf(&mut buf) => r.map_err(|e| e.to_string())?,
                _ = tokio::time::sleep(left.min(Duration::from_secs(1))) => continue,
                _ = fetch.done.notified() => return Ok(()),
            };
            if read == 0 {
                return Err("peer closed the connection".into());
            }
            while let Some(msg) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                let Message::Extended { id, payload } = msg else {
                    continue; // bitfields, haves, ...: of no use before we have the metadata
                };
                if id == 0 {
                    self.on_extended_handshake(fetch, &payload)?;
                    last_useful = Instant::now();
                } else if id == UT_METADATA_ID {
                    self.on_metadata(fetch, &payload)?;
                    last_useful = Instant::now();
                }
            }
        }
    }

    fn on_extended_handshake(&mut self, fetch: &Fetch, payload: &[u8]) -> Result<(), String> {
        let hs = ExtendedHandshake::decode(payload).map_err(|e| e.to_string())?;
        if self.incoming
            && let Some(port) = hs.p.filter(|&p| p != 0)
        {
            let mut s = lock(fetch);
            if s.met.len() < crate::pool::MAX_CANDIDATES {
                s.met.insert(SocketAddr::new(self.addr.ip(), port));
            }
        }
        let id = hs
            .extension_id("ut_metadata")
            .ok_or("the peer does not serve metadata")?;
        let size = hs
            .metadata_size
            .ok_or("the peer did not say the metadata size")?;
        let mut s = lock(fetch);
        match &s.assembler {
            Some(a) if a.total_size() != size => {
                return Err(format!(
                    "the peer says the metadata has {size} bytes, others said {}",
                    a.total_size()
                ));
            }
            Some(_) => {}
            None => {
                let a = MetadataAssembler::new(fetch.info_hash, size).map_err(|e| e.to_string())?;
                s.assembler = Some(a);
                s.pieces = 0;
            }
        }
        self.their_id = Some(id);
        Ok(())
    }

    fn on_metadata(&mut self, fetch: &Fetch, payload: &Bytes) -> Result<(), String> {
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            // BEP 9: unknown message types are ignored.
            Err(MetadataError::UnknownMessageType(_)) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        match msg {
            MetadataMessage::Request { piece } => {
                // We have no metadata to give yet.
                let their = self.their_id.ok_or("metadata request before handshake")?;
                let reject = MetadataMessage::Reject { piece }.encode();
                let mut out = BytesMut::new();
                Message::Extended {
                    id: their,
                    payload: Bytes::from(reject),
                }
                .encode(&mut out);
                // Best effort; a full socket buffer only delays the answer.
                let _ = self.stream.try_write(&out);
                Ok(())
            }
            MetadataMessage::Reject { piece } => {
                self.in_flight.retain(|&p| p != piece);
                if let Some(a) = lock(fetch).assembler.as_mut() {
                    a.request_failed(piece);
                }
                Err("the peer refused a metadata piece".into())
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if !self.in_flight.contains(&piece) {
                    return Err("a metadata piece nobody asked for".into());
                }
                self.in_flight.retain(|&p| p != piece);
                let mut s = lock(fetch);
                let Some(a) = s.assembler.as_mut() else {
                    return Ok(());
                };
                let progress = a
                    .on_data(self.key, piece, total_size, &data)
                    .map_err(|e| e.to_string())?;
                if !matches!(progress, Progress::Complete) {
                    if matches!(progress, Progress::Stored { .. }) {
                        s.pieces += 1;
                    }
                    return Ok(());
                }
                let Some(a) = s.assembler.take() else {
                    return Ok(());
                };
                match a.finish() {
                    Ok(bytes) => {
                        s.result = Some(bytes);
                        drop(s);
                        fetch.done.notify_waiters();
                        fetch.wake.notify_one();
                        Ok(())
                    }
                    Err(MetadataError::HashMismatch { peers }) => {
                        // One sender: it lied. Several: we cannot tell who, so the next
                        // attempt asks one peer for all of it.
                        if let [key] = peers[..] {
                            if let Some(p) = s.keys.get(&key).copied() {
                                s.banned.insert(p);
                                s.pool.remove(&p);
                            }
                        } else {
                            s.one_at_a_time = true;
                        }
                        s.owner = None;
                        Err("the metadata does not hash to the info-hash".into())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Keep [`REQUESTS_PER_PEER`] pieces asked of this peer.
    async fn request_more(&mut self, fetch: &Fetch) -> Result<(), String> {
        let Some(their) = self.their_id else {
            return Ok(());
        };
        let mut out = BytesMut::new();
        {
            let mut s = lock(fetch);
            if s.one_at_a_time {
                match s.owner {
                    None => s.owner = Some(self.key),
                    Some(k) if k != self.key => return Ok(()),
                    Some(_) => {}
                }
            }
            let Some(a) = s.assembler.as_mut() else {
                return Ok(());
            };
            while self.in_flight.len() < REQUESTS_PER_PEER {
                let Some(piece) = a.next_request() else { break };
                self.in_flight.push(piece);
                Message::Extended {
                    id: their,
                    payload: Bytes::from(MetadataMessage::Request { piece }.encode()),
                }
                .encode(&mut out);
            }
        }
        if !out.is_empty() {
            self.stream
                .write_all(&out)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
