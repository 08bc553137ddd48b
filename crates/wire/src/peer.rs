//! Per-connection protocol state (BEP 3, with BEP 6 fast-extension and BEP 10 rules).
//!
//! [`PeerState`] is a sans-IO state machine in the style of `quinn-proto`: the shell
//! feeds it each decoded [`Message`] with [`PeerState::handle_message`], then drains
//! [`PeerState::poll_event`] (what the engine should know) and
//! [`PeerState::poll_message`] (what must be written to the socket). The engine acts
//! through methods such as [`PeerState::request`], [`PeerState::choke`] or
//! [`PeerState::send_piece`], which check the protocol rules and queue messages.
//!
//! It tracks the four choke/interest flags, the peer's pieces, our requests to the peer
//! and the peer's requests to us, and enforces the rules that do not need a clock or a
//! view of the whole torrent: requests out of range, requests while choked, a bound on
//! the peer's queue, pieces we never asked for, and which messages are allowed without
//! the fast extension or the extension protocol. Choosing pieces (the picker), choosing
//! whom to unchoke (the choker), timeouts and checking that *we* have a piece are the
//! engine's job.

use rustc_hash::FxHashSet;
use std::collections::VecDeque;

use bytes::Bytes;
use thiserror::Error;

use crate::extended::{ExtendedHandshake, ExtendedHandshakeError};
use crate::handshake::Handshake;
use crate::message::{BlockRequest, Message, id};

/// The `reqq` we advertise by default: how many requests a peer may have queued with
/// us. libtorrent advertises 500 as well.
pub const DEFAULT_MAX_PEER_REQUESTS: usize = 500;
/// How many allowed-fast pieces from a peer we remember. BEP 6 suggests sets of 10.
pub const DEFAULT_MAX_ALLOWED_FAST: usize = 64;
/// How many cancelled requests we remember, so that a block already on its way when
/// we cancelled is not taken for an unsolicited one.
const MAX_CANCELLED: usize = 1024;

/// The size of a torrent's pieces, as the engine knows it from the metainfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceGeometry {
    piece_count: u32,
    piece_length: u32,
    last_piece_length: u32,
}

