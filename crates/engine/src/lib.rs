//! The bitpeer node: storage, resume, and (to come) session, torrents and peer connections.

pub mod bitfield;
pub mod choker;
pub mod picker;
pub mod resume;
pub mod storage;
pub mod torrent;
