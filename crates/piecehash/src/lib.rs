//! SHA-1 of several messages at once.
//!
//! Why: with the x86 SHA extensions one SHA-1 is bound by the latency of `sha1rnds4` (each
//! of a block's 20 round groups waits for the one before), not by how many the core can
//! start: on the AMD EPYC (Zen 3) cores this project is measured on one message hashes at
//! ~1.55 GB/s, two interleaved at ~2.7 GB/s, three at ~3.3 and four at 3.3-3.9 (all on
//! one core; `cargo run --release -p bitpeer-piecehash --example lanes`). A downloader verifies pieces of equal length, several of which are often ready
//! together, and a recheck or `bitpeer create` reads pieces in order: both hash them here,
//! [`MAX_LANES`] at a time. Without the extensions (or off x86-64) each message goes
//! through the `sha1` crate, and the digests are the same.

// The one unsafe part: calling the SHA-extension code after the CPU was asked whether it
// has them, and 16-byte loads from 64-byte blocks (see `x86`).
#![allow(unsafe_code)]

use sha1::{Digest, Sha1};

/// How many messages are hashed together at most: beyond four the gain stops (the
/// x86-64 vector registers run out).
pub const MAX_LANES: usize = 4;

/// The SHA-1 digests of `msgs`, in order, the same as `Sha1::digest` of each. Messages of
/// any lengths may be mixed; they are hashed up to [`MAX_LANES`] at a time while their
/// lengths allow (messages of equal length gain the most).
pub fn sha1_many(msgs: &[&[u8]]) -> Vec<[u8; 20]> {
    let parts: Vec<[&[u8]; 1]> = msgs.iter().map(|m| [*m]).collect();
    let msgs: Vec<&[&[u8]]> = parts.iter().map(|p| &p[..]).collect();
    sha1_many_parts(&msgs)
}

/// Like [`sha1_many`], for messages each given as consecutive parts: the digest of a
/// message is that of its parts joined, which are not copied together (a downloaded piece
/// is hashed from its blocks where they were received). Parts may have any lengths; whole
/// 64-byte blocks inside a part are read where they are, and only a block that straddles
/// two parts is assembled.
pub fn sha1_many_parts(msgs: &[&[&[u8]]]) -> Vec<[u8; 20]> {
    let mut out = Vec::with_capacity(msgs.len());
    for group in msgs.chunks(MAX_LANES) {
        #[cfg(target_arch = "x86_64")]
        if group.len() > 1 && x86::available() {
            x86::digest_group(group, &mut out);
            continue;
        }
        out.extend(group.iter().map(|parts| {
            let mut h = Sha1::new();
            for part in *parts {
                h.update(part);
            }
            <[u8; 20]>::from(h.finalize())
        }));
    }
    out
}

