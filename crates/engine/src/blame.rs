//! Smart ban: find the peer that sent a bad block, and only that peer. Sans-IO.
//!
//! A BEP 3 (v1) piece is checked whole against its SHA-1, so a piece that fails says that
//! some block in it is wrong, not which one nor who sent it. Striking every peer that sent
//! a block of it punishes honest peers along with the liar (and with two strikes to a ban,
//! a fast honest seeder is soon banned). Instead, as libtorrent's smart ban does, [`Blame`]
//! remembers for each failed piece a digest of every block and who sent it. Once the piece
//! has been downloaded again and passes, every recorded block that differs from the good
//! one is proof that its sender lied: that peer, and only that peer, is blamed. A peer whose
//! blocks were all right is never blamed, however many failed pieces it had a part in.
//!
//! Two cases prove a liar at once, without waiting for the piece to pass: a failed piece
//! whose blocks all came from one peer, and a peer that sent two different versions of the
//! same block (only one of them can be right).
//!
//! The check itself is a [`Verifier`]: [`V1Verifier`] hashes whole pieces and can only say
//! [`Verdict::Passed`] or [`Verdict::Failed`]. BEP 52 (v2) torrents check every 16 KiB block
//! against the piece's Merkle tree; a v2 verifier answers [`Verdict::BadBlocks`] with the
//! exact blocks, and their senders are blamed at once, with no record and no re-download.
//!
//! Memory is bounded: at most [`MAX_RECORDED_BLOCKS`] block digests and
//! [`MAX_VERSIONS_PER_BLOCK`] versions of one block are kept; the records of the oldest
//! failed pieces are dropped first (their liars then go unproven, nobody is wrongly blamed).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The block size the pieces are cut into (as requested on the wire).
pub const BLOCK_SIZE: usize = crate::picker::BLOCK_SIZE as usize;
/// Block digests kept in all: with 20-byte digests and small peer keys, a few MiB.
pub const MAX_RECORDED_BLOCKS: usize = 64 * 1024;
/// Different (sender, digest) versions kept of one block of a failed piece.
pub const MAX_VERSIONS_PER_BLOCK: usize = 8;

/// A digest of one block's bytes (SHA-1: a liar cannot make its wrong block look right).
pub type BlockDigest = [u8; 20];

/// What checking a complete piece found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The piece is right.
    Passed,
    /// The piece is wrong; which blocks are wrong is unknown (v1).
    Failed,
    /// The piece is wrong and these blocks (indices in the piece) are the wrong ones
    /// (v2, BEP 52: each block checked against its Merkle leaf).
    BadBlocks(Vec<u32>),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        *self == Verdict::Passed
    }
}

/// Checks a complete piece.
pub trait Verifier {
    fn verify(&self, piece: u32, data: &[u8]) -> Verdict;

    /// Checks several complete pieces, in order, each given as its parts (its blocks where
    /// they were received, or one buffer); a verifier may check them together faster than
    /// one by one.
    fn verify_many(&self, pieces: &[(u32, &[&[u8]])]) -> Vec<Verdict> {
        pieces
            .iter()
            .map(|&(i, parts)| self.verify(i, &parts.concat()))
            .collect()
    }
}

/// BEP 3: the SHA-1 of the whole piece against the torrent's `pieces`.
pub struct V1Verifier<'a> {
    hashes: &'a [[u8; 20]],
}

impl<'a> V1Verifier<'a> {
    pub fn new(hashes: &'a [[u8; 20]]) -> Self {
        V1Verifier { hashes }
    }
}

impl V1Verifier<'_> {
    fn verdict(&self, piece: u32, digest: &[u8; 20]) -> Verdict {
        match self.hashes.get(piece as usize) {
            Some(h) if h == digest => Verdict::Passed,
            _ => Verdict::Failed,
        }
    }
}

impl Verifier for V1Verifier<'_> {
    fn verify(&self, piece: u32, data: &[u8]) -> Verdict {
        self.verdict(piece, &piecehash::sha1(data))
    }

    /// The pieces' SHA-1s computed together (see the `piecehash` crate: 1.8x to 2.5x
    /// faster than one at a time), from their parts where they lie.
    fn verify_many(&self, pieces: &[(u32, &[&[u8]])]) -> Vec<Verdict> {
        let parts: Vec<&[&[u8]]> = pieces.iter().map(|&(_, p)| p).collect();
        let digests = piecehash::sha1_many_parts(&parts);
        pieces
            .iter()
            .zip(&digests)
            .map(|(&(i, _), d)| self.verdict(i, d))
            .collect()
    }
}

