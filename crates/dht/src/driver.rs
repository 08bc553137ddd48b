//! placeholder
pub struct Dht;
pub struct DhtConfig;
