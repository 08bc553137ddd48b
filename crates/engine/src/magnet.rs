//! From a magnet link to a torrent: find peers for the info-hash (the link's `x.pe` peers
//! and `tr` trackers, the DHT, `--peer`), and fetch the info dictionary from them with the
//! metadata extension (BEP 9 over BEP 10).
//!
//! Nothing a peer sends is trusted: the size it announces is bounded
//! ([`wire::metadata::MAX_METADATA_SIZE`]), every piece is checked for its index and exact
//! length, and the assembled dictionary is used only once its SHA-1 is the info-hash. When
//! it is not, the peers that sent pieces of it are banned and the fetch starts over.
//!
//! When the dictionary is verified, the live connections are not closed: each is handed
//! over ([`Handoff`]) with what the peer told us so far, and the torrent carries on with
//! it, so a magnet download needs no second connection to the peers that gave it the
//! metadata.

use crate::context::{NodeContext, PeerSink, own_addrs};
use crate::error::{CloseReason, EngineError};
use crate::peer::{
    CLIENT_NAME, Handoff, MAX_REPLAYED, UT_METADATA_ID, UT_PEX_ID, exchange_handshakes,
    kept_for_replay,
};
use crate::pool::PeerPool;
use crate::transport::PeerStream;
use bytes::{Bytes, BytesMut};
use metainfo::Metainfo;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tracker::client::run_announcer;
use tracker::proto::{AnnounceEvent, AnnounceRequest};
use wire::metadata::{MetadataAssembler, MetadataError, MetadataMessage, Progress};
use wire::{Decoder, DecoderConfig, ExtendedHandshake, Handshake, Message};

