//! Torrent metadata: .torrent files (BEP 3 v1, BEP 52 v2 and hybrid), magnet links (BEP 9,
//! BEP 53), info-hashes, the path-safety policy for file names, and torrent creation.

pub mod create;
pub mod hash;
pub mod magnet;
pub mod path;
pub mod torrent;

pub use hash::{InfoHashV1, InfoHashV2, InfoHashes};
pub use magnet::{Magnet, MagnetError};
pub use torrent::{
    FileAttr, FileEntry, Info, Limits, Metainfo, MetainfoError, Version, parse_info_bytes,
};

#[cfg(test)]
mod tests;
