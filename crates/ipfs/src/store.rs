//! A content-addressed block store on disk, behind the [`BlockStore`] trait so other
//! sources (bitswap later) and the gateway share one interface.
//!
//! Layout: `ROOT/blocks/XY/KEY`, KEY being the block's CIDv1 in base32 (a CIDv0 is stored
//! under its CIDv1 form) and XY two of its characters, so no folder grows huge. A block is
//! written to `ROOT/tmp/`, checked against its CID, fsynced, then renamed into place: a
//! block is visible only once complete and verified, and a crash leaves at most a stray
//! temp file (cleared when the store is opened). Reads verify again, so a block damaged on
//! disk is reported, never served.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::import::BlockSink;
use crate::{Cid, DAG_PB, Error, IDENTITY, verify_block};

/// Largest block we store or accept: bitswap's 2 MiB limit.
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

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
}

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
        })
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
            return Err(Error::Limit(format!(
                "block {cid} of {} bytes is larger than 2 MiB",
                block.len()
            )));
        }
        verify_block(cid, block)?;
        if cid.hash().code() == IDENTITY || self.has(cid)? {
            return Ok(());
        }
        let path = self.path_of(cid);
        let dir = path.parent().expect("block paths have a folder");
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{seq}", std::process::id()));
        // The data reaches the disk before the name does, so a crash never leaves a
        // visible block with missing bytes (at worst the block is absent and fetched or
        // imported again).
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(block)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }
}

impl BlockSink for &FsStore {
    fn put(&mut self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        BlockStore::put(*self, cid, block)
    }

    /// Writes on several threads: each block still goes through temp file, fsync and
    /// rename, but the fsyncs overlap (the file system commits them together).
    fn put_many(&mut self, blocks: &[(Cid, &[u8])]) -> Result<(), Error> {
        let store: &FsStore = self;
        let per = blocks.len().div_ceil(8).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .try_for_each(|(cid, block)| BlockStore::put(store, cid, block))
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("store thread panicked"))
        })
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
}
