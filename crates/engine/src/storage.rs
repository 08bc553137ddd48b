//! Storage: the torrent's files on disk, seen as the BEP 3 (v1) piece space.
//!
//! A torrent's files, laid end to end, form one byte stream cut into pieces; a piece may
//! span several files. [`Storage`] opens every file once, keeps the handles, and turns a
//! piece (or a block of one) into positioned reads and writes (`pread`/`pwrite`) on the
//! files it overlaps. Every method takes `&self`, so one `Arc<Storage>` serves all the
//! threads of the blocking pool at once without a lock.
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
use metainfo::Info;
use sha1::{Digest, Sha1};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How many bytes of consecutive pieces one recheck thread takes at a time.
const RECHECK_BATCH_BYTES: u64 = 4 << 20;

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

struct StoredFile {
    path: PathBuf,
    /// Offset of the file's first byte in the torrent's byte stream.
    offset: u64,
    length: u64,
    /// How many of its first bytes were in the file before we opened it: bytes past this
    /// are zeros we made by extending it, so a recheck need not read them.
    old_length: u64,
    /// Set once we write to it: then any of its bytes may hold data.
    written: AtomicBool,
    /// `None` for a BEP 47 pad file.
    handle: Option<File>,
}

/// One contiguous part of a piece range that lies in a single file.
struct Span<'a> {
    file: &'a StoredFile,
    /// Where the span starts in the file.
    file_offset: u64,
    /// Where the span starts in the caller's buffer.
    buf_offset: usize,
    len: usize,
}

/// The files of one torrent, open for positioned reads and writes.
pub struct Storage {
    files: Vec<StoredFile>,
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
    /// Create the download folder, every sub-folder and every non-pad file of `info` below
    /// `dir`, and open them all. A file shorter than its length is extended (sparse); a
    /// longer one is left alone and only its first `length` bytes are ever touched.
    pub fn open(info: &Info, dir: &Path) -> Result<Storage> {
        let piece_count = check_layout(info)?;
        std::fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let mut files = Vec::with_capacity(info.files.len());
        for (i, entry) in info.files.iter().enumerate() {
            let path = dir.join(info.file_path(i));
            let (handle, old_length) = if entry.attr.pad {
                (None, 0)
            } else {
                let (file, old) = open_file(dir, &info.file_path(i), entry.length)?;
                (Some(file), old.min(entry.length))
            };
            files.push(StoredFile {
                path,
                offset: entry.offset,
                length: entry.length,
                old_length,
                written: AtomicBool::new(false),
                handle,
            });
        }
        Ok(Storage {
            files,
            piece_length: info.piece_length,
            total_length: info.total_length,
            pieces: info.pieces.clone(),
            piece_count,
        })
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
        let size = self.piece_size(piece)?;
        if data.len() as u64 != size {
            return Err(StorageError::BadLength {
                piece,
                expected: size,
                actual: data.len() as u64,
            });
        }
        let start = piece as u64 * self.piece_length;
        for span in self.spans(start, size) {
            let Some(handle) = &span.file.handle else {
                continue; // pad file: never written
            };
            let part = &data[span.buf_offset..span.buf_offset + span.len];
            span.file.written.store(true, Ordering::Relaxed);
            handle
                .write_all_at(part, span.file_offset)
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
            let Some(handle) = &span.file.handle else {
                part.fill(0);
                continue;
            };
            handle
                .read_exact_at(part, span.file_offset)
                .map_err(|source| {
                    if source.kind() == io::ErrorKind::UnexpectedEof {
                        StorageError::ShortFile {
                            path: span.file.path.clone(),
                            needed: span.file_offset + span.len as u64,
                        }
                    } else {
                        io_err(&span.file.path, source)
                    }
                })?;
        }
        Ok(())
    }