impl PieceGeometry {
    /// `None` if the torrent is empty, `piece_length` is zero, or there would be more
    /// than `u32::MAX` pieces (the wire cannot index them).
    pub fn new(total_length: u64, piece_length: u32) -> Option<Self> {
        if total_length == 0 || piece_length == 0 {
            return None;
        }
        let count = u32::try_from(total_length.div_ceil(u64::from(piece_length))).ok()?;
        let last = total_length - u64::from(count - 1) * u64::from(piece_length);
        Some(Self {
            piece_count: count,
            piece_length,
            last_piece_length: u32::try_from(last).ok()?,
        })
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// The nominal piece length; the last piece may be shorter.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Length of piece `piece`, or `None` if there is no such piece.
    pub fn piece_len(&self, piece: u32) -> Option<u32> {
        if piece >= self.piece_count {
            None
        } else if piece == self.piece_count - 1 {
            Some(self.last_piece_length)
        } else {
            Some(self.piece_length)
        }
    }

    /// Whether `r` names a non-empty block that lies inside its piece.
    pub fn contains(&self, r: &BlockRequest) -> bool {
        self.piece_len(r.piece).is_some_and(|len| {
            r.length > 0 && u64::from(r.begin) + u64::from(r.length) <= u64::from(len)
        })
    }
}

/// Which pieces a peer has, one bit per piece, high bit of byte 0 first (BEP 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// `len` pieces, none set. `len` comes from our metainfo, never from a peer.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            ones: 0,
        }
    }

    /// `len` pieces, all set.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        b.bytes.fill(0xff);
        b.clear_spare_bits();
        b.ones = len;
        b
    }

    /// Takes a bitfield from the wire: it must be exactly `ceil(len / 8)` bytes with the
    /// spare bits at the end clear, as BEP 3 requires.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, PeerError> {
        let expected = len.div_ceil(8) as usize;
        if bytes.len() != expected {
            return Err(PeerError::BitfieldLength {
                expected,
                got: bytes.len(),
            });
        }
        let mut b = Self {
            bytes: bytes.to_vec(),
            len,
            ones: 0,
        };
        let before = b.bytes.last().copied();
        b.clear_spare_bits();
        if b.bytes.last().copied() != before {
            return Err(PeerError::BitfieldSpareBits);
        }
        b.ones = b.bytes.iter().map(|x| x.count_ones()).sum();
        Ok(b)
    }

    fn clear_spare_bits(&mut self) {
        // Bits past `len` in the last byte; computed from `len` alone so that a
        // bitfield of nearly u32::MAX pieces cannot overflow the arithmetic.
        let spare = (8 - self.len % 8) % 8;
        if let Some(last) = self.bytes.last_mut() {
            *last &= 0xffu8 << spare;
        }
    }

    /// Number of pieces.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is set; `false` for an index out of range.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; returns whether it was newly set. Out of range does nothing.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clears piece `i`; returns whether it was set.
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// The indexes of the pieces set, in order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// Number of pieces set.
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What the connection speaks and how much it accepts from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerConfig {
    /// BEP 6 is on: both handshakes set the bit.
    pub fast_extension: bool,
    /// BEP 10 is on: both handshakes set the bit.
    pub extension_protocol: bool,
    /// Most requests the peer may have queued with us (the `reqq` we advertise).
    pub max_peer_requests: usize,
    /// Largest block the peer may request, and we may request. 16 KiB by default.
    pub max_block_len: u32,
    /// Most allowed-fast pieces we remember from the peer.
    pub max_allowed_fast: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            fast_extension: false,
            extension_protocol: false,
            max_peer_requests: DEFAULT_MAX_PEER_REQUESTS,
            max_block_len: crate::codec::DEFAULT_MAX_BLOCK_LEN,
            max_allowed_fast: DEFAULT_MAX_ALLOWED_FAST,
        }
    }
}

impl PeerConfig {
    /// Defaults, with the extensions that both handshakes announce switched on.
    pub fn negotiated(ours: &Handshake, theirs: &Handshake) -> Self {
        Self {
            fast_extension: ours.supports_fast_extension() && theirs.supports_fast_extension(),
            extension_protocol: ours.supports_extension_protocol()
                && theirs.supports_extension_protocol(),
            ..Self::default()
        }
    }
}

/// A protocol violation by the peer. Close the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerError {
    /// A bitfield, have-all or have-none after the peer already told us its pieces.
    #[error("bitfield, have-all or have-none sent after the peer's pieces were known")]
    AvailabilityNotFirst,
    #[error("bitfield is {got} bytes, expected {expected}")]
    BitfieldLength { expected: usize, got: usize },
    #[error("bitfield has spare bits set")]
    BitfieldSpareBits,
    #[error("have for piece {piece}, but the torrent has {piece_count} pieces")]
    PieceOutOfRange { piece: u32, piece_count: u32 },
    /// A BEP 6 message on a connection without the fast extension.
    #[error("message id {id} needs the fast extension, which is not on")]
    FastExtensionOff { id: u8 },
    /// A BEP 10 message on a connection without the extension protocol.
    #[error("extended message, but the extension protocol is not on")]
    ExtensionProtocolOff,
    #[error("bad extended handshake: {0}")]
    ExtendedHandshake(#[from] ExtendedHandshakeError),
    /// BEP 6: with the fast extension, a piece we never requested closes the connection.
    #[error("piece {piece} begin {begin} length {length} was never requested")]
    UnsolicitedPiece {
        piece: u32,
        begin: u32,
        length: usize,
    },
}

/// Why one of our requests will not be answered with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// The peer choked us without the fast extension, which drops all requests.
    Choked,
    /// The peer sent a BEP 6 reject.
    Rejected,
}

/// Why we refused a request from the peer. With the fast extension a reject was sent,
/// except for duplicates, whose first copy is still being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// Not a piece of this torrent, an empty block, a block past the end of its piece,
    /// or longer than [`PeerConfig::max_block_len`].
    OutOfRange,
    /// We choke the peer and the piece is not in its allowed-fast set.
    Choked,
    /// The peer already has [`PeerConfig::max_peer_requests`] requests queued.
    QueueFull,
    /// The same block is already queued.
    Duplicate,
}

