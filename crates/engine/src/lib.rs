//! The bitpeer node: a [`session::Session`] owns the listener and routes peers to its
//! [`torrent::Torrent`]s; each torrent runs one task per peer connection over the sans-IO
//! `wire` protocol core, with a [`picker`], a [`choker`], [`storage`] (positioned reads and
//! writes of verified pieces only), [`blame`] (who sent the bad block of a failed piece) and
//! [`resume`] files.

pub mod bitfield;
pub mod blame;
pub mod choker;
pub mod lsd;
pub mod magnet;
pub mod picker;
pub mod pool;
pub mod resume;
pub mod session;
pub mod storage;
pub mod torrent;
