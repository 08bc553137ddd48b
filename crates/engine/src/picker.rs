//! The piece picker (sans-IO): which blocks to request from which peer.
//!
//! Policy, as in libtorrent and the BitTorrent paper:
//! - finish partial pieces first, so verified pieces (which can be shared) arrive soon and few
//!   piece buffers are held at once;
//! - otherwise the rarest piece the peer has, ties broken at random so that peers that start
//!   together do not all fetch the same piece;
//! - endgame: once every missing block is already requested, a block may be requested from a
//!   second peer too, and the copies are cancelled when the first one arrives.
//!
//! The picker knows pieces, blocks and availability counts, never sockets or time.

use crate::bitfield::Bitfield;
use std::collections::BTreeMap;

/// Size of a request (BEP 3 practice; every client serves 16 KiB blocks).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// One block of one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Missing,
    /// Requested from this many peers.
    Requested(u8),
    Received,
}

#[derive(Debug, Clone)]
struct Partial {
    blocks: Vec<BlockState>,
    received: u32,
    /// Blocks in `blocks` that are `Missing` (nobody asked): a piece with none is passed
    /// over without a look at its blocks.
    missing: u32,
}

impl Partial {
    /// Mark up to `max - out.len()` of the piece's missing blocks requested, first
    /// first, and add them to `out`. `geometry`: the torrent's piece length and total
    /// length.
    fn take_missing(&mut self, p: u32, geometry: (u32, u64), max: usize, out: &mut Vec<Block>) {
        if self.missing == 0 {
            return;
        }
        for (i, s) in self.blocks.iter_mut().enumerate() {
            if out.len() >= max || self.missing == 0 {
                break;
            }
            if *s == BlockState::Missing {
                *s = BlockState::Requested(1);
                self.missing -= 1;
                out.push(block_of(geometry, p, i as u32));
            }
        }
    }
}

/// Block `index` of `piece` in a torrent of `(piece_length, total_length)`.
fn block_of((piece_length, total_length): (u32, u64), piece: u32, index: u32) -> Block {
    let start = u64::from(piece) * u64::from(piece_length);
    let size = u64::from(piece_length).min(total_length.saturating_sub(start)) as u32;
    let begin = index * BLOCK_SIZE;
    Block {
        piece,
        begin,
        length: BLOCK_SIZE.min(size - begin),
    }
}

/// What became of a block that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New data; the piece still misses blocks.
    New,
    /// New data, and with it every block of the piece is here: hash it.
    PieceComplete,
    /// We already had it (endgame copies, or a block nobody asked for).
    Duplicate,
}

pub struct Picker {
    piece_length: u32,
    total_length: u64,
    have: Bitfield,
    /// How many connected peers have each piece.
    availability: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
    /// The keys of `partial`, as a set the scans for new pieces test a byte at a time.
    partial_set: Bitfield,
    /// Pieces whose blocks are all here and that are being hashed.
    hashing: Bitfield,
    max_partial: usize,
    rng: u64,
    /// Whether endgame has asked a second peer for a block (so arrivals need cancels).
    endgame_copies: bool,
    /// Bytes of the pieces in `have`, kept as pieces come and go (never a walk).
    bytes_have: u64,
    /// Per piece: 0 skip (not wanted), 1 normal, 2 high. Higher goes first.
    priority: Vec<u8>,
    /// Wanted pieces we do not have yet.
    wanted_left: u32,
    /// Bytes of the wanted pieces.
    wanted_bytes: u64,
    /// Pieces in index order (for playing while downloading) instead of rarest first.
    sequential: bool,
    /// Pieces a reader is waiting for (a streaming read-ahead window): piece -> how many
    /// windows hold it. Picked before any other piece, lowest index first, whatever the
    /// priorities, like libtorrent's piece deadlines.
    urgent: BTreeMap<u32, u32>,
}

/// Pieces in progress an urgent piece may add beyond `max_partial`, so a reader is not
/// kept waiting behind pieces started for other reasons.
const URGENT_EXTRA_PARTIAL: usize = 8;

/// A piece's priority: skipped pieces are never requested.
pub const PRIORITY_SKIP: u8 = 0;
pub const PRIORITY_NORMAL: u8 = 1;
pub const PRIORITY_HIGH: u8 = 2;