/// Why the engine may not send a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("block is outside its piece, empty or too long")]
    OutOfRange,
    #[error("the peer does not have this piece")]
    PeerLacksPiece,
    #[error("the peer chokes us and the piece is not allowed-fast")]
    PeerChoking,
    #[error("this block is already requested")]
    Duplicate,
    #[error("the peer's advertised request queue (reqq) is full")]
    PeerQueueFull,
}

/// What the engine learns from the peer's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Choked,
    Unchoked,
    Interested,
    NotInterested,
    /// The peer got a piece it did not have before.
    Have(u32),
    /// The peer's pieces were set by a bitfield; read them from
    /// [`PeerState::peer_pieces`].
    Bitfield,
    HaveAll,
    HaveNone,
    /// A block we requested (or cancelled while it was in flight) arrived. The data is
    /// exactly `request.length` bytes; it is not hash-checked yet.
    Block {
        request: BlockRequest,
        data: Bytes,
    },
    /// A block we never asked for, on a connection without the fast extension (with it,
    /// this is [`PeerError::UnsolicitedPiece`]). Worth counting against the peer.
    UnsolicitedBlock {
        piece: u32,
        begin: u32,
        data: Bytes,
    },
    /// One of our requests will not be served; ask someone else.
    RequestFailed {
        request: BlockRequest,
        reason: RequestFailure,
    },
    /// The peer asks for a block and it is queued. The engine checks that we have the
    /// piece, reads it, and calls [`PeerState::send_piece`] (or
    /// [`PeerState::reject_request`]).
    Request(BlockRequest),
    /// A request from the peer was refused (a reject is already queued when the fast
    /// extension is on). Repeated refusals are worth counting against the peer.
    RequestRefused {
        request: BlockRequest,
        reason: RefuseReason,
    },
    /// The peer cancelled a queued request; [`PeerState::send_piece`] for it will now
    /// return `false`.
    Cancelled(BlockRequest),
    /// BEP 6 suggest piece.
    Suggest(u32),
    /// BEP 6: we may request this piece even while choked.
    AllowedFast(u32),
    /// BEP 5: the peer's DHT port.
    DhtPort(u16),
    /// BEP 10 handshake (id 0); also kept in [`PeerState::peer_extensions`].
    ExtendedHandshake(Box<ExtendedHandshake>),
    /// Any other extended message, for the extension that registered `id` with us.
    Extended {
        id: u8,
        payload: Bytes,
    },
}

/// Protocol state of one connection. See the module docs for how to drive it.
#[derive(Debug, Clone)]
pub struct PeerState {
    config: PeerConfig,
    geometry: PieceGeometry,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    peer_pieces: Bitfield,
    /// Set once the peer's bitfield, have-all, have-none or first have arrived.
    availability_known: bool,
    /// Our requests to the peer, oldest first (blocks mostly arrive in order, so the
    /// match is usually at the front).
    our_requests: Outstanding,
    /// Requests we cancelled whose block may still be on its way.
    cancelled: VecDeque<BlockRequest>,
    /// The peer's requests to us that we have accepted and not yet served.
    peer_requests: VecDeque<BlockRequest>,
    /// The same requests, for an O(1) duplicate check: a peer may queue thousands.
    peer_request_set: FxHashSet<BlockRequest>,
    /// Pieces the peer lets us request while it chokes us.
    allowed_fast_in: Vec<u32>,
    /// Pieces we let the peer request while we choke it.
    allowed_fast_out: Vec<u32>,
    peer_extensions: Option<Box<ExtendedHandshake>>,
    events: VecDeque<Event>,
    outbound: VecDeque<Message>,
}

