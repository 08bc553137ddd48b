//! IPFS data for bitpeer: content identifiers (CIDs), the dag-pb and UnixFS formats, UnixFS
//! import of files and folders with the same root CIDs as kubo and Helia, a block store, and
//! CAR v1 files.
//!
//! Everything here is sans-IO or plain blocking file I/O; the gateway and fetching shells
//! live in the `bitpeer` binary. Specs followed:
//! - CID and multihash: <https://github.com/multiformats/cid> (through the `cid` crate);
//! - dag-pb: <https://ipld.io/specs/codecs/dag-pb/spec/> (Links before Data, links sorted);
//! - UnixFS v1 and its HAMT-sharded directories: <https://specs.ipfs.tech/unixfs/>;
//! - import profiles: IPIP-499 (`unixfs-v1-2025`, `unixfs-v0-2015`), and what Helia's
//!   `ipfs-unixfs-importer` does with no profile (`v1-256k`).

pub mod car;
pub mod dag;
pub mod dagpb;
pub mod gateway;
mod hamt;
pub mod import;
mod pb;
pub mod store;
pub mod unixfs;

pub use cid::Cid;
pub use import::{
    BlockSink, DiscardBlocks, FileTree, Imported, Profile, SharedSink, import_path, import_reader,
};
pub use store::{BlockStore, FsStore};

use sha2::{Digest, Sha256};

/// Multicodec of dag-pb blocks.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of the identity multihash (the data is inline in the CID).
pub const IDENTITY: u64 = 0x00;
/// Multicodec of SHA2-256.
pub const SHA2_256: u64 = 0x12;

/// What goes wrong with IPFS data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed {0}")]
    Malformed(String),
    #[error("invalid CID: {0}")]
    BadCid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("block {cid} does not match its CID")]
    HashMismatch { cid: String },
    #[error("{0}")]
    Limit(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The CID of `block` encoded with `codec`, hashed with SHA2-256: version 0 only for dag-pb
/// when `v0` is asked for (CIDv0 cannot name anything else).
pub fn cid_of(codec: u64, block: &[u8], v0: bool) -> Cid {
    let digest = Sha256::digest(block);
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .expect("a 32-byte digest fits in a 64-byte multihash");
    if v0 && codec == DAG_PB {
        Cid::new_v0(mh).expect("sha2-256 multihash is a valid CIDv0")
    } else {
        Cid::new_v1(codec, mh)
    }
}

/// Checks that `block` is what `cid` names: SHA2-256 digests are recomputed, identity CIDs
/// compared byte for byte. Any other hash function is refused (we cannot verify it).
pub fn verify_block(cid: &Cid, block: &[u8]) -> Result<(), Error> {
    let mh = cid.hash();
    let ok = match mh.code() {
        SHA2_256 => mh.digest() == Sha256::digest(block).as_slice(),
        IDENTITY => mh.digest() == block,
        other => {
            return Err(Error::Unsupported(format!(
                "multihash 0x{other:x} in {cid} (only sha2-256 and identity)"
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::HashMismatch {
            cid: cid.to_string(),
        })
    }
}

/// Parses a CID from text (base58 CIDv0 or multibase CIDv1), with a clear error.
pub fn parse_cid(text: &str) -> Result<Cid, Error> {
    if text.len() > 512 {
        return Err(Error::BadCid("longer than 512 characters".into()));
    }
    Cid::try_from(text).map_err(|e| Error::BadCid(format!("{text:?}: {e}")))
}

/// Parses a CID from its binary form, which must take the whole slice.
pub fn cid_from_bytes(bytes: &[u8]) -> Result<Cid, Error> {
    let mut r = bytes;
    let cid = Cid::read_bytes(&mut r).map_err(|e| Error::BadCid(e.to_string()))?;
    if !r.is_empty() {
        return Err(Error::BadCid("trailing bytes after the CID".into()));
    }
    Ok(cid)
}
