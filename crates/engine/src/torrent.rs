//! A torrent being downloaded or seeded over TCP (BEP 3, with BEP 6 and BEP 10 negotiated).
//!
//! [`Torrent`] owns the state that all its peer connections share: the picker, the piece
//! buffers of pieces in progress, the peer list, the blame of failed pieces and bans. Each peer
//! connection is a task that owns its socket and its [`wire::PeerState`]; it takes the
//! torrent's lock only for short, synchronous updates, never across an `.await`.
//!
//! Blocks are copied into a buffer per piece. A complete piece is hashed on the blocking
//! pool and written (pwrite) only when its hash matches, so nothing unverified reaches the
//! disk. A piece that fails is fetched again; [`crate::blame`] then tells, block by block,
//! which peers sent wrong data, and only those are banned (for the session).

use crate::blame::{Blame, V1Verifier, Verifier, block_digests};
use crate::choker::{Choker, PeerSample};
use crate::picker::{BLOCK_SIZE, Block, Picker, Received};
use crate::pool::PeerPool;
use crate::resume::{self, ResumeData};
use crate::session::SessionShared;
use crate::storage::{Storage, StorageError};
use bytes::{Bytes, BytesMut};
use metainfo::Metainfo;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tracker::client::{Progress, TrackerStatus, run_announcer};
use tracker::proto::AnnounceRequest;
use wire::{
    BlockRequest, Decoder, DecoderConfig, Event, Handshake, PeerConfig, PeerState, PieceGeometry,
};

/// The ids under which we receive extension messages (BEP 10; our choice).
pub(crate) const UT_PEX_ID: u8 = 1;
pub(crate) use crate::magnet::UT_METADATA_ID;

/// Most requests we keep outstanding with one peer (also bounded by its `reqq`): 8 MiB,
/// over a second of a fast link's transfer; deeper queues only delay our hashing.
const MAX_OUR_REQUESTS: usize = 500;
/// Requests one peer may have queued with us (our `reqq`). libtorrent's default: a fast
/// leecher keeps a second or more of blocks asked for.
const MAX_PEER_REQUESTS: usize = 2000;
/// Most peer connections per torrent.
const MAX_PEERS: usize = 80;
/// Outgoing connections of one torrent still connecting at once.
const MAX_DIALS: usize = 16;
/// Pieces in progress at once: bounds the memory held in piece buffers.
const MAX_PARTIAL_PIECES: usize = 24;
/// Peers we upload to at once (plus the ones that want nothing from us).
const UPLOAD_SLOTS: usize = 8;
/// A peer that sends none of the blocks we asked for in this long loses those requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of recently read pieces kept for serving (always at least one piece).
const READ_CACHE_BYTES: usize = 8 << 20;
/// Bytes of complete pieces waiting for their hash check and write; past it, no new
/// requests are sent until they catch up.
const VERIFY_BUDGET: usize = 32 << 20;
/// Bytes being read from disk for one peer at once (at least one piece, at most 8 pieces).
const PEER_READ_BYTES: usize = 8 << 20;
/// Bytes being read from disk for uploads at once, for the whole torrent: with pieces of
/// up to hundreds of MiB and peers asking for one block of each, memory stays bounded.
const READ_BUDGET: usize = 64 << 20;
/// Buffers (block payloads, message headers) one vectored write takes at most.
const WRITE_BATCH: usize = 64;
/// Bytes of read buffers of pieces that left the read cache, kept for the next reads.
const SPARE_READ_BYTES: usize = 8 << 20;
/// How often the choker runs (BEP 3 suggests 10 s).
const CHOKE_INTERVAL: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(90);
/// A connection that sends us nothing for this long is closed (BEP 3 peers send keep-alives
/// every two minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the tracker client: {0}")]
    Tracker(String),
    #[error("the metadata from peers is not a valid torrent: {0}")]
    Metadata(String),
    #[error("this torrent is already running in the session")]
    Duplicate,
    #[error("v2-only torrents cannot be downloaded yet")]
    V2Only,
    #[error("the piece length {0} is too large")]
    PieceLength(u64),
}

/// How to run a torrent.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// The folder that holds the torrent's content (libtorrent's `save_path`).
    pub dir: PathBuf,

    /// Peers to dial, whatever else is found; they are never forgotten.
    pub peers: Vec<SocketAddr>,

    /// Announce to the torrent's trackers (BEP 3, 12) and dial the peers they give.
    pub trackers: bool,
}

impl TorrentConfig {
    /// Content in `dir`, the given peers, trackers on.
    pub fn new(dir: impl Into<PathBuf>, peers: Vec<SocketAddr>) -> Self {
        TorrentConfig {
            dir: dir.into(),
            peers,
            trackers: true,
        }
    }
}

/// Counters for progress displays.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub pieces_have: u32,
    pub piece_count: u32,
    pub bytes_have: u64,
    pub total_bytes: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub peers: usize,
    /// Addresses known and not yet connected or forgotten.
    pub candidates: usize,
    pub hash_failures: u64,
    pub banned: usize,
}

enum Cmd {
    Have(u32),
    Cancel(Block),
    Choke,
    Unchoke,
    Close,
}

struct PeerEntry {
    tx: mpsc::UnboundedSender<Cmd>,
    addr: SocketAddr,
    /// Where the peer accepts connections: the address we dialled, or for an incoming
    /// peer its IP and the port of its extended handshake. What PEX tells others.
    listen_addr: Option<SocketAddr>,
    /// Totals, and their values at the last choker round.
    downloaded: u64,
    uploaded: u64,
    round_downloaded: u64,
    round_uploaded: u64,
    interested: bool,
    unchoked: bool,
    snubbed: bool,
}

struct PieceBuf {
    data: Vec<u8>,
    /// Who (by [`ban_key`]) sent each block in `data`, by block index.
    senders: Vec<Option<SocketAddr>>,
}

