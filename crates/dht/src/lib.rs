//! The mainline DHT (BEP 5), our own implementation.
//!
//! - [`krpc`]: the KRPC message codec (BEP 5, with `ip` from BEP 42 and `ro` from BEP 43).
//! - [`id`]: 160-bit ids, XOR distance, the BEP 42 node-id restriction.
//! - [`item`]: BEP 44 items (immutable and ed25519-signed mutable) and their bounded store.
//! - [`table`]: the routing table of k-buckets.
//! - [`store`]: announce tokens, the peers announced to us, the per-IP query rate limit.
//! - [`node`]: [`Node`], the sans-IO DHT node: it takes datagrams and `now`, and hands back
//!   datagrams to send, the next deadline and events (like quinn-proto's `Endpoint`).
//! - [`driver`]: [`Dht`], the tokio shell that owns the UDP socket and drives a [`Node`].

pub mod driver;
pub mod id;
pub mod item;
pub mod krpc;
pub mod node;
pub mod store;
pub mod table;

pub use driver::{Dht, DhtConfig, bind_second};
pub use id::NodeId;
pub use item::Item;
pub use node::{Event, ItemWant, LookupId, LookupStats, Node, NodeConfig};
