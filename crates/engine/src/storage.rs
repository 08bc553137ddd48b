//! Storage: the torrent's files on disk, seen as the BEP 3 (v1) piece space.
//!
//! A torrent's files, laid end to end, form one byte stream cut into pieces; a piece may
//! span several files. [`Storage`] turns a piece (or a block of one) into positioned reads
//! and writes (`pread`/`pwrite`) on the files it overlaps. Every method takes `&self`, so
//! one `Arc<Storage>` serves all the threads of the blocking pool at once.
//!
//! Files are opened lazily, through a small pool of handles: at most
//! [`DEFAULT_MAX_OPEN_FILES`] per storage (see [`Storage::set_max_open_files`]), and in all
//! storages of the process together at most a budget taken from the open-file limit (a
//! quarter of `ulimit -n`, the rest being left to sockets; see [`set_open_file_budget`]).
//! The least recently used handle is closed to open another, so a torrent of 200,000 files
//! runs under `ulimit -n 1024`. (Reads and writes in flight hold their handle, so for a
//! moment a pool may hold a few more, at most one per thread of the blocking pool.) A file
//! is created (sparse, at its full length) when it is first written, not when the storage
//! opens: a download that fails early leaves nothing behind but its empty files, which
//! have no data to write and are created at once.
//!
//! BEP 47 pad files are never created: writes skip them and reads return zeros for them.
//!
//! Safety against hostile torrents: file names were already sanitized by `metainfo`, and
//! [`Storage::open`] additionally refuses to go through a symbolic link that already exists
//! inside the download folder, so a planted link cannot redirect writes outside it. (The
//! check is done with `symlink_metadata` before each open, so a link planted in the instant
//! between the check and the open is not caught; that needs `O_NOFOLLOW`/`openat`.)
//! The caller writes a piece only after its hash is verified; [`Storage::write_piece`] does
//! not hash again.

use crate::bitfield::Bitfield;
use iobuf::AlignedBuf;
use metainfo::Info;
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How many bytes of consecutive pieces one recheck thread takes at a time.
const RECHECK_BATCH_BYTES: u64 = 16 << 20;
/// Bytes of pieces a recheck thread reads before hashing them together (at most
/// `piecehash::MAX_LANES` pieces; one piece if pieces are larger).
const RECHECK_GROUP_BYTES: u64 = 16 << 20;

/// Why a storage operation failed. Each message is one line and names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: is a symbolic link; refusing to follow it out of the download folder", .0.display())]
    Symlink(PathBuf),
    #[error("{}: exists but is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: exists but is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("{}: not a plain relative path below the download folder", .0.display())]
    BadPath(PathBuf),
    #[error("{}: file is shorter than the torrent needs (at least {needed} bytes); was it truncated?", path.display())]
    ShortFile { path: PathBuf, needed: u64 },
    #[error("piece {piece} is out of range (the torrent has {count} pieces)")]
    PieceOutOfRange { piece: u32, count: u32 },
    #[error("piece {piece} is {expected} bytes, not {actual}")]
    BadLength {
        piece: u32,
        expected: u64,
        actual: u64,
    },
    #[error("block at {begin}+{len} is outside piece {piece} of {piece_size} bytes")]
    OutOfBounds {
        piece: u32,
        begin: u32,
        len: u64,
        piece_size: u64,
    },
    #[error("the torrent has no v1 piece hashes (v2-only torrents are not supported yet)")]
    NoV1Pieces,
    #[error("inconsistent file layout: {0}")]
    BadLayout(String),
    #[error("the recheck was cancelled")]
    Cancelled,
}

type Result<T> = std::result::Result<T, StorageError>;

/// Size and modification time of a file on disk, to tell whether it changed behind our
/// back between sessions (see `resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    /// Nanoseconds since the Unix epoch (negative before it).
    pub mtime_ns: i128,
}

/// Handles open at once by one storage, unless [`Storage::set_max_open_files`] says
/// otherwise.
pub const DEFAULT_MAX_OPEN_FILES: usize = 128;

/// Handles held by the pools of all storages of the process.
static OPEN_HANDLES: AtomicUsize = AtomicUsize::new(0);
/// The most handles all pools together keep (see [`set_open_file_budget`]).
static OPEN_FILE_BUDGET: OnceLock<AtomicUsize> = OnceLock::new();

fn open_file_budget() -> &'static AtomicUsize {
    OPEN_FILE_BUDGET.get_or_init(|| AtomicUsize::new(default_open_file_budget()))
}

fn default_open_file_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    budget_for_limit(limit.current)
}

/// A quarter of the soft open-file limit (`ulimit -n`; `None`: unlimited), between 16 and
/// 4096: the rest is left to sockets.
fn budget_for_limit(soft: Option<u64>) -> usize {
    let soft = soft.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft / 4).clamp(16, 4096)
}

/// Past this many files to flush, [`Storage::sync_all`] flushes the whole file system at
/// once (`syncfs`) rather than one `fsync` per file (about 1.5 ms each on ext4).
const SYNCFS_ABOVE: usize = 32;

/// Sets how many file handles the storages of this process keep open in all (at least 1
/// per storage is always allowed, so each can make progress).
pub fn set_open_file_budget(max: usize) {
    open_file_budget().store(max.max(1), Ordering::Relaxed);
}

struct StoredFile {
    path: PathBuf,
    /// `path` below the download folder.
    rel: PathBuf,
    /// Offset of the file's first byte in the torrent's byte stream.
    offset: u64,
    length: u64,
    /// How many of its first bytes were in the file before we opened it: bytes past this
    /// are zeros we made by extending it (or nothing, for a file we create), so a recheck
    /// need not read them.
    old_length: u64,
    /// Set once we write to it: then any of its bytes may hold data.
    written: AtomicBool,
    /// Written since the last [`Storage::sync_all`].
    unsynced: AtomicBool,
    /// A BEP 47 pad file: never created, reads as zeros.
    pad: bool,
    /// Not wanted: never created; its bytes that share a piece with a wanted file go to
    /// the part file.
    skipped: AtomicBool,
    /// Some of its bytes are in the part file (and the file itself was not created).
    in_part: AtomicBool,
    /// Held while a piece is written to the file. Linux serializes writes to one file on
    /// its inode lock anyway, and the writers waiting for it spin on the CPU while the
    /// holder copies: with the pieces of a fast download verified on several threads,
    /// that spinning was a fifth of the downloader's CPU. Waiting here sleeps instead.
    write_lock: Mutex<()>,
}

/// The pool of open handles of one storage: file index to handle and when it was last
/// used (a tick of `clock`).
#[derive(Default)]
struct Handles {
    open: HashMap<usize, (Arc<File>, u64)>,
    clock: u64,
}

/// One contiguous part of a piece range that lies in a single file.
struct Span<'a> {
    /// Index of `file` in the storage.
    index: usize,
    file: &'a StoredFile,
    /// Where the span starts in the file.
    file_offset: u64,
    /// Where the span starts in the caller's buffer.
    buf_offset: usize,
    len: usize,
}