struct State {
    picker: Picker,
    buffers: HashMap<u32, PieceBuf>,
    /// Bytes of complete pieces being hashed and written (see [`VERIFY_BUDGET`]).
    verifying_bytes: usize,
    /// Buffers of stored pieces, kept for the next ones: no allocation, page faults or
    /// zeroing per piece. Every byte is overwritten by blocks before a piece is hashed.
    spare_buffers: Vec<Vec<u8>>,
    peers: HashMap<u64, PeerEntry>,
    next_peer: u64,
    /// Addresses to dial, and when.
    pool: PeerPool,
    /// Outgoing connections in their TCP connect.
    dialing: usize,
    /// Blocks nobody asked for, by peer.
    strikes: HashMap<SocketAddr, u32>,
    banned: HashSet<SocketAddr>,
    /// Who sent which block of pieces that failed their hash check (smart ban).
    blame: Blame<SocketAddr>,
    /// The last error writing a verified piece: the disk, not a peer, is at fault.
    disk_error: Option<String>,
    choker: Choker<u64>,
    downloaded: u64,
    uploaded: u64,
    hash_failures: u64,
    dirty: bool,
}

pub(crate) struct Shared {
    meta: Metainfo,
    info_hash: [u8; 20],
    geometry: PieceGeometry,
    storage: Arc<Storage>,
    resume_path: PathBuf,
    state: Mutex<State>,
    complete: Notify,
    /// Wakes the dialer: new addresses, or a free connection slot.
    dial_wake: Notify,
    shutdown: AtomicBool,
    /// Turns true with `shutdown`, for tasks that sleep long and must wake for it.
    stopped: tokio::sync::watch::Sender<bool>,
    /// Pieces recently read for uploading, newest last, at most [`READ_CACHE_BYTES`].
    read_cache: Mutex<VecDeque<(u32, Bytes)>>,
    /// Buffers of pieces evicted from the cache that nobody else held, to read into again.
    read_spare: Mutex<Vec<BytesMut>>,
    /// Bytes being read for uploads now (see [`READ_BUDGET`]).
    read_bytes: Arc<std::sync::atomic::AtomicUsize>,
    session: Arc<SessionShared>,
    /// The announcer's per-tracker status, and how to stop it (it then sends `stopped`).
    trackers: Mutex<Option<Announcing>>,
}

struct Announcing {
    status: tokio::sync::watch::Receiver<Vec<TrackerStatus>>,
    progress: tokio::sync::watch::Sender<Progress>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A running torrent. Dropping it does not stop its tasks; call [`Torrent::shutdown`].
#[derive(Clone)]
pub struct Torrent {
    shared: Arc<Shared>,
}

impl Torrent {
    /// Open the storage, find the pieces already there (from the resume file if it still
    /// matches the files, else by hashing them), listen, and dial the given peers.
    pub(crate) async fn start(
        session: &Arc<SessionShared>,
        meta: Metainfo,
        config: TorrentConfig,
        check_progress: Arc<AtomicU64>,
    ) -> Result<Torrent, EngineError> {
        let info_hash = meta.info_hashes.get_v1().ok_or(EngineError::V2Only)?.0;
        let piece_length = u32::try_from(meta.info.piece_length)
            .map_err(|_| EngineError::PieceLength(meta.info.piece_length))?;
        let geometry = PieceGeometry::new(meta.info.total_length, piece_length)
            .ok_or(EngineError::PieceLength(meta.info.piece_length))?;
        let info = meta.info.clone();
        let dir = config.dir.clone();
        let resume_path = config
            .dir
            .join(format!(".bitpeer-{}.resume", hex(&info_hash)));
        let rp = resume_path.clone();
        let (storage, have) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let storage = Storage::open(&info, &dir)?;
            let count = storage.piece_count();
            let stamps = storage.file_stamps()?;
            let have = match resume::load(&rp, &info_hash, count) {
                Some(r) if resume::still_valid(&r, &stamps) => r.pieces,
                _ => storage.recheck(0, &check_progress, &AtomicBool::new(false))?,
            };
            Ok((storage, have))
        })
        .await
        .map_err(|_| EngineError::Storage(StorageError::Cancelled))??;

        let seed = seed_from_time();
        let picker = Picker::new(
            piece_length,
            meta.info.total_length,
            have,
            MAX_PARTIAL_PIECES,
            seed,
        );
        let shared = Arc::new(Shared {
            meta,
            info_hash,
            geometry,
            storage: Arc::new(storage),
            resume_path,
            state: Mutex::new(State {
                picker,
                buffers: HashMap::new(),
                spare_buffers: Vec::new(),
                verifying_bytes: 0,
                peers: HashMap::new(),
                next_peer: 0,
                pool: PeerPool::new(own_addrs(session.listen_addr)),
                dialing: 0,
                strikes: HashMap::new(),
                banned: HashSet::new(),
                blame: Blame::new(),
                disk_error: None,
                choker: Choker::new(UPLOAD_SLOTS, seed.rotate_left(17)),

                downloaded: 0,
                uploaded: 0,
                hash_failures: 0,
                dirty: false,
            }),
            complete: Notify::new(),
            dial_wake: Notify::new(),
            shutdown: AtomicBool::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
            read_cache: Mutex::new(VecDeque::new()),
            read_spare: Mutex::new(Vec::new()),
            read_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            session: session.clone(),
            trackers: Mutex::new(None),
        });

        let mut torrents = session.torrents.lock().unwrap_or_else(|e| e.into_inner());
        if torrents.contains_key(&info_hash) {
            return Err(EngineError::Duplicate);
        }
        torrents.insert(info_hash, shared.clone());
        drop(torrents);

