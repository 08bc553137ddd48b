//! A torrent being downloaded or seeded (BEP 3, with BEP 6 and BEP 10 negotiated), over
//! any transport: a peer connection is a [`PeerStream`].
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

use crate::blame::{Blame, BlockDigest, V1Verifier, Verdict, Verifier};
use crate::choker::{Choker, PeerSample};
use crate::context::{NodeContext, PeerSink, own_addrs, seed_from_time};
use crate::error::CloseReason;
pub use crate::error::EngineError;
use crate::outbox::Outbox;
use crate::peer::{
    CLIENT_NAME, Handoff, UT_METADATA_ID, UT_PEX_ID, exchange_handshakes, write_all_vectored,
};
use crate::peer_timers::{PeerTimers, TimerAction, TimerConfig, pipeline_target};
use crate::picker::{BLOCK_SIZE, Block, Picker, Received};
use crate::pool::PeerPool;
use crate::recvpin::{KeptBlock, PIN_BUDGET, PinBudget, RecvPins, RecvPool};
use crate::resume::{self, ResumeData};
use crate::settings::{Limits, SharedBucket};
use crate::storage::{Storage, StorageError};
use crate::transport::{BoxRead, PeerStream};
use bytes::{Bytes, BytesMut};
use metainfo::Metainfo;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tracker::client::{Progress, TrackerStatus, run_announcer};
use tracker::proto::AnnounceRequest;
use wire::{
    BlockRequest, Decoder, DecoderConfig, Event, Handshake, PeerConfig, PeerState, PieceGeometry,
};

/// Outgoing connections of one torrent still connecting at once.
const MAX_DIALS: usize = 16;
/// Pieces in progress at once: bounds the memory held in piece buffers.
const MAX_PARTIAL_PIECES: usize = 24;
/// Bytes of recently read pieces kept for serving (always at least one piece).
const READ_CACHE_BYTES: usize = 8 << 20;
/// Bytes of complete pieces waiting for their hash check and write; past it, no new
/// requests are sent until they catch up. When the network outruns hashing for a moment
/// (a loaded machine), a budget that is reached stops the requests, the peer's pipeline
/// drains and the seeder idles until it fills again. A 1 GiB bitpeer -> bitpeer transfer
/// (14 interleaved runs each) left the two cores idle 12-44 ticks of ~280 and took
/// 1.22-1.62 s (median 1.50) at 32 MiB; 10-16 ticks and 1.33-1.47 s (median 1.40) at 64.
const VERIFY_BUDGET: usize = 64 << 20;
/// Blocking threads checking and storing one torrent's complete pieces at most. Each takes
/// up to [`piecehash::MAX_LANES`] waiting pieces at once and hashes them together; a
/// second starts only when a full batch is left waiting.
const MAX_VERIFIERS: usize = 2;
/// How long a verifier that found a single piece waits for a second one while others are
/// being downloaded: at the rates where hashing costs, the next piece comes within it (a
/// 1 MiB piece every 1.5 ms at 700 MB/s); at low rates a piece is stored this much later,
/// which nobody notices. (Waiting for a full batch saved a little more CPU but no time:
/// bench/README, "Hashing pieces together".)
const BATCH_WAIT: Duration = Duration::from_millis(2);
/// Bytes being read from disk for one peer at once (at least one piece, at most 8 pieces).
const PEER_READ_BYTES: usize = 8 << 20;
/// Bytes being read from disk for uploads at once, for the whole torrent: with pieces of
/// up to hundreds of MiB and peers asking for one block of each, memory stays bounded.
const READ_BUDGET: usize = 64 << 20;
/// Buffers (block payloads, message headers) one vectored write takes at most.
const WRITE_BATCH: usize = 64;
/// Bytes one connection may have handed to its writer and not yet written.
const OUTBOX_BYTES: usize = 4 << 20;
/// Bytes of pieces the blocks in one connection's outbox may keep alive (at least two
/// pieces): a peer asking for one block of each of many large pieces, and never reading,
/// cannot make us hold all those pieces.
const OUTBOX_PINNED_BYTES: usize = 16 << 20;
/// A peer whose outbox stays full this long while it has an upload slot loses the slot.
const STALLED_AFTER: Duration = Duration::from_secs(10);
/// Bytes of read buffers kept for the next reads once nothing holds them any more.
const SPARE_READ_BYTES: usize = 8 << 20;
/// How often the choker runs (BEP 3 suggests 10 s).
const CHOKE_INTERVAL: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HAVEs of our new pieces wait this long for other messages to go out with: with 20
/// peers each piece is 20 HAVEs, and sent one by one each is a write, a wakeup of the
/// writer and a read at the peer.
const HAVE_DELAY: Duration = Duration::from_millis(40);

/// How to run a torrent.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// The folder that holds the torrent's content (libtorrent's `save_path`).
    pub dir: PathBuf,

    /// Peers to dial, whatever else is found; they are never forgotten.
    pub peers: Vec<SocketAddr>,

    /// Announce to the torrent's trackers (BEP 3, 12) and dial the peers they give.
    pub trackers: bool,

    /// This torrent's own rate limits, bytes per second (0: none; the session's limits
    /// apply too).
    pub download_limit: u64,
    pub upload_limit: u64,

    /// Priority of each file, by index (`picker::PRIORITY_SKIP`, `_NORMAL`, `_HIGH`);
    /// files past the end of the list are normal. A download is done when every file
    /// that is not skipped is complete.
    pub file_priorities: Vec<u8>,

    /// Fetch pieces in order, for playing a file while it downloads.
    pub sequential: bool,

    /// Fetch the first and last pieces of every wanted file before the others (a preview
    /// of a video needs both ends); qBittorrent's `firstLastPiecePrio`.
    pub first_last_pieces: bool,

    /// When not empty: only these files (by index, as `bitpeer info` lists them) are
    /// downloaded; the others are skipped. From `--only` or a magnet's `so` (BEP 53).
    pub only: Vec<std::ops::RangeInclusive<u32>>,
}

