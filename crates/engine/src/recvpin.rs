//! Downloaded blocks kept where they were received, within a memory bound.
//!
//! A connection reads into one buffer and the decoder hands each block out as a [`Bytes`]
//! slice of it. Copying every block into a piece buffer cost the downloader a tenth of its
//! CPU (a 16 KiB copy to memory that is not in cache, 1 GiB for 1 GiB); instead a piece
//! keeps its blocks as those slices, and is hashed and written from them
//! (`piecehash::sha1_many_parts`, `Storage::write_piece_parts`).
//!
//! The catch: a slice keeps the whole allocation it lies in alive (a connection's
//! receive buffer is ~256-320 KiB), so one block of a piece that stalls could hold twenty
//! times its size. Each allocation a kept block lies in is counted once, at its whole
//! size, against the torrent's [`PinBudget`]; past the budget a block is copied into
//! memory of its own (what was done for every block before), which holds nothing else.
//! The count drops when the last block kept from the allocation is let go.
//!
//! And a connection that let its buffer go for new memory at every 256 KiB would fault
//! in a fresh gigabyte for a gigabyte downloaded (the kernel zeroes each page): the
//! buffers a torrent's connections leave are kept in its [`RecvPool`] and taken again
//! once no kept block holds them.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of receive buffers that kept blocks may hold alive, per torrent. Normally the
/// blocks of the pieces in progress and of those waiting for their hash check (bounded by
/// `VERIFY_BUDGET`), plus a buffer's worth per connection.
pub(crate) const PIN_BUDGET: usize = 96 << 20;

/// The receive-buffer memory a torrent's kept blocks hold alive.
#[derive(Debug)]
pub(crate) struct PinBudget {
    pinned: AtomicUsize,
    limit: usize,
}

impl PinBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PinBudget {
            pinned: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes held alive now.
    #[cfg(test)]
    fn pinned(&self) -> usize {
        self.pinned.load(Ordering::Relaxed)
    }
}

/// One allocation of a connection's receive buffer: its address range, and whether kept
/// blocks count it against the budget.
#[derive(Debug)]
struct RecvAlloc {
    start: usize,
    end: usize,
    counted: AtomicBool,
    budget: Arc<PinBudget>,
}

impl Drop for RecvAlloc {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            self.budget
                .pinned
                .fetch_sub(self.end - self.start, Ordering::Relaxed);
        }
    }
}

/// A block as a piece keeps it: a slice of the receive buffer it came in (holding that
/// allocation counted), or a copy of its own.
#[derive(Debug)]
pub(crate) struct KeptBlock {
    pub(crate) data: Bytes,
    pin: Option<Arc<RecvAlloc>>,
}

impl KeptBlock {
    /// A block in memory of its own (no receive buffer held).
    pub(crate) fn copied(data: &[u8]) -> Self {
        KeptBlock {
            data: Bytes::copy_from_slice(data),
            pin: None,
        }
    }

    /// Let go of the receive buffer: the block is copied into memory of its own if it
    /// lies in one.
    pub(crate) fn unpin(&mut self) {
        if self.pin.is_some() {
            *self = KeptBlock::copied(&self.data);
        }
    }
}

/// A connection's view of its receive buffer's allocations.
#[derive(Debug)]
pub(crate) struct RecvPins {
    current: Option<Arc<RecvAlloc>>,
    budget: Arc<PinBudget>,
}

impl RecvPins {
    pub(crate) fn new(budget: Arc<PinBudget>) -> Self {
        RecvPins {
            current: None,
            budget,
        }
    }

    /// Call after anything that may have moved `buf` to new memory (a read, a reserve),
    /// before decoding from it: the blocks decoded next lie in its current allocation.
    pub(crate) fn track(&mut self, buf: &BytesMut) {
        let start = buf.as_ptr() as usize;
        let end = start + buf.capacity();
        let same = self
            .current
            .as_ref()
            .is_some_and(|a| a.start <= start && end <= a.end);
        if !same {
            // A new allocation (or one first seen): its range from here on. The previous
            // one stays alive, and counted, as long as blocks kept from it.
            self.current = Some(Arc::new(RecvAlloc {
                start,
                end,
                counted: AtomicBool::new(false),
                budget: self.budget.clone(),
            }));
        }
    }

    /// `data` (a block just decoded) as its piece keeps it: the slice itself if it lies in
    /// the tracked allocation and the budget has room for that allocation, else a copy.
    pub(crate) fn keep(&self, data: &Bytes) -> KeptBlock {
        let at = data.as_ptr() as usize;
        if let Some(alloc) = &self.current
            && alloc.start <= at
            && at + data.len() <= alloc.end
        {
            let counted = alloc.counted.load(Ordering::Relaxed);
            if counted || self.admit(alloc) {
                return KeptBlock {
                    data: data.clone(),
                    pin: Some(alloc.clone()),
                };
            }
        }
        KeptBlock::copied(data)
    }

