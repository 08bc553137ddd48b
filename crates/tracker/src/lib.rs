//! Trackers: the servers a torrent names in `announce`/`announce-list` that tell each peer
//! about the others.
//!
//! - [`proto`]: what client and server share: announce and scrape requests and responses,
//!   the UDP tracker constants (BEP 15), compact peer lists (BEP 23, BEP 7).
//! - [`client`]: announcing to HTTP(S) and UDP trackers, multitracker tiers (BEP 12).
//! - [`server`]: a tracker of our own (`bitpeer tracker`), HTTP and UDP.

pub mod client;
pub mod proto;
pub mod server;