        add_peers(&shared, &config.peers, true);
        tokio::spawn(dial_loop(shared.clone()));
        if config.trackers && !shared.meta.trackers.is_empty() {
            let announcing = start_announcing(&shared);
            *shared.trackers.lock().unwrap_or_else(|e| e.into_inner()) = Some(announcing);
        }
        session.torrents_changed();
        if !shared.is_private() {
            // BEP 27: private torrents stay out of the DHT.
            tokio::spawn(dht_loop(shared.clone()));
        }
        tokio::spawn(resume_loop(shared.clone()));
        tokio::spawn(choke_loop(shared.clone()));
        Ok(Torrent { shared })
    }

    /// Offer addresses to dial (from a tracker, local discovery, ...). Duplicates, our own
    /// address and addresses over the pool's bound are ignored.
    pub fn add_peers(&self, addrs: &[SocketAddr]) {
        add_peers(&self.shared, addrs, false);
    }

    /// What each of the torrent's trackers answered last (empty without trackers).
    pub fn tracker_status(&self) -> Vec<TrackerStatus> {
        let t = self
            .shared
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        t.as_ref()
            .map(|a| a.status.borrow().clone())
            .unwrap_or_default()
    }

    /// Whether the torrent is private (BEP 27): its trackers are its only source of peers.
    pub fn is_private(&self) -> bool {
        self.shared.is_private()
    }

    /// The torrent's info-hash (v1, or the truncated v2 hash), as used on the wire.
    pub fn info_hash(&self) -> [u8; 20] {
        self.shared.info_hash
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        Some(self.shared.session.listen_addr)
    }

    pub fn stats(&self) -> Stats {
        let s = lock(&self.shared);
        let have = s.picker.have();
        let bytes_have = bytes_have(&s);
        Stats {
            pieces_have: have.count_ones(),
            piece_count: have.len(),
            bytes_have,
            total_bytes: self.shared.meta.info.total_length,
            downloaded: s.downloaded,
            uploaded: s.uploaded,
            peers: s.peers.len(),
            candidates: s.pool.len(),
            hash_failures: s.hash_failures,
            banned: s.banned.len(),
        }
    }

    pub fn is_complete(&self) -> bool {
        lock(&self.shared).picker.is_complete()
    }

    /// Resolves once every piece is verified on disk.
    pub async fn wait_complete(&self) {
        loop {
            let notified = self.shared.complete.notified();
            if self.is_complete() {
                return;
            }
            notified.await;
        }
    }

    /// Close every connection and write the resume file.
    pub async fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.stopped.send_replace(true);
        self.shared
            .session
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.shared.info_hash);
        for p in lock(&self.shared).peers.values() {
            let _ = p.tx.send(Cmd::Close);
        }
        self.shared.dial_wake.notify_one();
        self.shared.session.torrents_changed();
        let announcing = self
            .shared
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let shared = self.shared.clone();
        let resume = tokio::task::spawn_blocking(move || save_resume(&shared));
        if let Some(a) = announcing {
            // The last counters (`completed` if the download just finished), then `stopped`
            // to every tracker that knows us; the announcer bounds it itself.
            let _ = a.progress.send(progress(&self.shared));
            let _ = a.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), a.task).await;
        }
        let _ = resume.await;
    }
}

impl Shared {
    pub(crate) fn is_private(&self) -> bool {
        self.meta.info.private
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock is a bug; keep serving with the state as it is.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn cached_piece(shared: &Shared, piece: u32) -> Option<Bytes> {
    let cache = shared.read_cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .iter()
        .find(|(p, _)| *p == piece)
        .map(|(_, d)| d.clone())
}

fn cache_piece(shared: &Shared, piece: u32, data: Bytes) {
    let mut cache = shared.read_cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.iter().any(|(p, _)| *p == piece) {
        return;
    }
    cache.push_back((piece, data));
    while cache.len() > 1 && cache.iter().map(|(_, d)| d.len()).sum::<usize>() > READ_CACHE_BYTES {
        if let Some((_, old)) = cache.pop_front()
            && let Ok(buf) = old.try_into_mut()
        {
            let mut spare = shared.read_spare.lock().unwrap_or_else(|e| e.into_inner());
            if spare.iter().map(|b| b.capacity()).sum::<usize>() + buf.capacity()
                <= SPARE_READ_BYTES
            {
                spare.push(buf);
            }
        }
    }
}

/// Who a strike or a ban applies to: the IP address, or on loopback (where every test peer
/// shares 127.0.0.1) the address and port.
fn ban_key(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_loopback() {
        addr
    } else {
        SocketAddr::new(addr.ip(), 0)
    }
}

fn hex(b: &[u8]) -> String {
    metainfo::hash::to_hex(b)
}

pub(crate) fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

fn save_resume(shared: &Shared) {
    let pieces = lock(shared).picker.have().clone();
    // Data first, then the record of it: a crash between the two only costs a recheck.
    if shared.storage.sync_all().is_err() {
        return;
    }
    if let Ok(files) = shared.storage.file_stamps() {
        let data = ResumeData {
            info_hash: shared.info_hash,
            pieces,
            files,
        };
        let _ = resume::save(&shared.resume_path, &data);
    }
}

async fn resume_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    while !shared.shutdown.load(Ordering::SeqCst) {
        tick.tick().await;
        let dirty = std::mem::take(&mut lock(&shared).dirty);
        if dirty {
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || save_resume(&s)).await;
        }
    }
}

/// Every 10 s, let the choker pick who we upload to.
async fn choke_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CHOKE_INTERVAL);
    tick.tick().await;
    while !shared.shutdown.load(Ordering::SeqCst) {
        tick.tick().await;
        let mut guard = lock(&shared);
        let s = &mut *guard;
        let samples: Vec<PeerSample<u64>> = s
            .peers
            .iter()
            .map(|(&key, p)| PeerSample {
                key,
                interested: p.interested,
                downloaded: p.downloaded - p.round_downloaded,
                uploaded: p.uploaded - p.round_uploaded,
                snubbed: p.snubbed,
            })
            .collect();
        let seeding = s.picker.is_complete();
        let unchoke = s.choker.round(&samples, seeding);
        for (key, p) in s.peers.iter_mut() {
            p.round_downloaded = p.downloaded;
            p.round_uploaded = p.uploaded;
            let want = unchoke.contains(key);
            if want != p.unchoked {
                p.unchoked = want;
                let _ = p.tx.send(if want { Cmd::Unchoke } else { Cmd::Choke });
            }
        }
    }
}

