//! Creating v1 .torrent files (BEP 3, with BEP 12 trackers, BEP 19 web seeds and BEP 27
//! private flag) from a file or a folder.
//!
//! Files are listed in a deterministic order (path components compared bytewise) and hashed
//! on every core: the piece range is cut into batches of a few MiB, and each worker reads its
//! batch with positioned reads (`read_exact_at`) and hashes it. Reads stay large and
//! sequential within a batch, and no thread waits on another.

use crate::path;
use bencode::Encoder;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no files to put in a torrent")]
    NoFiles(PathBuf),
    #[error("{0}: the files hold no data (total size 0)")]
    Empty(PathBuf),
    #[error("{0}: the file changed size while it was being hashed")]
    Changed(PathBuf),
    #[error("piece length {0} is not a power of two between 16 KiB and 512 MiB")]
    BadPieceLength(u64),
    #[error("{0}: a file name cannot be used in a torrent: {1}")]
    BadName(PathBuf, String),
    #[error("{count} pieces is more than the limit of {max}; use a larger --piece-length")]
    TooManyPieces { count: u64, max: u64 },
}

/// What to put in the torrent besides the data.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Piece length in bytes; `None` picks one with [`auto_piece_length`].
    pub piece_length: Option<u64>,
    /// Trackers, each in its own tier, tried in the order given.
    pub trackers: Vec<String>,
    pub web_seeds: Vec<String>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
}

/// One file to be put in the torrent.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it is on disk.
    pub disk_path: PathBuf,
    /// Its path inside the torrent (empty for a single-file torrent).
    pub torrent_path: Vec<String>,
    pub length: u64,
}

/// The files under a path, in torrent order.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub files: Vec<SourceFile>,
    /// True when the path was a single file rather than a folder.
    pub single_file: bool,
}

impl Source {
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// The piece length libtorrent and Transmission would pick: the smallest power of two from
/// 16 KiB to 16 MiB that gives at most 2048 pieces (so 1024–2048 pieces for most sizes).
pub fn auto_piece_length(total: u64) -> u64 {
    const MIN: u64 = 16 << 10;
    const MAX: u64 = 16 << 20;
    let mut p = MIN;
    while p < MAX && total.div_ceil(p) > 2048 {
        p *= 2;
    }
    p
}

/// List the files under `root` (or `root` itself if it is a file). Symlinks to files are
/// followed; symlinked folders are not, so a link cannot make the walk loop.
pub fn scan(root: &Path) -> Result<Source, CreateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CreateError::Io { path, source }
    };
    let meta = std::fs::metadata(root).map_err(io(root))?;
    let abs = std::fs::canonicalize(root).map_err(io(root))?;
    let raw_name = abs
        .file_name()
        .ok_or_else(|| CreateError::BadName(root.to_path_buf(), "it has no name".into()))?;
    let name = path::sanitize_component(raw_name.as_encoded_bytes())
        .ok_or_else(|| CreateError::BadName(root.to_path_buf(), "unusable name".into()))?;
    if meta.is_file() {
        return Ok(Source {
            name,
            files: vec![SourceFile {
                disk_path: abs,
                torrent_path: Vec::new(),
                length: meta.len(),
            }],
            single_file: true,
        });
    }
    let mut files = Vec::new();
    walk(&abs, &mut Vec::new(), &mut files)?;
    if files.is_empty() {
        return Err(CreateError::NoFiles(root.to_path_buf()));
    }
    files.sort_by(|a, b| a.torrent_path.cmp(&b.torrent_path));
    Ok(Source {
        name,
        files,
        single_file: false,
    })
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<SourceFile>,
) -> Result<(), CreateError> {
    let io = |source| CreateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if prefix.len() >= path::MAX_DEPTH {
        return Err(CreateError::BadName(
            dir.to_path_buf(),
            "folders nested too deep".into(),
        ));
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let p = entry.path();
        let ft = entry.file_type().map_err(io)?;
        let raw = entry.file_name();
        let component = path::sanitize_component(raw.as_encoded_bytes())
            .filter(|c| c.as_bytes() == raw.as_encoded_bytes())
            .ok_or_else(|| {
                CreateError::BadName(
                    p.clone(),
                    "not valid UTF-8 or holds control characters".into(),
                )
            })?;
        let target_meta = if ft.is_symlink() {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => m,
                _ => continue, // dangling links and links to folders are skipped
            }
        } else if ft.is_dir() {
            prefix.push(component);
            walk(&p, prefix, out)?;
            prefix.pop();
            continue;
        } else if ft.is_file() {
            entry.metadata().map_err(io)?
        } else {
            continue; // sockets, fifos, devices
        };
        let mut torrent_path = prefix.clone();
        torrent_path.push(component);
        out.push(SourceFile {
            disk_path: p,
            torrent_path,
            length: target_meta.len(),
        });
    }
    Ok(())
}

