//! Resume data: which pieces of a torrent we have, saved so that a restart need not hash
//! every byte again.
//!
//! The file is bencode: `{"files": [{"mtime": ns, "size": n}...], "info-hash": 20 bytes,
//! "piece-count": n, "pieces": BEP 3 bitfield, "version": 1}`. It is written atomically
//! (temporary file, fsync, rename, fsync of the folder), so a crash leaves either the old
//! file or the new one, never half of one. It is read as untrusted input: anything
//! unexpected makes [`load`] return `None` and the caller rechecks the data instead. The
//! file stamps tell whether the files changed since the save (see [`still_valid`]).

use crate::bitfield::Bitfield;
use crate::storage::FileStamp;
use bencode::{Encoder, Value};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const VERSION: i64 = 1;

/// Room for everything but the bitfield: millions of file stamps.
const MAX_FILE_BYTES_BESIDES_BITFIELD: u64 = 16 << 20;

/// What we know about a torrent's data at the time of a save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    pub info_hash: [u8; 20],
    pub pieces: Bitfield,
    /// One stamp per non-pad file, in torrent order, as `Storage::file_stamps` gives them
    /// after the last write and a `Storage::sync_all`.
    pub files: Vec<FileStamp>,
}

/// Write `data` to `path` atomically: into `path.tmp`, fsync, rename over `path`, fsync the
/// folder. Only one save per path may run at a time (they share the temporary name).
pub fn save(path: &Path, data: &ResumeData) -> io::Result<()> {
    let bytes = encode(data);
    let tmp = tmp_path(path);
    let result = write_synced(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // best effort; the error that matters is `result`
        return result;
    }
    // Make the rename itself durable.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Read the resume data at `path` if it is intact and belongs to this torrent
/// (`info_hash`, `piece_count`); otherwise `None`, and the caller rechecks.
pub fn load(path: &Path, info_hash: &[u8; 20], piece_count: u32) -> Option<ResumeData> {
    let limit = MAX_FILE_BYTES_BESIDES_BITFIELD + (piece_count as u64).div_ceil(8);
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() > limit {
        return None;
    }
    let mut bytes = Vec::new();
    // `take` too: the file may grow between the look and the read.
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > limit {
        return None;
    }
    decode(&bytes, info_hash, piece_count)
}

/// Whether saved data still describes the files on disk: the same files, each with the same
/// size and modification time. If not, the caller rechecks.
pub fn still_valid(data: &ResumeData, current: &[FileStamp]) -> bool {
    data.files == current
}

fn encode(data: &ResumeData) -> Vec<u8> {
    // Bencode integers are i64. Only sizes of 2^63 bytes or more and times outside the
    // years 1677..2262 do not fit; they are saved clamped, so a later comparison fails and
    // the caller rechecks.
    let clamp_u = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let clamp_i = |n: i128| n.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let mut e = Encoder::new();
    e.dict(|d| {
        d.bytes(b"info-hash", &data.info_hash)
            .bytes(b"pieces", data.pieces.as_bytes())
            .int(b"piece-count", data.pieces.len() as i64)
            .int(b"version", VERSION)
            .entry(b"files", |e| {
                e.list(|l| {
                    for f in &data.files {
                        l.dict(|d| {
                            d.int(b"size", clamp_u(f.size))
                                .int(b"mtime", clamp_i(f.mtime_ns));
                        });
                    }
                });
            });
    });
    e.into_bytes()
}

fn decode(bytes: &[u8], info_hash: &[u8; 20], piece_count: u32) -> Option<ResumeData> {
    let limits = bencode::Limits {
        max_input: bytes.len(),
        ..bencode::Limits::default()
    };
    let root = bencode::decode_with(bytes, &limits).ok()?;
    let d = root.as_dict()?;
    if d.get(b"version")?.as_int()? != VERSION {
        return None;
    }
    if d.get(b"info-hash")?.as_bytes()? != info_hash {
        return None;
    }
    if d.get(b"piece-count")?.as_int()? != piece_count as i64 {
        return None;
    }
    let pieces = Bitfield::from_wire(d.get(b"pieces")?.as_bytes()?, piece_count).ok()?;
    let files = d
        .get(b"files")?
        .as_list()?
        .iter()
        .map(|f| {
            let f = f.as_dict()?;
            Some(FileStamp {
                size: u64::try_from(f.get(b"size").and_then(Value::as_int)?).ok()?,
                mtime_ns: f.get(b"mtime").and_then(Value::as_int)? as i128,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ResumeData {
        info_hash: *info_hash,
        pieces,
        files,
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".tmp");
    PathBuf::from(s)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: [u8; 20] = [7; 20];

    fn sample(count: u32) -> ResumeData {
        let mut pieces = Bitfield::new(count);
        for i in (0..count).step_by(3) {
            pieces.set(i);
        }
        ResumeData {
            info_hash: HASH,
            pieces,
            files: vec![
                FileStamp {
                    size: 10,
                    mtime_ns: 1_700_000_000_123_456_789,
                },
                FileStamp {
                    size: 0,
                    mtime_ns: -5,
                },
            ],
        }
    }

    fn no_tmp_left(dir: &Path) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.resume");
        for count in [1, 8, 13] {
            let data = sample(count);
            save(&path, &data).unwrap();
            assert_eq!(load(&path, &HASH, count), Some(data));
        }
        no_tmp_left(tmp.path());
    }

    #[test]
    fn save_replaces_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.resume");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        let mut data = sample(13);
        save(&path, &data).unwrap();
        assert_eq!(load(&path, &HASH, 13).as_ref(), Some(&data));
        data.pieces.set(1);
        data.files.pop();
        save(&path, &data).unwrap();
        assert_eq!(load(&path, &HASH, 13), Some(data));
        no_tmp_left(tmp.path());
    }

    #[test]
    fn bad_files_give_none() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.resume");
        assert_eq!(load(&path, &HASH, 13), None); // missing

        save(&path, &sample(13)).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(load(&path, &[8; 20], 13).is_none()); // another torrent
        assert!(load(&path, &HASH, 12).is_none()); // another piece count
        assert!(load(&path, &HASH, 14).is_none());

        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(load(&path, &HASH, 13).is_none(), "truncated at {cut}");
        }
        std::fs::write(&path, b"\x00\xffnot bencode at all").unwrap();
        assert!(load(&path, &HASH, 13).is_none());

        let with = |f: &dyn Fn(&mut bencode::DictEncoder)| {
            let mut e = Encoder::new();
            e.dict(|d| {
                d.bytes(b"info-hash", &HASH)
                    .bytes(b"pieces", &[0x80, 0x00])
                    .int(b"piece-count", 13)
                    .int(b"version", 1)
                    .entry(b"files", |e| {
                        e.list(|_| {});
                    });
                f(d);
            });
            std::fs::write(&path, e.into_bytes()).unwrap();
            load(&path, &HASH, 13)
        };
        assert!(with(&|_| {}).is_some()); // the baseline is fine
        assert!(
            with(&|d| {
                d.int(b"version", 2);
            })
            .is_none()
        );
        assert!(
            with(&|d| {
                d.bytes(b"pieces", &[0x80, 0x01]); // spare bit set
            })
            .is_none()
        );
        assert!(
            with(&|d| {
                d.bytes(b"pieces", &[0x80]); // too short
            })
            .is_none()
        );
        assert!(
            with(&|d| {
                d.bytes(b"info-hash", &[7; 19]);
            })
            .is_none()
        );
        assert!(
            with(&|d| {
                d.entry(b"files", |e| {
                    e.list(|l| {
                        l.dict(|d| {
                            d.int(b"size", -1).int(b"mtime", 0);
                        });
                    });
                });
            })
            .is_none()
        );
        assert!(
            with(&|d| {
                d.entry(b"files", |e| {
                    e.list(|l| {
                        l.int(3);
                    });
                });
            })
            .is_none()
        );

        // Oversized: refused before it is parsed.
        let mut big = good.clone();
        big.resize((MAX_FILE_BYTES_BESIDES_BITFIELD + 3) as usize, b' ');
        std::fs::write(&path, &big).unwrap();
        assert!(load(&path, &HASH, 13).is_none());
    }

    #[test]
    fn stamps_decide_validity() {
        let data = sample(13);
        assert!(still_valid(&data, &data.files));
        let mut changed = data.files.clone();
        changed[0].mtime_ns += 1;
        assert!(!still_valid(&data, &changed));
        let mut changed = data.files.clone();
        changed[1].size = 1;
        assert!(!still_valid(&data, &changed));
        assert!(!still_valid(&data, &data.files[..1]));
        let mut more = data.files.clone();
        more.push(more[0]);
        assert!(!still_valid(&data, &more));
    }

    #[test]
    fn stamps_from_real_files_round_trip() {
        use crate::storage::Storage;
        use metainfo::{FileAttr, FileEntry, Info, Version};
        use sha1::{Digest, Sha1};

        let tmp = tempfile::tempdir().unwrap();
        let info = Info {
            name: "f".into(),
            piece_length: 16,
            pieces: vec![
                Sha1::digest([0u8; 16]).into(),
                Sha1::digest([0u8; 4]).into(),
            ],
            files: vec![FileEntry {
                path: vec!["f".into()],
                length: 20,
                offset: 0,
                attr: FileAttr::default(),
                pieces_root: None,
            }],
            single_file: true,
            private: false,
            version: Version::V1,
            total_length: 20,
        };
        let st = Storage::open(&info, &tmp.path().join("data")).unwrap();
        // Files are created when first written.
        st.write_piece(1, &[0u8; 4]).unwrap();
        let data = ResumeData {
            info_hash: HASH,
            pieces: Bitfield::full(2),
            files: st.file_stamps().unwrap(),
        };
        let path = tmp.path().join("f.resume");
        save(&path, &data).unwrap();
        let loaded = load(&path, &HASH, 2).unwrap();
        assert!(still_valid(&loaded, &st.file_stamps().unwrap()));

        // Touch the file with a different mtime: no longer valid.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path().join("data/f"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000))
            .unwrap();
        assert!(!still_valid(&loaded, &st.file_stamps().unwrap()));
    }
}