/// The files of one torrent, for positioned reads and writes.
pub struct Storage {
    dir: PathBuf,
    files: Vec<StoredFile>,
    /// Where the bytes of skipped files that share pieces with wanted ones are kept: a
    /// sparse file addressed by offset in the torrent's byte stream, in the download
    /// folder, named after the torrent ([`part_file_path`]).
    part_path: PathBuf,
    part: Mutex<Option<Arc<File>>>,
    handles: Mutex<Handles>,
    max_open: AtomicUsize,
    piece_length: u64,
    total_length: u64,
    pieces: Vec<[u8; 20]>,
    piece_count: u32,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("files", &self.files.len())
            .field("piece_length", &self.piece_length)
            .field("total_length", &self.total_length)
            .field("piece_count", &self.piece_count)
            .finish()
    }
}

impl Storage {
    /// Create the download folder and every empty file of `info` below `dir`, and look at
    /// the files already there; open none (they are opened when read or written). Refuses
    /// a path that goes through a symbolic link, or a file that is a folder (or a folder a
    /// file), already there. A file shorter than its length is extended (sparse) when it is
    /// first written; a longer one is left alone and only its first `length` bytes are
    /// ever touched.
    pub fn open(info: &Info, dir: &Path) -> Result<Storage> {
        Self::open_with_skipped(info, dir, &[])
    }

    /// Like [`Storage::open`], with the files marked `true` in `skipped` (by index)
    /// not wanted: they are never created (see [`Storage::set_skipped`]).
    pub fn open_with_skipped(info: &Info, dir: &Path, skipped: &[bool]) -> Result<Storage> {
        let piece_count = check_layout(info)?;
        let part_path = part_file_path(info, dir);
        let part_exists = std::fs::symlink_metadata(&part_path).is_ok_and(|m| m.is_file());
        std::fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let mut files = Vec::with_capacity(info.files.len());
        // Folders already checked, so a torrent of many files in few folders looks at
        // each folder once.
        let mut checked = HashSet::new();
        for (i, entry) in info.files.iter().enumerate() {
            let rel = info.file_path(i);
            let skip = skipped.get(i).copied().unwrap_or(false);
            let mut old_length = 0;
            let mut exists = false;
            if !entry.attr.pad {
                old_length = look_at(dir, &rel, &mut checked)?.min(entry.length);
                exists = std::fs::symlink_metadata(dir.join(&rel)).is_ok();
                if entry.length == 0 && !skip {
                    open_file(dir, &rel, 0, true)?;
                }
            }
            files.push(StoredFile {
                path: dir.join(&rel),
                rel,
                offset: entry.offset,
                length: entry.length,
                old_length,
                written: AtomicBool::new(false),
                unsynced: AtomicBool::new(false),
                pad: entry.attr.pad,
                skipped: AtomicBool::new(skip),
                // A file that is not there while a part file is may have bytes in it.
                in_part: AtomicBool::new(part_exists && !exists && !entry.attr.pad),
                write_lock: Mutex::new(()),
            });
        }
        let storage = Storage {
            dir: dir.to_path_buf(),
            files,
            part_path,
            part: Mutex::new(None),
            handles: Mutex::new(Handles::default()),
            max_open: AtomicUsize::new(DEFAULT_MAX_OPEN_FILES),
            piece_length: info.piece_length,
            total_length: info.total_length,
            pieces: info.pieces.clone(),
            piece_count,
        };
        // Files wanted now whose bytes wait in the part file move into place.
        storage.migrate_wanted()?;
        Ok(storage)
    }

