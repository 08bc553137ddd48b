//! Fuzzes CID parsing, binary and text: nothing may panic, and a parsed CID survives
//! to_bytes/from_bytes and to_string/parse unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cid) = ipfs::cid_from_bytes(data) {
        assert_eq!(ipfs::cid_from_bytes(&cid.to_bytes()).unwrap(), cid);
        assert_eq!(ipfs::parse_cid(&cid.to_string()).unwrap(), cid);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cid) = ipfs::parse_cid(text)
    {
        assert_eq!(ipfs::cid_from_bytes(&cid.to_bytes()).unwrap(), cid);
    }
});
