//! Fuzzes the UnixFS Data decoder and the UnixFS view of dag-pb blocks (as raw and dag-pb
//! CIDs): nothing may panic; a decoded Data message survives encode/decode.

#![no_main]

use ipfs::unixfs::Data;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Data::decode(data) {
        let again = Data::decode(&d.encode()).unwrap();
        assert_eq!(again.kind, d.kind);
        assert_eq!(again.blocksizes, d.blocksizes);
    }
    for codec in [ipfs::DAG_PB, ipfs::RAW] {
        let cid = ipfs::cid_of(codec, data, false);
        if let Ok(node) = ipfs::dag::decode(&cid, data) {
            let _ = ipfs::dag::node_size(&cid, &node);
        }
    }
});
