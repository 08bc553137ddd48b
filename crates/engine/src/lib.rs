//! The bitpeer node. A [`session::Session`] owns the table of torrents and their
//! lifecycle (`Metadata`, `Checking`, `Live`, `Paused`, `Error`); each
//! [`torrent::Torrent`] runs one task per peer connection over any transport
//! ([`transport::PeerStream`]) with the sans-IO `wire` protocol core, the timed rules of
//! [`peer_timers`], a [`picker`], a [`choker`], [`storage`] (positioned reads and writes
//! of verified pieces only), [`blame`] (who sent the bad block of a failed piece),
//! [`resume`] files and the rate limits of [`settings`].
//! ARCHITECTURE.md at the repository root has the whole picture.

pub mod bitfield;
pub mod blame;
mod bufpool;
pub use iobuf::AlignedBuf;
pub mod choker;
mod context;
mod encryption;
pub mod error;
pub mod lsd;
pub mod magnet;
pub mod outbox;
mod peer;
pub mod peer_timers;
pub mod picker;
pub mod pool;
mod recvpin;
pub mod resume;
pub mod session;
pub mod settings;
pub mod storage;
pub mod torrent;
pub mod transport;
pub mod utp;