/// An incoming connection whose handshake named this torrent.
pub(crate) async fn accept(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    prefix: [u8; 48],
) {
    let refuse = {
        let s = lock(&shared);
        s.peers.len() >= MAX_PEERS || s.banned.contains(&ban_key(addr))
    };
    if !refuse && !shared.shutdown.load(Ordering::SeqCst) {
        run_peer(shared, stream, addr, Some(prefix)).await;
    }
}

/// Announce the torrent on the DHT and dial the peers found there: every few seconds at
/// first (while the routing table fills), then every 5 minutes while downloading and every
/// 15 once complete.
async fn dht_loop(shared: Arc<Shared>) {
    let mut wait = Duration::from_secs(5);
    while !shared.shutdown.load(Ordering::SeqCst) {
        let Some(mut found) = shared.session.dht_lookup(shared.info_hash, true) else {
            return;
        };
        let mut any = false;
        while let Some(peers) = found.recv().await {
            any |= !peers.is_empty();
            add_peers(&shared, &peers, false);
        }
        wait = if any {
            if lock(&shared).picker.is_complete() {
                Duration::from_secs(15 * 60)
            } else {
                Duration::from_secs(5 * 60)
            }
        } else {
            (wait * 2).min(Duration::from_secs(5 * 60))
        };
        let mut stopped = shared.stopped.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Run the torrent's announcer (`tracker::client`): progress in, peers out.
fn start_announcing(shared: &Arc<Shared>) -> Announcing {
    use tokio::sync::watch;
    let session = &shared.session;
    let base = AnnounceRequest {
        info_hash: shared.info_hash,
        peer_id: session.peer_id,
        port: session.listen_addr.port(),
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: tracker::proto::AnnounceEvent::Started,
        numwant: Some(50),
        key: session.tracker_key,
    };
    let (progress_tx, progress_rx) = watch::channel(progress(shared));
    let (peers_tx, mut peers_rx) = mpsc::channel::<Vec<SocketAddr>>(16);
    let (status_tx, status_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_announcer(
        session.tracker_client.clone(),
        shared.meta.trackers.clone(),
        base,
        progress_rx,
        peers_tx,
        status_tx,
        stop_rx,
    ));
    let s = shared.clone();
    tokio::spawn(async move {
        while let Some(peers) = peers_rx.recv().await {
            add_peers(&s, &peers, false);
        }
    });
    let s = shared.clone();
    let tx = progress_tx.clone();
    tokio::spawn(async move {
        // The counters the next announce reports; `left` reaching 0 sends `completed`.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !s.shutdown.load(Ordering::SeqCst) {
            tick.tick().await;
            if tx.send(progress(&s)).is_err() {
                return;
            }
        }
    });
    Announcing {
        status: status_rx,
        progress: progress_tx,
        stop: stop_tx,
        task,
    }
}

/// Bytes of the verified pieces.
fn bytes_have(s: &State) -> u64 {
    s.picker
        .have()
        .iter_ones()
        .map(|p| u64::from(s.picker.piece_size(p)))
        .sum()
}

fn progress(shared: &Shared) -> Progress {
    let s = lock(shared);
    let have = bytes_have(&s);
    Progress {
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        left: shared.meta.info.total_length.saturating_sub(have),
    }
}

pub(crate) fn add_peers(shared: &Shared, addrs: &[SocketAddr], pinned: bool) {
    let now = Instant::now();
    let mut s = lock(shared);
    let mut added = false;
    for &addr in addrs {
        if !s.banned.contains(&ban_key(addr)) {
            added |= s.pool.add(addr, pinned, now);
        }
    }
    drop(s);
    if added {
        shared.dial_wake.notify_one();
    }
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

/// Dial the pool's addresses while there is room for more connections: at most
/// [`MAX_DIALS`] connecting at once and [`MAX_PEERS`] connected.
async fn dial_loop(shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let now = Instant::now();
        let (dials, next) = {
            let mut guard = lock(&shared);
            let s = &mut *guard;
            let room = MAX_PEERS
                .saturating_sub(s.peers.len() + s.dialing)
                .min(MAX_DIALS.saturating_sub(s.dialing));
            let connected: HashSet<SocketAddr> = s.peers.values().map(|p| p.addr).collect();
            let banned = &s.banned;
            let dials = s.pool.next_dials(now, room, |a| {
                connected.contains(a) || banned.contains(&ban_key(*a))
            });
            s.dialing += dials.len();
            (dials, s.pool.next_ready())
        };
        for addr in dials {
            tokio::spawn(dial(shared.clone(), addr));
        }
        // Sleep until an address is due (checked at least once a second, as slots free up
        // without telling), or until woken by new addresses.
        let wait = next.map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(now).min(Duration::from_secs(1))
        });
        let _ = tokio::time::timeout(
            wait.max(Duration::from_millis(50)),
            shared.dial_wake.notified(),
        )
        .await;
    }
}

/// One outgoing connection, from TCP connect to the end of the peer's session.
async fn dial(shared: Arc<Shared>, addr: SocketAddr) {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr)).await;
    lock(&shared).dialing -= 1;
    let connected = match stream {
        Ok(Ok(stream)) => run_peer(shared.clone(), stream, addr, None).await,
        _ => false,
    };
    let mut s = lock(&shared);
    // Both complete: nothing to trade (the peer dials us if it ever wants more).
    let done_with = s.picker.is_complete();
    s.pool
        .dial_ended(addr, connected, done_with, Instant::now());
    drop(s);
    shared.dial_wake.notify_one();
}