impl Picker {
    /// `have`: the pieces already verified. `max_partial` bounds the pieces in progress (and
    /// so the memory held in piece buffers).
    pub fn new(
        piece_length: u32,
        total_length: u64,
        have: Bitfield,
        max_partial: usize,
        seed: u64,
    ) -> Self {
        let n = have.len() as usize;
        let size = |p: u32| {
            let start = u64::from(p) * u64::from(piece_length);
            u64::from(piece_length).min(total_length.saturating_sub(start))
        };
        let bytes_have = have.iter_ones().map(size).sum();
        let wanted_left = have.len() - have.count_ones();
        Picker {
            bytes_have,
            priority: vec![PRIORITY_NORMAL; n],
            wanted_left,
            wanted_bytes: total_length,
            sequential: false,
            piece_length,
            total_length,
            hashing: Bitfield::new(have.len()),
            partial_set: Bitfield::new(have.len()),
            have,
            availability: vec![0; n],
            partial: BTreeMap::new(),
            max_partial: max_partial.max(1),
            rng: seed | 1,
            endgame_copies: false,
            urgent: BTreeMap::new(),
        }
    }

    /// A reader waits for `pieces`: pick them before any other (pieces past the end are
    /// ignored). Windows add up; each one is taken back with [`Picker::remove_urgent`].
    pub fn add_urgent(&mut self, pieces: std::ops::Range<u32>) {
        for p in pieces.start..pieces.end.min(self.piece_count()) {
            *self.urgent.entry(p).or_insert(0) += 1;
        }
    }