impl PeerState {
    /// A fresh connection just after the handshakes: both sides choking and not
    /// interested, the peer having nothing.
    pub fn new(config: PeerConfig, geometry: PieceGeometry) -> Self {
        Self {
            config,
            geometry,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_pieces: Bitfield::new(geometry.piece_count()),
            availability_known: false,
            our_requests: Outstanding::default(),
            cancelled: VecDeque::new(),
            peer_requests: VecDeque::new(),
            peer_request_set: FxHashSet::default(),
            allowed_fast_in: Vec::new(),
            allowed_fast_out: Vec::new(),
            peer_extensions: None,
            events: VecDeque::new(),
            outbound: VecDeque::new(),
        }
    }

    // ----- accessors -----

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }
    pub fn geometry(&self) -> &PieceGeometry {
        &self.geometry
    }
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }
    pub fn peer_pieces(&self) -> &Bitfield {
        &self.peer_pieces
    }
    /// Our requests that the peer has not answered yet, oldest first.
    pub fn our_requests(&self) -> impl ExactSizeIterator<Item = &BlockRequest> {
        self.our_requests.iter()
    }
    /// Whether `r` is among our requests the peer has not answered (a set lookup).
    pub fn has_requested(&self, r: &BlockRequest) -> bool {
        self.our_requests.contains(r)
    }
    /// The peer's requests we have queued and not served yet, oldest first.
    pub fn peer_requests(&self) -> impl ExactSizeIterator<Item = &BlockRequest> {
        self.peer_requests.iter()
    }
    /// Pieces the peer lets us request while it chokes us (BEP 6).
    pub fn allowed_fast(&self) -> &[u32] {
        &self.allowed_fast_in
    }
    /// The peer's latest extended handshake (BEP 10).
    pub fn peer_extensions(&self) -> Option<&ExtendedHandshake> {
        self.peer_extensions.as_deref()
    }

    /// Next thing the engine should know. Drain after every `handle_message`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Next message to write to the peer. Drain after every call that changes state.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.outbound.pop_front()
    }

    // ----- input from the peer -----

    /// Applies one message from the peer. An error is a protocol violation: close the
    /// connection. Anything merely odd (an unmatched reject, a redundant have, an
    /// unusable request) is absorbed, at most reported as an event.
    pub fn handle_message(&mut self, msg: Message) -> Result<(), PeerError> {
        let fast = self.config.fast_extension;
        if !fast && let Some(msg_id) = msg.id().filter(|&i| is_fast_message(i)) {
            return Err(PeerError::FastExtensionOff { id: msg_id });
        }
        match msg {
            Message::KeepAlive => {}
            Message::Choke => {
                if !self.peer_choking {
                    self.peer_choking = true;
                    self.events.push_back(Event::Choked);
                }
                // Without BEP 6 a choke drops every pending request; with it, each one
                // still gets a piece or a reject, so they stay outstanding.
                if !fast {
                    for request in self.our_requests.take_all() {
                        self.events.push_back(Event::RequestFailed {
                            request,
                            reason: RequestFailure::Choked,
                        });
                    }
                    self.cancelled.clear();
                }
            }
            Message::Unchoke => {
                if self.peer_choking {
                    self.peer_choking = false;
                    self.events.push_back(Event::Unchoked);
                }
            }
            Message::Interested => {
                if !self.peer_interested {
                    self.peer_interested = true;
                    self.events.push_back(Event::Interested);
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    self.events.push_back(Event::NotInterested);
                }
            }
            Message::Have { piece } => {
                if piece >= self.geometry.piece_count() {
                    return Err(PeerError::PieceOutOfRange {
                        piece,
                        piece_count: self.geometry.piece_count(),
                    });
                }
                // A have before any bitfield means the peer skipped the bitfield
                // because it had nothing, which BEP 3 allows.
                self.availability_known = true;
                if self.peer_pieces.set(piece) {
                    self.events.push_back(Event::Have(piece));
                }
            }
            Message::Bitfield(bits) => {
                self.first_availability()?;
                self.peer_pieces = Bitfield::from_wire(&bits, self.geometry.piece_count())?;
                self.events.push_back(Event::Bitfield);
            }
            Message::HaveAll => {
                self.first_availability()?;
                self.peer_pieces = Bitfield::full(self.geometry.piece_count());
                self.events.push_back(Event::HaveAll);
            }
            Message::HaveNone => {
                self.first_availability()?;
                self.events.push_back(Event::HaveNone);
            }
            Message::Request(r) => self.on_request(r),
            Message::Piece { piece, begin, data } => self.on_piece(piece, begin, data)?,
            Message::Cancel(r) => {
                if self.peer_request_set.remove(&r) && remove(&mut self.peer_requests, &r) {
                    // BEP 6: every request gets exactly one answer, even if cancelled.
                    if fast {
                        self.outbound.push_back(Message::Reject(r));
                    }
                    self.events.push_back(Event::Cancelled(r));
                }
            }
            Message::Port(port) => self.events.push_back(Event::DhtPort(port)),
            Message::Suggest { piece } => {
                // Only advice: an out-of-range suggestion is ignored, not fatal.
                if piece < self.geometry.piece_count() {
                    self.events.push_back(Event::Suggest(piece));
                }
            }
            Message::Reject(r) => {
                if self.our_requests.remove(&r) {
                    self.events.push_back(Event::RequestFailed {
                        request: r,
                        reason: RequestFailure::Rejected,
                    });
                } else {
                    // A reject for something we cancelled, or for nothing: libtorrent
                    // ignores the latter too.
                    remove(&mut self.cancelled, &r);
                }
            }
            Message::AllowedFast { piece } => {
                if piece < self.geometry.piece_count()
                    && !self.allowed_fast_in.contains(&piece)
                    && self.allowed_fast_in.len() < self.config.max_allowed_fast
                {
                    self.allowed_fast_in.push(piece);
                    self.events.push_back(Event::AllowedFast(piece));
                }
            }
            Message::Extended { id, payload } => {
                if !self.config.extension_protocol {
                    return Err(PeerError::ExtensionProtocolOff);
                }
                if id == 0 {
                    let hs = Box::new(ExtendedHandshake::decode(&payload)?);
                    self.peer_extensions = Some(hs.clone());
                    self.events.push_back(Event::ExtendedHandshake(hs));
                } else {
                    self.events.push_back(Event::Extended { id, payload });
                }
            }
        }
        Ok(())
    }

    fn first_availability(&mut self) -> Result<(), PeerError> {
        if self.availability_known {
            return Err(PeerError::AvailabilityNotFirst);
        }
        self.availability_known = true;
        Ok(())
    }

    fn on_request(&mut self, r: BlockRequest) {
        let reason = if !self.geometry.contains(&r) || r.length > self.config.max_block_len {
            RefuseReason::OutOfRange
        } else if self.peer_request_set.contains(&r) {
            RefuseReason::Duplicate
        } else if self.am_choking && !self.allowed_fast_out.contains(&r.piece) {
            RefuseReason::Choked
        } else if self.peer_requests.len() >= self.config.max_peer_requests {
            RefuseReason::QueueFull
        } else {
            self.peer_requests.push_back(r);
            self.peer_request_set.insert(r);
            self.events.push_back(Event::Request(r));
            return;
        };
        // A reject for a duplicate would read as a reject of the first copy, which we
        // still serve, so duplicates are dropped silently.
        if self.config.fast_extension && reason != RefuseReason::Duplicate {
            self.outbound.push_back(Message::Reject(r));
        }
        self.events
            .push_back(Event::RequestRefused { request: r, reason });
    }

    fn on_piece(&mut self, piece: u32, begin: u32, data: Bytes) -> Result<(), PeerError> {
        if let Ok(length) = u32::try_from(data.len()) {
            let request = BlockRequest::new(piece, begin, length);
            if self.our_requests.remove(&request) || remove(&mut self.cancelled, &request) {
                self.events.push_back(Event::Block { request, data });
                return Ok(());
            }
        }
        if self.config.fast_extension {
            return Err(PeerError::UnsolicitedPiece {
                piece,
                begin,
                length: data.len(),
            });
        }
        self.events
            .push_back(Event::UnsolicitedBlock { piece, begin, data });
        Ok(())
    }

    // ----- actions of the engine -----

    /// Tells the peer which pieces we have; send once, first after the handshake (and
    /// after our extended handshake, if any). With the fast extension a full or empty
    /// set goes as have-all or have-none; without it an empty set is not sent at all,
    /// which BEP 3 allows.
    pub fn send_pieces(&mut self, ours: &Bitfield) {
        let fast = self.config.fast_extension;
        if fast && ours.is_full() {
            self.outbound.push_back(Message::HaveAll);
        } else if ours.count_ones() == 0 {
            if fast {
                self.outbound.push_back(Message::HaveNone);
            }
        } else {
            self.outbound
                .push_back(Message::Bitfield(Bytes::copy_from_slice(ours.as_bytes())));
        }
    }

    /// Tells the peer we now have `piece`.
    pub fn send_have(&mut self, piece: u32) {
        self.outbound.push_back(Message::Have { piece });
    }

    /// Chokes the peer. Its queued requests are dropped, except for allowed-fast
    /// pieces; with the fast extension each dropped one gets a reject, because BEP 6
    /// choke no longer rejects implicitly. Returns `false` if already choking.
    pub fn choke(&mut self) -> bool {
        if self.am_choking {
            return false;
        }
        self.am_choking = true;
        self.outbound.push_back(Message::Choke);
        let fast = self.config.fast_extension;
        let allowed = &self.allowed_fast_out;
        let outbound = &mut self.outbound;
        let set = &mut self.peer_request_set;
        self.peer_requests.retain(|r| {
            let keep = allowed.contains(&r.piece);
            if !keep {
                set.remove(r);
                if fast {
                    outbound.push_back(Message::Reject(*r));
                }
            }
            keep
        });
        true
    }

    /// Unchokes the peer. Returns `false` if it was not choked.
    pub fn unchoke(&mut self) -> bool {
        if !self.am_choking {
            return false;
        }
        self.am_choking = false;
        self.outbound.push_back(Message::Unchoke);
        true
    }

    /// Says whether we want pieces from the peer; only a change is sent.
    pub fn set_interested(&mut self, interested: bool) {
        if self.am_interested != interested {
            self.am_interested = interested;
            self.outbound.push_back(if interested {
                Message::Interested
            } else {
                Message::NotInterested
            });
        }
    }

    /// Requests a block. The picker chose it; this checks that the protocol allows it.
    pub fn request(&mut self, r: BlockRequest) -> Result<(), RequestError> {
        if !self.geometry.contains(&r) || r.length > self.config.max_block_len {
            return Err(RequestError::OutOfRange);
        }
        if !self.peer_pieces.get(r.piece) {
            return Err(RequestError::PeerLacksPiece);
        }
        let allowed_fast = self.config.fast_extension && self.allowed_fast_in.contains(&r.piece);
        if self.peer_choking && !allowed_fast {
            return Err(RequestError::PeerChoking);
        }
        if self.our_requests.contains(&r) {
            return Err(RequestError::Duplicate);
        }
        let reqq = self.peer_extensions.as_ref().and_then(|e| e.reqq);
        if reqq.is_some_and(|q| self.our_requests.len() >= q as usize) {
            return Err(RequestError::PeerQueueFull);
        }
        self.our_requests.push_back(r);
        self.outbound.push_back(Message::Request(r));
        Ok(())
    }

    /// Cancels one of our requests. The block may still arrive and is then reported
    /// as a normal [`Event::Block`]. Returns `false` if `r` was not outstanding.
    pub fn cancel(&mut self, r: BlockRequest) -> bool {
        if !self.our_requests.remove(&r) {
            return false;
        }
        if self.cancelled.len() >= MAX_CANCELLED {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(r);
        self.outbound.push_back(Message::Cancel(r));
        true
    }

    /// Sends a block the peer requested. Returns `false`, and sends nothing, if the
    /// request is no longer queued (cancelled, or dropped by a choke) or `data` is not
    /// `request.length` bytes; the engine then just drops the data.
    pub fn send_piece(&mut self, request: BlockRequest, data: Bytes) -> bool {
        if data.len() != request.length as usize || !self.peer_request_set.remove(&request) {
            return false;
        }
        remove(&mut self.peer_requests, &request);
        self.outbound.push_back(Message::Piece {
            piece: request.piece,
            begin: request.begin,
            data,
        });
        true
    }

    /// Declines a queued request, e.g. because we do not have the piece or the read
    /// failed; with the fast extension the peer is told. Returns `false` if it was not
    /// queued.
    pub fn reject_request(&mut self, request: BlockRequest) -> bool {
        if !self.peer_request_set.remove(&request) {
            return false;
        }
        remove(&mut self.peer_requests, &request);
        if self.config.fast_extension {
            self.outbound.push_back(Message::Reject(request));
        }
        true
    }

    /// BEP 6: lets the peer request `piece` while we choke it. Computing the canonical
    /// allowed-fast set (a SHA-1 over the peer's IP and the info-hash) is the engine's
    /// job. Returns `false` without the fast extension or for a piece out of range.
    pub fn allow_fast(&mut self, piece: u32) -> bool {
        if !self.config.fast_extension || piece >= self.geometry.piece_count() {
            return false;
        }
        if !self.allowed_fast_out.contains(&piece) {
            self.allowed_fast_out.push(piece);
            self.outbound.push_back(Message::AllowedFast { piece });
        }
        true
    }

    /// BEP 6: suggests a piece. Returns `false` without the fast extension.
    pub fn suggest(&mut self, piece: u32) -> bool {
        if !self.config.fast_extension || piece >= self.geometry.piece_count() {
            return false;
        }
        self.outbound.push_back(Message::Suggest { piece });
        true
    }

    /// BEP 10: sends our extended handshake. Returns `false` without the extension
    /// protocol.
    pub fn send_extended_handshake(&mut self, hs: &ExtendedHandshake) -> bool {
        self.send_extended(0, Bytes::from(hs.encode()))
    }

    /// BEP 10: sends an extended message under the id the peer assigned. Returns
    /// `false` without the extension protocol.
    pub fn send_extended(&mut self, id: u8, payload: Bytes) -> bool {
        if !self.config.extension_protocol {
            return false;
        }
        self.outbound.push_back(Message::Extended { id, payload });
        true
    }

    /// BEP 5: tells the peer our DHT port.
    pub fn send_port(&mut self, port: u16) {
        self.outbound.push_back(Message::Port(port));
    }

    /// Queues a keep-alive; when to send one is the shell's decision (it has the clock).
    pub fn send_keep_alive(&mut self) {
        self.outbound.push_back(Message::KeepAlive);
    }
}

