//! Any string as a magnet link: parsing never panics, and a parsed link survives formatting.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = metainfo::Magnet::parse(s) {
            let again = metainfo::Magnet::parse(&m.to_string()).expect("formatted link parses");
            assert_eq!(again.info_hashes, m.info_hashes);
        }
    }
});