    /// Count `alloc` against the budget if it fits.
    fn admit(&self, alloc: &RecvAlloc) -> bool {
        let size = alloc.end - alloc.start;
        let fits = self
            .budget
            .pinned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p + size <= self.budget.limit).then_some(p + size)
            })
            .is_ok();
        if fits {
            alloc.counted.store(true, Ordering::Relaxed);
        }
        fits
    }
}

/// Room a connection makes in its receive buffer when less than a quarter of it is
/// left ([`RecvPool::make_room`]).
pub(crate) const RECV_ROOM: usize = 256 << 10;

/// Receive buffers a torrent's connections left because kept blocks held them, for reuse
/// once they are free: at most [`RecvPool::MAX_BYTES`], oldest first.
#[derive(Debug, Default)]
pub(crate) struct RecvPool {
    /// The buffers (emptied; each still refers to its whole allocation) and the size of
    /// that allocation; and the sizes' sum.
    bufs: Mutex<(VecDeque<(BytesMut, usize)>, usize)>,
}

impl RecvPool {
    /// Bytes of buffers kept at most (those still held by blocks included).
    pub(crate) const MAX_BYTES: usize = 64 << 20;

    /// When less than a quarter of [`RECV_ROOM`] is left in `buf`, make room for
    /// `RECV_ROOM` more bytes: in place if nothing else holds it, else in a pooled buffer
    /// that is free again (the bytes not yet decoded move along), else in new memory. The
    /// buffer left goes to the pool if the pool made it (`size`, the size of `buf`'s
    /// allocation, is then not 0; it is updated).
    pub(crate) fn make_room(&self, buf: &mut BytesMut, size: &mut usize) {
        if buf.capacity() - buf.len() >= RECV_ROOM / 4 || buf.try_reclaim(RECV_ROOM) {
            return;
        }
        let needed = buf.len() + RECV_ROOM;
        let mut pool = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        let (bufs, bytes) = &mut *pool;
        // The newest free buffer: the one most likely still in the CPU's cache (its blocks
        // were hashed and written last), so that the buffers in use stay few.
        let free = bufs
            .iter_mut()
            .rposition(|(b, _)| b.capacity() >= needed || b.try_reclaim(needed));
        let (mut next, next_size) = match free {
            Some(i) => {
                let (next, next_size) = bufs.remove(i).expect("a position in the pool");
                *bytes -= next_size;
                (next, next_size)
            }
            None => {
                let next = BytesMut::with_capacity(needed);
                let cap = next.capacity();
                (next, cap)
            }
        };
        next.extend_from_slice(buf);
        let mut old = std::mem::replace(buf, next);
        let old_size = std::mem::replace(size, next_size);
        old.clear();
        // A buffer the pool did not make (it may be too small to serve again), or past
        // the pool's size, is let go: its memory is freed with its last kept block.
        if old_size != 0 && *bytes + old_size <= Self::MAX_BYTES {
            *bytes += old_size;
            bufs.push_back((old, old_size));
        }
    }