async fn run_peer(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    prefix: Option<[u8; 48]>,
) -> bool {
    let _ = stream.set_nodelay(true);
    let mut conn =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&shared, stream, prefix)).await {
            Ok(Ok(c)) => c,
            _ => return false,
        };
    let (tx, rx) = mpsc::unbounded_channel();
    let id = {
        let mut s = lock(&shared);
        if s.peers.len() >= MAX_PEERS
            || s.banned.contains(&ban_key(addr))
            || !shared.session.take_connection_slot()
        {
            return false;
        }
        let id = s.next_peer;
        s.next_peer += 1;
        s.peers.insert(
            id,
            PeerEntry {
                tx,
                addr,
                listen_addr: prefix.is_none().then_some(addr),
                downloaded: 0,
                uploaded: 0,
                round_downloaded: 0,
                round_uploaded: 0,
                interested: false,
                unchoked: false,
                snubbed: false,
            },
        );
        id
    };
    let result = conn.run(&shared, id, addr, rx).await;
    tracing_off(result);
    shared.session.release_connection_slot();
    let mut s = lock(&shared);
    // Its upload slot, if it had one, goes at once to a peer that is waiting for one
    // (the next choker round may be ten seconds away).
    if s.peers.remove(&id).is_some_and(|p| p.unchoked)
        && let Some(next) = s.peers.values_mut().find(|p| p.interested && !p.unchoked)
    {
        next.unchoked = true;
        let _ = next.tx.send(Cmd::Unchoke);
    }
    s.picker.peer_gone(conn.state.peer_pieces());
    for r in conn.state.our_requests() {
        s.picker.request_dropped(&block_of(r));
    }
    drop(s);
    shared.dial_wake.notify_one();
    true
}

/// Connection errors end the connection; there is nobody to tell but a future log.
fn tracing_off(_r: Result<(), String>) {}

struct Conn {
    /// What we told this peer through PEX (BEP 11), and when.
    pex: wire::PexState,
    /// Pieces being read from disk to serve this peer's requests.
    reading: HashSet<u32>,
    read: tokio::net::tcp::OwnedReadHalf,
    out: mpsc::Sender<Bytes>,
    state: PeerState,
    buf: BytesMut,
}

/// Send `ours` and read the peer's handshake (BEP 3), which must name the same info-hash
/// and not be our own (a connection to ourselves). On an incoming connection the session has
/// already read the first 48 bytes (`prefix`), and we answer after the peer id.
pub(crate) async fn exchange_handshakes(
    stream: &mut TcpStream,
    ours: &Handshake,
    prefix: Option<[u8; 48]>,
) -> std::io::Result<Handshake> {
    let mut theirs = [0u8; 68];
    if let Some(prefix) = prefix {
        theirs[..48].copy_from_slice(&prefix);
        stream.read_exact(&mut theirs[48..]).await?;
        stream.write_all(&ours.encode()).await?;
    } else {
        stream.write_all(&ours.encode()).await?;
        stream.read_exact(&mut theirs).await?;
    }
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let hs = Handshake::parse(&theirs)
        .map_err(|e| bad(&e.to_string()))?
        .ok_or_else(|| bad("short handshake"))?;
    if hs.info_hash != ours.info_hash {
        return Err(bad("wrong info-hash"));
    }
    if hs.peer_id == ours.peer_id {
        return Err(bad("connected to ourselves"));
    }
    Ok(hs)
}