/// The digest of each block of a piece, the blocks given in order (of [`BLOCK_SIZE`], the
/// last one may be shorter: `data.chunks(BLOCK_SIZE)` for a piece in one buffer).
pub fn block_digests<'a>(blocks: impl IntoIterator<Item = &'a [u8]>) -> Vec<BlockDigest> {
    blocks.into_iter().map(piecehash::sha1).collect()
}

/// What was received of one failed piece: for each block, the versions seen and who sent
/// each.
#[derive(Debug)]
struct FailedPiece<P> {
    blocks: Vec<Vec<(P, BlockDigest)>>,
    /// Versions recorded in `blocks`, counted against [`MAX_RECORDED_BLOCKS`].
    entries: usize,
}

/// The records of failed pieces of one torrent, keyed by piece index; `P` is whatever
/// names a peer for a ban (an address).
#[derive(Debug)]
pub struct Blame<P> {
    failed: HashMap<u32, FailedPiece<P>>,
    /// Failed pieces, oldest record first, for eviction.
    order: VecDeque<u32>,
    entries: usize,
}

impl<P> Default for Blame<P> {
    fn default() -> Self {
        Blame {
            failed: HashMap::new(),
            order: VecDeque::new(),
            entries: 0,
        }
    }
}

impl<P: Copy + Eq + Hash> Blame<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether [`Blame::piece_checked`] needs the block digests of `piece` for `verdict`
    /// (so the caller hashes blocks only when they are of use: a failed v1 piece, or a
    /// passing piece that failed before).
    pub fn needs_digests(&self, piece: u32, verdict: &Verdict) -> bool {
        match verdict {
            Verdict::Failed => true,
            Verdict::Passed => self.failed.contains_key(&piece),
            Verdict::BadBlocks(_) => false,
        }
    }

    /// Pieces with a record (failed and not yet passed).
    pub fn recorded_pieces(&self) -> usize {
        self.failed.len()
    }

    /// `piece` was checked with `verdict`. `senders[i]` sent block `i`; `digests` is
    /// [`block_digests`] of the piece when [`Blame::needs_digests`] said so (else it may be
    /// empty). Returns the peers now proven to have sent wrong data, each once.
    pub fn piece_checked(
        &mut self,
        piece: u32,
        verdict: &Verdict,
        digests: &[BlockDigest],
        senders: &[Option<P>],
    ) -> Vec<P> {
        let mut liars = Vec::new();
        let mut blame = |p: P| {
            if !liars.contains(&p) {
                liars.push(p);
            }
        };
        match verdict {
            Verdict::Passed => {
                if let Some(record) = self.forget(piece) {
                    for (versions, good) in record.blocks.iter().zip(digests) {
                        for (p, d) in versions {
                            if d != good {
                                blame(*p);
                            }
                        }
                    }
                }
            }
            Verdict::BadBlocks(bad) => {
                self.forget(piece);
                for &i in bad {
                    if let Some(Some(p)) = senders.get(i as usize) {
                        blame(*p);
                    }
                }
            }
            Verdict::Failed => {
                let mut who = senders.iter().flatten();
                let first = who.next();
                if let Some(&only) = first
                    && who.all(|p| *p == only)
                    && senders.iter().all(Option::is_some)
                {
                    // Every byte came from this peer: it sent a wrong block.
                    blame(only);
                } else {
                    for p in self.record(piece, digests, senders) {
                        blame(p);
                    }
                }
            }
        }
        liars
    }

    /// Adds the blocks of a failed piece to its record; returns the peers that sent a
    /// block differing from a version they sent before.
    fn record(&mut self, piece: u32, digests: &[BlockDigest], senders: &[Option<P>]) -> Vec<P> {
        let mut liars = Vec::new();
        let record = self.failed.entry(piece).or_insert_with(|| {
            self.order.push_back(piece);
            FailedPiece {
                blocks: Vec::new(),
                entries: 0,
            }
        });
        if record.blocks.len() < digests.len() {
            record.blocks.resize_with(digests.len(), Vec::new);
        }
        let mut added = 0;
        for ((versions, digest), sender) in record.blocks.iter_mut().zip(digests).zip(senders) {
            let Some(p) = *sender else { continue };
            if versions.contains(&(p, *digest)) {
                continue;
            }
            if versions.iter().any(|(q, _)| *q == p) && !liars.contains(&p) {
                liars.push(p); // two versions of one block from one peer
            }
            if versions.len() < MAX_VERSIONS_PER_BLOCK {
                versions.push((p, *digest));
                added += 1;
            }
        }
        record.entries += added;
        self.entries += added;
        // Oldest records go first; the one just made stays even if it alone is too big.
        while self.entries > MAX_RECORDED_BLOCKS {
            match self.order.front() {
                Some(&oldest) if oldest != piece => {
                    self.forget(oldest);
                }
                _ => break,
            }
        }
        liars
    }

    fn forget(&mut self, piece: u32) -> Option<FailedPiece<P>> {
        let record = self.failed.remove(&piece)?;
        self.entries -= record.entries;
        if let Some(at) = self.order.iter().position(|&p| p == piece) {
            self.order.remove(at);
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha1::{Digest, Sha1};

    const HONEST: u8 = 1;
    const LIAR: u8 = 2;
    const OTHER: u8 = 3;

    /// A piece of `blocks` full blocks whose bytes depend on `seed`.
    fn piece(blocks: usize, seed: u8) -> Vec<u8> {
        (0..blocks * BLOCK_SIZE)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// `good` with block `i` replaced by garbage for each `i` in `bad`.
    fn corrupt(good: &[u8], bad: &[usize], how: u8) -> Vec<u8> {
        let mut v = good.to_vec();
        for &i in bad {
            for b in &mut v[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE] {
                *b ^= how | 1;
            }
        }
        v
    }

    fn hashes_of(good: &[u8]) -> Vec<[u8; 20]> {
        vec![Sha1::digest(good).into()]
    }

    #[test]
    fn pieces_checked_together_get_their_own_verdicts() {
        let pieces: Vec<Vec<u8>> = (0..6u8).map(|i| piece(2, i)).collect();
        let hashes: Vec<[u8; 20]> = pieces.iter().map(|p| Sha1::digest(p).into()).collect();
        let bad = corrupt(&pieces[2], &[1], 9);
        let short = &pieces[4][..BLOCK_SIZE + 5];
        // In order: right, right, wrong bytes, right, a wrong length, an index past the
        // end, right.
        let batch: Vec<(u32, &[u8])> = vec![
            (0, &pieces[0]),
            (1, &pieces[1]),
            (2, &bad),
            (3, &pieces[3]),
            (4, short),
            (9, &pieces[5]),
            (5, &pieces[5]),
        ];
        let v = V1Verifier::new(&hashes);
        // Each piece as its blocks (as downloaded) and as one buffer (as rechecked).
        let blocks: Vec<Vec<&[u8]>> = batch
            .iter()
            .map(|(_, d)| d.chunks(BLOCK_SIZE).collect())
            .collect();
        let as_blocks: Vec<(u32, &[&[u8]])> = batch
            .iter()
            .zip(&blocks)
            .map(|((i, _), b)| (*i, &b[..]))
            .collect();
        let whole: Vec<[&[u8]; 1]> = batch.iter().map(|(_, d)| [*d]).collect();
        let as_whole: Vec<(u32, &[&[u8]])> = batch
            .iter()
            .zip(&whole)
            .map(|((i, _), w)| (*i, &w[..]))
            .collect();
        let got = v.verify_many(&as_blocks);
        let want: Vec<Verdict> = batch.iter().map(|&(i, d)| v.verify(i, d)).collect();
        assert_eq!(got, want);
        assert_eq!(v.verify_many(&as_whole), want);
        use Verdict::{Failed, Passed};
        assert_eq!(
            got,
            [Passed, Passed, Failed, Passed, Failed, Failed, Passed]
        );
    }

    /// Checks `data` as piece 0 against `good` the way the torrent does and returns the
    /// liars found.
    fn check(blame: &mut Blame<u8>, good: &[u8], data: &[u8], senders: &[u8]) -> Vec<u8> {
        let hashes = hashes_of(good);
        let verdict = V1Verifier::new(&hashes).verify(0, data);
        let digests = if blame.needs_digests(0, &verdict) {
            block_digests(data.chunks(BLOCK_SIZE))
        } else {
            Vec::new()
        };
        let senders: Vec<Option<u8>> = senders.iter().map(|&p| Some(p)).collect();
        blame.piece_checked(0, &verdict, &digests, &senders)
    }

    #[test]
    fn v1_verifier() {
        let good = piece(3, 7);
        let hashes = hashes_of(&good);
        let v = V1Verifier::new(&hashes);
        assert_eq!(v.verify(0, &good), Verdict::Passed);
        assert_eq!(v.verify(0, &good[1..]), Verdict::Failed);
        assert_eq!(v.verify(1, &good), Verdict::Failed, "no such piece");
        assert!(Verdict::Passed.passed() && !Verdict::Failed.passed());
    }

    #[test]
    fn only_the_sender_of_the_bad_block_is_blamed_once_the_piece_passes() {
        let good = piece(4, 1);
        let mut blame = Blame::new();
        // The liar sent block 2 (wrong), the honest peer the rest.
        let bad = corrupt(&good, &[2], 9);
        let first = [HONEST, HONEST, LIAR, HONEST];
        assert!(check(&mut blame, &good, &bad, &first).is_empty());
        assert_eq!(blame.recorded_pieces(), 1);
        // Re-downloaded, from both again, right this time (the liar sent a good block 0).
        let second = [LIAR, OTHER, HONEST, HONEST];
        assert_eq!(check(&mut blame, &good, &good, &second), vec![LIAR]);
        assert_eq!(blame.recorded_pieces(), 0);
        assert_eq!(blame.entries, 0);
    }

    #[test]
    fn a_peer_that_sent_only_good_blocks_is_never_blamed() {
        let good = piece(4, 2);
        let mut blame = Blame::new();
        // Three failures, the liar's bad block mixed with the honest peer's good ones.
        for k in 0..3 {
            let bad_block = k % 4;
            let bad = corrupt(&good, &[bad_block], 3);
            let mut senders = [HONEST; 4];
            senders[bad_block] = LIAR;
            assert!(
                check(&mut blame, &good, &bad, &senders).is_empty(),
                "round {k}"
            );
        }
        // The honest peer alone fetches the good piece.
        assert_eq!(check(&mut blame, &good, &good, &[HONEST; 4]), vec![LIAR]);
    }

    #[test]
    fn a_failed_piece_from_one_peer_proves_it_lied_at_once() {
        let good = piece(3, 3);
        let mut blame = Blame::new();
        let bad = corrupt(&good, &[1], 5);
        assert_eq!(check(&mut blame, &good, &bad, &[LIAR; 3]), vec![LIAR]);
        // A single sender of a good piece is fine, of course.
        assert!(check(&mut blame, &good, &good, &[HONEST; 3]).is_empty());
    }

    #[test]
    fn two_versions_of_one_block_from_one_peer_prove_it_lied() {
        let good = piece(2, 4);
        let mut blame = Blame::new();
        let a = corrupt(&good, &[0], 1);
        assert!(check(&mut blame, &good, &a, &[LIAR, HONEST]).is_empty());
        // The same peer now sends another wrong version of block 0.
        let b = corrupt(&good, &[0], 2);
        assert_eq!(check(&mut blame, &good, &b, &[LIAR, HONEST]), vec![LIAR]);
        // The same wrong version again proves nothing new.
        assert!(check(&mut blame, &good, &b, &[LIAR, HONEST]).is_empty());
    }

    #[test]
    fn several_liars_and_a_short_last_block() {
        // Two full blocks and a short one.
        let mut good = piece(2, 5);
        good.extend_from_slice(&[0x42; 100]);
        let mut blame = Blame::new();
        let mut bad = corrupt(&good, &[0], 1);
        bad[2 * BLOCK_SIZE + 50] ^= 0xff;
        assert!(check(&mut blame, &good, &bad, &[LIAR, HONEST, OTHER]).is_empty());
        let mut found = check(&mut blame, &good, &good, &[HONEST, HONEST, HONEST]);
        found.sort();
        assert_eq!(found, vec![LIAR, OTHER]);
    }

    #[test]
    fn v2_bad_blocks_blame_their_senders_at_once() {
        let mut blame = Blame::new();
        let senders = [Some(HONEST), Some(LIAR), Some(LIAR), Some(OTHER)];
        let verdict = Verdict::BadBlocks(vec![1, 2, 99]);
        assert!(!blame.needs_digests(0, &verdict));
        assert_eq!(blame.piece_checked(0, &verdict, &[], &senders), vec![LIAR]);
        assert_eq!(blame.recorded_pieces(), 0);
    }

    #[test]
    fn pieces_are_blamed_apart() {
        let good0 = piece(2, 6);
        let good1 = piece(2, 7);
        let mut blame: Blame<u8> = Blame::new();
        let h = [
            <[u8; 20]>::from(Sha1::digest(&good0)),
            Sha1::digest(&good1).into(),
        ];
        let v = V1Verifier::new(&h);
        let bad0 = corrupt(&good0, &[1], 1);
        let f = v.verify(0, &bad0);
        let d = block_digests(bad0.chunks(BLOCK_SIZE));
        assert!(
            blame
                .piece_checked(0, &f, &d, &[Some(HONEST), Some(LIAR)])
                .is_empty()
        );
        // Piece 1 passing says nothing about piece 0.
        assert!(!blame.needs_digests(1, &Verdict::Passed));
        let p = v.verify(1, &good1);
        assert!(
            blame
                .piece_checked(1, &p, &[], &[Some(LIAR), Some(LIAR)])
                .is_empty()
        );
        assert_eq!(blame.recorded_pieces(), 1);
    }

    #[test]
    fn memory_is_bounded_and_old_records_go_first() {
        let mut blame: Blame<u32> = Blame::new();
        let blocks = 64;
        let digests: Vec<BlockDigest> = (0..blocks).map(|i| [i as u8; 20]).collect();
        let pieces = (MAX_RECORDED_BLOCKS / blocks) as u32 + 10;
        for piece in 0..pieces {
            let senders: Vec<Option<u32>> = (0..blocks as u32).map(|i| Some(i % 2)).collect();
            blame.piece_checked(piece, &Verdict::Failed, &digests, &senders);
            assert!(blame.entries <= MAX_RECORDED_BLOCKS);
        }
        assert!(!blame.failed.contains_key(&0), "the oldest record stays");
        assert!(blame.failed.contains_key(&(pieces - 1)));
        assert_eq!(blame.order.len(), blame.failed.len());
        // Versions of one block are bounded too.
        let mut one: Blame<u32> = Blame::new();
        for p in 0..100u32 {
            let d = [[p as u8; 20], [0; 20]];
            one.piece_checked(0, &Verdict::Failed, &d, &[Some(p), Some(1000)]);
        }
        assert_eq!(one.failed[&0].blocks[0].len(), MAX_VERSIONS_PER_BLOCK);
        assert_eq!(one.entries, MAX_VERSIONS_PER_BLOCK + 1);
    }

    proptest! {
        /// Whatever mix of peers sends a piece, over failures and a final pass: honest
        /// peers are never blamed, and every liar that sent a wrong block is blamed by the
        /// time the piece passes (or earlier).
        #[test]
        fn honest_never_blamed_liars_always_found(
            rounds in proptest::collection::vec(
                proptest::collection::vec((0u8..4, any::<bool>()), 4), 1..6),
            last in proptest::collection::vec(0u8..4, 4),
        ) {
            // Peers 0 and 1 are honest; 2 and 3 lie when they choose to.
            let good = piece(4, 8);
            let mut blame = Blame::new();
            let mut blamed = Vec::new();
            let mut lied = Vec::new();
            for round in &rounds {
                let mut data = good.clone();
                for (i, &(p, lie)) in round.iter().enumerate() {
                    if p >= 2 && lie {
                        data = corrupt(&data, &[i], p);
                        if !lied.contains(&p) {
                            lied.push(p);
                        }
                    }
                }
                let senders: Vec<u8> = round.iter().map(|&(p, _)| p).collect();
                blamed.extend(check(&mut blame, &good, &data, &senders));
            }
            // The last download is all honest bytes, whoever sent them.
            blamed.extend(check(&mut blame, &good, &good, &last));
            prop_assert!(blamed.iter().all(|&p| p >= 2), "honest peer blamed: {:?}", blamed);
            for p in lied {
                prop_assert!(blamed.contains(&p), "liar {} not found", p);
            }
        }
    }
}