/// Peers asked for metadata at once.
const MAX_FETCH_PEERS: usize = 8;
/// Metadata requests outstanding to one peer.
const REQUESTS_PER_PEER: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that sends no extended handshake in this long is dropped.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// A metadata request unanswered for this long: the peer is silent, and dropped (its
/// pieces are asked of others long before, see `request_more`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Set when the fetch is abandoned: every connection closes.
    stop: watch::Sender<bool>,
    /// Set when the fetch ends either way: the announcer says `stopped`.
    announce_stop: watch::Sender<bool>,
    /// Where the connections go once the metadata is verified; `None`: they close.
    handoff: Mutex<Option<mpsc::UnboundedSender<Handoff>>>,
    ctx: Arc<NodeContext>,
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
    /// Start fetching. With `handoff`, the connections that are still open when the
    /// metadata is verified are sent there instead of being closed.
    pub(crate) fn start(
        ctx: &Arc<NodeContext>,
        info_hash: [u8; 20],
        sources: MetadataSources,
        handoff: Option<mpsc::UnboundedSender<Handoff>>,
    ) -> MetadataFetch {
        let (stop, stop_rx) = watch::channel(false);
        let (announce_stop, announce_stop_rx) = watch::channel(false);
        let fetch = Arc::new(Fetch {
            info_hash,
            stop,
            announce_stop,
            handoff: Mutex::new(handoff),
            ctx: ctx.clone(),
            state: Mutex::new(FetchState {
                pool: PeerPool::new(own_addrs(ctx.listen_addr)),
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
        ctx.register(info_hash, fetch.clone());
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
                peer_id: ctx.peer_id,
                port: ctx.listen_addr.port(),
                uploaded: 0,
                downloaded: 0,
                left: 1,
                event: AnnounceEvent::Started,
                numwant: Some(50),
                key: ctx.tracker_key,
            };
            tokio::spawn(run_announcer(
                ctx.tracker_client.clone(),
                sources.trackers,
                base,
                progress_rx,
                peers_tx,
                status_tx,
                announce_stop_rx,
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

    /// The metadata is here and in use: stop announcing and looking for peers; the
    /// connections go to the handoff (or close without one).
    pub fn finish(&self) {
        let _ = self.fetch.announce_stop.send(true);
        self.fetch.wake.notify_one();
        let sink: Arc<dyn PeerSink> = self.fetch.clone();
        self.fetch.ctx.unregister(&self.fetch.info_hash, &sink);
        // Connections still finishing keep their own sender; new ones get none.
        self.fetch
            .handoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Stop looking: close connections, tell trackers we stopped.
    pub fn stop(&self) {
        let _ = self.fetch.stop.send(true);
        self.finish();
    }
}

impl PeerSink for Fetch {
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
        Fetch::add_peers(self, addrs, false);
    }

    fn is_private(&self) -> bool {
        // Unknown until the metadata arrives; a magnet link's torrent may be private, but
        // LSD only sees it once it is a torrent.
        true
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
        let Some(mut found) = fetch.ctx.dht_lookup(fetch.info_hash, false) else {
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
    let mut dialing = true;
    let mut talked = false;
    for connector in fetch.ctx.dial_order(addr) {
        let ih = fetch.info_hash;
        let stream =
            crate::encryption::connect(&fetch.ctx, &connector, addr, ih, CONNECT_TIMEOUT).await;
        if let Ok(stream) = stream {
            if std::mem::take(&mut dialing) {
                lock(fetch).dialing -= 1;
            }
            if talk(fetch, stream, addr, None, stop.clone()).await {
                talked = true;
                break;
            }
        }
    }
    if dialing {
        lock(fetch).dialing -= 1;
    }
    talked
}

/// An incoming connection whose handshake named the info-hash being fetched (`prefix`,
/// read), or one made for it by another transport (`None`: we send our handshake first).
async fn accept(fetch: Arc<Fetch>, stream: PeerStream, prefix: Option<[u8; 48]>) {
    let addr = stream.remote.key();
    let stop = fetch.stop.subscribe();
    let busy = {
        let s = lock(&fetch);
        s.banned.contains(&addr) || s.connected.len() >= 2 * MAX_FETCH_PEERS
    };
    if !busy {
        talk(&fetch, stream, addr, prefix, stop).await;
    }
}

/// Handshake, then ask for metadata. Returns whether the handshake worked.
async fn talk(
    fetch: &Arc<Fetch>,
    mut stream: PeerStream,
    addr: SocketAddr,
    prefix: Option<[u8; 48]>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    // Taken now: a connection that hands over after the fetch finished still can.
    let handoff_tx = fetch
        .handoff
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (ours, theirs) = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        handshake(fetch, &mut stream, prefix),
    )
    .await
    {
        Ok(Ok(hs)) => hs,
        Ok(Err(e)) => {
            tracing::debug!(peer = %addr, reason = %CloseReason::Handshake(e.to_string()), "metadata connection ended");
            return false;
        }
        Err(_) => {
            tracing::debug!(peer = %addr, reason = %CloseReason::HandshakeTimeout, "metadata connection ended");
            return false;
        }
    };
    let key = {
        let mut s = lock(fetch);
        s.connected.insert(addr);
        s.next_key += 1;
        let key = s.next_key;
        s.keys.insert(key, addr);
        key
    };
    // With the fast extension on both sides BEP 6 wants our availability first: we have
    // nothing yet.
    let fast = ours.supports_fast_extension() && theirs.supports_fast_extension();
    let mut peer = MetadataPeer {
        key,
        addr,
        incoming: prefix.is_some(),
        stream,
        decoder: Decoder::new(DecoderConfig::default()),
        buf: BytesMut::with_capacity(64 * 1024),
        replay: Vec::new(),
        their_id: None,
        in_flight: Vec::new(),
        pending_out: BytesMut::new(),
    };
    let result = tokio::select! {
        r = peer.run(fetch, fast) => r,
        _ = stop.wait_for(|s| *s) => Err(CloseReason::Stopped),
    };
    // Whatever it still owed us goes to other peers.
    let mut s = lock(fetch);
    s.connected.remove(&addr);
    if s.owner == Some(key) {
        s.owner = None;
    }
    if let Some(a) = s.assembler.as_mut() {
        for (p, _) in peer.in_flight.drain(..) {
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
    match (result, handoff_tx) {
        (Ok(()), Some(tx)) => {
            let handoff = Handoff {
                stream: peer.stream,
                decoder: peer.decoder,
                buf: peer.buf,
                ours,
                theirs,
                replay: peer.replay,
                sent_availability: fast,
                incoming: prefix.is_some(),
            };
            if let Err(e) = tx.send(handoff) {
                tracing::debug!(peer = %addr, "metadata connection closed: nobody took it over");
                drop(e);
            } else {
                tracing::debug!(peer = %addr, reason = %CloseReason::HandedOver, "metadata connection ended");
            }
        }
        (Ok(()), None) => {
            tracing::debug!(peer = %addr, reason = %CloseReason::Stopped, "metadata connection ended");
        }
        (Err(reason), _) => {
            tracing::debug!(peer = %addr, %reason, "metadata connection ended");
        }
    }
    true
}

/// BEP 3 handshake with the extension bit (and the fast extension, so the connection can
/// carry on for the torrent), then our BEP 10 handshake. On an incoming connection the
/// router has read the first 48 bytes (`prefix`). Returns both BEP 3 handshakes.
async fn handshake(
    fetch: &Fetch,
    stream: &mut PeerStream,
    prefix: Option<[u8; 48]>,
) -> std::io::Result<(Handshake, Handshake)> {
    let mut ours = Handshake::new(fetch.info_hash, fetch.ctx.peer_id);
    ours.set_extension_protocol(true).set_fast_extension(true);
    let hs = exchange_handshakes(stream, &ours, prefix).await?;
    if !hs.supports_extension_protocol() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the peer has no extension protocol, so no metadata",
        ));
    }
    // Everything the torrent will speak on this connection once it carries on: peers
    // like libtorrent drop an extension for good when the first handshake lacks it (a
    // PEX message after that is an invalid message to them). Whether the torrent is
    // private (then it sends no PEX) is known only once the metadata is here.
    let ext = ExtendedHandshake {
        m: [
            ("ut_metadata".to_string(), UT_METADATA_ID),
            ("ut_pex".to_string(), UT_PEX_ID),
        ]
        .into(),
        v: Some(CLIENT_NAME.into()),
        p: Some(fetch.ctx.listen_addr.port()),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    Message::Extended {
        id: 0,
        payload: Bytes::from(ext.encode()),
    }
    .encode(&mut out);
    if ours.supports_fast_extension() && hs.supports_fast_extension() {
        Message::HaveNone.encode(&mut out);
    }
    stream.write.write_all(&out).await?;
    Ok((ours, hs))
}

struct MetadataPeer {
    /// Who this peer is to the assembler.
    key: u64,
    addr: SocketAddr,
    /// It dialled us: `addr` has its ephemeral port, not its listening one.
    incoming: bool,
    stream: PeerStream,
    decoder: Decoder,
    buf: BytesMut,
    /// What the peer said that the torrent will want once it knows its pieces.
    replay: Vec<Message>,
    /// The id the peer wants its ut_metadata messages under.
    their_id: Option<u8>,
    /// Pieces asked of this peer and not yet answered, with when they were asked.
    in_flight: Vec<(u32, Instant)>,
    /// Small answers (rejects) to write with the next requests.
    pending_out: BytesMut,
}

impl MetadataPeer {
    /// Fetch until the metadata is here (`Ok`: the connection can carry on) or this peer
    /// is of no more use.
    async fn run(&mut self, fetch: &Fetch, _fast: bool) -> Result<(), CloseReason> {
        let started = Instant::now();
        loop {
            if fetch.finished() {
                return Ok(());
            }
            self.request_more(fetch).await?;
            let now = Instant::now();
            // A peer is dropped for silence only when we asked it something: one that was
            // never asked (another peer holds the fetch) is kept.
            let oldest = self.in_flight.iter().map(|(_, t)| *t).min();
            if let Some(t) = oldest
                && now.duration_since(t) >= REQUEST_TIMEOUT
            {
                return Err(CloseReason::NoMetadata(
                    "no answer to a metadata request".into(),
                ));
            }
            if self.their_id.is_none() && now.duration_since(started) >= PEER_TIMEOUT {
                return Err(CloseReason::NoMetadata("no extended handshake".into()));
            }
            let wake = oldest.map_or(Duration::from_secs(1), |t| {
                (t + REQUEST_TIMEOUT).saturating_duration_since(now)
            });
            let read = tokio::select! {
                r = self.stream.read.read_buf(&mut self.buf) => r?,
                _ = tokio::time::sleep(wake.min(Duration::from_secs(1))) => continue,
                _ = fetch.done.notified() => return Ok(()),
            };
            if read == 0 {
                return Err(CloseReason::PeerClosed);
            }
            while let Some(msg) = self.decoder.decode(&mut self.buf)? {
                match msg {
                    Message::Extended { id: 0, payload } => {
                        self.on_extended_handshake(fetch, &payload)?;
                        self.keep(Message::Extended { id: 0, payload })?;
                    }
                    Message::Extended { id, payload } if id == UT_METADATA_ID => {
                        self.on_metadata(fetch, &payload)?;
                    }
                    other if kept_for_replay(&other) => self.keep(other)?,
                    _ => {} // of no use before we have the metadata
                }
                if fetch.finished() {
                    // What is left in the buffer is the torrent's to decode.
                    return Ok(());
                }
            }
        }
    }

    /// Keep a message for the torrent, within bounds.
    fn keep(&mut self, msg: Message) -> Result<(), CloseReason> {
        if self.replay.len() >= MAX_REPLAYED {
            return Err(CloseReason::Protocol(
                "too many messages before the metadata".into(),
            ));
        }
        self.replay.push(msg);
        Ok(())
    }

    fn on_extended_handshake(&mut self, fetch: &Fetch, payload: &[u8]) -> Result<(), CloseReason> {
        let no = |m: &str| CloseReason::NoMetadata(m.to_string());
        let hs = ExtendedHandshake::decode(payload).map_err(|e| no(&e.to_string()))?;
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
            .ok_or_else(|| no("the peer does not serve metadata"))?;
        let size = hs
            .metadata_size
            .ok_or_else(|| no("the peer did not say the metadata size"))?;
        let mut s = lock(fetch);
        match &s.assembler {
            Some(a) if a.total_size() != size => {
                return Err(no(&format!(
                    "the peer says the metadata has {size} bytes, others said {}",
                    a.total_size()
                )));
            }
            Some(_) => {}
            None => {
                let a = MetadataAssembler::new(fetch.info_hash, size)
                    .map_err(|e| no(&e.to_string()))?;
                s.assembler = Some(a);
                s.pieces = 0;
            }
        }
        self.their_id = Some(id);
        Ok(())
    }

    fn on_metadata(&mut self, fetch: &Fetch, payload: &Bytes) -> Result<(), CloseReason> {
        let proto = |e: String| CloseReason::Protocol(e);
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            // BEP 9: unknown message types are ignored.
            Err(MetadataError::UnknownMessageType(_)) => return Ok(()),
            Err(e) => return Err(proto(e.to_string())),
        };
        match msg {
            MetadataMessage::Request { piece } => {
                // We have no metadata to give yet.
                let their = self
                    .their_id
                    .ok_or_else(|| proto("metadata request before handshake".into()))?;
                let reject = MetadataMessage::Reject { piece }.encode();
                let mut out = BytesMut::new();
                Message::Extended {
                    id: their,
                    payload: Bytes::from(reject),
                }
                .encode(&mut out);
                // Best effort: a full socket buffer only delays the answer, and a torn
                // write would corrupt the stream, so it is skipped when it cannot go whole.
                self.pending_out.extend_from_slice(&out);
                Ok(())
            }
            MetadataMessage::Reject { piece } => {
                self.in_flight.retain(|(p, _)| *p != piece);
                if let Some(a) = lock(fetch).assembler.as_mut() {
                    a.request_failed(piece);
                }
                Err(CloseReason::NoMetadata(
                    "the peer refused a metadata piece".into(),
                ))
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if !self.in_flight.iter().any(|(p, _)| *p == piece) {
                    return Err(proto("a metadata piece nobody asked for".into()));
                }
                self.in_flight.retain(|(p, _)| *p != piece);
                let mut s = lock(fetch);
                let Some(a) = s.assembler.as_mut() else {
                    return Ok(());
                };
                let progress = a
                    .on_data(self.key, piece, total_size, &data)
                    .map_err(|e| proto(e.to_string()))?;
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
                        Err(proto("the metadata does not hash to the info-hash".into()))
                    }
                    Err(e) => Err(proto(e.to_string())),
                }
            }
        }
    }

    /// Keep [`REQUESTS_PER_PEER`] pieces asked of this peer. Pieces another peer was asked
    /// for are asked again once nothing else is missing, so one silent peer cannot hold
    /// the fetch up (BEP 9 leaves the choice of peers to us).
    async fn request_more(&mut self, fetch: &Fetch) -> Result<(), CloseReason> {
        let mut out = std::mem::take(&mut self.pending_out);
        if let Some(their) = self.their_id {
            let mut s = lock(fetch);
            let allowed = if s.one_at_a_time {
                match s.owner {
                    None => {
                        s.owner = Some(self.key);
                        true
                    }
                    Some(k) => k == self.key,
                }
            } else {
                true
            };
            if allowed && let Some(a) = s.assembler.as_mut() {
                let now = Instant::now();
                while self.in_flight.len() < REQUESTS_PER_PEER {
                    let asked: Vec<u32> = self.in_flight.iter().map(|(p, _)| *p).collect();
                    let Some(piece) = a.next_request_excluding(&asked) else {
                        break;
                    };
                    self.in_flight.push((piece, now));
                    Message::Extended {
                        id: their,
                        payload: Bytes::from(MetadataMessage::Request { piece }.encode()),
                    }
                    .encode(&mut out);
                }
            }
        }
        if !out.is_empty() {
            self.stream.write.write_all(&out).await?;
        }
        Ok(())
    }
}