/// BEP 3 handshake. On an incoming connection the session has already read the first 48
/// bytes (`prefix`) to find the torrent; we answer after reading the peer id.
async fn handshake(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    prefix: Option<[u8; 48]>,
) -> std::io::Result<Conn> {
    let mut ours = Handshake::new(shared.info_hash, shared.session.peer_id);
    ours.set_extension_protocol(true).set_fast_extension(true);
    let hs = exchange_handshakes(&mut stream, &ours, prefix).await?;
    let mut config = PeerConfig::negotiated(&ours, &hs);
    config.max_peer_requests = MAX_PEER_REQUESTS;
    let mut state = PeerState::new(config, shared.geometry);
    if config.extension_protocol {
        let mut m = std::collections::BTreeMap::new();
        m.insert("ut_metadata".to_string(), UT_METADATA_ID);
        if !shared.is_private() {
            // BEP 27: no peer exchange for private torrents.
            m.insert("ut_pex".to_string(), UT_PEX_ID);
        }
        let ext = wire::ExtendedHandshake {
            m,
            v: Some(concat!("bitpeer ", env!("CARGO_PKG_VERSION")).into()),
            reqq: Some(config.max_peer_requests as u32),
            p: Some(shared.session.listen_addr.port()),
            metadata_size: Some(shared.meta.info_bytes.len() as u64),
            ..Default::default()
        };
        state.send_extended_handshake(&ext);
    }
    state.send_pieces(lock(shared).picker.have());
    let (read, mut write) = stream.into_split();
    let (out, mut rx) = mpsc::channel::<Bytes>(512);
    tokio::spawn(async move {
        // Whatever is queued goes out in one vectored write: block payloads are slices of
        // the piece read from disk and are never copied into a send buffer.
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Some(b) = rx.recv().await {
            batch.push(b);
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(b) => batch.push(b),
                    Err(_) => break,
                }
            }
            if write_all_vectored(&mut write, &mut batch).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    Ok(Conn {
        pex: wire::PexState::new(),
        reading: HashSet::new(),
        read,
        out,
        state,
        buf: BytesMut::with_capacity(64 * 1024),
    })
}

/// Write every buffer of `bufs`, in order, with as few `writev` calls as the socket allows;
/// `bufs` is empty afterwards.
async fn write_all_vectored(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    bufs: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    use bytes::Buf;
    let mut first = 0;
    while first < bufs.len() {
        let mut n = {
            let slices: Vec<std::io::IoSlice<'_>> = bufs[first..]
                .iter()
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < bufs.len() {
            let b = &mut bufs[first];
            if n >= b.len() {
                n -= b.len();
                first += 1;
            } else {
                b.advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}

fn block_of(r: &BlockRequest) -> Block {
    Block {
        piece: r.piece,
        begin: r.begin,
        length: r.length,
    }
}

fn request_of(b: &Block) -> BlockRequest {
    BlockRequest {
        piece: b.piece,
        begin: b.begin,
        length: b.length,
    }
}

impl Conn {
    async fn run(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) -> Result<(), String> {
        let mut decoder = Decoder::new(DecoderConfig::for_piece_count(
            shared.geometry.piece_count(),
        ));
        let (disk_tx, mut disk_rx) = mpsc::unbounded_channel::<(u32, Result<Bytes, String>)>();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_block = Instant::now();
        let mut last_recv = Instant::now();
        let mut last_sent = Instant::now();
        // Bytes received in the last second, to size the request pipeline.
        let mut window_bytes = 0u64;
        let mut rate = 0u64;
        self.update_interest(shared);
        self.flush(&mut last_sent).await?;
        loop {
            tokio::select! {
                n = self.read.read_buf(&mut self.buf) => {
                    let n = n.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("peer closed the connection".into());
                    }
                    last_recv = Instant::now();
                    while let Some(msg) = decoder.decode(&mut self.buf).map_err(|e| e.to_string())? {
                        self.state.handle_message(msg).map_err(|e| e.to_string())?;
                        while let Some(ev) = self.state.poll_event() {
                            if let Event::Block { .. } = ev {
                                last_block = Instant::now();
                            }
                            window_bytes += self.handle_event(shared, id, addr, ev, &disk_tx)?;
                        }
                    }
                    if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                        self.buf.reserve(256 * 1024);
                    }
                }
                Some(cmd) = cmds.recv() => match cmd {
                    Cmd::Have(p) => {
                        self.state.send_have(p);
                        self.update_interest(shared);
                    }
                    Cmd::Cancel(b) => {
                        self.state.cancel(request_of(&b));
                    }
                    Cmd::Choke => {
                        self.state.choke();
                    }
                    Cmd::Unchoke => {
                        self.state.unchoke();
                    }
                    Cmd::Close => return Ok(()),
                },
                Some((piece, data)) = disk_rx.recv() => {
                    self.reading.remove(&piece);
                    let data = data?;
                    cache_piece(shared, piece, data.clone());
                    let queued: Vec<BlockRequest> =
                        self.state.peer_requests().filter(|r| r.piece == piece).copied().collect();
                    for req in queued {
                        self.serve(shared, id, req, &data);
                    }
                    self.serve_cached(shared, id);
                    self.start_reads(shared, &disk_tx);
                }
                _ = tick.tick() => {
                    rate = (rate + window_bytes) / 2;
                    window_bytes = 0;
                    if last_recv.elapsed() > IDLE_TIMEOUT {
                        return Err("peer idle".into());
                    }
                    if self.state.our_requests().len() > 0 && last_block.elapsed() > REQUEST_TIMEOUT {
                        // Snubbed: give its requests to other peers.
                        let reqs: Vec<BlockRequest> = self.state.our_requests().copied().collect();
                        let mut s = lock(shared);
                        if let Some(p) = s.peers.get_mut(&id) {
                            p.snubbed = true;
                        }
                        for r in reqs {
                            if self.state.cancel(r) {
                                s.picker.request_dropped(&block_of(&r));
                            }
                        }
                        last_block = Instant::now();
                    }
                    if last_sent.elapsed() > KEEPALIVE {
                        self.state.send_keep_alive();
                    }
                    // Requests left waiting when the read budget was spent.
                    self.serve_cached(shared, id);
                    self.start_reads(shared, &disk_tx);
                    self.send_pex(shared, id);
                }
            }
            self.fill_requests(shared, rate);
            self.flush(&mut last_sent).await?;
        }
    }

    /// Handle one event from the peer state machine; returns the bytes of new block data.
    fn handle_event(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        ev: Event,
        disk_tx: &mpsc::UnboundedSender<(u32, Result<Bytes, String>)>,
    ) -> Result<u64, String> {
        match ev {
            Event::Have(p) => {
                lock(shared).picker.peer_has(p);
                self.update_interest(shared);
            }
            Event::Bitfield => {
                let mut s = lock(shared);
                for p in self.state.peer_pieces().iter_ones() {
                    s.picker.peer_has(p);
                }
                drop(s);
                self.update_interest(shared);
            }
            Event::HaveAll => {
                lock(shared).picker.peer_has_all();
                self.update_interest(shared);
            }
            Event::Interested | Event::NotInterested => {
                let interested = matches!(ev, Event::Interested);
                let mut s = lock(shared);
                // A free regular slot is given at once rather than at the next round.
                let busy = s.peers.values().filter(|p| p.unchoked).count();
                if let Some(p) = s.peers.get_mut(&id) {
                    p.interested = interested;
                    if interested && !p.unchoked && busy < UPLOAD_SLOTS {
                        p.unchoked = true;
                        self.state.unchoke();
                    }
                }
            }
            Event::Request(req) => {
                let have = lock(shared).picker.have().get(req.piece);
                if !have {
                    self.state.reject_request(req);
                } else if let Some(data) = cached_piece(shared, req.piece) {
                    self.serve(shared, id, req, &data);
                } else {
                    // Queued in the peer state until its piece is read.
                    self.start_reads(shared, disk_tx);
                }
            }
            Event::Block { request, data } => {
                return Ok(on_block(shared, id, addr, &request, &data));
            }
            Event::UnsolicitedBlock { .. } => {
                let mut s = lock(shared);
                let strikes = s.strikes.entry(ban_key(addr)).or_insert(0);
                *strikes += 1;
                if *strikes > 20 {
                    return Err("too many blocks nobody asked for".into());
                }
            }
            Event::RequestFailed { request, .. } => {
                lock(shared).picker.request_dropped(&block_of(&request));
            }
            Event::ExtendedHandshake(hs) => {
                if let Some(port) = hs.p.filter(|&p| p != 0) {
                    let mut s = lock(shared);
                    if let Some(p) = s.peers.get_mut(&id)
                        && p.listen_addr.is_none()
                    {
                        p.listen_addr = Some(SocketAddr::new(addr.ip(), port));
                    }
                }
            }
            Event::Extended { id: ext, payload } if ext == UT_METADATA_ID => {
                self.serve_metadata(shared, &payload)?;
            }
            Event::Extended { id: ext, payload } if ext == UT_PEX_ID => {
                self.receive_pex(shared, &payload);
            }
            _ => {}
        }
        Ok(0)
    }

    /// Serve the queued requests whose pieces are in the read cache now (read for another
    /// peer, or for this one earlier).
    fn serve_cached(&mut self, shared: &Shared, id: u64) {
        let queued: Vec<BlockRequest> = self.state.peer_requests().copied().collect();
        for req in queued {
            if let Some(data) = cached_piece(shared, req.piece) {
                self.serve(shared, id, req, &data);
            }
        }
    }

    /// Start reading the pieces of queued requests, oldest first: at most
    /// [`PEER_READ_BYTES`] for this peer, and at most [`READ_BUDGET`] bytes being read
    /// for the whole torrent (one read is always allowed). One positioned read of a whole
    /// piece serves all its blocks, for this peer and, through the cache, for the others.
    fn start_reads(
        &mut self,
        shared: &Shared,
        disk_tx: &mpsc::UnboundedSender<(u32, Result<Bytes, String>)>,
    ) {
        let piece_len = shared.geometry.piece_len(0).unwrap_or(1).max(1) as usize;
        let max_reads = (PEER_READ_BYTES / piece_len).clamp(1, 8);
        let mut wanted: Vec<u32> = Vec::new();
        for r in self.state.peer_requests() {
            if self.reading.len() + wanted.len() >= max_reads {
                break;
            }
            if !self.reading.contains(&r.piece) && !wanted.contains(&r.piece) {
                wanted.push(r.piece);
            }
        }
        for piece in wanted {
            if cached_piece(shared, piece).is_some() {
                continue; // served by serve_cached
            }
            let size = shared.geometry.piece_len(piece).unwrap_or(0) as usize;
            let taken = shared
                .read_bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n == 0 || n + size <= READ_BUDGET).then_some(n + size)
                })
                .is_ok();
            if !taken {
                return; // retried when a read ends or at the next tick
            }
            self.reading.insert(piece);
            let storage = shared.storage.clone();
            let tx = disk_tx.clone();
            let mut buf = shared
                .read_spare
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default();
            let budget = shared.read_bytes.clone();
            tokio::task::spawn_blocking(move || {
                buf.resize(size, 0);
                let r = storage
                    .read(piece, 0, &mut buf)
                    .map(|()| buf.freeze())
                    .map_err(|e| e.to_string());
                // Given back here, not by the receiver, which may be gone.
                budget.fetch_sub(size, Ordering::SeqCst);
                let _ = tx.send((piece, r));
            });
        }
    }

    /// Send the block `req` out of its piece's data.
    fn serve(&mut self, shared: &Shared, id: u64, req: BlockRequest, piece: &Bytes) {
        let (begin, end) = (req.begin as usize, req.begin as usize + req.length as usize);
        if end > piece.len() {
            return; // PeerState checked the range against the geometry; be safe anyway
        }
        if self.state.send_piece(req, piece.slice(begin..end)) {
            let len = u64::from(req.length);
            let mut s = lock(shared);
            s.uploaded += len;
            if let Some(p) = s.peers.get_mut(&id) {
                p.uploaded += len;
            }
        }
    }

    /// BEP 9: answer a request for a piece of our info dictionary.
    fn serve_metadata(&mut self, shared: &Shared, payload: &Bytes) -> Result<(), String> {
        use wire::metadata::{MetadataError, MetadataMessage, metadata_piece};
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            Err(MetadataError::UnknownMessageType(_)) => return Ok(()), // BEP 9: ignore
            Err(e) => return Err(e.to_string()),
        };
        let MetadataMessage::Request { piece } = msg else {
            return Ok(()); // data or reject we never asked for: ignore
        };
        let Some(their) = self
            .state
            .peer_extensions()
            .and_then(|e| e.extension_id("ut_metadata"))
        else {
            return Err("metadata request without ut_metadata in its handshake".into());
        };
        let info = &shared.meta.info_bytes;
        let answer = match metadata_piece(info, piece) {
            Some(data) => MetadataMessage::Data {
                piece,
                total_size: info.len() as u32,
                data: Bytes::copy_from_slice(data),
            },
            None => MetadataMessage::Reject { piece },
        };
        self.state
            .send_extended(their, Bytes::from(answer.encode()));
        Ok(())
    }

    /// BEP 11: tell the peer, at most once a minute, which peers we gained and lost.
    fn send_pex(&mut self, shared: &Shared, id: u64) {
        if shared.is_private() || self.pex.next_send_at().is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Some(their) = self
            .state
            .peer_extensions()
            .and_then(|e| e.extension_id("ut_pex"))
        else {
            return;
        };
        let current: Vec<(SocketAddr, wire::PexFlags)> = lock(shared)
            .peers
            .iter()
            .filter(|(k, _)| **k != id)
            .filter_map(|(_, p)| p.listen_addr)
            .map(|a| (a, wire::PexFlags(0)))
            .collect();
        if let Some(msg) = self.pex.poll_message(Instant::now(), &current) {
            self.state.send_extended(their, Bytes::from(msg.encode()));
        }
    }

    /// BEP 11: peers the peer met; dial them too (never for private torrents).
    fn receive_pex(&mut self, shared: &Shared, payload: &[u8]) {
        if shared.is_private() || !self.pex.accept_incoming(Instant::now()) {
            return;
        }
        if let Ok(msg) = wire::PexMessage::decode(payload) {
            let addrs: Vec<SocketAddr> = msg.added.iter().map(|(a, _)| *a).collect();
            add_peers(shared, &addrs, false);
        }
    }

    fn update_interest(&mut self, shared: &Shared) {
        let wants = lock(shared).picker.wants_from(self.state.peer_pieces());
        if wants != self.state.am_interested() {
            self.state.set_interested(wants);
        }
    }

    /// Keep about one second of transfer (at the peer's measured rate) requested, at least
    /// 16 blocks, at most what the peer accepts.
    fn fill_requests(&mut self, shared: &Shared, rate: u64) {
        if self.state.peer_choking() || !self.state.am_interested() {
            return;
        }
        let peer_max = self
            .state
            .peer_extensions()
            .and_then(|e| e.reqq)
            .map_or(250, |q| q as usize)
            .clamp(1, MAX_OUR_REQUESTS);
        let target = ((rate / u64::from(BLOCK_SIZE)) as usize).clamp(16, peer_max);
        let outstanding = self.state.our_requests().len();
        // Refill in batches (below three quarters of the target), not after every block.
        if outstanding >= target - target / 4 {
            return;
        }
        let state = &self.state;
        let mine = |b: &Block| state.our_requests().any(|r| *r == request_of(b));
        let mut s = lock(shared);
        if s.verifying_bytes >= VERIFY_BUDGET {
            // Hashing and writing lag behind the network: take no more blocks until they
            // catch up, so completed pieces cannot pile up in memory.
            return;
        }
        let blocks = s
            .picker
            .pick(self.state.peer_pieces(), target - outstanding, mine);
        for b in blocks {
            if self.state.request(request_of(&b)).is_err() {
                s.picker.request_dropped(&b);
            }
        }
    }

    async fn flush(&mut self, last_sent: &mut Instant) -> Result<(), String> {
        let mut out = BytesMut::new();
        while let Some(msg) = self.state.poll_message() {
            if let wire::Message::Piece { piece, begin, data } = msg {
                // The header joins the small messages before it; the block goes as it is.
                wire::encode_piece_header(&mut out, piece, begin, data.len());
                self.send(out.split().freeze()).await?;
                *last_sent = Instant::now();
                self.send(data).await?;
                continue;
            }
            msg.encode(&mut out);
            if out.len() >= 256 * 1024 {
                self.send(out.split().freeze()).await?;
            }
        }
        if !out.is_empty() {
            *last_sent = Instant::now();
            self.send(out.freeze()).await?;
        }
        Ok(())
    }

    async fn send(&self, b: Bytes) -> Result<(), String> {
        self.out
            .send(b)
            .await
            .map_err(|_| "connection closed".to_string())
    }
}

