//! The BitTorrent peer wire protocol as a sans-IO core.
//!
//! This crate turns bytes from a peer into typed messages and events, and typed
//! messages back into bytes. It follows BEP 3 (the base protocol), BEP 6 (the fast
//! extension), BEP 10 (the extension protocol), BEP 9 (metadata exchange) and BEP 11
//! (peer exchange). It owns no socket, clock or task:
//! the async shell in `engine` reads bytes into a [`bytes::BytesMut`], hands them to a
//! [`Decoder`], feeds the resulting [`Message`]s to a [`PeerState`], and writes out
//! whatever [`PeerState::poll_message`] returns.
//!
//! Read top to bottom:
//! - [`handshake`]: the 68-byte opening exchange, including the 48-byte prefix a
//!   listener needs to route a connection by info-hash.
//! - [`message`]: the [`Message`] enum and its encoding.
//! - [`codec`]: the framing [`Decoder`] with its length bounds and typed errors.
//! - [`extended`]: the BEP 10 extended handshake dictionary.
//! - [`metadata`]: BEP 9 `ut_metadata` messages and the [`MetadataAssembler`] that
//!   fetches an info dictionary from peers (magnet links).
//! - [`peer`]: [`PeerState`], the per-connection protocol rules (choking, interest,
//!   request queues in both directions, fast-extension rejects).
//! - [`pex`]: BEP 11 `ut_pex` messages and [`PexState`], the per-connection diff and
//!   rate limits of peer exchange.
//!
//! Every length, index and count a peer sends is bounded before it is used, and no
//! input makes any of this code panic (see the proptests and `fuzz/`).

pub mod codec;
pub mod extended;
pub mod handshake;
pub mod message;
pub mod metadata;
pub mod peer;
pub mod pex;

pub use codec::{DecodeError, Decoder, DecoderConfig};
pub use extended::{ExtendedHandshake, ExtendedHandshakeError};
pub use handshake::{Handshake, HandshakeError, HandshakePrefix};
pub use message::{BlockRequest, Message, encode_piece_header};
pub use metadata::{
    MAX_METADATA_SIZE, METADATA_PIECE_SIZE, MetadataAssembler, MetadataError, MetadataMessage,
    metadata_piece,
};
pub use peer::{
    Bitfield, Event, PeerConfig, PeerError, PeerState, PieceGeometry, RefuseReason, RequestError,
    RequestFailure,
};
pub use pex::{PexError, PexFlags, PexMessage, PexState};
