//! The engine's errors: [`EngineError`] for what a caller asked that failed, and
//! [`CloseReason`] for why a peer connection ended (logged, never dropped silently).

use crate::storage::StorageError;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the tracker client: {0}")]
    Tracker(String),
    #[error("the metadata from peers is not a valid torrent: {0}")]
    Metadata(String),
    #[error("this torrent is already in the session")]
    Duplicate,
    #[error("v2-only torrents cannot be downloaded yet")]
    V2Only,
    #[error("the piece length {0} is too large")]
    PieceLength(u64),
    #[error("no torrent with id {0}")]
    UnknownTorrent(u64),
    #[error("the session is shutting down")]
    ShuttingDown,
    #[error("bad file selection: {0}")]
    BadSelection(String),
    /// The torrent went to the `Error` state; the text says why.
    #[error("{0}")]
    Failed(String),
    #[error("cannot move the torrent's data: {0}")]
    Move(std::io::Error),
    #[error("cannot delete the torrent's data: {0}")]
    Delete(std::io::Error),
}

/// Why a peer connection ended. Every connection task ends with one, and it is logged
/// at debug level with the peer's address, so `RUST_LOG=engine=debug` says why each
/// connection went away.
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    #[error("the peer closed the connection")]
    PeerClosed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("the peer sent nothing for {0} s")]
    Idle(u64),
    #[error("the handshake did not finish in time")]
    HandshakeTimeout,
    #[error("bad handshake: {0}")]
    Handshake(String),
    #[error("the torrent or fetch stopped")]
    Stopped,
    #[error("banned: {0}")]
    Banned(&'static str),
    #[error("the torrent is full ({0} peers)")]
    Full(usize),
    #[error("too many connections from its address (at most {0})")]
    TooManyFromIp(usize),
    #[error("the disk read failed: {0}")]
    Disk(String),
    #[error("the peer does not serve metadata: {0}")]
    NoMetadata(String),
    #[error("handed over to the torrent")]
    HandedOver,
    #[error("a second connection with a peer we are connected to")]
    Duplicate,
}

impl From<wire::DecodeError> for CloseReason {
    fn from(e: wire::DecodeError) -> Self {
        CloseReason::Protocol(e.to_string())
    }
}

impl From<wire::PeerError> for CloseReason {
    fn from(e: wire::PeerError) -> Self {
        CloseReason::Protocol(e.to_string())
    }
}