    /// Take back a window given to [`Picker::add_urgent`].
    pub fn remove_urgent(&mut self, pieces: std::ops::Range<u32>) {
        for p in pieces.start..pieces.end.min(self.piece_count()) {
            if let Some(n) = self.urgent.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.urgent.remove(&p);
                }
            }
        }
    }

    /// How many connected peers have each piece.
    pub fn availability(&self) -> &[u32] {
        &self.availability
    }

    /// Pieces some reader waits for now.
    pub fn urgent_count(&self) -> usize {
        self.urgent.len()
    }

    /// The first urgent piece the peer has that is still to start.
    fn urgent_new_piece(&self, peer: &Bitfield) -> Option<u32> {
        self.urgent.keys().copied().find(|&p| {
            peer.get(p) && !self.have.get(p) && !self.hashing.get(p) && !self.partial_set.get(p)
        })
    }

    pub fn piece_count(&self) -> u32 {
        self.have.len()
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Copies of the torrent among the connected peers (libtorrent's "distributed
    /// copies"): the count of the rarest piece, plus the share of pieces held by more.
    pub fn distributed_copies(&self) -> f64 {
        distributed_copies(&self.availability)
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Every wanted piece is verified: the download is done (skipped pieces aside).
    pub fn is_done(&self) -> bool {
        self.wanted_left == 0
    }

    /// Bytes of the wanted pieces, and of those still missing.
    pub fn wanted_bytes(&self) -> u64 {
        self.wanted_bytes
    }

    /// Set every piece's priority (`PRIORITY_*`); pieces beyond `priority` stay as
    /// they were. Pieces in progress that become skipped are finished anyway.
    pub fn set_priorities(&mut self, priority: &[u8]) {
        for (p, v) in self.priority.iter_mut().zip(priority) {
            *p = (*v).min(PRIORITY_HIGH);
        }
        let mut left = 0;
        let mut bytes = 0;
        for p in 0..self.piece_count() {
            if self.priority[p as usize] != PRIORITY_SKIP {
                bytes += u64::from(self.piece_size(p));
                if !self.have.get(p) {
                    left += 1;
                }
            }
        }
        self.wanted_left = left;
        self.wanted_bytes = bytes;
    }

    pub fn priority(&self, piece: u32) -> u8 {
        self.priority
            .get(piece as usize)
            .copied()
            .unwrap_or(PRIORITY_SKIP)
    }

    /// Pick new pieces in index order (still preferring higher priorities).
    pub fn set_sequential(&mut self, on: bool) {
        self.sequential = on;
    }

    pub fn piece_size(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * u64::from(self.piece_length);
        u64::from(self.piece_length).min(self.total_length.saturating_sub(start)) as u32
    }

    fn block_count(&self, piece: u32) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_SIZE)
    }

    fn block(&self, piece: u32, index: u32) -> Block {
        block_of((self.piece_length, self.total_length), piece, index)
    }

    /// A peer announced it has `piece` (HAVE, or each bit of its bitfield).
    pub fn peer_has(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a += 1;
        }
    }

    pub fn peer_has_all(&mut self) {
        self.availability.iter_mut().for_each(|a| *a += 1);
    }

    /// A peer left: its pieces count no more.
    pub fn peer_gone(&mut self, pieces: &Bitfield) {
        for i in pieces.iter_ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// Whether we still need `piece` (wanted or waited for by a reader, not had, not
    /// being hashed).
    pub fn wants_piece(&self, piece: u32) -> bool {
        piece < self.piece_count()
            && !self.have.get(piece)
            && !self.hashing.get(piece)
            && (self.priority(piece) != PRIORITY_SKIP || self.urgent.contains_key(&piece))
    }

    /// Whether the peer has anything we still need.
    pub fn wants_from(&self, peer: &Bitfield) -> bool {
        peer.iter_ones().any(|i| self.wants_piece(i))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: good enough to break ties.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Choose up to `max` blocks to request from a peer that has `peer` pieces.
    /// `mine(block)` says whether this peer already has the block requested (so endgame does
    /// not ask the same peer twice).
    pub fn pick(
        &mut self,
        peer: &Bitfield,
        max: usize,
        mine: impl Fn(&Block) -> bool,
    ) -> Vec<Block> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        // 0. Pieces a reader waits for: their missing blocks, then new ones, in order.
        if !self.urgent.is_empty() {
            let started: Vec<u32> = self
                .urgent
                .keys()
                .copied()
                .filter(|&p| peer.get(p) && self.partial.contains_key(&p))
                .collect();
            for p in started {
                self.take_missing(p, max, &mut out);
                if out.len() >= max {
                    return out;
                }
            }
            while out.len() < max && self.partial.len() < self.max_partial + URGENT_EXTRA_PARTIAL {
                let Some(p) = self.urgent_new_piece(peer) else {
                    break;
                };
                self.start_piece(p);
                self.take_missing(p, max, &mut out);
            }
        }
        // 1. Missing blocks of partial pieces, oldest piece first.
        let geometry = (self.piece_length, self.total_length);
        for (&p, part) in &mut self.partial {
            if part.missing > 0 && peer.get(p) {
                part.take_missing(p, geometry, max, &mut out);
                if out.len() >= max {
                    return out;
                }
            }
        }
        // 2. New pieces, rarest first with a random tie-break.
        while out.len() < max && self.partial.len() < self.max_partial {
            let Some(p) = self.rarest_new_piece(peer) else {
                break;
            };
            self.start_piece(p);
            self.take_missing(p, max, &mut out);
        }
        // 3. Endgame: every block we need is requested already; double up on the blocks
        //    this peer has not been asked for, least-requested first.
        if out.is_empty() && self.in_endgame() {
            let mut candidates: Vec<(u8, Block)> = Vec::new();
            for (&p, part) in &self.partial {
                if !peer.get(p) {
                    continue;
                }
                for (i, s) in part.blocks.iter().enumerate() {
                    if let BlockState::Requested(n) = *s {
                        let b = self.block(p, i as u32);
                        if !mine(&b) {
                            candidates.push((n, b));
                        }
                    }
                }
            }
            candidates.sort_by_key(|(n, b)| (*n, *b));
            for (_, b) in candidates.into_iter().take(max) {
                if let Some(BlockState::Requested(n)) = self
                    .partial
                    .get_mut(&b.piece)
                    .and_then(|part| part.blocks.get_mut((b.begin / BLOCK_SIZE) as usize))
                {
                    *n = n.saturating_add(1);
                }
                self.endgame_copies = true;
                out.push(b);
            }
        }
        out
    }

    /// Whether some block has been requested from more than one peer: then an arriving
    /// block should be cancelled at the other peers.
    pub fn has_endgame_copies(&self) -> bool {
        self.endgame_copies
    }

    /// True when no block is left that nobody has been asked for.
    pub fn in_endgame(&self) -> bool {
        if self.partial.values().any(|part| part.missing > 0) {
            return false;
        }
        // Eight pieces at once: only those neither had, hashing nor in progress are
        // looked at one by one (for their priority).
        let (had, hashing, started) = (
            self.have.as_bytes(),
            self.hashing.as_bytes(),
            self.partial_set.as_bytes(),
        );
        let untouched = had
            .iter()
            .zip(hashing)
            .zip(started)
            .enumerate()
            .any(|(i, ((h, x), s))| {
                let free = !(h | x | s);
                free != 0
                    && (0..8u32).any(|bit| {
                        let p = i as u32 * 8 + bit;
                        free & (0x80 >> bit) != 0
                            && p < self.piece_count()
                            && self.priority(p) != PRIORITY_SKIP
                    })
            });
        !untouched
    }

    fn start_piece(&mut self, p: u32) {
        let n = self.block_count(p);
        self.partial.insert(
            p,
            Partial {
                blocks: vec![BlockState::Missing; n as usize],
                received: 0,
                missing: n,
            },
        );
        self.partial_set.set(p);
    }

    fn take_missing(&mut self, p: u32, max: usize, out: &mut Vec<Block>) {
        let geometry = (self.piece_length, self.total_length);
        if let Some(part) = self.partial.get_mut(&p) {
            part.take_missing(p, geometry, max, out);
        }
    }

    fn rarest_new_piece(&mut self, peer: &Bitfield) -> Option<u32> {
        let n = self.piece_count();
        if n == 0 {
            return None;
        }
        // Sequential: the first wanted piece in index order; else a random start so
        // peers do not all fetch the same pieces.
        let start = if self.sequential {
            0
        } else {
            (self.next_random() % u64::from(n)) as u32
        };
        self.rarest_from(peer, start)
    }

    /// [`Picker::rarest_new_piece`] with the scan starting at piece `start` (`< n`).
    fn rarest_from(&self, peer: &Bitfield, start: u32) -> Option<u32> {
        let n = self.piece_count();
        let top = PRIORITY_HIGH;
        // (priority, availability, piece): best is the highest priority, then the
        // rarest (or, sequentially, the first).
        let mut best: Option<(u8, u32, u32)> = None;
        // Eight pieces at once where none is one the peer has and we neither have, are
        // hashing nor have started: with most pieces had (late in a download) or few
        // offered (a new leecher as the peer), most bytes are skipped whole.
        let (offered, had, hashing, started) = (
            peer.as_bytes(),
            self.have.as_bytes(),
            self.hashing.as_bytes(),
            self.partial_set.as_bytes(),
        );
        let byte = |b: &[u8], i: usize| b.get(i).copied().unwrap_or(0);
        let mut k = 0;
        while k < n {
            let p = (start + k) % n;
            if p.is_multiple_of(8) {
                let i = (p / 8) as usize;
                if byte(offered, i) & !byte(had, i) & !byte(hashing, i) & !byte(started, i) == 0 {
                    k += 8.min(n - p);
                    continue;
                }
            }
            k += 1;
            let prio = self.priority(p);
            if prio == PRIORITY_SKIP
                || !peer.get(p)
                || self.have.get(p)
                || self.hashing.get(p)
                || self.partial_set.get(p)
            {
                continue;
            }
            let a = if self.sequential {
                0
            } else {
                self.availability[p as usize]
            };
            let better = match best {
                None => true,
                Some((bp, ba, _)) => prio > bp || (prio == bp && a < ba),
            };
            if better {
                best = Some((prio, a, p));
                if prio == top && a <= 1 {
                    break; // nothing beats a top-priority piece only this peer has
                }
            }
        }
        best.map(|(_, _, p)| p)
    }

    /// A request will not be answered (cancelled, rejected, timed out, peer gone).
    pub fn request_dropped(&mut self, b: &Block) {
        let Some(part) = self.partial.get_mut(&b.piece) else {
            return;
        };
        if let Some(s) = part.blocks.get_mut((b.begin / BLOCK_SIZE) as usize)
            && let BlockState::Requested(n) = *s
        {
            if n <= 1 {
                *s = BlockState::Missing;
                part.missing += 1;
            } else {
                *s = BlockState::Requested(n - 1);
            }
        }
    }

    /// A block arrived. Blocks of pieces we did not start, or at offsets that are not block
    /// boundaries, are reported as duplicates and must be dropped by the caller.
    pub fn block_received(&mut self, b: &Block) -> Received {
        if !b.begin.is_multiple_of(BLOCK_SIZE) {
            return Received::Duplicate;
        }
        let expected = self.block(b.piece, b.begin / BLOCK_SIZE).length;
        let Some(part) = self.partial.get_mut(&b.piece) else {
            return Received::Duplicate;
        };
        let Some(s) = part.blocks.get_mut((b.begin / BLOCK_SIZE) as usize) else {
            return Received::Duplicate;
        };
        if *s == BlockState::Received || b.length != expected {
            return Received::Duplicate;
        }
        if *s == BlockState::Missing {
            part.missing -= 1;
        }
        *s = BlockState::Received;
        part.received += 1;
        if part.received as usize == part.blocks.len() {
            self.partial.remove(&b.piece);
            self.partial_set.clear(b.piece);
            self.hashing.set(b.piece);
            Received::PieceComplete
        } else {
            Received::New
        }
    }

    /// The piece's hash matched: it is ours now.
    pub fn piece_verified(&mut self, piece: u32) {
        self.hashing.clear(piece);
        if self.have.set(piece) {
            self.bytes_have += u64::from(self.piece_size(piece));
            if self.priority(piece) != PRIORITY_SKIP {
                self.wanted_left = self.wanted_left.saturating_sub(1);
            }
        }
    }

    /// Bytes of the verified pieces.
    pub fn bytes_have(&self) -> u64 {
        self.bytes_have
    }

    /// The piece's hash did not match: fetch it again.
    pub fn piece_failed(&mut self, piece: u32) {
        self.hashing.clear(piece);
        self.partial.remove(&piece);
        self.partial_set.clear(piece);
    }

    /// Blocks still requested from several peers for `piece` (endgame copies to cancel once
    /// a block arrives).
    pub fn is_partial(&self, piece: u32) -> bool {
        self.partial.contains_key(&piece)
    }
}

