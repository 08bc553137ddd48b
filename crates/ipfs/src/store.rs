//! A content-addressed block store on disk, behind the [`BlockStore`] trait so other
//! sources (bitswap later) and the gateway share one interface.
//!
//! Layout: `ROOT/blocks/XY/KEY`, KEY being the block's CIDv1 in base32 (a CIDv0 is stored
//! under its CIDv1 form) and XY two of its characters, so no folder grows huge. A block is
//! written to `ROOT/tmp/`, checked against its CID, fsynced, then renamed into place: a
//! block is visible only once complete and verified, and a crash leaves at most a stray
//! temp file (cleared when the store is opened). Reads verify again, so a block damaged on
//! disk is reported, never served.
//!
//! The importer's blocks (whose CIDs it has just computed from those bytes) go in batches:
//! the temp files of a batch are written, then fsynced, then renamed, then their folders
//! fsynced, so one disk flush serves many blocks and the rule above still holds.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::import::{BlockSink, SharedSink};
use crate::{Cid, DAG_PB, Error, IDENTITY, verify_block};

/// Largest block we store or accept: bitswap's 2 MiB limit.
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

fn too_big(cid: &Cid, block: &[u8]) -> Error {
    Error::Limit(format!(
        "block {cid} of {} bytes is larger than 2 MiB",
        block.len()
    ))
}

/// Where blocks live. Every implementation verifies a block against its CID before it
/// accepts it and before it returns it.
pub trait BlockStore: Send + Sync {
    /// The block, or `None` when it is not held.
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error>;
    fn has(&self, cid: &Cid) -> Result<bool, Error>;
    /// Stores `block` as `cid` after checking it hashes to `cid`.
    fn put(&self, cid: &Cid, block: &[u8]) -> Result<(), Error>;
}

/// The store key of a CID: its CIDv1 form in base32 (so v0 and v1 of a block share it).
fn key(cid: &Cid) -> String {
    if cid.version() == cid::Version::V0 {
        Cid::new_v1(DAG_PB, *cid.hash()).to_string()
    } else {
        cid.to_string()
    }
}

/// The block store in a folder.
pub struct FsStore {
    root: PathBuf,
    tmp_seq: AtomicU64,
    /// The importer's blocks written to temp files, not yet fsynced and renamed.
    batch: Mutex<Batch>,
    /// Held while a batch is taken and committed, so batches become visible in the order
    /// they were filled (a parent node never before its children).
    committing: Mutex<()>,
    /// Block folders that got new names since the last flush (fsynced then).
    touched: Mutex<std::collections::BTreeSet<PathBuf>>,
}

/// Temp files waiting for their fsync and rename.
#[derive(Default)]
struct Batch {
    files: Vec<(fs::File, PathBuf, PathBuf)>,
    bytes: usize,
}

/// A batch is committed once it holds this many bytes or files.
const BATCH_BYTES: usize = 64 << 20;
const BATCH_FILES: usize = 256;
/// Threads that fsync a batch's files.
const SYNC_THREADS: usize = 8;

impl FsStore {
    /// Opens (creating if needed) the store in `root`, clearing temp files a crash left
    /// (those untouched for an hour: younger ones may be another process's writes).
    pub fn open(root: &Path) -> Result<FsStore, Error> {
        for sub in ["blocks", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| Error::io(root.join(sub), e))?;
        }
        if let Ok(rd) = fs::read_dir(root.join("tmp")) {
            let stale = |e: &fs::DirEntry| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600)
            };
            for e in rd.flatten().filter(stale) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(FsStore {
            root: root.to_path_buf(),
            tmp_seq: AtomicU64::new(0),
            batch: Mutex::new(Batch::default()),
            committing: Mutex::new(()),
            touched: Mutex::new(Default::default()),
        })
    }

    /// Writes `block` to a new temp file (not synced): the file, its path and the block's
    /// path; `None` when the block needs no file (identity, or held already).
    fn write_temp(
        &self,
        cid: &Cid,
        block: &[u8],
    ) -> Result<Option<(fs::File, PathBuf, PathBuf)>, Error> {
        if cid.hash().code() == IDENTITY || self.has(cid)? {
            return Ok(None);
        }
        let path = self.path_of(cid);
        let dir = path.parent().expect("block paths have a folder");
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = self.tmp_path();
        let file = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(block).map(|()| f))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(&tmp, e)
            })?;
        Ok(Some((file, tmp, path)))
    }

    fn tmp_path(&self) -> PathBuf {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{seq}", std::process::id()))
    }

    /// Fsyncs the batch's temp files, then renames them into place (their folders are
    /// fsynced at the flush). A temp file whose rename fails is removed.
    fn commit(&self, batch: Batch) -> Result<(), Error> {
        // The fsyncs overlap on a few threads: the file system commits them together, and
        // the disk sees one long write instead of many waits.
        let per = batch.files.len().div_ceil(SYNC_THREADS).max(1);
        let mut result = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .files
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        part.iter().try_for_each(|(file, tmp, _)| {
                            file.sync_data().map_err(|e| Error::io(tmp, e))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        });
        let mut dirs = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        for (file, tmp, path) in batch.files {
            drop(file);
            if result.is_ok() {
                result = fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e));
                if let Some(d) = path.parent() {
                    dirs.insert(d.to_path_buf());
                }
            }
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
        result
    }

    /// Commits what the importer has put so far.
    pub fn flush(&self) -> Result<(), Error> {
        self.commit_next(true)?;
        // The new names made durable: the folders' fsyncs overlap too.
        let dirs: Vec<PathBuf> =
            std::mem::take(&mut *self.touched.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        let per = dirs.len().div_ceil(SYNC_THREADS).max(1);
        std::thread::scope(|s| {
            for part in dirs.chunks(per) {
                s.spawn(move || {
                    for d in part {
                        if let Ok(dir) = fs::File::open(d) {
                            let _ = dir.sync_all();
                        }
                    }
                });
            }
        });
        Ok(())
    }

    /// Takes the batch being filled (when `always`, or when it is full) and commits it.
    fn commit_next(&self, always: bool) -> Result<(), Error> {
        let _order = self.committing.lock().unwrap_or_else(|p| p.into_inner());
        let batch = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            if !always && b.bytes < BATCH_BYTES && b.files.len() < BATCH_FILES {
                return Ok(());
            }
            std::mem::take(&mut *b)
        };
        self.commit(batch)
    }

    fn path_of(&self, cid: &Cid) -> PathBuf {
        let k = key(cid);
        let n = k.len();
        let shard = k
            .get(n.saturating_sub(3)..n.saturating_sub(1))
            .unwrap_or("__");
        self.root.join("blocks").join(shard).join(k)
    }
}