    /// Mark files (by index) as not wanted, or wanted again. A skipped file is never
    /// created; a file wanted again gets its bytes back from the part file.
    pub fn set_skipped(&self, skipped: &[bool]) -> Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            f.skipped
                .store(skipped.get(i).copied().unwrap_or(false), Ordering::Relaxed);
        }
        self.migrate_wanted()
    }

    /// Copy the part-file bytes of every wanted file that has some into the file (at most
    /// its first and last piece: bytes of a skipped file are only ever written for the
    /// pieces it shares with wanted files).
    fn migrate_wanted(&self) -> Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            if f.pad || f.skipped.load(Ordering::Relaxed) || !f.in_part.load(Ordering::Relaxed) {
                continue;
            }
            let Some(part) = self.part_handle(false)? else {
                f.in_part.store(false, Ordering::Relaxed);
                continue;
            };
            let plen = self.piece_length;
            let first_end = ((f.offset / plen) + 1) * plen;
            let last_start = ((f.offset + f.length).saturating_sub(1) / plen) * plen;
            let mut ranges = vec![(f.offset, (f.offset + f.length).min(first_end))];
            if last_start > f.offset {
                ranges.push((last_start.max(first_end), f.offset + f.length));
            }
            let handle = self.handle(i, true)?;
            for (a, b) in ranges {
                if b <= a {
                    continue;
                }
                let mut buf = vec![0u8; (b - a) as usize];
                let n = read_up_to(&part, &mut buf, a)
                    .map_err(|source| io_err(&self.part_path, source))?;
                if n == 0 {
                    continue;
                }
                if let Some(h) = &handle {
                    h.write_all_at(&buf[..n], a - f.offset)
                        .map_err(|source| io_err(&f.path, source))?;
                    f.written.store(true, Ordering::Relaxed);
                    f.unsynced.store(true, Ordering::Relaxed);
                }
            }
            f.in_part.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The part file, opened (created, to `write`) once.
    fn part_handle(&self, write: bool) -> Result<Option<Arc<File>>> {
        let mut part = self.part.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = part.as_ref() {
            return Ok(Some(f.clone()));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(write);
        match opts.open(&self.part_path) {
            Ok(f) => {
                let f = Arc::new(f);
                *part = Some(f.clone());
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_err(&self.part_path, source)),
        }
    }

    /// Whether the bytes of file `f` go to (and come from) the part file.
    fn uses_part(f: &StoredFile) -> bool {
        f.in_part.load(Ordering::Relaxed)
            || (f.skipped.load(Ordering::Relaxed)
                && f.old_length == 0
                && !f.written.load(Ordering::Relaxed))
    }

    /// Keep at most `max` files of this storage open at once (at least 1).
    pub fn set_max_open_files(&self, max: usize) {
        self.max_open.store(max.max(1), Ordering::Relaxed);
    }

    /// Files of this storage open now (in its pool).
    pub fn open_files(&self) -> usize {
        self.pool().open.len()
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle of file `index` from the pool, opened if needed (and, to `write`, created
    /// and extended to its length). `None`: the file is not there and we only read.
    fn handle(&self, index: usize, write: bool) -> Result<Option<Arc<File>>> {
        {
            let mut pool = self.pool();
            pool.clock += 1;
            let now = pool.clock;
            if let Some((file, used)) = pool.open.get_mut(&index) {
                *used = now;
                return Ok(Some(file.clone()));
            }
        }
        // Opened outside the lock: a slow open (or a folder to create) delays no one else.
        let f = &self.files[index];
        let Some((file, _)) = open_file(&self.dir, &f.rel, f.length, write)? else {
            return Ok(None);
        };
        let file = Arc::new(file);
        let mut pool = self.pool();
        let now = pool.clock;
        if let Some((other, _)) = pool.open.get(&index) {
            return Ok(Some(other.clone())); // another thread opened it meanwhile
        }
        let max = self.max_open.load(Ordering::Relaxed);
        let budget = open_file_budget().load(Ordering::Relaxed);
        while !pool.open.is_empty()
            && (pool.open.len() >= max || OPEN_HANDLES.load(Ordering::Relaxed) >= budget)
        {
            // Close the least recently used (a scan of at most `max` entries, on a miss).
            let oldest = pool
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(&i, _)| i);
            if let Some(i) = oldest {
                pool.open.remove(&i);
                OPEN_HANDLES.fetch_sub(1, Ordering::Relaxed);
            }
        }
        pool.open.insert(index, (file.clone(), now));
        OPEN_HANDLES.fetch_add(1, Ordering::Relaxed);
        Ok(Some(file))
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Length of `piece`, or an error if there is no such piece.
    pub fn piece_size(&self, piece: u32) -> Result<u64> {
        if piece >= self.piece_count {
            return Err(StorageError::PieceOutOfRange {
                piece,
                count: self.piece_count,
            });
        }
        let start = piece as u64 * self.piece_length;
        Ok(self.piece_length.min(self.total_length - start))
    }

    /// Write a whole piece (whose hash the caller has verified) to the files it covers.
    pub fn write_piece(&self, piece: u32, data: &[u8]) -> Result<()> {
        self.write_piece_parts(piece, &[data])
    }

    /// [`write_piece`](Self::write_piece) of the piece whose bytes are `parts` joined (a
    /// downloaded piece's blocks, where they were received): each file's share goes in
    /// one vectored write, nothing is copied together first.
    pub fn write_piece_parts(&self, piece: u32, parts: &[&[u8]]) -> Result<()> {
        let size = self.piece_size(piece)?;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if total != size {
            return Err(StorageError::BadLength {
                piece,
                expected: size,
                actual: total,
            });
        }
        let start = piece as u64 * self.piece_length;
        for span in self.spans(start, size) {
            if span.file.pad {
                continue; // never written
            }
            let bytes = slices_of(parts, span.buf_offset, span.len);
            if Self::uses_part(span.file) {
                let Some(part) = self.part_handle(true)? else {
                    continue; // not reached: opened to write, the part file is created
                };
                span.file.in_part.store(true, Ordering::Relaxed);
                write_all_vectored_at(&part, bytes, span.file.offset + span.file_offset)
                    .map_err(|source| io_err(&self.part_path, source))?;
                continue;
            }
            let Some(handle) = self.handle(span.index, true)? else {
                continue; // not reached: opened to write, the file is created
            };
            span.file.written.store(true, Ordering::Relaxed);
            span.file.unsynced.store(true, Ordering::Relaxed);
            let _writing = span
                .file
                .write_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            write_all_vectored_at(&handle, bytes, span.file_offset)
                .map_err(|source| io_err(&span.file.path, source))?;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes of `piece` starting at `begin`. Pad-file ranges read as zeros;
    /// a file shorter than the torrent says gives [`StorageError::ShortFile`].
    pub fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> Result<()> {
        let size = self.piece_size(piece)?;
        let len = buf.len() as u64;
        if begin as u64 + len > size {
            return Err(StorageError::OutOfBounds {
                piece,
                begin,
                len,
                piece_size: size,
            });
        }
        let start = piece as u64 * self.piece_length + begin as u64;
        for span in self.spans(start, len) {
            let part = &mut buf[span.buf_offset..span.buf_offset + span.len];
            if span.file.pad {
                part.fill(0);
                continue;
            }
            let short = || StorageError::ShortFile {
                path: span.file.path.clone(),
                needed: span.file_offset + span.len as u64,
            };
            if span.file.in_part.load(Ordering::Relaxed) {
                let Some(part_file) = self.part_handle(false)? else {
                    return Err(short());
                };
                let n = read_up_to(&part_file, part, span.file.offset + span.file_offset)
                    .map_err(|source| io_err(&self.part_path, source))?;
                if n < span.len {
                    return Err(short());
                }
                continue;
            }
            let Some(handle) = self.handle(span.index, false)? else {
                return Err(short()); // not created yet: none of its data is here
            };
            handle
                .read_exact_at(part, span.file_offset)
                .map_err(|source| {
                    if source.kind() == io::ErrorKind::UnexpectedEof {
                        short()
                    } else {
                        io_err(&span.file.path, source)
                    }
                })?;
        }
        Ok(())
    }

    /// Read the whole piece into `buf` (resized to fit, its allocation reused, its bytes
    /// aligned for fast reads) and compare its SHA-1 with the torrent's. A file too short
    /// to hold the piece means the data is not there: `Ok(false)`, not an error.
    pub fn verify_piece(&self, piece: u32, buf: &mut AlignedBuf) -> Result<bool> {
        Ok(self.verify_pieces(&[piece], std::slice::from_mut(buf))?[0])
    }

    /// [`Storage::verify_piece`] for several pieces, `pieces[i]` read into `bufs[i]`, the
    /// SHA-1s computed together (see the `piecehash` crate). `bufs` must be at least as
    /// many as `pieces`.
    pub fn verify_pieces(&self, pieces: &[u32], bufs: &mut [AlignedBuf]) -> Result<Vec<bool>> {
        assert!(bufs.len() >= pieces.len(), "a buffer for every piece");
        let mut read = Vec::with_capacity(pieces.len());
        for (&piece, buf) in pieces.iter().zip(bufs.iter_mut()) {
            let size = self.piece_size(piece)?;
            let size = usize::try_from(size)
                .map_err(|_| StorageError::BadLayout(format!("piece of {size} bytes")))?;
            buf.resize(size);
            match self.read(piece, 0, buf) {
                Ok(()) => read.push(true),
                Err(StorageError::ShortFile { .. }) => read.push(false),
                Err(e) => return Err(e),
            }
        }
        let data: Vec<&[u8]> = bufs
            .iter()
            .zip(&read)
            .filter(|(_, r)| **r)
            .map(|(b, _)| &b[..])
            .collect();
        let mut digests = piecehash::sha1_many(&data).into_iter();
        Ok(pieces
            .iter()
            .zip(read)
            .map(|(&piece, was_read)| {
                was_read
                    && digests
                        .next()
                        .is_some_and(|d| d == self.pieces[piece as usize])
            })
            .collect())
    }

    /// Hash every piece on `threads` threads (0: one per core) and return the pieces whose
    /// data is correct. `progress` grows by the bytes checked; setting `cancel` stops the
    /// work soon and returns [`StorageError::Cancelled`].
    pub fn recheck(
        &self,
        threads: usize,
        progress: &AtomicU64,
        cancel: &AtomicBool,
    ) -> Result<Bitfield> {
        self.recheck_in_batches(threads, RECHECK_BATCH_BYTES, progress, cancel)
    }

    fn recheck_in_batches(
        &self,
        threads: usize,
        batch_bytes: u64,
        progress: &AtomicU64,
        cancel: &AtomicBool,
    ) -> Result<Bitfield> {
        let per_batch = (batch_bytes / self.piece_length).max(1) as usize;
        let count = self.piece_count as usize;
        let batches = count.div_ceil(per_batch);
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, batches.max(1));
        let next = AtomicUsize::new(0);
        // Set when one thread fails, so the others stop early.
        let failed = AtomicBool::new(false);

        // Pieces read, then hashed together (up to `piecehash::MAX_LANES` at once, and
        // about RECHECK_GROUP_BYTES of them).
        let group = (RECHECK_GROUP_BYTES / self.piece_length).clamp(1, piecehash::MAX_LANES as u64)
            as usize;
        let worker = || -> Result<Vec<u32>> {
            let mut have = Vec::new();
            let mut bufs: Vec<AlignedBuf> = (0..group).map(|_| AlignedBuf::default()).collect();
            let mut pieces = Vec::with_capacity(group);
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok(have);
                }
                let first = batch * per_batch;
                let mut piece = first;
                let end = (first + per_batch).min(count);
                while piece < end {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(StorageError::Cancelled);
                    }
                    if failed.load(Ordering::Relaxed) {
                        return Ok(have);
                    }
                    pieces.clear();
                    while piece < end && pieces.len() < group {
                        let p = piece as u32; // < piece_count, a u32
                        piece += 1;
                        if self.may_hold_data(p) {
                            pieces.push(p);
                        } else {
                            // Only zeros we wrote ourselves: nothing to read.
                            progress.fetch_add(self.piece_size(p)?, Ordering::Relaxed);
                        }
                    }
                    let ok = self.verify_pieces(&pieces, &mut bufs).inspect_err(|_| {
                        failed.store(true, Ordering::Relaxed);
                    })?;
                    for (&p, ok) in pieces.iter().zip(ok) {
                        if ok {
                            have.push(p);
                        }
                        progress.fetch_add(self.piece_size(p)?, Ordering::Relaxed);
                    }
                }
            }
        };

        let results: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });

        let mut bitfield = Bitfield::new(self.piece_count);
        let mut first_error = None;
        for r in results {
            match r {
                Ok(have) => have.into_iter().for_each(|p| {
                    bitfield.set(p);
                }),
                // A real I/O error says more than the cancellation it may have raced with.
                Err(StorageError::Cancelled) => {
                    first_error.get_or_insert(StorageError::Cancelled);
                }
                Err(e) => {
                    if matches!(first_error, None | Some(StorageError::Cancelled)) {
                        first_error = Some(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if cancel.load(Ordering::Relaxed) => Err(StorageError::Cancelled),
            None => Ok(bitfield),
        }
    }

    /// Flush to disk (`fsync`) every file written since the last call, whether its handle
    /// is still open or was closed since. Call it before taking [`Storage::file_stamps`]
    /// for resume data, so a crash cannot leave resume data claiming pieces that were lost.
    pub fn sync_all(&self) -> Result<()> {
        let part = self.part.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(p) = part {
            p.sync_all()
                .map_err(|source| io_err(&self.part_path, source))?;
        }
        let unsynced = self
            .files
            .iter()
            .filter(|f| f.unsynced.load(Ordering::Relaxed))
            .count();
        if cfg!(target_os = "linux") && unsynced > SYNCFS_ABOVE {
            for f in &self.files {
                f.unsynced.store(false, Ordering::Relaxed);
            }
            let synced = sync_file_system(&self.dir);
            if synced.is_err() {
                self.files
                    .iter()
                    .for_each(|f| f.unsynced.store(true, Ordering::Relaxed));
            }
            return synced.map_err(|source| io_err(&self.dir, source));
        }
        for (i, f) in self.files.iter().enumerate() {
            if f.unsynced.swap(false, Ordering::Relaxed) {
                let synced = match self.handle(i, false) {
                    Ok(Some(h)) => h.sync_all().map_err(|source| io_err(&f.path, source)),
                    Ok(None) => Ok(()), // removed behind our back: nothing to flush
                    Err(e) => Err(e),
                };
                if synced.is_err() {
                    f.unsynced.store(true, Ordering::Relaxed);
                }
                synced?;
            }
        }
        Ok(())
    }

    /// Size and modification time of every non-pad file, in torrent order, as on disk (a
    /// file not created yet: size and time 0).
    pub fn file_stamps(&self) -> Result<Vec<FileStamp>> {
        self.files
            .iter()
            .filter(|f| !f.pad)
            .map(|f| match std::fs::symlink_metadata(&f.path) {
                Ok(m) => Ok(FileStamp {
                    size: m.len(),
                    mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileStamp {
                    size: 0,
                    mtime_ns: 0,
                }),
                Err(source) => Err(io_err(&f.path, source)),
            })
            .collect()
    }

    /// Whether any byte of `piece` lies where a file had data before we opened it (pad
    /// files hold none). A freshly created download is all "no", so its first recheck
    /// reads nothing; a piece that is really all zeros is then fetched once more, which is
    /// harmless.
    fn may_hold_data(&self, piece: u32) -> bool {
        let start = u64::from(piece) * self.piece_length;
        let len = self.piece_size(piece).unwrap_or(0);
        self.spans(start, len).any(|s| {
            s.file_offset < s.file.old_length
                || s.file.written.load(Ordering::Relaxed)
                || s.file.in_part.load(Ordering::Relaxed)
        })
    }

    /// The parts of the byte range `start..start+len` of the torrent, file by file.
    fn spans(&self, start: u64, len: u64) -> impl Iterator<Item = Span<'_>> {
        let end = start + len;
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter_map(move |(k, f)| {
                let s = start.max(f.offset);
                let e = end.min(f.offset + f.length);
                (e > s).then(|| Span {
                    index: first + k,
                    file: f,
                    file_offset: s - f.offset,
                    buf_offset: (s - start) as usize,
                    len: (e - s) as usize,
                })
            })
    }
}

/// The pieces of `parts` (joined) from `offset`, `len` bytes long.
fn slices_of<'a>(parts: &[&'a [u8]], offset: usize, len: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let (mut skip, mut want) = (offset, len);
    for part in parts {
        if want == 0 {
            break;
        }
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let n = (part.len() - skip).min(want);
        out.push(&part[skip..skip + n]);
        want -= n;
        skip = 0;
    }
    out
}