/// Hash every piece of `source`, on `threads` threads (0: one per core). `progress` counts
/// bytes hashed so a caller can draw a progress bar; `cancel` stops early.
pub fn hash_pieces(
    source: &Source,
    piece_length: u64,
    threads: usize,
    progress: &AtomicU64,
    cancel: &AtomicBool,
) -> Result<Vec<[u8; 20]>, CreateError> {
    let total = source.total_length();
    let piece_count = total.div_ceil(piece_length) as usize;
    // Batches of whole pieces, about 16 MiB each: large sequential reads, little waiting,
    // and pieces of up to 4 MiB hashed four at a time (see `piecehash`).
    let pieces_per_batch = ((16u64 << 20) / piece_length).max(1) as usize;
    let batch_count = piece_count.div_ceil(pieces_per_batch);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .min(batch_count.max(1));

    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<CreateError>> = Mutex::new(None);
    let results: Mutex<Vec<[u8; 20]>> = Mutex::new(vec![[0u8; 20]; piece_count]);
    let offsets: Vec<u64> = source
        .files
        .iter()
        .scan(0u64, |o, f| {
            let start = *o;
            *o += f.length;
            Some(start)
        })
        .collect();

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut reader = Reader::new(source, &offsets);
                let mut buf = iobuf::AlignedBuf::zeroed(pieces_per_batch * piece_length as usize);
                let mut hashes = Vec::with_capacity(pieces_per_batch);
                loop {
                    if cancel.load(Ordering::Relaxed) || failed.lock().is_ok_and(|f| f.is_some()) {
                        return;
                    }
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batch_count {
                        return;
                    }
                    let first = batch * pieces_per_batch;
                    let start = first as u64 * piece_length;
                    let len = (pieces_per_batch as u64 * piece_length).min(total - start) as usize;
                    if let Err(e) = reader.read_at(start, &mut buf[..len]) {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                    hashes.clear();
                    let pieces: Vec<&[u8]> = buf[..len].chunks(piece_length as usize).collect();
                    hashes.extend(piecehash::sha1_many(&pieces));
                    if let Ok(mut r) = results.lock() {
                        r[first..first + hashes.len()].copy_from_slice(&hashes);
                    }
                    progress.fetch_add(len as u64, Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_default())
}

/// Positioned reads across the concatenation of a torrent's files. One file is open at a
/// time (reads go forward through the files), so a torrent of more files than the
/// open-file limit can be made.
struct Reader<'a> {
    source: &'a Source,
    offsets: &'a [u64],
    open: Option<(usize, File)>,
}

impl<'a> Reader<'a> {
    fn new(source: &'a Source, offsets: &'a [u64]) -> Self {
        Reader {
            source,
            offsets,
            open: None,
        }
    }

    fn read_at(&mut self, mut pos: u64, mut buf: &mut [u8]) -> Result<(), CreateError> {
        // The last file that starts at or before `pos`, skipping empty files.
        let mut i = self
            .offsets
            .partition_point(|&o| o <= pos)
            .saturating_sub(1);
        while !buf.is_empty() {
            let f = &self.source.files[i];
            let within = pos - self.offsets[i];
            if within >= f.length {
                i += 1;
                continue;
            }
            let n = ((f.length - within) as usize).min(buf.len());
            let file = match &mut self.open {
                Some((at, file)) if *at == i => file,
                slot => {
                    let file = File::open(&f.disk_path).map_err(|source| CreateError::Io {
                        path: f.disk_path.clone(),
                        source,
                    })?;
                    &mut slot.insert((i, file)).1
                }
            };
            file.read_exact_at(&mut buf[..n], within).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    CreateError::Changed(f.disk_path.clone())
                } else {
                    CreateError::Io {
                        path: f.disk_path.clone(),
                        source: e,
                    }
                }
            })?;
            buf = &mut buf[n..];
            pos += n as u64;
            i += 1;
        }
        Ok(())
    }
}

