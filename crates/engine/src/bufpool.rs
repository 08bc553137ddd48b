//! Buffers for pieces read from disk to upload, given back to a pool when the last block
//! sent out of them is gone. A block we send is a slice of its whole piece (no copy), and
//! it lives on in the writer's queue after the piece left the read cache; with a buffer
//! per read, a seeder serving 20 peers allocated (page faults, zeroing) every piece it
//! read. [`BufPool::bytes`] wraps a buffer in `Bytes` that return it on their last drop.
//!
//! The buffers are [`AlignedBuf`]s: what is read from a file into them starts 64-byte
//! aligned, which the kernel copies into several times faster (see the `iobuf` crate).

use bytes::Bytes;
use iobuf::AlignedBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct BufPool {
    spare: Mutex<Vec<AlignedBuf>>,
    /// At most this many bytes of buffers kept.
    max_bytes: usize,
    /// False after [`BufPool::clear`] until the next [`BufPool::take`]: buffers still in
    /// use when the pool was cleared are dropped when they come back, not kept.
    keep: AtomicBool,
}

impl BufPool {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            spare: Mutex::new(Vec::new()),
            max_bytes,
            keep: AtomicBool::new(true),
        })
    }

    /// A buffer of `len` bytes: a spare one (its old contents, to be overwritten) or a new
    /// zeroed one.
    pub fn take(&self, len: usize) -> AlignedBuf {
        self.keep.store(true, Ordering::Relaxed);
        let mut buf = self
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        buf.resize(len);
        buf
    }

    /// `buf` as `Bytes`; the buffer comes back to the pool when the last clone or slice
    /// of them is dropped.
    pub fn bytes(self: &Arc<Self>, buf: AlignedBuf) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Drops the spare buffers, and those still in use when they come back, until the
    /// next [`BufPool::take`].
    pub fn clear(&self) {
        self.keep.store(false, Ordering::Relaxed);
        *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Vec::new();
    }

    /// Bytes of spare buffers held.
    pub fn held_bytes(&self) -> usize {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.iter().map(AlignedBuf::capacity).sum()
    }

    fn give(&self, buf: AlignedBuf) {
        if !self.keep.load(Ordering::Relaxed) {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = spare.iter().map(AlignedBuf::capacity).sum();
        if held + buf.capacity() <= self.max_bytes {
            spare.push(buf);
        }
    }

    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spare.lock().unwrap().len()
    }
}

struct Pooled {
    buf: AlignedBuf,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_returns_when_its_last_slice_is_dropped() {
        let pool = BufPool::new(1 << 20);
        let mut buf = pool.take(1000);
        buf[0] = 7;
        let ptr = buf.as_ptr();
        let whole = pool.bytes(buf);
        let block = whole.slice(0..10);
        drop(whole);
        assert_eq!(pool.spare_count(), 0, "a slice still holds it");
        assert_eq!(block[0], 7);
        drop(block);
        assert_eq!(pool.spare_count(), 1);
        let again = pool.take(1000);
        assert_eq!(again.as_ptr(), ptr, "the same memory is read into again");
        assert_eq!(again.len(), 1000);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bytes() {
        let pool = BufPool::new(2500);
        let held: Vec<Bytes> = (0..4).map(|_| pool.bytes(pool.take(1000))).collect();
        drop(held);
        assert_eq!(pool.spare_count(), 2, "1064 bytes each");
        pool.clear();
        assert_eq!(pool.spare_count(), 0);
        let block = pool.bytes(pool.take(1000)).slice(0..1);
        pool.clear();
        drop(block);
        assert_eq!(
            pool.spare_count(),
            0,
            "a buffer in use when cleared is not kept"
        );
        assert_eq!(pool.held_bytes(), 0);
        drop(pool.bytes(pool.take(1000)));
        assert_eq!(pool.spare_count(), 1, "taking again keeps buffers again");
        assert_eq!(pool.held_bytes(), 1064);
    }
}