/// Write all of `bufs`, joined, at `offset`, with as few `pwritev` calls as the kernel
/// allows (at most `IOV_MAX`, 1024, buffers each).
fn write_all_vectored_at(file: &File, mut bufs: Vec<&[u8]>, mut offset: u64) -> io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut first = 0;
    loop {
        // Empty buffers write nothing: step over them.
        while first < bufs.len() && bufs[first].is_empty() {
            first += 1;
        }
        if first == bufs.len() {
            return Ok(());
        }
        let batch: Vec<io::IoSlice<'_>> = bufs[first..bufs.len().min(first + IOV_MAX)]
            .iter()
            .map(|b| io::IoSlice::new(b))
            .collect();
        let mut n = match rustix::io::pwritev(file, &batch, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += n as u64;
        while n > 0 {
            let len = bufs[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                bufs[first] = &bufs[first][n..];
                n = 0;
            }
        }
    }
}

fn io_err(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Check that `info`'s files tile its byte stream and that it has one v1 hash per piece;
/// returns the piece count. `metainfo` guarantees this for parsed torrents, but `Info` is a
/// plain struct and a wrong layout here would mean writes in the wrong place.
fn check_layout(info: &Info) -> Result<u32> {
    if info.pieces.is_empty() {
        return Err(StorageError::NoV1Pieces);
    }
    if info.piece_length == 0 {
        return Err(StorageError::BadLayout("piece length is 0".into()));
    }
    let mut offset = 0u64;
    for (i, f) in info.files.iter().enumerate() {
        if f.offset != offset {
            return Err(StorageError::BadLayout(format!(
                "file {i} starts at {} instead of {offset}",
                f.offset
            )));
        }
        offset = offset
            .checked_add(f.length)
            .ok_or_else(|| StorageError::BadLayout("total length overflows".into()))?;
    }
    if offset != info.total_length || offset == 0 {
        return Err(StorageError::BadLayout(format!(
            "files add up to {offset} bytes, the torrent says {}",
            info.total_length
        )));
    }
    let expected = offset.div_ceil(info.piece_length);
    if info.pieces.len() as u64 != expected {
        return Err(StorageError::BadLayout(format!(
            "{} piece hashes for {expected} pieces",
            info.pieces.len()
        )));
    }
    u32::try_from(expected).map_err(|_| StorageError::BadLayout(format!("{expected} pieces")))
}

/// Flushes the file system that holds `dir` (`syncfs`).
#[cfg(target_os = "linux")]
fn sync_file_system(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_file_system(_dir: &Path) -> io::Result<()> {
    Err(io::Error::other("syncfs is Linux-only")) // not called: sync_all checks
}

impl Drop for Storage {
    fn drop(&mut self) {
        let n = self.pool().open.len();
        OPEN_HANDLES.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Where the part file of the torrent `info` lives in `dir`: named after the torrent's
/// piece hashes, so two torrents never share one.
pub fn part_file_path(info: &Info, dir: &Path) -> PathBuf {
    let mut h = Sha1::new();
    for p in &info.pieces {
        h.update(p);
    }
    h.update(info.name.as_bytes());
    let d = h.finalize();
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!(".bitpeer-{hex}.parts"))
}

/// Read into `buf` at `offset` until it is full or the file ends; how many bytes came.
fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether `rel`, below `dir`, is a plain relative path.
fn check_rel(rel: &Path) -> Result<Vec<Component<'_>>> {
    let parts: Vec<_> = rel.components().collect();
    if parts.is_empty() || parts.iter().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(StorageError::BadPath(rel.to_path_buf()));
    }
    Ok(parts)
}

/// Looks at what is already at `dir/rel`, without creating or opening anything: refuses a
/// symbolic link on the way, a file where a folder must be and the other way round.
/// Returns the length of the file there (0 if there is none). `checked` holds the folders
/// already looked at.
fn look_at(dir: &Path, rel: &Path, checked: &mut HashSet<PathBuf>) -> Result<u64> {
    let parts = check_rel(rel)?;
    let mut cur = dir.to_path_buf();
    for (n, part) in parts.iter().enumerate() {
        cur.push(part);
        let last = n + 1 == parts.len();
        if !last && checked.contains(&cur) {
            continue;
        }
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err(StorageError::Symlink(cur)),
            Ok(m) if !last && !m.is_dir() => return Err(StorageError::NotADirectory(cur)),
            Ok(m) if last && !m.is_file() => return Err(StorageError::NotAFile(cur)),
            Ok(m) if last => return Ok(m.len()),
            Ok(_) => {
                checked.insert(cur.clone());
            }
            // Nothing here, so nothing below either.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(io_err(&cur, source)),
        }
    }
    Ok(0)
}