/// The SHA-1 digest of one message.
pub fn sha1(msg: &[u8]) -> [u8; 20] {
    Sha1::digest(msg).into()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    const INIT: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];

    /// Whether this CPU has what [`compress`] uses (asked once, then cached by std).
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// Digests of `group` (2 to 4 messages) appended to `out`. Only call when
    /// [`available`] said yes.
    pub(super) fn digest_group(group: &[&[&[u8]]], out: &mut Vec<[u8; 20]>) {
        match group.len() {
            2 => out.extend(lanes::<2>(group.try_into().expect("2 messages"))),
            3 => out.extend(lanes::<3>(group.try_into().expect("3 messages"))),
            4 => out.extend(lanes::<4>(group.try_into().expect("4 messages"))),
            _ => unreachable!("groups are of 2 to 4 messages"),
        }
    }

    /// Where one message's hashing stands: the part and offset of its next byte.
    struct Cursor<'a> {
        parts: &'a [&'a [u8]],
        part: usize,
        offset: usize,
        /// Bytes not yet hashed, and the message's length.
        left: u64,
        len: u64,
    }

    impl<'a> Cursor<'a> {
        fn new(parts: &'a [&'a [u8]]) -> Self {
            let len = parts.iter().map(|p| p.len() as u64).sum();
            Cursor {
                parts,
                part: 0,
                offset: 0,
                left: len,
                len,
            }
        }

        /// Whether a whole 64-byte block is left.
        fn has_block(&self) -> bool {
            self.left >= 64
        }

        /// The whole blocks that lie next in one part (none if the next block straddles
        /// two parts).
        fn run(&mut self) -> &'a [[u8; 64]] {
            while self.part < self.parts.len() && self.offset == self.parts[self.part].len() {
                self.part += 1;
                self.offset = 0;
            }
            match self.parts.get(self.part) {
                Some(part) => part[self.offset..].as_chunks::<64>().0,
                None => &[],
            }
        }

        /// Past `blocks` blocks of the current [`run`](Self::run).
        fn advance(&mut self, blocks: usize) {
            self.offset += blocks * 64;
            self.left -= blocks as u64 * 64;
        }

        /// Copy the next `out.len()` bytes (at most what is left) across parts.
        fn gather(&mut self, out: &mut [u8]) {
            let mut filled = 0;
            while filled < out.len() {
                let part = self.parts[self.part];
                let n = (part.len() - self.offset).min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&part[self.offset..self.offset + n]);
                filled += n;
                self.offset += n;
                if self.offset == part.len() {
                    self.part += 1;
                    self.offset = 0;
                }
            }
            self.left -= out.len() as u64;
        }

        /// The next block: the whole blocks of the current part, or one assembled in
        /// `scratch` when it straddles parts. Returns the run and whether it was assembled.
        fn next<'s>(&mut self, scratch: &'s mut [[u8; 64]; 1]) -> (&'s [[u8; 64]], bool)
        where
            'a: 's,
        {
            let run = self.run();
            if run.is_empty() {
                self.gather(scratch.as_flattened_mut());
                (&scratch[..], true)
            } else {
                (run, false)
            }
        }

        /// What follows the whole blocks: the last bytes, the 0x80 marker and the bit
        /// length, in one block or two.
        fn padding(&mut self) -> ([[u8; 64]; 2], usize) {
            let rest = self.left as usize;
            let mut tail = [[0u8; 64]; 2];
            let flat = tail.as_flattened_mut();
            self.gather(&mut flat[..rest]);
            flat[rest] = 0x80;
            let used = if rest < 56 { 1 } else { 2 };
            let bits = self.len.wrapping_mul(8);
            flat[used * 64 - 8..used * 64].copy_from_slice(&bits.to_be_bytes());
            (tail, used)
        }
    }

    fn lanes<const N: usize>(msgs: [&[&[u8]]; N]) -> [[u8; 20]; N] {
        let mut states = [INIT; N];
        let mut cursors: [Cursor<'_>; N] = msgs.map(Cursor::new);
        // The blocks every message has, all lanes together, as long runs as the parts
        // allow.
        while cursors.iter().all(Cursor::has_block) {
            let mut scratch = [[[0u8; 64]; 1]; N];
            let mut runs: [&[[u8; 64]]; N] = [&[]; N];
            let mut assembled = [false; N];
            for ((c, s), (run, a)) in cursors
                .iter_mut()
                .zip(scratch.iter_mut())
                .zip(runs.iter_mut().zip(assembled.iter_mut()))
            {
                (*run, *a) = c.next(s);
            }
            let k = runs.iter().map(|r| r.len()).min().unwrap_or(0);
            let blocks: [&[[u8; 64]]; N] = std::array::from_fn(|l| &runs[l][..k]);
            // SAFETY: `digest_group`'s caller checked that the CPU has these features.
            unsafe { compress(&mut states, blocks) };
            for (c, a) in cursors.iter_mut().zip(assembled) {
                if !a {
                    c.advance(k);
                }
            }
        }
        // Then each message's own remaining blocks and padding. Equal lengths (the common
        // case: pieces) keep the lanes together.
        let equal = cursors.iter().all(|c| c.len == cursors[0].len);
        if equal {
            let pads: [([[u8; 64]; 2], usize); N] = std::array::from_fn(|l| cursors[l].padding());
            let tails: [&[[u8; 64]]; N] = std::array::from_fn(|l| &pads[l].0[..pads[l].1]);
            // SAFETY: as above.
            unsafe { compress(&mut states, tails) };
        } else {
            for (state, c) in states.iter_mut().zip(cursors.iter_mut()) {
                let one = std::array::from_mut(state);
                while c.has_block() {
                    let mut scratch = [[0u8; 64]; 1];
                    let (run, assembled) = c.next(&mut scratch);
                    // SAFETY: as above.
                    unsafe { compress(one, [run]) };
                    if !assembled {
                        c.advance(run.len());
                    }
                }
                let (pad, used) = c.padding();
                // SAFETY: as above.
                unsafe { compress(one, [&pad[..used]]) };
            }
        }
        states.map(|s| {
            let mut d = [0u8; 20];
            for (out, word) in d.chunks_exact_mut(4).zip(s) {
                out.copy_from_slice(&word.to_be_bytes());
            }
            d
        })
    }

    /// Run the SHA-1 compression over `blocks[l]` into `states[l]` for each lane, the
    /// lanes interleaved. Every lane must have the same number of blocks.
    // Indexes, not iterators: every lane's arrays advance in lockstep.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
        let n = blocks[0].len();
        assert!(
            blocks.iter().all(|b| b.len() == n),
            "lanes of unequal length"
        );
        let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let zero = _mm_setzero_si128();
        let mut abcd = [zero; N];
        let mut e = [zero; N];
        for l in 0..N {
            // SAFETY: `states[l]` is 20 bytes; the load reads its first 16.
            let v = unsafe { _mm_loadu_si128(states[l].as_ptr().cast()) };
            abcd[l] = _mm_shuffle_epi32(v, 0b00011011);
            e[l] = _mm_set_epi32(states[l][4] as i32, 0, 0, 0);
        }
        // h1 = rounds(h0, h1 + w): four rounds of one lane; `$i` picks the round function.
        macro_rules! rounds {
            ($dst:ident, $src:ident, $w:ident, $i:literal) => {
                for l in 0..N {
                    $dst[l] = _mm_sha1rnds4_epu32($src[l], _mm_sha1nexte_epu32($dst[l], $w[l]), $i);
                }
            };
        }
        // The next four message words from the last sixteen.
        macro_rules! schedule {
            ($w0:ident, $w1:ident, $w2:ident, $w3:ident => $w4:ident) => {
                for l in 0..N {
                    $w4[l] = _mm_sha1msg2_epu32(
                        _mm_xor_si128(_mm_sha1msg1_epu32($w0[l], $w1[l]), $w2[l]),
                        $w3[l],
                    );
                }
            };
        }
        macro_rules! step {
            ($h0:ident, $h1:ident, $w0:ident, $w1:ident, $w2:ident, $w3:ident, $w4:ident, $i:literal) => {
                schedule!($w0, $w1, $w2, $w3 => $w4);
                rounds!($h1, $h0, $w4, $i);
            };
        }
        for k in 0..n {
            let (mut w0, mut w1, mut w2, mut w3, mut w4) =
                ([zero; N], [zero; N], [zero; N], [zero; N], [zero; N]);
            let mut h0 = abcd;
            let mut h1 = [zero; N];
            for l in 0..N {
                let p: *const __m128i = blocks[l][k].as_ptr().cast();
                // SAFETY: `p` points at 64 bytes; the loads read bytes 0..16, ..., 48..64.
                unsafe {
                    w0[l] = _mm_shuffle_epi8(_mm_loadu_si128(p), mask);
                    w1[l] = _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), mask);
                    w2[l] = _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), mask);
                    w3[l] = _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), mask);
                }
                h1[l] = _mm_sha1rnds4_epu32(h0[l], _mm_add_epi32(e[l], w0[l]), 0);
            }
            // Rounds 0..20 (the first four above).
            rounds!(h0, h1, w1, 0);
            rounds!(h1, h0, w2, 0);
            rounds!(h0, h1, w3, 0);
            step!(h0, h1, w0, w1, w2, w3, w4, 0);
            // Rounds 20..40.
            step!(h1, h0, w1, w2, w3, w4, w0, 1);
            step!(h0, h1, w2, w3, w4, w0, w1, 1);
            step!(h1, h0, w3, w4, w0, w1, w2, 1);
            step!(h0, h1, w4, w0, w1, w2, w3, 1);
            step!(h1, h0, w0, w1, w2, w3, w4, 1);
            // Rounds 40..60.
            step!(h0, h1, w1, w2, w3, w4, w0, 2);
            step!(h1, h0, w2, w3, w4, w0, w1, 2);
            step!(h0, h1, w3, w4, w0, w1, w2, 2);
            step!(h1, h0, w4, w0, w1, w2, w3, 2);
            step!(h0, h1, w0, w1, w2, w3, w4, 2);
            // Rounds 60..80.
            step!(h1, h0, w1, w2, w3, w4, w0, 3);
            step!(h0, h1, w2, w3, w4, w0, w1, 3);
            step!(h1, h0, w3, w4, w0, w1, w2, 3);
            step!(h0, h1, w4, w0, w1, w2, w3, 3);
            step!(h1, h0, w0, w1, w2, w3, w4, 3);
            for l in 0..N {
                abcd[l] = _mm_add_epi32(abcd[l], h0[l]);
                e[l] = _mm_sha1nexte_epu32(h1[l], e[l]);
            }
        }
        for l in 0..N {
            let v = _mm_shuffle_epi32(abcd[l], 0b00011011);
            // SAFETY: `states[l]` is 20 bytes; the store writes its first 16.
            unsafe { _mm_storeu_si128(states[l].as_mut_ptr().cast(), v) };
            states[l][4] = _mm_extract_epi32(e[l], 3) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ from message to message and from place to place.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn reference(msgs: &[&[u8]]) -> Vec<[u8; 20]> {
        msgs.iter().map(|m| Sha1::digest(m).into()).collect()
    }

    #[test]
    fn known_digests() {
        // FIPS 180 examples.
        let abc = sha1_many(&[b"abc", b"abc", b""]);
        assert_eq!(abc[0], abc[1]);
        assert_eq!(
            abc[0][..4],
            [0xa9, 0x99, 0x3e, 0x36],
            "SHA-1(\"abc\") = a9993e36..."
        );
        assert_eq!(
            abc[2][..4],
            [0xda, 0x39, 0xa3, 0xee],
            "SHA-1(\"\") = da39a3ee..."
        );
    }

    #[test]
    fn equal_lengths_at_every_padding_boundary() {
        // Lengths around the one- and two-block padding cases and whole pieces.
        for len in [
            0,
            1,
            55,
            56,
            57,
            63,
            64,
            65,
            119,
            120,
            128,
            1000,
            16384,
            1 << 20,
        ] {
            for lanes in 1..=9 {
                let owned: Vec<Vec<u8>> = (0..lanes)
                    .map(|i| data(len, (len * 31 + i) as u64))
                    .collect();
                let msgs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                assert_eq!(sha1_many(&msgs), reference(&msgs), "{lanes} x {len} bytes");
            }
        }
    }

    #[test]
    fn mixed_lengths() {
        // A torrent's last piece is shorter; a group may mix any lengths.
        let lens = [
            0usize, 5, 64, 200, 4096, 16384, 16383, 1, 130, 70_000, 56, 119,
        ];
        for start in 0..lens.len() {
            let owned: Vec<Vec<u8>> = lens[start..]
                .iter()
                .map(|&n| data(n, n as u64 + 7))
                .collect();
            let msgs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            assert_eq!(sha1_many(&msgs), reference(&msgs));
        }
    }

    #[test]
    fn unaligned_and_overlapping_slices() {
        let buf = data(100_003, 3);
        let msgs: Vec<&[u8]> = (0..7).map(|i| &buf[i * 3..i * 3 + 65_537]).collect();
        assert_eq!(sha1_many(&msgs), reference(&msgs));
        assert_eq!(sha1(&buf), <[u8; 20]>::from(Sha1::digest(&buf)));
    }

    /// `msg` cut into parts at `cuts` (offsets, any order, repeats make empty parts).
    fn cut<'a>(msg: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|&c| c.min(msg.len())).collect();
        at.sort_unstable();
        let mut parts = Vec::new();
        let mut from = 0;
        for c in at {
            parts.push(&msg[from..c]);
            from = c;
        }
        parts.push(&msg[from..]);
        parts
    }

    #[test]
    fn parts_give_the_digest_of_the_whole() {
        // Blocks of a piece (16 KiB parts), parts that cut 64-byte blocks, tiny and empty
        // parts, in lanes of equal and mixed lengths.
        let piece = data(1 << 20, 11);
        let blocks: Vec<&[u8]> = piece.chunks(16 << 10).collect();
        let other = data(1 << 20, 12);
        let other_blocks: Vec<&[u8]> = other.chunks(16 << 10).collect();
        let odd = data(70_001, 13);
        let odd_parts = cut(
            &odd,
            &[0, 1, 63, 64, 64, 127, 200, 4096, 4097, 65_000, 70_001],
        );
        let short = data(100, 14);
        let short_parts = cut(&short, &[3, 60, 61]);
        let empty: Vec<&[u8]> = vec![&[], &[]];
        let msgs: Vec<&[&[u8]]> = vec![&blocks, &other_blocks, &odd_parts, &short_parts, &empty];
        let whole: Vec<&[u8]> = vec![&piece, &other, &odd, &short, &[]];
        for start in 0..msgs.len() {
            for end in start..=msgs.len() {
                assert_eq!(
                    sha1_many_parts(&msgs[start..end]),
                    reference(&whole[start..end]),
                    "messages {start}..{end}"
                );
            }
        }
        // Equal lengths cut differently: the lanes stay together.
        let a = data(50_000, 15);
        let b = data(50_000, 16);
        for step in [1usize, 7, 63, 64, 65, 1000, 16384] {
            let cuts: Vec<usize> = (1..50_000 / step).map(|i| i * step).collect();
            let a_parts = cut(&a, &cuts);
            let b_parts = cut(&b, &[31, 64 * 100 + 5]);
            assert_eq!(
                sha1_many_parts(&[&a_parts, &b_parts, &a_parts]),
                reference(&[&a, &b, &a]),
                "step {step}"
            );
        }
    }

    #[test]
    fn nothing_to_hash() {
        assert!(sha1_many(&[]).is_empty());
    }
}