/// Build the .torrent file for `source` with precomputed piece hashes.
pub fn build_torrent(
    source: &Source,
    piece_length: u64,
    pieces: &[[u8; 20]],
    opts: &CreateOptions,
) -> Vec<u8> {
    let mut info = Encoder::new();
    info.dict(|d| {
        if source.single_file {
            d.int(b"length", source.files[0].length as i64);
        } else {
            d.entry(b"files", |e| {
                e.list(|e| {
                    for f in &source.files {
                        e.dict(|fd| {
                            fd.int(b"length", f.length as i64);
                            fd.entry(b"path", |e| {
                                e.list(|e| {
                                    for c in &f.torrent_path {
                                        e.bytes(c.as_bytes());
                                    }
                                });
                            });
                        });
                    }
                });
            });
        }
        d.bytes(b"name", source.name.as_bytes());
        d.int(b"piece length", piece_length as i64);
        d.bytes(b"pieces", pieces.as_flattened());
        if opts.private {
            d.int(b"private", 1);
        }
    });
    let info = info.into_bytes();

    let mut t = Encoder::new();
    t.dict(|d| {
        if let Some(first) = opts.trackers.first() {
            d.bytes(b"announce", first.as_bytes());
        }
        if opts.trackers.len() > 1 {
            d.entry(b"announce-list", |e| {
                e.list(|e| {
                    for url in &opts.trackers {
                        e.list(|e| {
                            e.bytes(url.as_bytes());
                        });
                    }
                });
            });
        }
        if let Some(c) = &opts.comment {
            d.bytes(b"comment", c.as_bytes());
        }
        if let Some(c) = &opts.created_by {
            d.bytes(b"created by", c.as_bytes());
        }
        if let Some(t) = opts.creation_date {
            d.int(b"creation date", t);
        }
        if !opts.web_seeds.is_empty() {
            d.entry(b"url-list", |e| {
                e.list(|e| {
                    for url in &opts.web_seeds {
                        e.bytes(url.as_bytes());
                    }
                });
            });
        }
        d.raw(b"info", &info);
    });
    t.into_bytes()
}

/// Check a piece length given by the user.
pub fn check_piece_length(p: u64) -> Result<(), CreateError> {
    if p.is_power_of_two() && (16 << 10..=512 << 20).contains(&p) {
        Ok(())
    } else {
        Err(CreateError::BadPieceLength(p))
    }
}

/// A torrent about to be made: the files found and the piece length chosen.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub piece_length: u64,
}

impl Plan {
    /// Scan `root` and settle the piece length, checking everything that can fail before
    /// any data is read.
    pub fn new(root: &Path, opts: &CreateOptions) -> Result<Self, CreateError> {
        let source = scan(root)?;
        let total = source.total_length();
        if total == 0 {
            return Err(CreateError::Empty(root.to_path_buf()));
        }
        let piece_length = match opts.piece_length {
            Some(p) => {
                check_piece_length(p)?;
                p
            }
            None => auto_piece_length(total),
        };
        let max = crate::Limits::default().max_pieces;
        let count = total.div_ceil(piece_length);
        if count > max {
            return Err(CreateError::TooManyPieces { count, max });
        }
        Ok(Plan {
            source,
            piece_length,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.source.total_length()
    }

    /// Hash the data and build the .torrent file.
    pub fn run(
        &self,
        opts: &CreateOptions,
        progress: &AtomicU64,
        cancel: &AtomicBool,
    ) -> Result<Vec<u8>, CreateError> {
        let pieces = hash_pieces(
            &self.source,
            self.piece_length,
            opts.threads,
            progress,
            cancel,
        )?;
        Ok(build_torrent(
            &self.source,
            self.piece_length,
            &pieces,
            opts,
        ))
    }
}

/// Scan, hash and build in one call.
pub fn create(
    root: &Path,
    opts: &CreateOptions,
    progress: &AtomicU64,
    cancel: &AtomicBool,
) -> Result<Vec<u8>, CreateError> {
    Plan::new(root, opts)?.run(opts, progress, cancel)
}
