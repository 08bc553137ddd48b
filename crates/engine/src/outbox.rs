//! What one peer connection has handed to its writer and not yet written (sans-IO): the
//! bytes, and the pieces its queued blocks keep alive. A block we send is a slice of the
//! whole piece read from disk (no copy), so a queued block pins its piece: a peer that
//! asks for one block of each of many large pieces and never reads would otherwise make
//! us hold every one of them. The connection asks [`Outbox::may_queue`] before it serves
//! a block; the writer reports what it wrote.

use rustc_hash::FxHashMap;

#[derive(Debug, Default)]
pub struct Outbox {
    bytes: usize,
    /// Queued blocks per piece, and each piece's size.
    pieces: FxHashMap<u32, (u32, usize)>,
    pinned: usize,
}

impl Outbox {
    /// Whether a block of `len` bytes from `piece` (of `piece_size` bytes) may be queued
    /// without going over `max_bytes` queued or `max_pinned` bytes of pieces kept alive
    /// (a piece already pinned costs nothing more; two pieces are always allowed).
    pub fn may_queue(
        &self,
        piece: u32,
        piece_size: usize,
        len: usize,
        max_bytes: usize,
        max_pinned: usize,
    ) -> bool {
        if self.bytes > 0 && self.bytes + len > max_bytes {
            return false;
        }
        if self.pieces.contains_key(&piece) {
            return true;
        }
        self.pinned + piece_size <= max_pinned.max(2 * piece_size)
    }

    pub fn queued(&mut self, piece: u32, piece_size: usize, len: usize) {
        self.bytes += len;
        let e = self.pieces.entry(piece).or_insert((0, piece_size));
        if e.0 == 0 {
            self.pinned += piece_size;
        }
        e.0 += 1;
    }

    /// The writer wrote a block of `piece`.
    pub fn written(&mut self, piece: u32, len: usize) {
        self.bytes = self.bytes.saturating_sub(len);
        if let Some(e) = self.pieces.get_mut(&piece) {
            e.0 -= 1;
            if e.0 == 0 {
                let size = e.1;
                self.pieces.remove(&piece);
                self.pinned = self.pinned.saturating_sub(size);
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn pinned(&self) -> usize {
        self.pinned
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn blocks_of_one_piece_flow_up_to_the_byte_bound() {
        let mut o = Outbox::default();
        let mut n = 0;
        while o.may_queue(0, 4 * MIB, 16384, 4 * MIB, 16 * MIB) {
            o.queued(0, 4 * MIB, 16384);
            n += 1;
        }
        assert_eq!(n, 256);
        assert_eq!(o.pinned(), 4 * MIB);
        o.written(0, 16384);
        assert!(o.may_queue(0, 4 * MIB, 16384, 4 * MIB, 16 * MIB));
    }

    #[test]
    fn one_block_of_each_of_many_pieces_pins_at_most_the_bound() {
        let mut o = Outbox::default();
        let mut pieces = 0;
        for p in 0..768 {
            if o.may_queue(p, 4 * MIB, 16384, 4 * MIB, 16 * MIB) {
                o.queued(p, 4 * MIB, 16384);
                pieces += 1;
            }
        }
        assert_eq!(pieces, 4);
        assert!(o.pinned() <= 16 * MIB);
        // Once written, the pieces are free again.
        for p in 0..4 {
            o.written(p, 16384);
        }
        assert!(o.is_empty());
        assert_eq!(o.pinned(), 0);
        assert!(o.may_queue(700, 4 * MIB, 16384, 4 * MIB, 16 * MIB));
    }

    #[test]
    fn huge_pieces_still_allow_two() {
        let mut o = Outbox::default();
        assert!(o.may_queue(0, 64 * MIB, 16384, 4 * MIB, 16 * MIB));
        o.queued(0, 64 * MIB, 16384);
        assert!(o.may_queue(1, 64 * MIB, 16384, 4 * MIB, 16 * MIB));
        o.queued(1, 64 * MIB, 16384);
        assert!(!o.may_queue(2, 64 * MIB, 16384, 4 * MIB, 16 * MIB));
    }
}