fn is_fast_message(msg_id: u8) -> bool {
    matches!(
        msg_id,
        id::SUGGEST | id::HAVE_ALL | id::HAVE_NONE | id::REJECT | id::ALLOWED_FAST
    )
}

/// Our outstanding requests, in the order sent, with a set to ask whether one is among
/// them without a walk over hundreds.
#[derive(Debug, Clone, Default)]
struct Outstanding {
    order: VecDeque<BlockRequest>,
    set: FxHashSet<BlockRequest>,
}

impl Outstanding {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn iter(&self) -> std::collections::vec_deque::Iter<'_, BlockRequest> {
        self.order.iter()
    }

    fn contains(&self, r: &BlockRequest) -> bool {
        self.set.contains(r)
    }

    fn push_back(&mut self, r: BlockRequest) {
        if self.set.insert(r) {
            self.order.push_back(r);
        }
    }

    /// Blocks mostly arrive in the order requested: the walk stops at the first.
    fn remove(&mut self, r: &BlockRequest) -> bool {
        self.set.remove(r) && remove(&mut self.order, r)
    }

    fn take_all(&mut self) -> VecDeque<BlockRequest> {
        self.set.clear();
        std::mem::take(&mut self.order)
    }
}

/// Removes the first `r` from `q`; whether it was there.
fn remove(q: &mut VecDeque<BlockRequest>, r: &BlockRequest) -> bool {
    match q.iter().position(|x| x == r) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}
