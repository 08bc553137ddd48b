//! Fuzzes the dag-pb decoder: nothing may panic, and a decoded node encodes back to the
//! same bytes (the decoder accepts only the canonical form).

#![no_main]

use ipfs::dagpb::PbNode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = PbNode::decode(data) {
        assert!(node.links.len() <= ipfs::dagpb::MAX_LINKS);
        let again = PbNode::decode(&node.encode()).unwrap();
        assert_eq!(again, node);
    }
});
