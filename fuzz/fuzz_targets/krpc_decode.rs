//! Fuzzes the KRPC decoder (BEP 5, with BEP 42 `ip` and BEP 43 `ro`) and a DHT node fed the
//! same datagram. Nothing may panic; a decoded query or response re-encodes to a message that
//! decodes to the same value (errors are skipped: their text is decoded lossily).

#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use dht::krpc::{self, Body};
use dht::node::{Node, NodeConfig};
use dht::NodeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        if !matches!(m.body, Body::Error { .. }) {
            let again = krpc::decode(&m.encode()).expect("re-encoded message decodes");
            assert_eq!(again, m);
        }
    }
    let now = Instant::now();
    let mut node = Node::new(NodeConfig::new(NodeId([0x42; 20]), 1), now);
    let from: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    node.handle_datagram(now, from, data);
    while let Some((_, out)) = node.poll_transmit() {
        assert!(krpc::decode(&out).is_ok(), "the node sent invalid KRPC");
    }
    node.handle_timeout(now + std::time::Duration::from_secs(10));
    // A dual-stack node (BEP 32: a table per family, `want`) fed over IPv6.
    let mut cfg = NodeConfig::new(NodeId([0x42; 20]), 1);
    cfg.families = krpc::Want::BOTH;
    let mut dual = Node::new(cfg, now);
    let from6: SocketAddr = "[fd00::1]:6881".parse().unwrap();
    dual.handle_datagram(now, from6, data);
    while let Some((_, out)) = dual.poll_transmit() {
        assert!(krpc::decode(&out).is_ok(), "the node sent invalid KRPC");
    }
});