    /// Let every pooled buffer go (nobody left to download from).
    pub(crate) fn clear(&self) {
        let mut pool = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        *pool = (VecDeque::new(), 0);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.bufs.lock().unwrap().0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A receive buffer of `cap` bytes holding `blocks` blocks of `len` bytes each, split
    /// off as a decoder does.
    fn received(buf: &mut BytesMut, blocks: usize, len: usize, byte: u8) -> Vec<Bytes> {
        (0..blocks)
            .map(|i| {
                buf.put_bytes(byte.wrapping_add(i as u8), len);
                buf.split_to(len).freeze()
            })
            .collect()
    }

    #[test]
    fn kept_blocks_hold_their_allocation_counted_once_until_the_last_goes() {
        let budget = PinBudget::new(1 << 20);
        let mut pins = RecvPins::new(budget.clone());
        let mut buf = BytesMut::with_capacity(256 << 10);
        pins.track(&buf);
        let cap = buf.capacity();
        let blocks = received(&mut buf, 4, 16 << 10, 1);
        let kept: Vec<KeptBlock> = blocks.iter().map(|b| pins.keep(b)).collect();
        // Slices of the buffer, not copies; the allocation counted once, whole.
        for (k, b) in kept.iter().zip(&blocks) {
            assert_eq!(k.data.as_ptr(), b.as_ptr());
            assert_eq!(k.data, b);
        }
        assert_eq!(budget.pinned(), cap);
        // The buffer moves to new memory (it is shared, so a reserve cannot reuse it).
        buf.reserve(512 << 10);
        pins.track(&buf);
        let newer = received(&mut buf, 1, 16 << 10, 9);
        let kept_new = pins.keep(&newer[0]);
        assert_eq!(kept_new.data.as_ptr(), newer[0].as_ptr());
        assert!(budget.pinned() > cap, "the new allocation counts too");
        let both = budget.pinned();
        // The old allocation stays counted until its last kept block goes.
        drop(blocks);
        let mut kept = kept;
        kept.truncate(1);
        assert_eq!(budget.pinned(), both);
        drop(kept);
        assert_eq!(budget.pinned(), both - cap);
        drop(kept_new);
        // The connection still tracks its current allocation: counted while it does.
        assert_eq!(budget.pinned(), both - cap);
        drop(pins);
        assert_eq!(budget.pinned(), 0);
    }

    #[test]
    fn past_the_budget_blocks_are_copied_and_hold_nothing() {
        let budget = PinBudget::new(300 << 10);
        let mut a = RecvPins::new(budget.clone());
        let mut b = RecvPins::new(budget.clone());
        let mut buf_a = BytesMut::with_capacity(256 << 10);
        let mut buf_b = BytesMut::with_capacity(256 << 10);
        a.track(&buf_a);
        b.track(&buf_b);
        let from_a = received(&mut buf_a, 2, 16 << 10, 1);
        let from_b = received(&mut buf_b, 2, 16 << 10, 2);
        let kept_a = a.keep(&from_a[0]);
        assert_eq!(kept_a.data.as_ptr(), from_a[0].as_ptr());
        let pinned = budget.pinned();
        // A second allocation does not fit: the block is copied, nothing more is counted.
        let kept_b = b.keep(&from_b[0]);
        assert_ne!(kept_b.data.as_ptr(), from_b[0].as_ptr());
        assert_eq!(kept_b.data, from_b[0]);
        assert_eq!(budget.pinned(), pinned);
        // Another block of the counted allocation is still kept in place.
        let kept_a2 = a.keep(&from_a[1]);
        assert_eq!(kept_a2.data.as_ptr(), from_a[1].as_ptr());
        assert_eq!(budget.pinned(), pinned);
    }

    #[test]
    fn a_block_from_elsewhere_is_copied() {
        // Blocks decoded before the connection tracked its buffer (replayed after a
        // metadata fetch) or from another buffer.
        let budget = PinBudget::new(1 << 20);
        let mut pins = RecvPins::new(budget.clone());
        let other = Bytes::from(vec![7u8; 16 << 10]);
        let kept = pins.keep(&other);
        assert_ne!(kept.data.as_ptr(), other.as_ptr());
        let buf = BytesMut::with_capacity(64 << 10);
        pins.track(&buf);
        let kept = pins.keep(&other);
        assert_ne!(kept.data.as_ptr(), other.as_ptr());
        assert_eq!(kept.data, other);
        assert_eq!(budget.pinned(), 0);
    }

    #[test]
    fn buffers_held_by_blocks_are_reused_once_free() {
        let pool = RecvPool::default();
        let mut size = 0;
        // The connection's first buffer, not made by the pool, is held by a block: new
        // memory, and the old buffer is not pooled.
        let mut buf = BytesMut::with_capacity(64 << 10);
        buf.extend_from_slice(&[1; 20 << 10]);
        let held = buf.split_to(16 << 10).freeze();
        pool.make_room(&mut buf, &mut size);
        assert_eq!(
            &buf[..],
            &[1; 4 << 10][..],
            "the undecoded bytes move along"
        );
        assert!(buf.capacity() >= RECV_ROOM);
        assert_ne!(size, 0);
        assert_eq!(pool.len(), 0);
        drop(held);
        // Fill the buffer, keep a block of it, make room: `a` goes to the pool.
        let fill = |buf: &mut BytesMut, byte: u8| {
            buf.extend_from_slice(&vec![byte; buf.capacity() - buf.len() - 100]);
            buf.split_to(buf.len()).freeze()
        };
        let a = buf.as_ptr() as usize;
        let block_a = fill(&mut buf, 2);
        pool.make_room(&mut buf, &mut size);
        assert_eq!(pool.len(), 1);
        let b = buf.as_ptr() as usize;
        assert_ne!(a, b);
        // `a` is still held: new memory again.
        let block_b = fill(&mut buf, 3);
        pool.make_room(&mut buf, &mut size);
        assert_eq!(pool.len(), 2);
        let c = buf.as_ptr() as usize;
        assert!(c != a && c != b);
        // `a` released: it serves again, from its start, with the undecoded bytes.
        drop(block_a);
        let _block_c = fill(&mut buf, 4);
        buf.extend_from_slice(b"0123456789");
        pool.make_room(&mut buf, &mut size);
        assert_eq!(buf.as_ptr() as usize, a);
        assert_eq!(&buf[..], b"0123456789");
        assert!(buf.capacity() >= 10 + RECV_ROOM);
        assert_eq!(pool.len(), 2, "`c` went in as `a` came out");
        drop(block_b);
        pool.clear();
        assert_eq!(pool.len(), 0);
    }
}