impl TorrentConfig {
    /// Content in `dir`, the given peers, trackers on.
    pub fn new(dir: impl Into<PathBuf>, peers: Vec<SocketAddr>) -> Self {
        TorrentConfig {
            dir: dir.into(),
            peers,
            trackers: true,
            download_limit: 0,
            upload_limit: 0,
            file_priorities: Vec::new(),
            sequential: false,
            first_last_pieces: false,
            only: Vec::new(),
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
    /// Bytes per second over the last seconds.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// Peers that have every piece.
    pub seeds: usize,
    /// Bytes of memory in piece buffers: pieces being downloaded and hashed, pieces kept
    /// for uploads, spare buffers. 0 once no peer is connected and nothing is in flight.
    pub buffered_bytes: u64,
}

enum Cmd {
    /// We verified pieces: they wait in [`PeerEntry::haves`].
    Haves,
    /// What we want changed: recompute interest.
    Reconsider,
    Cancel(Block),
    Choke,
    Unchoke,
    Close,
}

struct PeerEntry {
    tx: mpsc::UnboundedSender<Cmd>,
    addr: SocketAddr,
    /// From its handshake: a second connection with the same id is a duplicate.
    peer_id: [u8; 20],
    /// It dialled us.
    incoming: bool,
    /// Pieces we verified that the connection has not yet queued HAVEs for, and whether
    /// it was woken for them (one wakeup per batch, not per piece and peer).
    haves: Vec<u32>,
    haves_signalled: bool,
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
    /// Pieces the peer has (from its bitfield and haves).
    pieces: u32,
    /// Its client name (`v` of its extended handshake), for displays.
    client: Option<String>,
    /// It asked for blocks and does not read them: its send queue has been full for a
    /// while. It loses its upload slot until it reads again.
    stalled: bool,
    connected_at: Instant,
    /// What the connection runs over, for displays.
    transport: crate::transport::TransportKind,
    encrypted: bool,
    /// Payload rates from and to it.
    download_rate: crate::peer_timers::RateEstimate,
    upload_rate: crate::peer_timers::RateEstimate,
    /// BEP 11 flags PEX sends for this peer: 0x04 when it is reached over uTP, 0x01 when
    /// its connection is encrypted.
    pex_flags: wire::PexFlags,
}

/// How long a new connection may go without trading before it can be evicted for a
/// newcomer when the torrent is full.
const EVICTION_GRACE: Duration = Duration::from_secs(30);

/// The torrent is full and a newcomer knocks: close the least useful peer, one that in
/// [`EVICTION_GRACE`] or more has traded nothing and wants nothing from us (libtorrent's
/// peer turnover does the same), the longest connected first. False when every peer is
/// useful: the newcomer is refused.
fn evict_least_useful(s: &mut State, now: Instant) -> bool {
    let victim = s
        .peers
        .iter()
        .filter(|(_, p)| {
            p.downloaded == 0
                && p.uploaded == 0
                && !p.interested
                && now.saturating_duration_since(p.connected_at) >= EVICTION_GRACE
        })
        .min_by_key(|(_, p)| p.connected_at)
        .map(|(id, _)| *id);
    let Some(id) = victim else {
        return false;
    };
    if let Some(p) = s.peers.remove(&id) {
        tracing::debug!(peer = %p.addr, "evicted: idle, for a newcomer");
        let _ = p.tx.send(Cmd::Close);
    }
    true
}

/// A piece being downloaded: its blocks as received (see [`crate::recvpin`]), not copied
/// together.
struct PieceBuf {
    blocks: Vec<Option<KeptBlock>>,
    /// Who (by [`ban_key`]) sent each block in `blocks`, by block index.
    senders: Vec<Option<SocketAddr>>,
    /// Bytes of the blocks received.
    bytes: usize,
}

impl PieceBuf {
    fn new(size: usize) -> Self {
        let blocks = size.div_ceil(BLOCK_SIZE as usize);
        PieceBuf {
            blocks: (0..blocks).map(|_| None).collect(),
            senders: vec![None; blocks],
            bytes: 0,
        }
    }

    /// The blocks in order (a complete piece has them all).
    fn parts(&self) -> Vec<&[u8]> {
        self.blocks
            .iter()
            .map(|b| b.as_ref().map_or(&[][..], |b| &b.data[..]))
            .collect()
    }
}

struct State {
    picker: Picker,
    buffers: FxHashMap<u32, PieceBuf>,
    /// Bytes of complete pieces being hashed and written (see [`VERIFY_BUDGET`]).
    verifying_bytes: usize,
    /// Complete pieces waiting for a verifier, oldest first (their bytes are counted in
    /// `verifying_bytes`).
    verify_queue: VecDeque<(u32, PieceBuf)>,
    /// Blocking threads running [`verify_queued`] (at most [`MAX_VERIFIERS`]).
    verifiers: usize,
    peers: FxHashMap<u64, PeerEntry>,
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
    download_rate: crate::peer_timers::RateEstimate,
    upload_rate: crate::peer_timers::RateEstimate,
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
    /// Wakes a verifier waiting for more pieces to check together (see [`BATCH_WAIT`]).
    verify_wake: std::sync::Condvar,
    /// Signalled when the last verifier ends (for [`Torrent::shutdown`]).
    verifiers_done: Notify,
    complete: Notify,
    /// Wakes the dialer: new addresses, or a free connection slot.
    dial_wake: Notify,
    /// Wakes the periodic tasks (choker, resume saver, tracker progress) of a torrent that
    /// had no peer: a torrent without peers costs no timer at all.
    activity: Notify,
    shutdown: AtomicBool,
    /// Turns true with `shutdown`, for tasks that sleep long and must wake for it.
    stopped: tokio::sync::watch::Sender<bool>,
    /// Pieces recently read for uploading, newest last, at most [`READ_CACHE_BYTES`].
    read_cache: Mutex<VecDeque<(u32, Bytes)>>,
    /// Buffers of pieces read for uploads, back once their last block is sent.
    read_spare: Arc<crate::bufpool::BufPool>,
    /// Bytes being read for uploads now (see [`READ_BUDGET`]).
    read_bytes: Arc<std::sync::atomic::AtomicUsize>,
    ctx: Arc<NodeContext>,
    /// The announcer's per-tracker status, and how to stop it (it then sends `stopped`).
    trackers: Mutex<Option<Announcing>>,
    /// This torrent's rate limits.
    download: SharedBucket,
    upload: SharedBucket,
    /// Set once when the torrent cannot go on (a disk write failed): the session turns it
    /// into the torrent's `Error` state and stops it.
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// The parent of every log line of this torrent's tasks and connections.
    span: tracing::Span,
    /// [`TorrentConfig::first_last_pieces`], changeable while running.
    first_last: AtomicBool,
    /// The receive buffers that blocks of pieces in progress hold (see [`crate::recvpin`]).
    pins: Arc<PinBudget>,
    /// Receive buffers left by connections, for reuse once free.
    recv_pool: RecvPool,
}

/// The time the protocol cores are given: tokio's clock, so tests with paused time drive
/// every timer.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Spawn a task of `shared`'s torrent, inside its span.
fn spawn_in<F>(shared: &Shared, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(tracing::Instrument::instrument(fut, shared.span.clone()));
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
        ctx: &Arc<NodeContext>,
        meta: Metainfo,
        config: TorrentConfig,
        check_progress: Arc<AtomicU64>,
    ) -> Result<Torrent, EngineError> {
        let info_hash = meta.info_hashes.get_v1().ok_or(EngineError::V2Only)?.0;
        let piece_length = u32::try_from(meta.info.piece_length)
            .map_err(|_| EngineError::PieceLength(meta.info.piece_length))?;
        let geometry = PieceGeometry::new(meta.info.total_length, piece_length)
            .ok_or(EngineError::PieceLength(meta.info.piece_length))?;
        let file_priorities = file_priorities(&meta.info, &config)?;
        let info = meta.info.clone();
        let dir = config.dir.clone();
        let resume_path = resume_path(&config.dir, &meta);
        let rp = resume_path.clone();
        let skipped: Vec<bool> = file_priorities
            .iter()
            .map(|&p| p == crate::picker::PRIORITY_SKIP)
            .collect();
        let (storage, have) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let storage = Storage::open_with_skipped(&info, &dir, &skipped)?;
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
        let settings = ctx.settings();
        let now = clock();
        let mut picker = Picker::new(
            piece_length,
            meta.info.total_length,
            have,
            MAX_PARTIAL_PIECES,
            seed,
        );
        if !file_priorities.is_empty() || config.first_last_pieces {
            let mut pieces = piece_priorities(&meta.info, &file_priorities);
            if config.first_last_pieces {
                raise_first_last(&meta.info, &file_priorities, &mut pieces);
            }
            picker.set_priorities(&pieces);
        }
        picker.set_sequential(config.sequential);
        let shared = Arc::new(Shared {
            meta,
            info_hash,
            geometry,
            storage: Arc::new(storage),
            resume_path,
            state: Mutex::new(State {
                picker,
                buffers: FxHashMap::default(),
                verifying_bytes: 0,
                verify_queue: VecDeque::new(),
                verifiers: 0,
                peers: FxHashMap::default(),
                next_peer: 0,
                pool: PeerPool::new(own_addrs(ctx.listen_addr)),
                dialing: 0,
                strikes: HashMap::new(),
                banned: HashSet::new(),
                blame: Blame::new(),
                disk_error: None,
                choker: Choker::new(settings.upload_slots, seed.rotate_left(17)),
                downloaded: 0,
                uploaded: 0,
                download_rate: crate::peer_timers::RateEstimate::new(now),
                upload_rate: crate::peer_timers::RateEstimate::new(now),
                hash_failures: 0,
                dirty: false,
            }),
            verify_wake: std::sync::Condvar::new(),
            verifiers_done: Notify::new(),
            complete: Notify::new(),
            dial_wake: Notify::new(),
            activity: Notify::new(),
            shutdown: AtomicBool::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
            read_cache: Mutex::new(VecDeque::new()),
            read_spare: crate::bufpool::BufPool::new(SPARE_READ_BYTES),
            read_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ctx: ctx.clone(),
            trackers: Mutex::new(None),
            download: SharedBucket::new(config.download_limit),
            upload: SharedBucket::new(config.upload_limit),
            fatal: tokio::sync::watch::Sender::new(None),
            span: tracing::info_span!("torrent", info_hash = %hex(&info_hash)),
            first_last: AtomicBool::new(config.first_last_pieces),
            pins: PinBudget::new(PIN_BUDGET),
            recv_pool: RecvPool::default(),
        });

        // The session checked for a duplicate before any file was touched.
        ctx.register(info_hash, shared.clone());
        add_peers(&shared, &config.peers, true);
        spawn_in(&shared, dial_loop(shared.clone()));
        if config.trackers && !shared.meta.trackers.is_empty() {
            let announcing = start_announcing(&shared);
            *shared.trackers.lock().unwrap_or_else(|e| e.into_inner()) = Some(announcing);
        }
        tracing::info!(
            info_hash = %hex(&info_hash),
            name = %shared.meta.info.name,
            pieces = shared.geometry.piece_count(),
            "torrent started"
        );
        if !shared.is_private() {
            // BEP 27: private torrents stay out of the DHT.
            spawn_in(&shared, dht_loop(shared.clone()));
        }
        spawn_in(&shared, resume_loop(shared.clone()));
        spawn_in(&shared, choke_loop(shared.clone()));
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
        Some(self.shared.ctx.listen_addr)
    }

    /// The torrent's metainfo.
    pub fn metainfo(&self) -> &Metainfo {
        &self.shared.meta
    }

    /// The verified pieces.
    pub fn have(&self) -> wire::Bitfield {
        lock(&self.shared).picker.have().clone()
    }

    /// Change this torrent's own rate limits (bytes per second, 0: none).
    pub fn set_rate_limits(&self, download: u64, upload: u64) {
        self.shared.download.set_rate(download);
        self.shared.upload.set_rate(upload);
    }

    /// This torrent's own rate limits (download, upload; 0: none).
    pub fn rate_limits(&self) -> (u64, u64) {
        (self.shared.download.rate(), self.shared.upload.rate())
    }

    /// Resolves when the torrent cannot go on, with why (a disk write failed).
    pub async fn wait_fatal(&self) -> String {
        let mut rx = self.shared.fatal.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return "the torrent stopped".into();
            }
        }
    }

    /// Take over a live connection that fetched this torrent's metadata. It is counted
    /// among the torrent's peers at once, so the dialer does not dial its address again.
    pub(crate) fn adopt(&self, handoff: Handoff) {
        let addr = handoff.stream.remote.key();
        let incoming = handoff.incoming;
        let shared = self.shared.clone();
        let Some((id, rx)) = register(&shared, addr, handoff.theirs.peer_id, incoming) else {
            return;
        };
        let conn = adopt_conn(&shared, handoff);
        tokio::spawn(async move {
            run_registered(shared.clone(), conn, addr, id, rx, incoming).await;
            if !incoming && !crate::transport::is_opaque_key(&addr) {
                let mut s = lock(&shared);
                let done_with = s.picker.is_complete();
                s.pool.add(addr, false, clock());
                s.pool.dial_ended(addr, true, done_with, clock());
            }
        });
    }

    pub fn stats(&self) -> Stats {
        // The read cache and the spare pool have locks of their own, not taken under the
        // state's.
        let cached: usize = {
            let cache = self.shared.read_cache.lock();
            let cache = cache.unwrap_or_else(|e| e.into_inner());
            cache.iter().map(|(_, d)| d.len()).sum()
        };
        let pooled = self.shared.read_spare.held_bytes();
        let mut s = lock(&self.shared);
        let now = clock();
        let download_rate = s.download_rate.rate(now);
        let upload_rate = s.upload_rate.rate(now);
        let piece_count = s.picker.piece_count();
        let seeds = s
            .peers
            .values()
            .filter(|p| p.pieces == piece_count && piece_count > 0)
            .count();
        let have = s.picker.have();
        let bytes_have = s.picker.bytes_have();
        let buffered = s.buffers.values().map(|b| b.bytes).sum::<usize>() + s.verifying_bytes;
        let buffered_bytes = (buffered + cached + pooled) as u64;
        Stats {
            download_rate,
            upload_rate,
            seeds,
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
            buffered_bytes,
        }
    }

    /// Every wanted piece is verified (skipped files aside).
    pub fn is_complete(&self) -> bool {
        lock(&self.shared).picker.is_done()
    }

    /// Fetch each wanted file's first and last pieces first, or stop doing so; `files`
    /// are the file priorities in force (as for [`Torrent::set_file_priorities`]).
    pub async fn set_first_last_pieces(&self, on: bool, files: &[u8]) -> Result<(), EngineError> {
        self.shared.first_last.store(on, Ordering::Relaxed);
        self.set_file_priorities(files).await
    }

    /// Copies of the torrent among the connected peers ([`Picker::distributed_copies`]).
    pub fn distributed_copies(&self) -> f64 {
        lock(&self.shared).picker.distributed_copies()
    }

    /// Change the files' priorities while running (see
    /// [`TorrentConfig::file_priorities`]).
    pub async fn set_file_priorities(&self, priorities: &[u8]) -> Result<(), EngineError> {
        let skipped: Vec<bool> = (0..self.shared.meta.info.files.len())
            .map(|i| priorities.get(i) == Some(&crate::picker::PRIORITY_SKIP))
            .collect();
        let storage = self.shared.storage.clone();
        tokio::task::spawn_blocking(move || storage.set_skipped(&skipped))
            .await
            .map_err(|_| EngineError::Storage(StorageError::Cancelled))??;
        let mut pieces = piece_priorities(&self.shared.meta.info, priorities);
        if self.shared.first_last.load(Ordering::Relaxed) {
            raise_first_last(&self.shared.meta.info, priorities, &mut pieces);
        }
        let mut s = lock(&self.shared);
        s.picker.set_priorities(&pieces);
        let done = s.picker.is_done();
        drop(s);
        if done {
            self.shared.complete.notify_waiters();
        }
        // Peers may have become interesting, or not.
        for p in lock(&self.shared).peers.values() {
            let _ = p.tx.send(Cmd::Reconsider);
        }
        Ok(())
    }

    pub fn set_sequential(&self, on: bool) {
        lock(&self.shared).picker.set_sequential(on);
    }

    /// Resolves once every wanted piece is verified on disk.
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
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return; // already shut down
        }
        self.shared.stopped.send_replace(true);
        let sink: Arc<dyn PeerSink> = self.shared.clone();
        self.shared.ctx.unregister(&self.shared.info_hash, &sink);
        for p in lock(&self.shared).peers.values() {
            let _ = p.tx.send(Cmd::Close);
        }
        self.shared.dial_wake.notify_one();
        // The complete pieces already received are checked and stored, and none after this
        // returns (a removal may delete the files next; the resume file below counts them).
        // Blocks arriving from here on are dropped (`on_block`).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let done = self.shared.verifiers_done.notified();
            if lock(&self.shared).verifiers == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                tracing::warn!("a piece check is still running after 30 s; stopping anyway");
                break;
            }
        }
        tracing::info!(info_hash = %hex(&self.shared.info_hash), "torrent stopped");
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
    // An evicted piece's buffer goes back to `read_spare` once no queued block holds it.
    while cache.len() > 1 && cache.iter().map(|(_, d)| d.len()).sum::<usize>() > READ_CACHE_BYTES {
        cache.pop_front();
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

/// Where the resume data of `meta` lives when its content is in `dir`.
pub(crate) fn resume_path(dir: &std::path::Path, meta: &Metainfo) -> PathBuf {
    let h = meta.info_hashes.get_v1().map(|h| h.0).unwrap_or_default();
    dir.join(format!(".bitpeer-{}.resume", hex(&h)))
}

fn hex(b: &[u8]) -> String {
    metainfo::hash::to_hex(b)
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

/// Returns at once while the torrent has peers (or unsaved progress); else waits until a
/// peer connects or the torrent stops. Returns false once it stopped.
async fn wait_active(shared: &Shared) -> bool {
    let mut stopped = shared.stopped.subscribe();
    loop {
        let woken = shared.activity.notified();
        if shared.shutdown.load(Ordering::SeqCst) {
            return false;
        }
        {
            let s = lock(shared);
            if !s.peers.is_empty() || s.dirty {
                return true;
            }
        }
        tokio::select! {
            _ = woken => {}
            _ = stopped.wait_for(|s| *s) => return false,
        }
    }
}

async fn resume_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while wait_active(&shared).await {
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
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    while wait_active(&shared).await {
        tick.tick().await;
        let mut guard = lock(&shared);
        let s = &mut *guard;
        let samples = choker_samples(s);
        let seeding = s.picker.is_done();
        s.choker.set_slots(shared.ctx.settings().upload_slots);
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

/// An incoming connection whose handshake named this torrent (`prefix`, read), or one
/// made for it by another transport (`None`: we send our handshake first).
pub(crate) async fn accept(shared: Arc<Shared>, stream: PeerStream, prefix: Option<[u8; 48]>) {
    // Strikes and bans are kept per address; a peer without one (WebRTC) has a key of
    // its own.
    let addr = stream.remote.key();
    // Banned addresses are refused before the handshake; limits (per address, and a full
    // torrent, which may evict an idle peer) are checked once the handshake is done.
    let refuse = {
        let s = lock(&shared);
        s.banned
            .contains(&ban_key(addr))
            .then_some(CloseReason::Banned("earlier hash failures"))
    };
    if let Some(reason) = refuse {
        tracing::debug!(peer = %addr, %reason, "incoming connection refused");
        return;
    }
    if !shared.shutdown.load(Ordering::SeqCst) {
        run_peer(shared, stream, addr, prefix).await;
    }
}

impl PeerSink for Shared {
    fn accept(
        self: Arc<Self>,
        stream: PeerStream,
        prefix: [u8; 48],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(accept(self, stream, Some(prefix)))
    }

    fn connect(
        self: Arc<Self>,
        stream: PeerStream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(accept(self, stream, None))
    }

    fn add_peers(&self, addrs: &[SocketAddr]) {
        add_peers(self, addrs, false);
    }

    fn is_private(&self) -> bool {
        self.meta.info.private
    }
}

/// Announce the torrent on the DHT and dial the peers found there: every few seconds at
/// first (while the routing table fills), then every 5 minutes while downloading and every
/// 15 once complete.
async fn dht_loop(shared: Arc<Shared>) {
    let mut wait = Duration::from_secs(5);
    while !shared.shutdown.load(Ordering::SeqCst) {
        let Some(mut found) = shared.ctx.dht_lookup(shared.info_hash, true) else {
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
    let ctx = &shared.ctx;
    let base = AnnounceRequest {
        info_hash: shared.info_hash,
        peer_id: ctx.peer_id,
        port: ctx.listen_addr.port(),
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: tracker::proto::AnnounceEvent::Started,
        numwant: Some(50),
        key: ctx.tracker_key,
    };
    let (progress_tx, progress_rx) = watch::channel(progress(shared));
    let (peers_tx, mut peers_rx) = mpsc::channel::<Vec<SocketAddr>>(16);
    let (status_tx, status_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_announcer(
        ctx.tracker_client.clone(),
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
        // Three counters read under the lock: no walk over the pieces.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while wait_active(&s).await {
            tick.tick().await;
            let p = progress(&s);
            if *tx.borrow() != p && tx.send(p).is_err() {
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

fn progress(shared: &Shared) -> Progress {
    let s = lock(shared);
    Progress {
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        // What we still want: a download of some files only is complete without the rest.
        left: if s.picker.is_done() {
            0
        } else {
            shared
                .meta
                .info
                .total_length
                .saturating_sub(s.picker.bytes_have())
        },
    }
}

/// The files' priorities from the config: `file_priorities`, with the files outside
/// `only` (when given) skipped. An index past the torrent's files is an error.
fn file_priorities(info: &metainfo::Info, config: &TorrentConfig) -> Result<Vec<u8>, EngineError> {
    use crate::picker::{PRIORITY_NORMAL, PRIORITY_SKIP};
    let n = info.files.len();
    if config.only.is_empty() {
        return Ok(config.file_priorities.clone());
    }
    if let Some(bad) = config
        .only
        .iter()
        .map(|r| *r.end())
        .find(|&e| e as usize >= n)
    {
        return Err(EngineError::BadSelection(format!(
            "file {bad} does not exist: the torrent has {n} files (0 to {})",
            n.saturating_sub(1)
        )));
    }
    Ok((0..n)
        .map(|i| {
            if config.only.iter().any(|r| r.contains(&(i as u32))) {
                config
                    .file_priorities
                    .get(i)
                    .copied()
                    .unwrap_or(PRIORITY_NORMAL)
                    .max(PRIORITY_NORMAL)
            } else {
                PRIORITY_SKIP
            }
        })
        .collect())
}

/// Each piece's priority: the highest of the files it holds bytes of (pad files aside);
/// files past the end of `files` are normal.
pub(crate) fn piece_priorities(info: &metainfo::Info, files: &[u8]) -> Vec<u8> {
    use crate::picker::{PRIORITY_NORMAL, PRIORITY_SKIP};
    let plen = info.piece_length.max(1);
    let count = info.pieces.len();
    let mut out = vec![PRIORITY_SKIP; count];
    for (i, f) in info.files.iter().enumerate() {
        if f.attr.pad || f.length == 0 {
            continue;
        }
        let prio = files.get(i).copied().unwrap_or(PRIORITY_NORMAL);
        let first = (f.offset / plen) as usize;
        let last = ((f.offset + f.length - 1) / plen) as usize;
        for p in out
            .iter_mut()
            .take(last.min(count.saturating_sub(1)) + 1)
            .skip(first)
        {
            *p = (*p).max(prio);
        }
    }
    out
}

/// The first and last pieces of every wanted file (not skipped, not padding) raised to
/// high priority.
pub(crate) fn raise_first_last(info: &metainfo::Info, files: &[u8], pieces: &mut [u8]) {
    use crate::picker::{PRIORITY_HIGH, PRIORITY_SKIP};
    let plen = info.piece_length.max(1);
    for (_, f) in info
        .files
        .iter()
        .enumerate()
        .filter(|(i, f)| !f.attr.pad && f.length > 0 && files.get(*i) != Some(&PRIORITY_SKIP))
    {
        let first = (f.offset / plen) as usize;
        let last = ((f.offset + f.length - 1) / plen) as usize;
        for p in [first, last] {
            if let Some(x) = pieces.get_mut(p)
                && *x != PRIORITY_SKIP
            {
                *x = PRIORITY_HIGH;
            }
        }
    }
}

pub(crate) fn add_peers(shared: &Shared, addrs: &[SocketAddr], pinned: bool) {
    let now = clock();
    let mut s = lock(shared);
    let mut added = false;
    for &addr in addrs {
        // An opaque peer's key (WebRTC) is not an address to dial.
        if !s.banned.contains(&ban_key(addr)) && !crate::transport::is_opaque_key(&addr) {
            added |= s.pool.add(addr, pinned, now);
        }
    }
    drop(s);
    if added {
        shared.dial_wake.notify_one();
    }
}

/// Dial the pool's addresses while there is room for more connections: at most
/// [`MAX_DIALS`] connecting at once and the settings' peers per torrent connected.
async fn dial_loop(shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let now = clock();
        let max_peers = shared.ctx.settings().max_peers_per_torrent;
        let (dials, next) = {
            let mut guard = lock(&shared);
            let s = &mut *guard;
            let room = max_peers
                .saturating_sub(s.peers.len() + s.dialing)
                .min(MAX_DIALS.saturating_sub(s.dialing));
            // An incoming peer is known by its listening address too (from its extended
            // handshake): no second connection to it.
            let connected: HashSet<SocketAddr> = s
                .peers
                .values()
                .flat_map(|p| [Some(p.addr), p.listen_addr])
                .flatten()
                .collect();
            let banned = &s.banned;
            let dials = s.pool.next_dials(now, room, |a| {
                connected.contains(a) || banned.contains(&ban_key(*a))
            });
            s.dialing += dials.len();
            (dials, s.pool.next_ready())
        };
        for addr in dials {
            spawn_in(&shared, dial(shared.clone(), addr));
        }
        // Sleep until an address is due, or until woken by new addresses or a connection
        // that ended. With nothing to dial, no timer at all.
        match next {
            Some(t) => {
                let wait = t
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(50));
                let _ = tokio::time::timeout(wait, shared.dial_wake.notified()).await;
            }
            None => shared.dial_wake.notified().await,
        }
    }
}

/// One outgoing connection, from connect to the end of the peer's session: over the
/// session's preferred transport, then the next one if the connection or its handshake
/// fails (as libtorrent falls back between uTP and TCP).
async fn dial(shared: Arc<Shared>, addr: SocketAddr) {
    let mut dialing = true;
    let mut connected = false;
    for connector in shared.ctx.dial_order(addr) {
        let ih = shared.info_hash;
        let stream =
            crate::encryption::connect(&shared.ctx, &connector, addr, ih, HANDSHAKE_TIMEOUT).await;
        match stream {
            Ok(stream) => {
                if std::mem::take(&mut dialing) {
                    lock(&shared).dialing -= 1;
                }
                if run_peer(shared.clone(), stream, addr, None).await {
                    connected = true;
                    break;
                }
            }
            Err(e) => {
                tracing::trace!(peer = %addr, transport = %connector.kind(), error = %e, "dial failed");
            }
        }
    }
    if dialing {
        lock(&shared).dialing -= 1;
    }
    let mut s = lock(&shared);
    // Both complete: nothing to trade (the peer dials us if it ever wants more).
    let done_with = s.picker.is_complete();
    s.pool.dial_ended(addr, connected, done_with, clock());
    drop(s);
    shared.dial_wake.notify_one();
}

/// Handshake, then run the connection. Returns whether the handshake worked.
async fn run_peer(
    shared: Arc<Shared>,
    stream: PeerStream,
    addr: SocketAddr,
    prefix: Option<[u8; 48]>,
) -> bool {
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&shared, stream, prefix))
        .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(peer = %addr, reason = %CloseReason::Handshake(e.to_string()), "connection ended");
            return false;
        }
        Err(_) => {
            tracing::debug!(peer = %addr, reason = %CloseReason::HandshakeTimeout, "connection ended");
            return false;
        }
    };
    register_and_run(shared, conn, addr, prefix.is_some()).await;
    true
}

/// Take a slot among the torrent's peers and the session's connections, run the
/// connection to its end, log why it ended, and give back what it held.
async fn register_and_run(shared: Arc<Shared>, conn: Conn, addr: SocketAddr, incoming: bool) {
    if let Some((id, rx)) = register(&shared, addr, conn.peer_id, incoming) {
        run_registered(shared, conn, addr, id, rx, incoming).await;
    }
}

/// Take a slot among the torrent's peers and the session's connections; `None` (logged)
/// when there is none or the address is banned.
fn register(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    peer_id: [u8; 20],
    incoming: bool,
) -> Option<(u64, mpsc::UnboundedReceiver<Cmd>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = shared.ctx.settings();
    let max = settings.max_peers_per_torrent;
    let now = clock();
    let mut s = lock(shared);
    let from_ip = if crate::settings::ip_limited(addr.ip()) {
        s.peers
            .values()
            .filter(|p| p.addr.ip() == addr.ip())
            .count()
    } else {
        0
    };
    // A second connection with a peer we are connected to (same peer id from the same
    // IP; an id seen from another IP is another peer, or someone copying it): both sides
    // keep the same one.
    let duplicate = s
        .peers
        .iter()
        .find(|(_, p)| p.peer_id == peer_id && p.addr.ip() == addr.ip())
        .map(|(&id, p)| (id, p.incoming));
    let mut replaces = None;
    if let Some((old, old_incoming)) = duplicate {
        if crate::peer::duplicate_keeps_new(&shared.ctx.peer_id, &peer_id, old_incoming, incoming) {
            replaces = Some(old);
        } else {
            tracing::debug!(peer = %addr, reason = %CloseReason::Duplicate, "connection ended");
            return None;
        }
    }
    let refuse = if s.banned.contains(&ban_key(addr)) {
        Some(CloseReason::Banned("earlier hash failures"))
    } else if from_ip >= settings.max_peers_per_ip {
        Some(CloseReason::TooManyFromIp(settings.max_peers_per_ip))
    } else if s.peers.len() >= max && !evict_least_useful(&mut s, now) {
        Some(CloseReason::Full(max))
    } else if !shared.ctx.take_connection_slot() {
        Some(CloseReason::Full(settings.max_connections))
    } else {
        None
    };
    if let Some(reason) = refuse {
        tracing::debug!(peer = %addr, %reason, "connection ended");
        return None;
    }
    if let Some(old) = replaces.and_then(|old| s.peers.get(&old)) {
        let _ = old.tx.send(Cmd::Close);
    }
    {
        let id = s.next_peer;
        s.next_peer += 1;
        s.peers.insert(
            id,
            PeerEntry {
                tx,
                addr,
                peer_id,
                incoming,
                haves: Vec::new(),
                haves_signalled: false,
                listen_addr: (!incoming).then_some(addr),
                downloaded: 0,
                uploaded: 0,
                round_downloaded: 0,
                round_uploaded: 0,
                interested: false,
                unchoked: false,
                snubbed: false,
                pieces: 0,
                client: None,
                stalled: false,
                connected_at: now,
                transport: crate::transport::TransportKind::Tcp,
                encrypted: false,
                download_rate: crate::peer_timers::RateEstimate::new(now),
                upload_rate: crate::peer_timers::RateEstimate::new(now),
                pex_flags: wire::PexFlags(0),
            },
        );
        drop(s);
        shared.activity.notify_waiters();
        Some((id, rx))
    }
}

/// Run a registered connection to its end, log why it ended, and give back what it held.
async fn run_registered(
    shared: Arc<Shared>,
    mut conn: Conn,
    addr: SocketAddr,
    id: u64,
    rx: mpsc::UnboundedReceiver<Cmd>,
    incoming: bool,
) {
    if let Some(p) = lock(&shared).peers.get_mut(&id) {
        p.transport = conn.kind;
        p.encrypted = conn.encrypted;
        p.pex_flags = conn.pex_flags;
    }
    let span =
        tracing::debug_span!(parent: &shared.span, "peer", peer = %addr, transport = %conn.kind);
    let reason = {
        let _entered = span.enter();
        tracing::debug!(incoming, "connected");
        drop(_entered);
        tracing::Instrument::instrument(conn.run(&shared, id, addr, rx), span.clone()).await
    };
    tracing::debug!(parent: &span, %reason, "connection ended");
    shared.ctx.release_connection_slot();
    let mut s = lock(&shared);
    let was_unchoked = s.peers.remove(&id).is_some_and(|p| p.unchoked);
    if was_unchoked {
        // Its upload slot goes at once to a peer waiting for one (the next choker
        // round may be ten seconds away).
        offer_free_slot(&mut s);
    }
    s.picker.peer_gone(conn.state.peer_pieces());
    for r in conn.state.our_requests() {
        s.picker.request_dropped(&block_of(r));
    }
    // With nobody left to serve or download from, the memory kept for them goes: a daemon
    // with many torrents holds piece buffers only for those with peers. The blocks of
    // pieces in progress stay, in memory of their own rather than holding the receive
    // buffers they came in.
    let last = s.peers.is_empty();
    if last {
        for buf in s.buffers.values_mut() {
            for block in buf.blocks.iter_mut().flatten() {
                block.unpin();
            }
        }
    }
    drop(s);
    if last {
        shared
            .read_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        shared.read_spare.clear();
        shared.recv_pool.clear();
    }
    shared.dial_wake.notify_one();
}

/// What the choker knows of each peer. A peer that does not read what it asked for
/// (`stalled`) counts as not interested: it gets no slot until it reads again.
fn choker_samples(s: &State) -> Vec<PeerSample<u64>> {
    s.peers
        .iter()
        .map(|(&key, p)| PeerSample {
            key,
            interested: p.interested && !p.stalled,
            downloaded: p.downloaded - p.round_downloaded,
            uploaded: p.uploaded - p.round_uploaded,
            snubbed: p.snubbed,
        })
        .collect()
}

/// A regular upload slot is free (a peer left, or one became interested): the choker
/// says who gets it. The only other place that unchokes is the choker's round.
fn offer_free_slot(s: &mut State) {
    let samples = choker_samples(s);
    let unchoked: Vec<u64> = s
        .peers
        .iter()
        .filter(|(_, p)| p.unchoked)
        .map(|(k, _)| *k)
        .collect();
    if let Some(key) = s.choker.free_slot(&samples, &unchoked)
        && let Some(p) = s.peers.get_mut(&key)
    {
        p.unchoked = true;
        let _ = p.tx.send(Cmd::Unchoke);
    }
}

struct Conn {
    /// The peer's id, from its handshake.
    peer_id: [u8; 20],
    kind: crate::transport::TransportKind,
    encrypted: bool,
    /// What PEX says about this peer (uTP, encrypted), from its stream.
    pex_flags: wire::PexFlags,
    /// What we told this peer through PEX (BEP 11), and when.
    pex: wire::PexState,
    /// Pieces being read from disk to serve this peer's requests.
    reading: FxHashSet<u32>,
    read: BoxRead,
    out: mpsc::Sender<(Bytes, Option<u32>)>,
    /// What the writer still has to write (see [`Outbox`]), and its signal that it wrote.
    outbox: Arc<Mutex<Outbox>>,
    drained: Arc<Notify>,
    /// Since when a block could not be queued because the outbox was full.
    full_since: Option<Instant>,
    state: PeerState,
    decoder: Decoder,
    buf: BytesMut,
    /// The size of `buf`'s allocation if the torrent's [`RecvPool`] made it, else 0.
    buf_size: usize,
    /// Which allocation of `buf` the blocks decoded from it lie in.
    pins: RecvPins,
    timers: PeerTimers,
    down: Limits,
    /// Messages from before the metadata arrived, to apply first (see [`Handoff`]).
    replay: Vec<wire::Message>,
}

/// The extended handshake (BEP 10) we send for this torrent.
fn our_extended_handshake(shared: &Shared, reqq: usize) -> wire::ExtendedHandshake {
    let mut m = std::collections::BTreeMap::new();
    m.insert("ut_metadata".to_string(), UT_METADATA_ID);
    if !shared.is_private() {
        // BEP 27: no peer exchange for private torrents.
        m.insert("ut_pex".to_string(), UT_PEX_ID);
    }
    wire::ExtendedHandshake {
        m,
        v: Some(CLIENT_NAME.into()),
        reqq: Some(reqq as u32),
        p: Some(shared.ctx.listen_addr.port()),
        metadata_size: Some(shared.meta.info_bytes.len() as u64),
        ..Default::default()
    }
}

/// BEP 3 handshake. On an incoming connection the router has already read the first 48
/// bytes (`prefix`) to find the torrent; we answer after reading the peer id.
async fn handshake(
    shared: &Arc<Shared>,
    mut stream: PeerStream,
    prefix: Option<[u8; 48]>,
) -> std::io::Result<Conn> {
    let mut ours = Handshake::new(shared.info_hash, shared.ctx.peer_id);
    ours.set_extension_protocol(true).set_fast_extension(true);
    let hs = exchange_handshakes(&mut stream, &ours, prefix).await?;
    let mut config = PeerConfig::negotiated(&ours, &hs);
    config.max_peer_requests = shared.ctx.settings().max_peer_requests;
    let mut state = PeerState::new(config, shared.geometry);
    if config.extension_protocol {
        state.send_extended_handshake(&our_extended_handshake(shared, config.max_peer_requests));
    }
    state.send_pieces(lock(shared).picker.have());
    let decoder = Decoder::new(DecoderConfig::for_piece_count(
        shared.geometry.piece_count(),
    ));
    Ok(new_conn(
        shared,
        stream,
        hs.peer_id,
        state,
        decoder,
        BytesMut::with_capacity(64 * 1024),
    ))
}

/// The connection of a metadata fetch, carrying on for the torrent: the peer's messages
/// from before the metadata are replayed into a fresh [`PeerState`], and we send our full
/// extended handshake (BEP 10 allows a second one) and what we have.
fn adopt_conn(shared: &Arc<Shared>, h: Handoff) -> Conn {
    let mut config = PeerConfig::negotiated(&h.ours, &h.theirs);
    config.max_peer_requests = shared.ctx.settings().max_peer_requests;
    let mut state = PeerState::new(config, shared.geometry);
    if config.extension_protocol {
        state.send_extended_handshake(&our_extended_handshake(shared, config.max_peer_requests));
    }
    let have = lock(shared).picker.have().clone();
    if h.sent_availability {
        for p in have.iter_ones() {
            state.send_have(p);
        }
    } else {
        state.send_pieces(&have);
    }
    let mut decoder = h.decoder;
    decoder.set_config(DecoderConfig::for_piece_count(
        shared.geometry.piece_count(),
    ));
    let mut conn = new_conn(shared, h.stream, h.theirs.peer_id, state, decoder, h.buf);
    conn.replay = h.replay;
    conn
}

/// The BEP 11 flags of a peer connected over `kind`: 0x04 (uTP) for a uTP connection,
/// 0x01 (encryption) for an encrypted one.
fn pex_flags_of(kind: crate::transport::TransportKind, encrypted: bool) -> wire::PexFlags {
    let mut f = 0;
    if kind == crate::transport::TransportKind::Utp {
        f |= wire::PexFlags::UTP.bits();
    }
    if encrypted {
        f |= wire::PexFlags::PREFERS_ENCRYPTION.bits();
    }
    wire::PexFlags(f)
}

fn new_conn(
    shared: &Arc<Shared>,
    stream: PeerStream,
    peer_id: [u8; 20],
    state: PeerState,
    decoder: Decoder,
    buf: BytesMut,
) -> Conn {
    let PeerStream {
        kind,
        encrypted,
        read,
        mut write,
        ..
    } = stream;
    let pex_flags = pex_flags_of(kind, encrypted);
    let (out, mut rx) = mpsc::channel::<(Bytes, Option<u32>)>(512);
    let up = Limits {
        torrent: shared.upload.clone(),
        session: shared.ctx.upload.clone(),
    };
    let outbox = Arc::new(Mutex::new(Outbox::default()));
    let drained = Arc::new(Notify::new());
    let (ob, dr) = (outbox.clone(), drained.clone());
    tokio::spawn(async move {
        // Whatever is queued goes out in one vectored write: block payloads are slices of
        // the piece read from disk and are never copied into a send buffer. Upload limits
        // are paid here, where the bytes leave.
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut blocks: Vec<(u32, usize)> = Vec::with_capacity(WRITE_BATCH);
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some((b, piece)) = next.take() {
                if let Some(p) = piece {
                    blocks.push((p, b.len()));
                }
                batch.push(b);
                if batch.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let bytes: usize = batch.iter().map(|b| b.len()).sum();
            if write_all_vectored(&mut write, &mut batch).await.is_err() {
                break;
            }
            {
                let mut o = ob.lock().unwrap_or_else(|e| e.into_inner());
                for (p, len) in blocks.drain(..) {
                    o.written(p, len);
                }
            }
            dr.notify_one();
            let wait = up.pay(bytes);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let _ = write.shutdown().await;
    });
    Conn {
        peer_id,
        kind,
        encrypted,
        pex_flags,
        pex: wire::PexState::new(),
        reading: FxHashSet::default(),
        read,
        out,
        outbox,
        drained,
        full_since: None,
        state,
        decoder,
        buf,
        buf_size: 0,
        pins: RecvPins::new(shared.pins.clone()),
        timers: PeerTimers::new(TimerConfig::default(), clock()),
        down: Limits {
            torrent: shared.download.clone(),
            session: shared.ctx.download.clone(),
        },
        replay: Vec::new(),
    }
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
    /// Feed one message from the peer to the protocol state and act on its events.
    fn on_message(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        msg: wire::Message,
        disk_tx: &mpsc::UnboundedSender<(u32, Result<Bytes, String>)>,
    ) -> Result<(), CloseReason> {
        self.state.handle_message(msg)?;
        let now = clock();
        while let Some(ev) = self.state.poll_event() {
            let is_block = matches!(ev, Event::Block { .. });
            let bytes = self.handle_event(shared, id, addr, ev, disk_tx)?;
            if is_block {
                let outstanding = self.state.our_requests().len() > 0;
                self.timers.on_block(bytes, outstanding, now);
            }
        }
        Ok(())
    }

    async fn run(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) -> CloseReason {
        match self.run_inner(shared, id, addr, &mut cmds).await {
            Ok(()) => CloseReason::Stopped,
            Err(e) => e,
        }
    }

    async fn run_inner(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Result<(), CloseReason> {
        let (disk_tx, mut disk_rx) = mpsc::unbounded_channel::<(u32, Result<Bytes, String>)>();
        // What the peer said while we fetched the metadata, now that it means something.
        for msg in std::mem::take(&mut self.replay) {
            self.on_message(shared, id, addr, msg, &disk_tx)?;
        }
        // Requests waiting for the read budget are retried this often.
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Reading pauses while the download rate limit is in debt.
        let mut read_resume = tokio::time::Instant::now();
        self.update_interest(shared);
        self.flush().await?;
        // When the HAVEs queued and not yet sent go out at the latest.
        let mut have_due: Option<tokio::time::Instant> = None;
        loop {
            let deadline = tokio::time::Instant::from_std(self.timers.poll_timeout());
            let now_t = tokio::time::Instant::now();
            let may_read = now_t >= read_resume;
            // Only HAVEs to send after this wakeup: they may wait for `have_due`.
            let mut only_haves = false;
            tokio::select! {
                n = self.read.read_buf(&mut self.buf), if may_read => {
                    let n = n?;
                    if n == 0 {
                        return Err(CloseReason::PeerClosed);
                    }
                    let now = clock();
                    self.timers.on_recv(now);
                    self.pins.track(&self.buf);
                    while let Some(msg) = self.decoder.decode(&mut self.buf)? {
                        self.on_message(shared, id, addr, msg, &disk_tx)?;
                    }
                    shared.recv_pool.make_room(&mut self.buf, &mut self.buf_size);
                    let wait = self.down.pay(n);
                    if !wait.is_zero() {
                        read_resume = tokio::time::Instant::now() + wait;
                    }
                }
                _ = tokio::time::sleep_until(read_resume), if !may_read => {}
                Some(cmd) = cmds.recv() => match cmd {
                    Cmd::Haves => {
                        // Queued at the next flush, with the pieces verified until then.
                        only_haves = true;
                        have_due.get_or_insert(now_t + HAVE_DELAY);
                    }
                    Cmd::Reconsider => self.update_interest(shared),
                    Cmd::Cancel(b) => {
                        self.state.cancel(request_of(&b));
                    }
                    Cmd::Choke => {
                        self.state.choke();
                    }
                    Cmd::Unchoke => {
                        self.state.unchoke();
                    }
                    Cmd::Close => return Err(CloseReason::Stopped),
                },
                Some((piece, data)) = disk_rx.recv() => {
                    self.reading.remove(&piece);
                    let data = data.map_err(CloseReason::Disk)?;
                    cache_piece(shared, piece, data.clone());
                    let queued: Vec<BlockRequest> =
                        self.state.peer_requests().filter(|r| r.piece == piece).copied().collect();
                    for req in queued {
                        self.serve(shared, id, req, &data);
                    }
                    self.serve_cached(shared, id);
                    self.start_reads(shared, &disk_tx);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    for action in self.timers.handle_timeout(clock()) {
                        match action {
                            TimerAction::Idle => {
                                return Err(CloseReason::Idle(
                                    TimerConfig::default().idle_timeout.as_secs(),
                                ));
                            }
                            TimerAction::SendKeepAlive => self.state.send_keep_alive(),
                            TimerAction::Snubbed => self.snubbed(shared, id),
                        }
                    }
                }
                _ = self.drained.notified(), if self.full_since.is_some() => {
                    // The writer made room: serve what waited for it.
                    self.full_since = None;
                    self.serve_cached(shared, id);
                    self.start_reads(shared, &disk_tx);
                    self.check_stalled(shared, id);
                }
                _ = tokio::time::sleep_until(have_due.unwrap_or(now_t)), if have_due.is_some() => {}
                _ = retry.tick() => {
                    // Requests left waiting when the read budget was spent.
                    self.serve_cached(shared, id);
                    self.start_reads(shared, &disk_tx);
                    self.send_pex(shared, id);
                    self.check_stalled(shared, id);
                }
            }
            if only_haves && have_due.is_some_and(|t| tokio::time::Instant::now() < t) {
                // The HAVEs wait; requests held back while hashing lagged (see
                // VERIFY_BUDGET) do not: a piece was just stored.
                let before = self.state.our_requests().len();
                self.fill_requests(shared);
                if self.state.our_requests().len() > before {
                    self.flush().await?;
                }
                continue;
            }
            if have_due.take().is_some() {
                self.take_haves(shared, id);
            }
            self.fill_requests(shared);
            self.flush().await?;
        }
    }

    /// A peer that has not read what it asked for in [`STALLED_AFTER`] loses its upload
    /// slot (its queued requests are dropped with the choke) to a peer that reads; it may
    /// earn one again once it has read its outbox empty.
    fn check_stalled(&mut self, shared: &Shared, id: u64) {
        let now = clock();
        let empty = self
            .outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let mut s = lock(shared);
        if empty {
            if let Some(p) = s.peers.get_mut(&id) {
                p.stalled = false;
            }
            return;
        }
        let stalled = self
            .full_since
            .is_some_and(|t| now.duration_since(t) >= STALLED_AFTER);
        if !stalled {
            return;
        }
        let Some(p) = s.peers.get_mut(&id) else {
            return;
        };
        if p.stalled {
            return;
        }
        p.stalled = true;
        let had_slot = p.unchoked;
        p.unchoked = false;
        tracing::debug!("the peer does not read what it asked for: choked");
        self.state.choke();
        if had_slot {
            offer_free_slot(&mut s);
        }
    }

    /// No block for the request timeout: give this peer's requests to other peers, and
    /// let the choker know it is snubbing us.
    fn snubbed(&mut self, shared: &Shared, id: u64) {
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
        drop(s);
        self.timers.on_requests(false, clock());
    }

    /// Handle one event from the peer state machine; returns the bytes of new block data.
    fn handle_event(
        &mut self,
        shared: &Arc<Shared>,
        id: u64,
        addr: SocketAddr,
        ev: Event,
        disk_tx: &mpsc::UnboundedSender<(u32, Result<Bytes, String>)>,
    ) -> Result<u64, CloseReason> {
        match ev {
            Event::Have(p) => {
                let mut s = lock(shared);
                s.picker.peer_has(p);
                if let Some(e) = s.peers.get_mut(&id) {
                    e.pieces += 1;
                }
                // One new piece can only make us interested, and only in that piece: no
                // walk over the peer's pieces per have (a swarm sends thousands).
                let wants = !self.state.am_interested() && s.picker.wants_piece(p);
                drop(s);
                if wants {
                    self.state.set_interested(true);
                }
            }
            Event::Bitfield => {
                let mut s = lock(shared);
                for p in self.state.peer_pieces().iter_ones() {
                    s.picker.peer_has(p);
                }
                let count = self.state.peer_pieces().count_ones();
                if let Some(e) = s.peers.get_mut(&id) {
                    e.pieces = count;
                }
                drop(s);
                self.update_interest(shared);
            }
            Event::HaveAll => {
                let mut s = lock(shared);
                s.picker.peer_has_all();
                let count = s.picker.piece_count();
                if let Some(e) = s.peers.get_mut(&id) {
                    e.pieces = count;
                }
                drop(s);
                self.update_interest(shared);
            }
            Event::Interested | Event::NotInterested => {
                let interested = matches!(ev, Event::Interested);
                let mut s = lock(shared);
                if let Some(p) = s.peers.get_mut(&id) {
                    p.interested = interested;
                }
                if interested {
                    // A free regular slot is given at once rather than at the next round
                    // (the unchoke comes back to us as a command).
                    offer_free_slot(&mut s);
                }
            }
            Event::Request(req) => {
                let have = lock(shared).picker.have().get(req.piece);
                if !have {
                    self.state.reject_request(req);
                } else if let Some(data) = cached_piece(shared, req.piece) {
                    self.serve(shared, id, req, &data);
                } else if !self.reading.contains(&req.piece) {
                    // Queued in the peer state until its piece is read. (A request for a
                    // piece already being read waits for that read: no scan of the queue
                    // per request.)
                    self.start_reads(shared, disk_tx);
                }
            }
            Event::Block { request, data } => {
                let kept = self.pins.keep(&data);
                return Ok(on_block(shared, id, addr, &request, kept));
            }
            Event::UnsolicitedBlock { .. } => {
                let mut s = lock(shared);
                let strikes = s.strikes.entry(ban_key(addr)).or_insert(0);
                *strikes += 1;
                if *strikes > 20 {
                    return Err(CloseReason::Protocol(
                        "too many blocks nobody asked for".into(),
                    ));
                }
            }
            Event::RequestFailed { request, .. } => {
                lock(shared).picker.request_dropped(&block_of(&request));
            }
            Event::ExtendedHandshake(hs) => {
                let mut s = lock(shared);
                if let Some(p) = s.peers.get_mut(&id) {
                    if let Some(port) = hs.p.filter(|&p| p != 0)
                        && p.listen_addr.is_none()
                        && !crate::transport::is_opaque_key(&addr)
                    {
                        p.listen_addr = Some(SocketAddr::new(addr.ip(), port));
                    }
                    if let Some(v) = &hs.v {
                        p.client = Some(v.chars().take(64).collect());
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
        // One look at the cache (a few pieces), not one per queued request.
        let cached: Vec<(u32, Bytes)> = shared
            .read_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        if cached.is_empty() {
            return;
        }
        let queued: Vec<(BlockRequest, Bytes)> = self
            .state
            .peer_requests()
            .filter_map(|r| {
                cached
                    .iter()
                    .find(|(p, _)| *p == r.piece)
                    .map(|(_, d)| (*r, d.clone()))
            })
            .collect();
        for (req, data) in queued {
            self.serve(shared, id, req, &data);
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
        if self.reading.len() >= max_reads || self.full_since.is_some() {
            return; // more when a read ends, or when the peer has read what it has
        }
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
            let pool = shared.read_spare.clone();
            let budget = shared.read_bytes.clone();
            tokio::task::spawn_blocking(move || {
                let mut buf = pool.take(size);
                let r = storage
                    .read(piece, 0, &mut buf)
                    .map(|()| pool.bytes(buf))
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
        {
            let mut o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            let len = req.length as usize;
            if !o.may_queue(
                req.piece,
                piece.len(),
                len,
                OUTBOX_BYTES,
                OUTBOX_PINNED_BYTES,
            ) {
                // Served once the writer has written some: the request stays queued.
                self.full_since.get_or_insert_with(clock);
                return;
            }
            if !self.state.send_piece(req, piece.slice(begin..end)) {
                return; // no longer queued (cancelled)
            }
            o.queued(req.piece, piece.len(), len);
        }
        {
            let len = u64::from(req.length);
            let now = clock();
            let mut s = lock(shared);
            s.uploaded += len;
            s.upload_rate.add(len, now);
            if let Some(p) = s.peers.get_mut(&id) {
                p.uploaded += len;
                p.upload_rate.add(len, now);
            }
        }
    }

    /// BEP 9: answer a request for a piece of our info dictionary.
    fn serve_metadata(&mut self, shared: &Shared, payload: &Bytes) -> Result<(), CloseReason> {
        use wire::metadata::{MetadataError, MetadataMessage, metadata_piece};
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            Err(MetadataError::UnknownMessageType(_)) => return Ok(()), // BEP 9: ignore
            Err(e) => return Err(CloseReason::Protocol(e.to_string())),
        };
        let MetadataMessage::Request { piece } = msg else {
            return Ok(()); // data or reject we never asked for: ignore
        };
        let Some(their) = self
            .state
            .peer_extensions()
            .and_then(|e| e.extension_id("ut_metadata"))
        else {
            return Err(CloseReason::Protocol(
                "metadata request without ut_metadata in its handshake".into(),
            ));
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
        if shared.is_private() || self.pex.next_send_at().is_some_and(|t| clock() < t) {
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
            .filter_map(|(_, p)| p.listen_addr.map(|a| (a, p.pex_flags)))
            .collect();
        if let Some(msg) = self.pex.poll_message(clock(), &current) {
            self.state.send_extended(their, Bytes::from(msg.encode()));
        }
    }

    /// BEP 11: peers the peer met; dial them too (never for private torrents).
    fn receive_pex(&mut self, shared: &Shared, payload: &[u8]) {
        if shared.is_private() || !self.pex.accept_incoming(clock()) {
            return;
        }
        if let Ok(msg) = wire::PexMessage::decode(payload) {
            for (a, f) in &msg.added {
                if f.contains(wire::PexFlags::UTP) {
                    shared.ctx.hint_utp(*a);
                }
            }
            let addrs: Vec<SocketAddr> = msg.added.iter().map(|(a, _)| *a).collect();
            add_peers(shared, &addrs, false);
        }
    }

    /// Queue HAVEs for the pieces verified since the last time, and see whether we still
    /// want anything from the peer.
    fn take_haves(&mut self, shared: &Shared, id: u64) {
        let haves = {
            let mut s = lock(shared);
            let Some(p) = s.peers.get_mut(&id) else {
                return;
            };
            p.haves_signalled = false;
            std::mem::take(&mut p.haves)
        };
        for piece in haves {
            self.state.send_have(piece);
        }
        self.update_interest(shared);
    }

    fn update_interest(&mut self, shared: &Shared) {
        let wants = lock(shared).picker.wants_from(self.state.peer_pieces());
        if wants != self.state.am_interested() {
            self.state.set_interested(wants);
        }
    }

    /// Keep about one second of transfer (at the peer's measured rate) requested, at least
    /// 16 blocks, at most what the peer accepts.
    fn fill_requests(&mut self, shared: &Shared) {
        if self.state.peer_choking() || !self.state.am_interested() {
            return;
        }
        let now = clock();
        let target = pipeline_target(
            self.timers.rate(now),
            BLOCK_SIZE,
            self.state.peer_extensions().and_then(|e| e.reqq),
            shared.ctx.settings().max_our_requests,
        );
        let outstanding = self.state.our_requests().len();
        // Refill in batches (below three quarters of the target), not after every block.
        if outstanding >= target - target / 4 {
            return;
        }
        let state = &self.state;
        let mine = |b: &Block| state.has_requested(&request_of(b));
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
        drop(s);
        self.timers
            .on_requests(self.state.our_requests().len() > 0, now);
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        let mut out = BytesMut::new();
        let mut sent = false;
        while let Some(msg) = self.state.poll_message() {
            if let wire::Message::Piece { piece, begin, data } = msg {
                // The header joins the small messages before it; the block goes as it is.
                wire::encode_piece_header(&mut out, piece, begin, data.len());
                self.send(out.split().freeze(), None).await?;
                self.send(data, Some(piece)).await?;
                sent = true;
                continue;
            }
            msg.encode(&mut out);
            if out.len() >= 256 * 1024 {
                self.send(out.split().freeze(), None).await?;
            }
        }
        if !out.is_empty() {
            self.send(out.freeze(), None).await?;
            sent = true;
        }
        if sent {
            self.timers.on_sent(clock());
        }
        Ok(())
    }

    async fn send(&self, b: Bytes, piece: Option<u32>) -> Result<(), CloseReason> {
        self.out.send((b, piece)).await.map_err(|_| {
            CloseReason::Io(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the writer stopped",
            ))
        })
    }
}

/// A block arrived: copy it into its piece buffer; when the piece is whole, hash and store
/// it on the blocking pool. Returns the bytes of new data.
fn on_block(
    shared: &Arc<Shared>,
    id: u64,
    addr: SocketAddr,
    request: &BlockRequest,
    data: KeptBlock,
) -> u64 {
    let block = block_of(request);
    let mut s = lock(shared);
    if shared.shutdown.load(Ordering::SeqCst) {
        return 0; // stopped: nothing more goes to the verifiers
    }
    let len = data.data.len();
    if let Some(p) = s.peers.get_mut(&id) {
        p.snubbed = false;
        p.downloaded += len as u64;
        p.download_rate.add(len as u64, clock());
    }
    match s.picker.block_received(&block) {
        Received::Duplicate => 0,
        outcome => {
            let size = s.picker.piece_size(block.piece) as usize;
            let buf = s
                .buffers
                .entry(block.piece)
                .or_insert_with(|| PieceBuf::new(size));
            let index = block.begin as usize / BLOCK_SIZE as usize;
            let (Some(slot), Some(sender)) =
                (buf.blocks.get_mut(index), buf.senders.get_mut(index))
            else {
                return 0; // not reached: the picker knows the piece's blocks
            };
            let old = slot.replace(data);
            *sender = Some(ban_key(addr));
            buf.bytes = buf.bytes + len - old.map_or(0, |b| b.data.len());
            s.downloaded += len as u64;
            s.download_rate.add(len as u64, clock());
            if s.picker.has_endgame_copies() {
                for p in s.peers.values() {
                    let _ = p.tx.send(Cmd::Cancel(block));
                }
            }
            if outcome == Received::PieceComplete
                && let Some(buf) = s.buffers.remove(&block.piece)
            {
                s.verifying_bytes += buf.bytes;
                s.verify_queue.push_back((block.piece, buf));
                if s.verifiers == 0 {
                    start_verifier(shared, &mut s);
                } else {
                    shared.verify_wake.notify_one();
                }
            }
            len as u64
        }
    }
}

fn start_verifier(shared: &Arc<Shared>, s: &mut State) {
    s.verifiers += 1;
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || verify_queued(&shared));
}

/// On the blocking pool: check the complete pieces waiting in the queue, several at once
/// (hashed together, see `piecehash`), and store each that is right, until the queue is
/// empty. Pieces wait for a running verifier rather than each taking a thread: when the
/// network outpaces hashing they gather, and hashing them together costs less CPU.
fn verify_queued(shared: &Arc<Shared>) {
    /// Counts the verifier out if it panics (a bug), so that the next complete piece
    /// starts another instead of waiting forever for this one.
    struct CountedOut<'a>(&'a Shared);
    impl Drop for CountedOut<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                count_out(self.0, &mut lock(self.0));
            }
        }
    }
    fn count_out(shared: &Shared, s: &mut State) {
        s.verifiers -= 1;
        if s.verifiers == 0 {
            shared.verifiers_done.notify_one();
        }
    }
    let _counted = CountedOut(shared);
    loop {
        let batch: Vec<(u32, PieceBuf)> = {
            let mut s = lock(shared);
            if s.verify_queue.is_empty() {
                count_out(shared, &mut s);
                return;
            }
            // A lone piece, more on their way and room for them in the budget: wait a
            // little for a second one (two hashed together cost 0.6 of two alone).
            let room = s.verifying_bytes + shared.geometry.piece_length() as usize <= VERIFY_BUDGET;
            if s.verify_queue.len() == 1 && !s.buffers.is_empty() && room {
                let until = Instant::now() + BATCH_WAIT;
                while s.verify_queue.len() == 1 && !shared.shutdown.load(Ordering::Relaxed) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = match shared.verify_wake.wait_timeout(s, left) {
                        Ok((s, _)) => s,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
            let n = s.verify_queue.len().min(piecehash::MAX_LANES);
            let batch = s.verify_queue.drain(..n).collect();
            if s.verify_queue.len() >= piecehash::MAX_LANES && s.verifiers < MAX_VERIFIERS {
                start_verifier(shared, &mut s);
            }
            batch
        };
        // Each piece as its blocks, where they lie: hashed together, then written.
        let parts: Vec<Vec<&[u8]>> = batch.iter().map(|(_, b)| b.parts()).collect();
        let verdicts = {
            let pieces: Vec<(u32, &[&[u8]])> = batch
                .iter()
                .zip(&parts)
                .map(|((i, _), p)| (*i, &p[..]))
                .collect();
            V1Verifier::new(&shared.meta.info.pieces).verify_many(&pieces)
        };
        for (((piece, buf), parts), verdict) in batch.iter().zip(&parts).zip(verdicts) {
            store_checked(shared, *piece, buf, parts, verdict);
        }
    }
}

/// A checked piece: store it if right. Then blame: the peers proven (now or by an earlier
/// failure of this piece) to have sent a wrong block are banned, nobody else. A piece that
/// cannot be written is not a peer's fault: it goes back to the picker and the error is
/// kept in `disk_error`.
///
/// `parts` are `buf`'s blocks ([`PieceBuf::parts`]); `buf`'s memory goes when the caller
/// drops it.
fn store_checked(
    shared: &Arc<Shared>,
    piece: u32,
    buf: &PieceBuf,
    parts: &[&[u8]],
    verdict: Verdict,
) {
    // Block digests only when blame needs them, and hashed outside the lock.
    let digests: Vec<BlockDigest> = if lock(shared).blame.needs_digests(piece, &verdict) {
        crate::blame::block_digests(parts.iter().copied())
    } else {
        Vec::new()
    };
    let written = verdict
        .passed()
        .then(|| shared.storage.write_piece_parts(piece, parts));
    let mut s = lock(shared);
    s.verifying_bytes = s.verifying_bytes.saturating_sub(buf.bytes);
    for liar in s
        .blame
        .piece_checked(piece, &verdict, &digests, &buf.senders)
    {
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
            // Each connection is woken once per batch of new pieces (see HAVE_DELAY).
            for p in s.peers.values_mut() {
                p.haves.push(piece);
                if !p.haves_signalled {
                    p.haves_signalled = true;
                    let _ = p.tx.send(Cmd::Haves);
                }
            }
            if s.picker.is_done() {
                drop(s);
                // Nothing more to download into.
                shared.recv_pool.clear();
                save_resume(shared);
                shared.complete.notify_waiters();
            }
        }
        Some(Err(e)) => {
            // Our disk's fault, not the peers': the torrent stops with the OS error (a
            // resumed run fetches the piece again).
            s.picker.piece_failed(piece);
            let msg = format!("cannot write to disk: {e}");
            s.disk_error = Some(msg.clone());
            drop(s);
            shared.fatal.send_if_modified(|f| {
                if f.is_none() {
                    *f = Some(msg);
                    true
                } else {
                    false
                }
            });
        }
        None => {
            s.picker.piece_failed(piece);
            s.hash_failures += 1;
        }
    }
}

/// One connected peer, as a display shows it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// Its client name, from its extended handshake.
    pub client: Option<String>,
    /// Payload bytes from and to it over the connection's life.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Pieces it has, of `piece_count`.
    pub pieces: u32,
    pub piece_count: u32,
    /// It is interested in us; we unchoke it; it is snubbed.
    pub interested: bool,
    pub unchoked: bool,
    pub snubbed: bool,
    /// Payload bytes per second from and to it, over the last seconds.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// What the connection runs over, and whether it is encrypted (MSE/PE, DTLS).
    pub transport: crate::transport::TransportKind,
    pub encrypted: bool,
}

impl Torrent {
    /// The peers connected now (at most `max`).
    pub fn peer_list(&self, max: usize) -> Vec<PeerInfo> {
        let mut s = lock(&self.shared);
        let piece_count = s.picker.piece_count();
        let now = clock();
        s.peers
            .values_mut()
            .take(max)
            .map(|p| PeerInfo {
                download_rate: p.download_rate.rate(now),
                upload_rate: p.upload_rate.rate(now),
                transport: p.transport,
                encrypted: p.encrypted,
                addr: p.addr,
                client: p.client.clone(),
                downloaded: p.downloaded,
                uploaded: p.uploaded,
                pieces: p.pieces,
                piece_count,
                interested: p.interested,
                unchoked: p.unchoked,
                snubbed: p.snubbed,
            })
            .collect()
    }
}

/// A reader's read-ahead window over a torrent (a stream of a file while it downloads):
/// the pieces it holds are picked before any other, like libtorrent's piece deadlines,
/// while the rest of the torrent keeps its normal order. Move it with
/// [`StreamWindow::set`] as the reader advances; dropping it gives the pieces back.
pub struct StreamWindow {
    shared: Arc<Shared>,
    pieces: std::ops::Range<u32>,
}

impl StreamWindow {
    /// Hold `pieces` (and nothing else) from now on.
    pub fn set(&mut self, pieces: std::ops::Range<u32>) {
        if pieces == self.pieces {
            return;
        }
        {
            let mut s = lock(&self.shared);
            s.picker.remove_urgent(self.pieces.clone());
            s.picker.add_urgent(pieces.clone());
            // Peers that have these pieces become interesting, and request them next.
            for p in s.peers.values() {
                let _ = p.tx.send(Cmd::Reconsider);
            }
        }
        self.pieces = pieces;
    }

    /// Whether this window is on `torrent` (a torrent restarted is a new one).
    pub fn is_on(&self, torrent: &Torrent) -> bool {
        Arc::ptr_eq(&self.shared, &torrent.shared)
    }
}

impl Drop for StreamWindow {
    fn drop(&mut self) {
        lock(&self.shared)
            .picker
            .remove_urgent(std::mem::replace(&mut self.pieces, 0..0));
    }
}

impl Torrent {
    /// A read-ahead window for one reader, empty until [`StreamWindow::set`].
    pub fn stream_window(&self) -> StreamWindow {
        StreamWindow {
            shared: self.shared.clone(),
            pieces: 0..0,
        }
    }

    /// Pieces some reader's window holds now.
    pub fn urgent_pieces(&self) -> usize {
        lock(&self.shared).picker.urgent_count()
    }

    /// How many connected peers have each piece.
    pub fn availability(&self) -> Vec<u32> {
        lock(&self.shared).picker.availability().to_vec()
    }
}

#[cfg(test)]
mod first_last_tests {
    use super::*;
    use crate::picker::{PRIORITY_HIGH as H, PRIORITY_NORMAL as N, PRIORITY_SKIP as S};

    /// Three files of 40000, 5000 and 30000 bytes in 16 KiB pieces: a is pieces 0-2, b
    /// piece 2, c pieces 2-4.
    fn info() -> metainfo::Info {
        let mut t = b"d4:infod5:filesl".to_vec();
        for (len, name) in [(40000, "a"), (5000, "b"), (30000, "c")] {
            t.extend(format!("d6:lengthi{len}e4:pathl1:{name}ee").as_bytes());
        }
        t.extend(b"e4:name1:x12:piece lengthi16384e6:pieces100:");
        t.extend([7u8; 100]);
        t.extend(b"ee");
        Metainfo::from_bytes(&t).unwrap().info
    }

    #[test]
    fn first_and_last_pieces_of_wanted_files_go_first() {
        let info = info();
        let mut p = piece_priorities(&info, &[]);
        assert_eq!(p, [N, N, N, N, N]);
        raise_first_last(&info, &[], &mut p);
        assert_eq!(p, [H, N, H, N, H]);
        let files = [N, S, S];
        let mut p = piece_priorities(&info, &files);
        assert_eq!(p, [N, N, N, S, S]);
        raise_first_last(&info, &files, &mut p);
        assert_eq!(p, [H, N, H, S, S]);
    }
}

#[cfg(test)]
mod pex_flag_tests {
    use crate::transport::TransportKind;

    #[test]
    fn pex_flags_follow_the_stream() {
        assert_eq!(super::pex_flags_of(TransportKind::Tcp, false).bits(), 0);
        assert_eq!(super::pex_flags_of(TransportKind::Utp, false).bits(), 0x04);
        assert_eq!(super::pex_flags_of(TransportKind::Tcp, true).bits(), 0x01);
        assert_eq!(super::pex_flags_of(TransportKind::Utp, true).bits(), 0x05);
    }
}