/// Open the file `rel` below `dir` for reading and writing, refusing to pass through any
/// symbolic link below `dir`. With `create`, a missing file and its folders are created and
/// a file shorter than `length` is extended (sparse); without, a missing file is `None`.
/// Returns the file and its length before we opened it.
fn open_file(dir: &Path, rel: &Path, length: u64, create: bool) -> Result<Option<(File, u64)>> {
    let parts = check_rel(rel)?;
    let mut cur = dir.to_path_buf();
    for (n, part) in parts.iter().enumerate() {
        cur.push(part);
        let last = n + 1 == parts.len();
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err(StorageError::Symlink(cur)),
            Ok(m) if !last && !m.is_dir() => return Err(StorageError::NotADirectory(cur)),
            Ok(m) if last && !m.is_file() => return Err(StorageError::NotAFile(cur)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                if !last {
                    match std::fs::create_dir(&cur) {
                        Ok(()) => {}
                        // Someone made it between our look and now: look again.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            let m = std::fs::symlink_metadata(&cur)
                                .map_err(|source| io_err(&cur, source))?;
                            if m.file_type().is_symlink() {
                                return Err(StorageError::Symlink(cur));
                            }
                            if !m.is_dir() {
                                return Err(StorageError::NotADirectory(cur));
                            }
                        }
                        Err(source) => return Err(io_err(&cur, source)),
                    }
                }
            }
            Err(source) => return Err(io_err(&cur, source)),
        }
    }
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&cur)
    {
        Ok(f) => f,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_err(&cur, source)),
    };
    let meta = file.metadata().map_err(|source| io_err(&cur, source))?;
    if !meta.is_file() {
        return Err(StorageError::NotAFile(cur));
    }
    if create && meta.len() < length {
        file.set_len(length)
            .map_err(|source| io_err(&cur, source))?;
    }
    Ok(Some((file, meta.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metainfo::{FileAttr, FileEntry, Version};
    use proptest::prelude::*;
    use std::sync::Arc;

    const PIECE: u64 = 16;

    /// Files (name, length, pad): pieces cross a/b, b/pad; an empty file; a pad file that
    /// aligns c to a piece boundary; a short last piece.
    const LAYOUT: &[(&str, u64, bool)] = &[
        ("a.bin", 10, false),
        ("empty.txt", 0, false),
        ("sub/b.bin", 25, false),
        (".pad/13", 13, true),
        ("sub/deeper/c.bin", 40, false),
    ];

    fn stream_byte(i: u64) -> u8 {
        (i.wrapping_mul(31) ^ (i >> 3)) as u8 | 1 // never zero, so missing data shows
    }

    /// The torrent's byte stream (pad ranges zero) and its `Info`.
    fn fixture() -> (Info, Vec<u8>) {
        let mut files = Vec::new();
        let mut stream = Vec::new();
        for &(name, length, pad) in LAYOUT {
            let offset = stream.len() as u64;
            for i in offset..offset + length {
                stream.push(if pad { 0 } else { stream_byte(i) });
            }
            files.push(FileEntry {
                path: name.split('/').map(String::from).collect(),
                length,
                offset,
                attr: FileAttr {
                    pad,
                    ..FileAttr::default()
                },
                pieces_root: None,
            });
        }
        let pieces = stream
            .chunks(PIECE as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let info = Info {
            name: "t".into(),
            piece_length: PIECE,
            pieces,
            files,
            single_file: false,
            private: false,
            version: Version::V1,
            total_length: stream.len() as u64,
        };
        (info, stream)
    }

    fn piece_of(stream: &[u8], p: u32) -> &[u8] {
        stream.chunks(PIECE as usize).nth(p as usize).unwrap()
    }

    fn no_cancel() -> (AtomicU64, AtomicBool) {
        (AtomicU64::new(0), AtomicBool::new(false))
    }

    /// A piece written from parts (a downloaded piece's blocks where they were received)
    /// lands byte for byte as written whole: parts that cross file boundaries, pad files
    /// and the part file of a skipped file, empty parts; a wrong total is refused.
    #[test]
    fn pieces_written_from_parts_land_as_written_whole() {
        let (info, stream) = fixture();
        let skip = [false, false, true, false, false];
        for cut in [1usize, 3, 5, 7, 16] {
            let tmp = tempfile::tempdir().unwrap();
            let st = Storage::open_with_skipped(&info, tmp.path(), &skip).unwrap();
            for p in 0..6 {
                let piece = piece_of(&stream, p);
                let mut parts: Vec<&[u8]> = piece.chunks(cut).collect();
                parts.insert(1, &[]);
                parts.push(&[]);
                st.write_piece_parts(p, &parts).unwrap();
            }
            let mut buf = AlignedBuf::default();
            for p in 0..6 {
                assert!(
                    st.verify_piece(p, &mut buf).unwrap(),
                    "cut {cut}, piece {p}"
                );
            }
            assert!(!tmp.path().join("t/sub/b.bin").exists());
            let short: Vec<&[u8]> = piece_of(&stream, 0)[..15].chunks(4).collect();
            assert!(matches!(
                st.write_piece_parts(0, &short),
                Err(StorageError::BadLength { actual: 15, .. })
            ));
            let long = [piece_of(&stream, 0), &[1u8][..]];
            assert!(matches!(
                st.write_piece_parts(0, &long),
                Err(StorageError::BadLength { .. })
            ));
            // Unskipped, the straddling bytes come out of the part file right.
            st.set_skipped(&[]).unwrap();
            for p in [1, 2] {
                let parts: Vec<&[u8]> = piece_of(&stream, p).chunks(cut).collect();
                st.write_piece_parts(p, &parts).unwrap();
            }
            for p in 0..6 {
                assert!(
                    st.verify_piece(p, &mut buf).unwrap(),
                    "cut {cut}, piece {p}"
                );
            }
            // Nothing was written past a file's end.
            for &(name, length, _) in LAYOUT.iter().filter(|f| !f.2) {
                let on_disk = std::fs::read(tmp.path().join("t").join(name)).unwrap();
                assert_eq!(on_disk.len() as u64, length, "cut {cut}, {name}");
            }
        }
    }

    /// A skipped file is never created: the bytes of it that share a piece with a wanted
    /// file live in the part file, read back from there, and move into the file once it
    /// is wanted again (also after a restart).
    #[test]
    fn skipped_files_are_not_created_and_straddling_bytes_go_to_the_part_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("downloads");
        let (info, stream) = fixture();
        // Skip sub/b.bin (index 2): pieces 0 (a + b) and 2 (b + pad) straddle it.
        let skip = [false, false, true, false, false];
        let st = Storage::open_with_skipped(&info, &dir, &skip).unwrap();
        for p in [0, 3, 4, 5] {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        assert!(
            !dir.join("t/sub/b.bin").exists(),
            "a skipped file is not created"
        );
        assert!(dir.join("t/a.bin").exists());
        assert!(part_file_path(&info, &dir).exists());
        let mut buf = AlignedBuf::default();
        assert!(
            st.verify_piece(0, &mut buf).unwrap(),
            "read back from the part file"
        );
        st.sync_all().unwrap();
        drop(st);

        // After a restart with b still skipped, piece 0 still reads right.
        let st = Storage::open_with_skipped(&info, &dir, &skip).unwrap();
        assert!(st.verify_piece(0, &mut buf).unwrap());
        assert!(!dir.join("t/sub/b.bin").exists());
        // Wanted again: its bytes come out of the part file into the file.
        st.set_skipped(&[]).unwrap();
        assert!(dir.join("t/sub/b.bin").exists());
        for p in [1, 2] {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        for p in 0..6 {
            assert!(st.verify_piece(p, &mut buf).unwrap(), "piece {p}");
        }
        let (progress, cancel) = no_cancel();
        assert_eq!(st.recheck(1, &progress, &cancel).unwrap().count_ones(), 6);
        drop(st);

        // A fresh open with nothing skipped and a part file left over also migrates.
        let dir2 = tmp.path().join("again");
        let st = Storage::open_with_skipped(&info, &dir2, &skip).unwrap();
        st.write_piece(0, piece_of(&stream, 0)).unwrap();
        st.sync_all().unwrap();
        drop(st);
        let st = Storage::open(&info, &dir2).unwrap();
        assert!(dir2.join("t/sub/b.bin").exists());
        assert!(st.verify_piece(0, &mut buf).unwrap());
    }

    #[test]
    fn storage_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Storage>();
        check::<Arc<Storage>>();
    }

    #[test]
    fn write_read_verify_recheck() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("downloads");
        let (info, stream) = fixture();
        let st = Storage::open(&info, &dir).unwrap();
        assert_eq!(st.piece_count(), 6);

        // Nothing is created before it is written, but the empty file (which never is);
        // no file is open.
        for &(name, length, _) in LAYOUT {
            let path = dir.join("t").join(name);
            assert_eq!(path.exists(), length == 0, "{name}");
        }
        assert!(!dir.join("t/.pad").exists());
        assert!(!dir.join("t/sub").exists());
        assert_eq!(st.open_files(), 0);
        // Stamps of files not there yet.
        let sizes: Vec<u64> = st.file_stamps().unwrap().iter().map(|s| s.size).collect();
        assert_eq!(sizes, [0, 0, 0, 0]);

        // Nothing written yet: nothing verifies.
        let (progress, cancel) = no_cancel();
        assert_eq!(st.recheck(2, &progress, &cancel).unwrap().count_ones(), 0);
        assert_eq!(progress.load(Ordering::Relaxed), stream.len() as u64);

        // Write every piece but 3.
        for p in (0..6).filter(|&p| p != 3) {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        let mut buf = AlignedBuf::default();
        for p in 0..6 {
            assert_eq!(st.verify_piece(p, &mut buf).unwrap(), p != 3, "piece {p}");
        }

        // Every block, at pseudo-random offsets and lengths, reads back as written.
        let mut seed = 12345u64;
        let mut rand = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let p = rand(6) as u32;
            if p == 3 {
                continue;
            }
            let size = st.piece_size(p).unwrap();
            let begin = rand(size + 1);
            let len = rand(size - begin + 1) as usize;
            let mut block = vec![0xAA; len];
            st.read(p, begin as u32, &mut block).unwrap();
            let want = &piece_of(&stream, p)[begin as usize..begin as usize + len];
            assert_eq!(block, want, "piece {p} at {begin}+{len}");
        }

        // Corrupt one byte of piece 1 (which lies in sub/b.bin) behind storage's back.
        let b = OpenOptions::new()
            .write(true)
            .open(dir.join("t/sub/b.bin"))
            .unwrap();
        b.write_all_at(&[0], 10).unwrap(); // stream offset 20: piece 1
        assert!(!st.verify_piece(1, &mut buf).unwrap());
        // Checked together (hashed in lanes), each piece keeps its own answer: a wrong
        // one, a missing one and the shorter last one among right ones.
        let mut bufs: Vec<AlignedBuf> = (0..6).map(|_| AlignedBuf::default()).collect();
        assert_eq!(
            st.verify_pieces(&[0, 1, 2, 3, 4, 5], &mut bufs).unwrap(),
            [true, false, true, false, true, true]
        );
        assert_eq!(
            st.verify_pieces(&[5, 3, 1, 0], &mut bufs).unwrap(),
            [true, false, false, true]
        );

        let want = [0, 2, 4, 5];
        for threads in [0, 1, 3] {
            let (progress, cancel) = no_cancel();
            let have = st.recheck(threads, &progress, &cancel).unwrap();
            assert_eq!(have.iter_ones().collect::<Vec<_>>(), want);
            assert_eq!(progress.load(Ordering::Relaxed), stream.len() as u64);
        }
        // Small batches, so several threads really share the work.
        let (progress, cancel) = no_cancel();
        let have = st.recheck_in_batches(3, PIECE, &progress, &cancel).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), want);

        // Still the right lengths; still no pad file.
        for &(name, length, pad) in LAYOUT {
            let path = dir.join("t").join(name);
            assert_eq!(pad, !path.exists());
            if !pad {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), length);
            }
        }

        // Stamps: one per non-pad file, sizes as on disk.
        st.sync_all().unwrap();
        let stamps = st.file_stamps().unwrap();
        let sizes: Vec<u64> = stamps.iter().map(|s| s.size).collect();
        assert_eq!(sizes, [10, 0, 25, 40]);
        assert!(stamps.iter().all(|s| s.mtime_ns > 0));
    }

    #[test]
    fn a_fresh_download_is_not_read_back_but_existing_data_is() {
        // All zeros: a new, sparse file would hash right, so only the skip explains a miss.
        let stream = [0u8; 40];
        let info = Info {
            name: "z.bin".into(),
            piece_length: PIECE,
            pieces: stream
                .chunks(PIECE as usize)
                .map(|c| Sha1::digest(c).into())
                .collect(),
            files: vec![FileEntry {
                path: vec!["z.bin".into()],
                length: 40,
                offset: 0,
                attr: FileAttr::default(),
                pieces_root: None,
            }],
            single_file: true,
            private: false,
            version: Version::V1,
            total_length: 40,
        };
        let tmp = tempfile::tempdir().unwrap();
        let fresh = Storage::open(&info, tmp.path()).unwrap();
        let (progress, cancel) = no_cancel();
        assert_eq!(
            fresh.recheck(1, &progress, &cancel).unwrap().count_ones(),
            0
        );
        assert_eq!(
            progress.load(Ordering::Relaxed),
            40,
            "skipped bytes still count"
        );
        // Written pieces are read again, even in the same session.
        fresh.write_piece(1, &stream[16..32]).unwrap();
        let have = fresh.recheck(1, &progress, &cancel).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), [0, 1, 2]);
        // A file that was there before holds data worth checking.
        let again = Storage::open(&info, tmp.path()).unwrap();
        assert_eq!(
            again.recheck(1, &progress, &cancel).unwrap().count_ones(),
            3
        );
    }

    #[test]
    fn reopening_keeps_data_and_longer_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, stream) = fixture();
        {
            let st = Storage::open(&info, tmp.path()).unwrap();
            for p in 0..6 {
                st.write_piece(p, piece_of(&stream, p)).unwrap();
            }
        }
        // A longer file is left alone, not truncated.
        let a = tmp.path().join("t/a.bin");
        OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(100)
            .unwrap();
        let st = Storage::open(&info, tmp.path()).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 100);
        let (progress, cancel) = no_cancel();
        assert!(st.recheck(0, &progress, &cancel).unwrap().is_full());
    }

    #[test]
    fn out_of_range_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, stream) = fixture();
        let st = Storage::open(&info, tmp.path()).unwrap();
        let mut buf = [0u8; 4];
        assert!(matches!(
            st.write_piece(6, &[0; 16]),
            Err(StorageError::PieceOutOfRange { piece: 6, count: 6 })
        ));
        assert!(matches!(
            st.write_piece(0, &stream[..15]),
            Err(StorageError::BadLength { .. })
        ));
        // The last piece is 8 bytes: a full-size write is wrong too.
        assert!(matches!(
            st.write_piece(5, &[1; 16]),
            Err(StorageError::BadLength { .. })
        ));
        assert!(matches!(
            st.read(6, 0, &mut buf),
            Err(StorageError::PieceOutOfRange { .. })
        ));
        assert!(matches!(
            st.read(0, 13, &mut buf),
            Err(StorageError::OutOfBounds { .. })
        ));
        assert!(matches!(
            st.read(5, 5, &mut buf),
            Err(StorageError::OutOfBounds { .. })
        ));
        assert!(matches!(
            st.read(0, u32::MAX, &mut buf),
            Err(StorageError::OutOfBounds { .. })
        ));
        assert!(
            st.verify_piece(u32::MAX, &mut AlignedBuf::default())
                .is_err()
        );
        // In range, but nothing written yet: the files are not there.
        assert!(matches!(
            st.read(0, 12, &mut buf),
            Err(StorageError::ShortFile { .. })
        ));
        st.write_piece(0, &stream[..16]).unwrap();
        st.read(0, 12, &mut buf).unwrap();
        st.read(5, 8, &mut []).unwrap();
    }

    #[test]
    fn truncated_file_is_a_typed_error_and_a_failed_piece() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, stream) = fixture();
        let st = Storage::open(&info, tmp.path()).unwrap();
        for p in 0..6 {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        let b = tmp.path().join("t/sub/b.bin");
        OpenOptions::new()
            .write(true)
            .open(&b)
            .unwrap()
            .set_len(6) // piece 0 still fits, pieces 1 and 2 do not
            .unwrap();
        let mut buf = [0u8; 16];
        let err = st.read(1, 0, &mut buf).unwrap_err();
        assert!(matches!(err, StorageError::ShortFile { .. }), "{err}");
        assert!(err.to_string().contains("b.bin"), "{err}");
        assert!(!st.verify_piece(1, &mut AlignedBuf::default()).unwrap());
        let (progress, cancel) = no_cancel();
        let have = st.recheck(2, &progress, &cancel).unwrap();
        assert_eq!(have.iter_ones().collect::<Vec<_>>(), [0, 3, 4, 5]);
    }

    #[test]
    fn symlink_inside_download_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let dir = tmp.path().join("dl");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(dir.join("t")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("t/sub")).unwrap();
        let (info, _) = fixture();
        let err = Storage::open(&info, &dir).unwrap_err();
        assert!(
            matches!(&err, StorageError::Symlink(p) if p.ends_with("t/sub")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        // A link in place of the file itself.
        std::fs::remove_file(dir.join("t/sub")).unwrap();
        let target = outside.join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("t/a.bin")).unwrap();
        let err = Storage::open(&info, &dir).unwrap_err();
        assert!(
            matches!(&err, StorageError::Symlink(p) if p.ends_with("t/a.bin")),
            "{err}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn single_file_and_bad_layouts() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..40u64).map(stream_byte).collect();
        let mut info = Info {
            name: "one.iso".into(),
            piece_length: PIECE,
            pieces: data.chunks(16).map(|c| Sha1::digest(c).into()).collect(),
            files: vec![FileEntry {
                path: vec!["one.iso".into()],
                length: 40,
                offset: 0,
                attr: FileAttr::default(),
                pieces_root: None,
            }],
            single_file: true,
            private: false,
            version: Version::V1,
            total_length: 40,
        };
        let st = Storage::open(&info, tmp.path()).unwrap();
        for p in 0..3 {
            st.write_piece(p, &data[p as usize * 16..(p as usize * 16 + 16).min(40)])
                .unwrap();
        }
        assert_eq!(std::fs::read(tmp.path().join("one.iso")).unwrap(), data);

        info.pieces.pop();
        assert!(matches!(
            Storage::open(&info, tmp.path()),
            Err(StorageError::BadLayout(_))
        ));
        info.pieces.clear();
        assert!(matches!(
            Storage::open(&info, tmp.path()),
            Err(StorageError::NoV1Pieces)
        ));
    }

    #[test]
    fn cancelled_recheck() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, _) = fixture();
        let st = Storage::open(&info, tmp.path()).unwrap();
        let progress = AtomicU64::new(0);
        let cancel = AtomicBool::new(true);
        assert!(matches!(
            st.recheck(2, &progress, &cancel),
            Err(StorageError::Cancelled)
        ));
    }

    #[test]
    fn random_reads_never_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let (info, stream) = fixture();
        let st = Storage::open(&info, tmp.path()).unwrap();
        for p in 0..6 {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        let strategy = (
            prop_oneof![0u32..8, any::<u32>()],
            prop_oneof![0u32..20, any::<u32>()],
            0usize..40,
        );
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&strategy, |(piece, begin, len)| {
                let mut buf = vec![0u8; len];
                let result = st.read(piece, begin, &mut buf);
                let in_range =
                    piece < 6 && begin as u64 + len as u64 <= st.piece_size(piece).unwrap_or(0);
                prop_assert_eq!(result.is_ok(), in_range);
                if in_range {
                    let want = &piece_of(&stream, piece)[begin as usize..begin as usize + len];
                    prop_assert_eq!(&buf[..], want);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_few_handles_serve_many_files() {
        // 300 files of 7 bytes (some pieces span three files), at most 3 open at once,
        // written by 4 threads at a time.
        let tmp = tempfile::tempdir().unwrap();
        let n = 300u64;
        let stream: Vec<u8> = (0..n * 7).map(stream_byte).collect();
        let files = (0..n)
            .map(|i| FileEntry {
                path: vec![format!("d{}", i % 7), format!("f{i}")],
                length: 7,
                offset: i * 7,
                attr: FileAttr::default(),
                pieces_root: None,
            })
            .collect();
        let info = Info {
            name: "many".into(),
            piece_length: PIECE,
            pieces: stream
                .chunks(PIECE as usize)
                .map(|c| Sha1::digest(c).into())
                .collect(),
            files,
            single_file: false,
            private: false,
            version: Version::V1,
            total_length: n * 7,
        };
        let st = Storage::open(&info, tmp.path()).unwrap();
        st.set_max_open_files(3);
        assert!(!tmp.path().join("many").join("d0").exists());
        let count = st.piece_count();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (st, stream) = (&st, &stream);
                scope.spawn(move || {
                    for p in (t..count).step_by(4) {
                        st.write_piece(p, piece_of(stream, p)).unwrap();
                        assert!(st.open_files() <= 3);
                    }
                });
            }
        });
        assert!(st.open_files() <= 3);
        // Every file was flushed, though most were closed before the sync.
        st.sync_all().unwrap();
        assert!(st.files.iter().all(|f| !f.unsynced.load(Ordering::Relaxed)));
        let (progress, cancel) = no_cancel();
        assert!(st.recheck(3, &progress, &cancel).unwrap().is_full());
        assert!(st.open_files() <= 3);
        for i in 0..n {
            let path = tmp.path().join(format!("many/d{}/f{i}", i % 7));
            let want = &stream[(i * 7) as usize..(i * 7 + 7) as usize];
            assert_eq!(std::fs::read(&path).unwrap(), want, "{}", path.display());
        }
        // The handles go back to the process-wide count when the storage is dropped.
        drop(st);
        let st = Storage::open(&info, tmp.path()).unwrap();
        assert_eq!(st.open_files(), 0);
        assert!(st.recheck(1, &progress, &cancel).unwrap().is_full());
    }

    #[test]
    fn the_budget_is_a_quarter_of_the_open_file_limit() {
        assert_eq!(budget_for_limit(Some(1024)), 256);
        assert_eq!(budget_for_limit(Some(40)), 16);
        assert_eq!(budget_for_limit(Some(u64::MAX)), 4096);
        assert_eq!(budget_for_limit(None), 4096);
    }
}