    /// Read the whole piece into `buf` (resized to fit, its allocation reused) and compare
    /// its SHA-1 with the torrent's. A file too short to hold the piece means the data is
    /// not there: `Ok(false)`, not an error.
    pub fn verify_piece(&self, piece: u32, buf: &mut Vec<u8>) -> Result<bool> {
        let size = self.piece_size(piece)?;
        let size = usize::try_from(size)
            .map_err(|_| StorageError::BadLayout(format!("piece of {size} bytes")))?;
        buf.resize(size, 0);
        match self.read(piece, 0, buf) {
            Ok(()) => {}
            Err(StorageError::ShortFile { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        let digest = Sha1::digest(&buf[..]);
        Ok(digest.as_slice() == self.pieces[piece as usize])
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

        let worker = || -> Result<Vec<u32>> {
            let mut have = Vec::new();
            let mut buf = Vec::new();
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok(have);
                }
                let first = batch * per_batch;
                for piece in first..(first + per_batch).min(count) {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(StorageError::Cancelled);
                    }
                    if failed.load(Ordering::Relaxed) {
                        return Ok(have);
                    }
                    let piece = piece as u32; // < piece_count, a u32
                    if !self.may_hold_data(piece) {
                        // Only zeros we wrote ourselves: nothing to read.
                        progress.fetch_add(self.piece_size(piece)?, Ordering::Relaxed);
                        continue;
                    }
                    let ok = self.verify_piece(piece, &mut buf).inspect_err(|_| {
                        failed.store(true, Ordering::Relaxed);
                    })?;
                    if ok {
                        have.push(piece);
                    }
                    progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
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

    /// Flush every file to disk (`fsync`). Call it before taking [`Storage::file_stamps`]
    /// for resume data, so a crash cannot leave resume data claiming pieces that were lost.
    pub fn sync_all(&self) -> Result<()> {
        for f in &self.files {
            if let Some(h) = &f.handle {
                h.sync_all().map_err(|source| io_err(&f.path, source))?;
            }
        }
        Ok(())
    }

    /// Size and modification time of every non-pad file, in torrent order, read from the
    /// open handles (the files this storage actually reads and writes).
    pub fn file_stamps(&self) -> Result<Vec<FileStamp>> {
        self.files
            .iter()
            .filter_map(|f| f.handle.as_ref().map(|h| (f, h)))
            .map(|(f, h)| {
                let m = h.metadata().map_err(|source| io_err(&f.path, source))?;
                Ok(FileStamp {
                    size: m.len(),
                    mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                })
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
        self.spans(start, len)
            .any(|s| s.file_offset < s.file.old_length || s.file.written.load(Ordering::Relaxed))
    }

    /// The parts of the byte range `start..start+len` of the torrent, file by file.
    fn spans(&self, start: u64, len: u64) -> impl Iterator<Item = Span<'_>> {
        let end = start + len;
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        self.files[first..]
            .iter()
            .take_while(move |f| f.offset < end)
            .filter_map(move |f| {
                let s = start.max(f.offset);
                let e = end.min(f.offset + f.length);
                (e > s).then(|| Span {
                    file: f,
                    file_offset: s - f.offset,
                    buf_offset: (s - start) as usize,
                    len: (e - s) as usize,
                })
            })
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

/// Create (or open) `dir/rel`, creating missing folders on the way, refusing to pass through
/// any symbolic link below `dir`, and extend it to at least `length` bytes.
/// Open (creating it and its folders if needed) the file `rel` below `dir`, at least
/// `length` bytes long. Returns the file and its length before we opened it.
fn open_file(dir: &Path, rel: &Path, length: u64) -> Result<(File, u64)> {
    let parts: Vec<_> = rel.components().collect();
    if parts.is_empty() || parts.iter().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(StorageError::BadPath(rel.to_path_buf()));
    }
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
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&cur)
        .map_err(|source| io_err(&cur, source))?;
    let meta = file.metadata().map_err(|source| io_err(&cur, source))?;
    if !meta.is_file() {
        return Err(StorageError::NotAFile(cur));
    }
    if meta.len() < length {
        file.set_len(length)
            .map_err(|source| io_err(&cur, source))?;
    }
    Ok((file, meta.len()))
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

        // Files exist at their lengths (sparse), the empty one empty, the pad one nowhere.
        for &(name, length, pad) in LAYOUT {
            let path = dir.join("t").join(name);
            if pad {
                assert!(!path.exists(), "pad file {name} was created");
            } else {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), length, "{name}");
            }
        }
        assert!(!dir.join("t/.pad").exists());

        // Nothing written yet: nothing verifies.
        let (progress, cancel) = no_cancel();
        assert_eq!(st.recheck(2, &progress, &cancel).unwrap().count_ones(), 0);
        assert_eq!(progress.load(Ordering::Relaxed), stream.len() as u64);

        // Write every piece but 3.
        for p in (0..6).filter(|&p| p != 3) {
            st.write_piece(p, piece_of(&stream, p)).unwrap();
        }
        let mut buf = Vec::new();
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
        assert!(st.verify_piece(u32::MAX, &mut Vec::new()).is_err());
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
        assert!(!st.verify_piece(1, &mut Vec::new()).unwrap());
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

        // A link in place of the file itself (the failed open above already made a.bin,
        // which is inside the folder and harmless).
        std::fs::remove_file(dir.join("t/sub")).unwrap();
        std::fs::remove_file(dir.join("t/a.bin")).unwrap();
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
}