impl BlockStore for FsStore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        if cid.hash().code() == IDENTITY {
            return Ok(Some(cid.hash().digest().to_vec()));
        }
        let path = self.path_of(cid);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut block = Vec::new();
        file.take(MAX_BLOCK_SIZE as u64 + 1)
            .read_to_end(&mut block)
            .map_err(|e| Error::io(&path, e))?;
        if block.len() > MAX_BLOCK_SIZE {
            return Err(Error::Limit(format!(
                "{}: block larger than 2 MiB",
                path.display()
            )));
        }
        verify_block(cid, &block)?;
        Ok(Some(block))
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(cid.hash().code() == IDENTITY || self.path_of(cid).is_file())
    }

    fn put(&self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        if block.len() > MAX_BLOCK_SIZE {
            return Err(too_big(cid, block));
        }
        verify_block(cid, block)?;
        let Some((file, tmp, path)) = self.write_temp(cid, block)? else {
            return Ok(());
        };
        // The data reaches the disk before the name does, so a crash never leaves a
        // visible block with missing bytes (at worst the block is absent and fetched or
        // imported again).
        file.sync_data()
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(&path, e)
            })
    }
}

impl BlockSink for &FsStore {
    /// Verified, then committed with the batch (after the blocks put before it).
    fn put(&mut self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        verify_block(cid, block)?;
        self.put_shared(cid, block)
    }

    fn shared(&self) -> Option<&dyn SharedSink> {
        Some(*self)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.flush()
    }
}

impl SharedSink for FsStore {
    /// The importer's block (its CID computed from these bytes): written to a temp file now,
    /// fsynced and renamed into place with its batch.
    fn put_shared(&self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        if block.len() > MAX_BLOCK_SIZE {
            return Err(too_big(cid, block));
        }
        let Some((file, tmp, path)) = self.write_temp(cid, block)? else {
            return Ok(());
        };
        let full = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            batch.files.push((file, tmp, path));
            batch.bytes += block.len();
            batch.bytes >= BATCH_BYTES || batch.files.len() >= BATCH_FILES
        };
        if full {
            self.commit_next(false)
        } else {
            Ok(())
        }
    }
}

impl Drop for FsStore {
    /// Temp files of an unfinished import are removed (their blocks were never visible).
    fn drop(&mut self) {
        let batch = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|p| p.into_inner()));
        for (file, tmp, _) in batch.files {
            drop(file);
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RAW, cid_of};

    #[test]
    fn stores_verified_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let cid = cid_of(RAW, b"hello", false);
        assert_eq!(store.get(&cid).unwrap(), None);
        assert!(matches!(
            store.put(&cid, b"hellO"),
            Err(Error::HashMismatch { .. })
        ));
        assert!(!store.has(&cid).unwrap());
        store.put(&cid, b"hello").unwrap();
        assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&b"hello"[..]));
        // A v0 and a v1 CID of the same dag-pb block share one file.
        let block = [0x0a, 0x02, 0x08, 0x01];
        let v0 = cid_of(DAG_PB, &block, true);
        store.put(&v0, &block).unwrap();
        assert!(store.has(&cid_of(DAG_PB, &block, false)).unwrap());
        // Damage on disk is reported, not served.
        fs::write(store.path_of(&cid), b"jello").unwrap();
        assert!(store.get(&cid).is_err());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn imported_blocks_become_visible_only_when_their_batch_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp_count = || fs::read_dir(dir.path().join("tmp")).unwrap().count();
        let a = cid_of(RAW, b"a", false);
        let b = cid_of(RAW, b"b", false);
        {
            let store = FsStore::open(dir.path()).unwrap();
            store.put_shared(&a, b"a").unwrap();
            // Written to a temp file, not yet under its name.
            assert!(!store.has(&a).unwrap());
            assert_eq!(tmp_count(), 1);
            let mut sink: &FsStore = &store;
            // The importer's own puts of other blocks are checked.
            assert!(matches!(
                BlockSink::put(&mut sink, &b, b"B"),
                Err(Error::HashMismatch { .. })
            ));
            BlockSink::put(&mut sink, &b, b"b").unwrap();
            sink.finish().unwrap();
            assert_eq!(store.get(&a).unwrap().as_deref(), Some(&b"a"[..]));
            assert_eq!(store.get(&b).unwrap().as_deref(), Some(&b"b"[..]));
            assert_eq!(tmp_count(), 0);
            // An import that stops before its end: nothing of it becomes visible.
            let c = cid_of(RAW, b"c", false);
            store.put_shared(&c, b"c").unwrap();
            drop(store);
            let store = FsStore::open(dir.path()).unwrap();
            assert!(!store.has(&c).unwrap());
        }
        assert_eq!(tmp_count(), 0);
    }
}