/// A block arrived: copy it into its piece buffer; when the piece is whole, hash and store
/// it on the blocking pool. Returns the bytes of new data.
fn on_block(
    shared: &Arc<Shared>,
    id: u64,
    addr: SocketAddr,
    request: &BlockRequest,
    data: &Bytes,
) -> u64 {
    let block = block_of(request);
    let mut s = lock(shared);
    if let Some(p) = s.peers.get_mut(&id) {
        p.snubbed = false;
        p.downloaded += data.len() as u64;
    }
    match s.picker.block_received(&block) {
        Received::Duplicate => 0,
        outcome => {
            let size = s.picker.piece_size(block.piece) as usize;
            if !s.buffers.contains_key(&block.piece) {
                let mut data = s.spare_buffers.pop().unwrap_or_default();
                data.resize(size, 0);
                let blocks = size.div_ceil(BLOCK_SIZE as usize);
                s.buffers.insert(
                    block.piece,
                    PieceBuf {
                        data,
                        senders: vec![None; blocks],
                    },
                );
            }
            let Some(buf) = s.buffers.get_mut(&block.piece) else {
                return 0;
            };
            let begin = block.begin as usize;
            buf.data[begin..begin + data.len()].copy_from_slice(data);
            if let Some(sender) = buf.senders.get_mut(begin / BLOCK_SIZE as usize) {
                *sender = Some(ban_key(addr));
            }
            s.downloaded += data.len() as u64;
            if s.picker.has_endgame_copies() {
                for p in s.peers.values() {
                    let _ = p.tx.send(Cmd::Cancel(block));
                }
            }
            if outcome == Received::PieceComplete
                && let Some(buf) = s.buffers.remove(&block.piece)
            {
                s.verifying_bytes += buf.data.len();
                let shared = shared.clone();
                let piece = block.piece;
                tokio::task::spawn_blocking(move || verify_and_store(&shared, piece, buf));
            }
            data.len() as u64
        }
    }
}

