//! Read buffers whose bytes start at a 64-byte aligned address.
//!
//! Why: the kernel copies page cache into user memory with `rep movsb`, and on the AMD EPYC
//! cores this project is measured on that copy runs 3-5 times slower when the destination
//! is 1 to 31 bytes ahead of the source modulo 4096 (0.63 against 0.12 CPU-s per GiB of
//! 4 MiB reads; 16 KiB reads 0.75 against 0.37). A large `Vec<u8>` from the allocator
//! starts 16 bytes into a page (the allocator's header before an `mmap`ed block), which is
//! exactly that case for every read at a page-aligned file offset: reading pieces to
//! upload, rechecking, creating torrents, importing files into IPFS. A destination at a
//! multiple of 64 is never 1 to 31 bytes ahead of a page-aligned source. Measurements:
//! bench/README ("Reads into aligned buffers").

use std::io::{self, Read};
use std::ops::{Deref, DerefMut};

/// Where the bytes of an [`AlignedBuf`], and of [`read_aligned`], start: a multiple of this.
pub const ALIGN: usize = 64;

/// A reusable buffer of `len` initialized bytes starting at a 64-byte aligned address.
#[derive(Debug, Default)]
pub struct AlignedBuf {
    /// The allocation; `vec[start..start + len]` are the bytes.
    vec: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zeroed bytes.
    pub fn zeroed(len: usize) -> Self {
        let mut buf = Self::default();
        buf.resize(len);
        buf
    }

    /// Makes the buffer `len` bytes long. The memory is kept if it is big enough, and only
    /// bytes never initialized before are zeroed: the others keep old contents, to be
    /// overwritten by the caller.
    pub fn resize(&mut self, len: usize) {
        if self.vec.capacity() < len + ALIGN {
            // A new block rather than a grown one: the old bytes need not move.
            self.vec = Vec::with_capacity(len + ALIGN);
        }
        // The block does not move from here on (its capacity is enough), so neither does
        // this offset.
        self.start = pad_of(&self.vec);
        if self.vec.len() < self.start + len {
            self.vec.resize(self.start + len, 0);
        }
        self.len = len;
    }

    /// Bytes the buffer holds on to, padding included.
    pub fn capacity(&self) -> usize {
        self.vec.capacity()
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.vec[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Padding bytes that put the next byte pushed on `vec` at an aligned address (a `Vec`'s
/// slice starts where its block does, even when empty).
fn pad_of(vec: &[u8]) -> usize {
    vec.as_ptr().align_offset(ALIGN).min(ALIGN)
}

/// Reads up to `size` bytes of `reader` into `buf` (emptied first; its memory reused), so
/// that they start at an aligned address: `Ok(start)`, with the bytes in `buf[start..]`
/// (fewer than `size` only at the end of the input). Only the bytes read are initialized,
/// so a small input in a big buffer costs what it holds, not the buffer. An interrupted
/// read is retried.
pub fn read_aligned(reader: &mut dyn Read, buf: &mut Vec<u8>, size: usize) -> io::Result<usize> {
    buf.clear();
    buf.reserve(size + ALIGN);
    // With the capacity there, the reads below do not move the block (if one did, only
    // the speed would change, not the bytes).
    let start = pad_of(buf);
    buf.resize(start, 0);
    reader.take(size as u64).read_to_end(buf)?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_start_aligned_and_keep_their_memory() {
        let mut buf = AlignedBuf::default();
        assert!(buf.is_empty());
        for len in [1000, 300_000, 5, 300_000, 0, 1 << 20] {
            buf.resize(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr() as usize % ALIGN, 0, "len {len}");
        }
        buf[..3].copy_from_slice(b"abc");
        let ptr = buf.as_ptr();
        buf.resize(10);
        assert_eq!(buf.as_ptr(), ptr, "a smaller size keeps the memory");
        assert_eq!(&buf[..3], b"abc", "and what was in it");
        buf.resize(1 << 20);
        assert_eq!(buf.as_ptr(), ptr);
        assert_eq!(&buf[..3], b"abc");
        assert!(AlignedBuf::zeroed(5000).iter().all(|&b| b == 0));
        assert!(buf.capacity() >= (1 << 20) + ALIGN);
    }

    #[test]
    fn reads_start_aligned_and_hold_what_was_read() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = Vec::new();
        let mut reader = &data[..];
        let start = read_aligned(&mut reader, &mut buf, 4096).unwrap();
        assert_eq!(buf[start..].as_ptr() as usize % ALIGN, 0);
        assert_eq!(&buf[start..], &data[..4096]);
        let start = read_aligned(&mut reader, &mut buf, 8192).unwrap();
        assert_eq!(buf[start..].as_ptr() as usize % ALIGN, 0);
        assert_eq!(&buf[start..], &data[4096..], "a short read at the end");
        let start = read_aligned(&mut reader, &mut buf, 8192).unwrap();
        assert!(buf[start..].is_empty());
    }
}