/// Distributed copies of `availability` (peer counts by piece): the lowest count, plus
/// the share of pieces above it; 0 for no pieces.
pub fn distributed_copies(availability: &[u32]) -> f64 {
    let Some(&min) = availability.iter().min() else {
        return 0.0;
    };
    let above = availability.iter().filter(|&&a| a > min).count();
    min as f64 + above as f64 / availability.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn distributed_copies_count_the_rarest_piece() {
        assert_eq!(distributed_copies(&[]), 0.0);
        assert_eq!(distributed_copies(&[0, 0, 0, 0]), 0.0);
        assert_eq!(distributed_copies(&[2, 3, 2, 3]), 2.5);
        assert_eq!(distributed_copies(&[1, 1, 1, 4]), 1.25);
    }

    #[test]
    fn skipped_pieces_are_never_picked_and_done_means_the_wanted_ones() {
        let mut p = picker(6, 16384);
        p.set_priorities(&[0, 1, 0, 1, 0, 0]);
        let all = Bitfield::full(6);
        let picked: Vec<u32> = p
            .pick(&all, 100, |_| false)
            .iter()
            .map(|b| b.piece)
            .collect();
        let mut pieces = picked.clone();
        pieces.dedup();
        pieces.sort();
        assert_eq!(pieces, [1, 3]);
        assert!(!p.is_done());
        assert_eq!(p.wanted_bytes(), 2 * 16384);
        for piece in [1, 3] {
            assert_eq!(
                p.block_received(&Block {
                    piece,
                    begin: 0,
                    length: 16384
                }),
                Received::PieceComplete
            );
            p.piece_verified(piece);
        }
        assert!(p.is_done() && !p.is_complete());
        assert!(!p.wants_from(&all));
        // Wanting another file later reopens the download.
        p.set_priorities(&[0, 1, 0, 1, 2, 0]);
        assert!(!p.is_done());
        assert_eq!(p.pick(&all, 1, |_| false)[0].piece, 4);
    }

    #[test]
    fn high_priority_first_and_sequential_in_order() {
        let mut p = picker(8, 16384);
        p.set_priorities(&[1, 1, 1, 1, 1, 2, 1, 1]);
        let all = Bitfield::full(8);
        assert_eq!(p.pick(&all, 1, |_| false)[0].piece, 5);
        let mut p = picker(8, 16384);
        p.set_sequential(true);
        let order: Vec<u32> = p.pick(&all, 8, |_| false).iter().map(|b| b.piece).collect();
        assert_eq!(order[..4], [0, 1, 2, 3]);
    }

    fn picker(pieces: u32, piece_len: u32) -> Picker {
        Picker::new(
            piece_len,
            u64::from(pieces) * u64::from(piece_len) - 100,
            Bitfield::new(pieces),
            4,
            7,
        )
    }

    #[test]
    fn skipping_whole_bytes_picks_what_a_piece_by_piece_scan_picks() {
        // Piece counts around byte edges; pieces had, offered, hashing and in progress
        // scattered by a fixed generator; every start.
        let mut x = 0x9E37_79B9u64;
        let mut bit = |one_in: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.is_multiple_of(one_in)
        };
        for n in [1u32, 7, 8, 9, 63, 64, 65, 203] {
            for round in 0..6 {
                let mut have = Bitfield::new(n);
                let mut offered = Bitfield::new(n);
                for p in 0..n {
                    if bit(if round < 3 { 2 } else { 9 }) {
                        have.set(p);
                    }
                    if bit(if round % 2 == 0 { 3 } else { 11 }) {
                        offered.set(p);
                    }
                }
                let mut pk = Picker::new(1 << 14, u64::from(n) << 14, have.clone(), 4, round);
                for p in 0..n {
                    if offered.get(p) {
                        pk.peer_has(p);
                    }
                    // Other peers: availabilities differ.
                    for _ in 0..3 {
                        if bit(2) {
                            pk.peer_has(p);
                        }
                    }
                }
                // A few pieces in progress, a few being hashed.
                let _ = pk.pick(&offered, 2, |_| false);
                for p in 0..n {
                    if !have.get(p) && bit(13) {
                        pk.hashing.set(p);
                    }
                }
                for start in 0..n {
                    let naive = (0..n)
                        .map(|k| (start + k) % n)
                        .filter(|&p| {
                            offered.get(p)
                                && !pk.have.get(p)
                                && !pk.hashing.get(p)
                                && !pk.partial.contains_key(&p)
                                && pk.priority(p) != PRIORITY_SKIP
                        })
                        .min_by_key(|&p| {
                            (
                                std::cmp::Reverse(pk.priority(p)),
                                pk.availability[p as usize],
                            )
                        });
                    let got = pk.rarest_from(&offered, start);
                    // The same availability may tie: both must be equally good.
                    let key =
                        |p: Option<u32>| p.map(|p| (pk.priority(p), pk.availability[p as usize]));
                    assert_eq!(key(got), key(naive), "n {n} round {round} start {start}");
                    assert_eq!(got.is_some(), naive.is_some());
                    if let Some(p) = got {
                        assert!(offered.get(p) && !have.get(p) && !pk.hashing.get(p));
                    }
                }
            }
        }
    }

    #[test]
    fn rarest_first() {
        let mut p = picker(8, BLOCK_SIZE);
        let all = Bitfield::full(8);
        p.peer_has_all();
        p.peer_has_all();
        p.peer_has(3); // piece 3: 3 peers; others 2
        for i in [0, 1, 2, 4, 5, 6, 7] {
            p.peer_has(i);
        }
        p.availability[5] = 1;
        let b = p.pick(&all, 1, |_| false);
        assert_eq!(
            b,
            vec![Block {
                piece: 5,
                begin: 0,
                length: BLOCK_SIZE
            }]
        );
    }

    #[test]
    fn partial_pieces_first_and_sizes() {
        let mut p = picker(3, 4 * BLOCK_SIZE);
        let all = Bitfield::full(3);
        p.peer_has_all();
        let first = p.pick(&all, 2, |_| false);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|b| b.piece == first[0].piece));
        let second = p.pick(&all, 2, |_| false);
        assert!(
            second.iter().all(|b| b.piece == first[0].piece),
            "finish the partial piece first"
        );
        // The last piece's last block is short.
        let mut q = picker(1, 4 * BLOCK_SIZE);
        let blocks = q.pick(&Bitfield::full(1), 10, |_| false);
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[3].length, BLOCK_SIZE - 100);
    }

    #[test]
    fn whole_download_with_a_failure_and_endgame() {
        let n = 5;
        let mut p = picker(n, 2 * BLOCK_SIZE);
        let all = Bitfield::full(n);
        p.peer_has_all();
        let mut failed_once = false;
        let mut rounds = 0;
        while !p.is_complete() {
            rounds += 1;
            assert!(rounds < 100);
            let blocks = p.pick(&all, 3, |_| false);
            for b in blocks {
                if p.block_received(&b) == Received::PieceComplete {
                    if !failed_once {
                        failed_once = true;
                        p.piece_failed(b.piece);
                    } else {
                        p.piece_verified(b.piece);
                    }
                }
            }
        }
        assert!(failed_once);
        assert_eq!(p.pick(&all, 3, |_| false), vec![]);
    }

    #[test]
    fn endgame_doubles_up_only_at_the_end() {
        let mut p = picker(1, 2 * BLOCK_SIZE);
        let all = Bitfield::full(1);
        p.peer_has_all();
        let a = p.pick(&all, 10, |_| false);
        assert_eq!(a.len(), 2);
        assert!(p.in_endgame());
        assert!(!p.has_endgame_copies());
        // Another peer gets the same blocks, except ones it already has requested.
        let b = p.pick(&all, 10, |blk| blk.begin == 0);
        assert_eq!(b, vec![a[1]]);
        assert!(p.has_endgame_copies());
        assert_eq!(p.block_received(&a[1]), Received::New);
        assert_eq!(p.block_received(&b[0]), Received::Duplicate);
        // A dropped request makes the block missing again (one requester left for a[0]).
        p.request_dropped(&a[0]);
        assert_eq!(p.pick(&all, 10, |_| false), vec![a[0]]);
    }

    #[test]
    fn bad_blocks_are_duplicates() {
        let mut p = picker(2, 2 * BLOCK_SIZE);
        p.peer_has_all();
        assert_eq!(
            p.block_received(&Block {
                piece: 0,
                begin: 0,
                length: BLOCK_SIZE
            }),
            Received::Duplicate
        );
        let b = p.pick(&Bitfield::full(2), 1, |_| false)[0];
        assert_eq!(
            p.block_received(&Block { length: 5, ..b }),
            Received::Duplicate
        );
        assert_eq!(
            p.block_received(&Block { begin: 3, ..b }),
            Received::Duplicate
        );
        assert_eq!(
            p.block_received(&Block { piece: 99, ..b }),
            Received::Duplicate
        );
        assert_eq!(p.block_received(&b), Received::New);
    }

    #[test]
    fn partial_pieces_are_bounded() {
        let mut p = picker(50, 4 * BLOCK_SIZE);
        p.peer_has_all();
        let blocks = p.pick(&Bitfield::full(50), 1000, |_| false);
        assert_eq!(blocks.len(), 4 * 4);
        assert_eq!(p.partial.len(), 4);
    }

    #[test]
    fn a_readers_window_is_picked_first_and_released() {
        let mut p = picker(100, BLOCK_SIZE);
        p.peer_has_all();
        // Piece 90 is the rarest and high priority; the window 40..43 still comes first.
        p.set_priorities(&[&[1u8; 90][..], &[2u8; 10][..]].concat());
        p.add_urgent(40..43);
        p.add_urgent(41..45); // a second reader, overlapping
        assert_eq!(p.urgent_count(), 5);
        let all = Bitfield::full(100);
        let first: Vec<u32> = p.pick(&all, 5, |_| false).iter().map(|b| b.piece).collect();
        assert_eq!(first, [40, 41, 42, 43, 44]);
        for piece in first {
            let b = Block {
                piece,
                begin: 0,
                length: BLOCK_SIZE,
            };
            assert_eq!(p.block_received(&b), Received::PieceComplete);
            p.piece_verified(piece);
        }
        p.remove_urgent(40..43);
        assert_eq!(
            p.urgent_count(),
            4,
            "41..45 still held by the second window"
        );
        p.remove_urgent(41..45);
        assert_eq!(p.urgent_count(), 0);
        // Released: back to priorities (the high ones, 90..100).
        let next = p.pick(&all, 1, |_| false)[0].piece;
        assert!(next >= 90, "{next}");
    }

    #[test]
    fn urgent_pieces_start_even_when_partial_pieces_are_full() {
        let mut p = picker(50, 2 * BLOCK_SIZE);
        p.peer_has_all();
        let all = Bitfield::full(50);
        // Four pieces in progress (the bound), every block requested: nothing more.
        let got = p.pick(&all, 8, |_| false);
        assert_eq!(p.partial.len(), 4);
        assert!(p.pick(&all, 2, |_| false).is_empty());
        let taken: Vec<u32> = got.iter().map(|b| b.piece).collect();
        let window = (0..50).find(|x| !taken.contains(x)).unwrap();
        p.add_urgent(window..window + 1);
        let b = p.pick(&all, 2, |_| false);
        assert_eq!(
            b.iter().map(|b| b.piece).collect::<Vec<_>>(),
            [window, window]
        );
        // A piece we have is not urgent work.
        let mut have = Bitfield::new(50);
        have.set(7);
        let mut q = Picker::new(BLOCK_SIZE, 50 * u64::from(BLOCK_SIZE), have, 4, 1);
        q.add_urgent(7..9);
        assert_eq!(q.pick(&all, 1, |_| false)[0].piece, 8);
    }

    #[test]
    fn only_pieces_the_peer_has() {
        let mut p = picker(4, BLOCK_SIZE);
        let mut peer = Bitfield::new(4);
        peer.set(2);
        p.peer_has(2);
        assert!(p.wants_from(&peer));
        let b = p.pick(&peer, 10, |_| false);
        assert_eq!(b.iter().map(|b| b.piece).collect::<Vec<_>>(), [2]);
        p.peer_gone(&peer);
        assert_eq!(p.availability[2], 0);
    }

    /// `missing` and `partial_set` say what a walk over the blocks and the map would.
    fn check_counts(p: &Picker) {
        for (&piece, part) in &p.partial {
            let walked = part
                .blocks
                .iter()
                .filter(|s| **s == BlockState::Missing)
                .count() as u32;
            assert_eq!(part.missing, walked, "piece {piece}");
            assert!(p.partial_set.get(piece), "piece {piece} not in the set");
        }
        assert_eq!(
            p.partial_set.count_ones() as usize,
            p.partial.len(),
            "the set has a piece the map has not"
        );
    }

    /// `in_endgame` as it was written before the counts: a walk over every piece and
    /// every block.
    fn in_endgame_walked(p: &Picker) -> bool {
        let untouched = (0..p.piece_count()).any(|i| {
            !p.have.get(i)
                && !p.hashing.get(i)
                && !p.partial.contains_key(&i)
                && p.priority(i) != PRIORITY_SKIP
        });
        !untouched
            && p.partial
                .values()
                .all(|part| part.blocks.iter().all(|s| *s != BlockState::Missing))
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Peer (0-2) asks for up to n blocks.
        Pick(usize, usize),
        /// The request at this index (modulo) is dropped / answered.
        Drop(usize),
        Arrive(usize),
        /// The piece being hashed at this index (modulo) passes or fails.
        Checked(usize, bool),
        /// Piece (modulo) becomes skipped or normal.
        Priority(u32, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3, 0usize..8).prop_map(|(p, n)| Op::Pick(p, n)),
            any::<usize>().prop_map(Op::Drop),
            any::<usize>().prop_map(Op::Arrive),
            (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Checked(i, ok)),
            (any::<u32>(), any::<bool>()).prop_map(|(p, skip)| Op::Priority(p, skip)),
        ]
    }

    proptest! {
        /// Whatever requests go out, come back, are dropped or fail their check: each
        /// partial piece's count of missing blocks and the set of partial pieces stay
        /// what walking the blocks says, endgame is entered when it was before, and a
        /// seed peer then takes the download to the end.
        #[test]
        fn counts_stay_true_and_the_download_finishes(
            ops in proptest::collection::vec(op(), 0..200),
            holes in proptest::collection::vec(any::<bool>(), 10),
        ) {
            // 10 pieces of 3 blocks, the last one shorter (2 blocks and a bit).
            let pieces = 10u32;
            let mut p = Picker::new(
                3 * BLOCK_SIZE,
                u64::from(pieces) * u64::from(3 * BLOCK_SIZE) - 100,
                Bitfield::new(pieces),
                3,
                11,
            );
            let mut peers = vec![Bitfield::new(pieces), Bitfield::new(pieces), Bitfield::new(pieces)];
            for i in 0..pieces {
                peers[0].set(i);
                if holes[i as usize] {
                    peers[1].set(i);
                } else {
                    peers[2].set(i);
                }
            }
            for peer in &peers {
                for i in peer.iter_ones() {
                    p.peer_has(i);
                }
            }
            let mut asked: Vec<(usize, Block)> = Vec::new();
            let mut hashing: Vec<u32> = Vec::new();
            for op in ops {
                match op {
                    Op::Pick(who, n) => {
                        let mine: Vec<Block> =
                            asked.iter().filter(|(w, _)| *w == who).map(|(_, b)| *b).collect();
                        for b in p.pick(&peers[who], n, |b| mine.contains(b)) {
                            prop_assert!(peers[who].get(b.piece));
                            asked.push((who, b));
                        }
                    }
                    Op::Drop(i) if !asked.is_empty() => {
                        let (_, b) = asked.remove(i % asked.len());
                        p.request_dropped(&b);
                    }
                    Op::Arrive(i) if !asked.is_empty() => {
                        let (_, b) = asked.remove(i % asked.len());
                        if p.block_received(&b) == Received::PieceComplete {
                            hashing.push(b.piece);
                        }
                    }
                    Op::Checked(i, ok) if !hashing.is_empty() => {
                        let piece = hashing.remove(i % hashing.len());
                        if ok {
                            p.piece_verified(piece);
                        } else {
                            p.piece_failed(piece);
                        }
                    }
                    Op::Priority(i, skip) => {
                        let mut prio = vec![PRIORITY_NORMAL; pieces as usize];
                        prio[(i % pieces) as usize] =
                            if skip { PRIORITY_SKIP } else { PRIORITY_NORMAL };
                        p.set_priorities(&prio);
                    }
                    _ => {}
                }
                check_counts(&p);
                prop_assert_eq!(p.in_endgame(), in_endgame_walked(&p));
            }
            // What is still out is answered by nobody; the seed finishes the rest.
            for (_, b) in asked.drain(..) {
                p.request_dropped(&b);
            }
            for piece in hashing.drain(..) {
                p.piece_verified(piece);
            }
            p.set_priorities(&vec![PRIORITY_NORMAL; pieces as usize]);
            for _ in 0..100 {
                if p.is_done() {
                    break;
                }
                for b in p.pick(&peers[0], 8, |_| false) {
                    if p.block_received(&b) == Received::PieceComplete {
                        p.piece_verified(b.piece);
                    }
                }
                check_counts(&p);
            }
            prop_assert!(p.is_done(), "stalled with {:?}", p.partial);
        }
    }
}