/// Check a complete piece on the blocking pool; store it if right. Then blame: the peers
/// proven (now or by an earlier failure of this piece) to have sent a wrong block are
/// banned, nobody else. A piece that cannot be written is not a peer's fault: it goes back
/// to the picker and the error is kept in `disk_error`.
fn verify_and_store(shared: &Arc<Shared>, piece: u32, buf: PieceBuf) {
    let PieceBuf { data, senders } = buf;
    let verdict = V1Verifier::new(&shared.meta.info.pieces).verify(piece, &data);
    // Block digests only when blame needs them, and hashed outside the lock.
    let digests = if lock(shared).blame.needs_digests(piece, &verdict) {
        block_digests(&data)
    } else {
        Vec::new()
    };
    let written = verdict
        .passed()
        .then(|| shared.storage.write_piece(piece, &data));
    let mut s = lock(shared);
    s.verifying_bytes = s.verifying_bytes.saturating_sub(data.len());
    if s.spare_buffers.len() < MAX_PARTIAL_PIECES {
        s.spare_buffers.push(data);
    }
    for liar in s.blame.piece_checked(piece, &verdict, &digests, &senders) {
        if s.banned.insert(liar) {
            s.pool.remove(&liar);
            for p in s.peers.values().filter(|p| ban_key(p.addr) == liar) {
                let _ = p.tx.send(Cmd::Close);
            }
        }
    }
    match written {
        Some(Ok(())) => {
            s.picker.piece_verified(piece);
            s.dirty = true;
            for p in s.peers.values() {
                let _ = p.tx.send(Cmd::Have(piece));
            }
            if s.picker.is_complete() {
                drop(s);
                save_resume(shared);
                shared.complete.notify_waiters();
            }
        }
        Some(Err(e)) => {
            s.picker.piece_failed(piece);
            s.disk_error = Some(format!("cannot write piece {piece}: {e}"));
        }
        None => {
            s.picker.piece_failed(piece);
            s.hash_failures += 1;
        }
    }
}
