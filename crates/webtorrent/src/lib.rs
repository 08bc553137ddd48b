//! WebTorrent signalling: how WebSocket trackers introduce WebRTC peers to each other.
//!
//! - [`codec`]: the tracker messages (JSON text frames with 20-byte "binary string" ids),
//!   every field bounded and checked.
//! - [`client`]: the sans-IO client of one tracker URL shared by all torrents (offers,
//!   answers, timeouts, reconnects).
//! - [`rtc`]: WebRTC data channels (str0m, UDP sockets of each session's own: one per
//!   host candidate) as byte streams.
//! - [`local_addrs`]: the node's addresses (from `/proc`), offered as host candidates.
//! - [`stun`]: the STUN Binding request and response (a server-reflexive candidate).
//! - [`node`]: the tokio shell making a node a WebTorrent peer (tracker tasks, offers,
//!   answers, open channels handed out as connections).
//! - [`server`]: the sans-IO core of a WebSocket tracker relaying offers and answers the way
//!   npm `bittorrent-tracker` does, with caps on what one connection can make it send.
//! - [`ws_server`]: its tokio shell (`bitpeer tracker --ws`).

pub mod client;
pub mod codec;
pub mod local_addrs;
pub mod node;
pub mod rtc;
pub mod server;
pub mod stun;
pub mod ws_server;
