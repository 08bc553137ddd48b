//! The mainline DHT (BEP 5), our own implementation.
//!
//! - [`krpc`]: the KRPC message codec (BEP 5, with `ip` from BEP 42 and `ro` from BEP 43).
//! - [`id`]: 160-bit ids, XOR distance, the BEP 42 node-id restriction.
//! - [`table`]: the routing table of k-buckets.
//! - [`store`]: announce tokens, the peers announced to us, the per-IP query rate limit.
//! - [`node`]: [`Node`], the sans-IO DHT node: it takes datagrams and `now`, and hands back
//!   datagrams to send, the next deadline and events (like quinn-proto's `Endpoint`).
//! - [`driver`]: [`Dht`], the tokio shell that owns the UDP socket and drives a [`Node`].

pub mod driver;
pub mod id;
pub mod krpc;
pub mod node;
pub mod store;
pub mod table;

pub use driver::{Dht, DhtConfig};
pub use id::NodeId;
pub use node::{Event, LookupId, LookupStats, Node, NodeConfig};
